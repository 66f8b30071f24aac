import type { Command } from 'commander';
import { pgDatabase } from '../db/pg.js';
import { migrate, migrationStatus } from '../db/migrate.js';
import type { FleetWorker, RunRecord } from '../supervisor/supervisor.js';
import type { NodeInfo, ResidencyRow, Runtime, StateCount } from '../runtime/types.js';
import { cliLogger, databaseOf, type GlobalOptions, schemaOf, UsageError, withRuntime } from './connect.js';
import { type Command as Cmd, integer } from './parse.js';
import { ago, type Column, colourOn, iso, json, seconds, short, statusStyle, table } from './output.js';
import type { Io } from './output.js';

// The operator commands: migrate, status, residency, nodes, workers, runs, enable/disable,
// start/stop <worker>, pause/resume.

const NODE_COLUMNS = (now: number): Column<NodeInfo>[] => [
  { header: 'NODE', cell: (n) => n.id },
  { header: 'HOST', cell: (n) => n.host },
  { header: 'PID', cell: (n) => String(n.pid), align: 'right' },
  { header: 'UP', cell: (n) => ago(n.startedAt, now), align: 'right' },
  { header: 'LAST SEEN', cell: (n) => `${ago(n.lastSeen, now)} ago`, align: 'right' },
];

function lastMetric(w: FleetWorker, now: number): string {
  const metrics = w.nodes.map((n) => n.lastMetric).filter((m) => m !== null);
  const m = metrics.sort((a, b) => b.at.getTime() - a.at.getTime())[0];
  if (!m) return '-';
  const what = m.kind === 'handle' ? `${m.status} in ${short(m.durationMs)}` : m.kind === 'panic' ? `panic: ${m.error}` : m.event;
  return `${what} (${ago(m.at, now)} ago)`.slice(0, 70);
}

const WORKER_COLUMNS = (now: number): Column<FleetWorker>[] => [
  { header: 'WORKER', cell: (w) => w.name },
  { header: 'KIND', cell: (w) => w.kind },
  { header: 'STATUS', cell: (w) => w.status, style: (w) => statusStyle(w.status) },
  { header: 'NODES', cell: (w) => String(w.nodes.length), align: 'right' },
  { header: 'SCHEDULE', cell: (w) => w.schedule ?? '-' },
  { header: 'NEXT RUN', cell: (w) => (w.nextRun ? iso(w.nextRun) : '-') },
  { header: 'LAST RUN', cell: (w) => (w.lastRun ? `${w.lastRun.status} ${ago(w.lastRun.startedAt, now)} ago` : '-') },
  { header: 'LAST METRIC', cell: (w) => lastMetric(w, now) },
];

const COUNT_COLUMNS = (now: number): Column<StateCount>[] => [
  { header: 'MACHINE', cell: (c) => c.machine },
  { header: 'STATE', cell: (c) => c.state },
  { header: 'STATUS', cell: (c) => c.status, style: (c) => statusStyle(c.status) },
  { header: 'RECORDS', cell: (c) => String(c.count), align: 'right' },
  { header: 'OLDEST', cell: (c) => ago(c.oldestEnteredAt, now), align: 'right' },
];

const RUN_COLUMNS = (now: number): Column<RunRecord>[] => [
  { header: 'ID', cell: (r) => r.id, align: 'right' },
  { header: 'KIND', cell: (r) => r.kind },
  { header: 'SCHEDULED', cell: (r) => iso(r.scheduledFor) },
  { header: 'STATUS', cell: (r) => r.status, style: (r) => statusStyle(r.status) },
  { header: 'TOOK', cell: (r) => (r.finishedAt ? short(r.finishedAt.getTime() - r.startedAt.getTime()) : `${ago(r.startedAt, now)}…`), align: 'right' },
  { header: 'ATTEMPT', cell: (r) => String(r.attempt), align: 'right' },
  { header: 'NODE', cell: (r) => r.node },
  { header: 'INFO', cell: (r) => (r.error ? `${r.error.name}: ${r.error.message}` : (r.debug ?? '')).slice(0, 70) },
];

const RESIDENCY_COLUMNS: Column<ResidencyRow>[] = [
  { header: 'STATE', cell: (r) => r.state },
  { header: 'NOW', cell: (r) => String(r.count), align: 'right' },
  { header: 'STAYS', cell: (r) => String(r.stays), align: 'right' },
  { header: 'P50', cell: (r) => seconds(r.p50), align: 'right' },
  { header: 'P95', cell: (r) => seconds(r.p95), align: 'right' },
  { header: 'P99', cell: (r) => seconds(r.p99), align: 'right' },
  { header: 'MAX', cell: (r) => seconds(r.max), align: 'right' },
];

/** `--since`: a duration back from now (`1h`, `PT30M`) or an ISO date. */
function since(text: string): Date {
  const duration = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (duration) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[duration[2] as 'ms'];
    return new Date(Date.now() - Number(duration[1]) * unit);
  }
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--since takes a duration back from now (30m, 24h, 7d) or an ISO date (got "${text}")`);
  return at;
}

/** Adds the operator commands to the program. */
export function operatorCommands(program: Command, io: Io, run: Cmd): void {
  program
    .command('migrate')
    .description("apply drover's schema migrations (every runtime also does this at start)")
    .option('--status', 'list the migrations, applied or pending, with their checksums; apply nothing')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { status?: boolean; json?: boolean }, g: GlobalOptions) => {
        const db = pgDatabase(databaseOf(g, io), cliLogger(io, false));
        const schema = schemaOf(g, io);
        try {
          if (o.status) {
            const rows = await migrationStatus(db, schema);
            if (o.json) return void io.out.write(json(rows));
            io.out.write(
              table(
                rows,
                [
                  { header: 'ID', cell: (m) => String(m.id).padStart(3, '0') },
                  { header: 'NAME', cell: (m) => m.name },
                  { header: 'STATE', cell: (m) => m.state, style: (m) => statusStyle(m.state) },
                  { header: 'APPLIED AT', cell: (m) => iso(m.appliedAt) },
                  { header: 'CHECKSUM', cell: (m) => m.checksum.slice(0, 16) },
                  { header: 'STORED', cell: (m) => (m.storedChecksum === null ? '-' : m.storedChecksum === m.checksum ? 'same' : m.storedChecksum.slice(0, 16)) },
                ],
                colourOn(io),
              ),
            );
            return;
          }
          const applied = await migrate(db, schema);
          if (o.json) return void io.out.write(json({ schema, applied }));
          io.out.write(applied.length ? `applied ${applied.length} migration(s) to schema "${schema}": ${applied.join(', ')}\n` : `schema "${schema}" is up to date\n`);
        } finally {
          await db.close();
        }
      }),
    );

  program
    .command('status')
    .description('nodes, workers, and records per machine, state and status with the oldest age')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'none' }, async (rt) => {
          const [nodes, workers, records] = await Promise.all([rt.nodes(), rt.supervisor.fleet(), rt.counts()]);
          if (o.json) return void io.out.write(json({ nodes, workers, records }));
          const now = Date.now();
          const colour = colourOn(io);
          io.out.write(`Nodes\n${table(nodes, NODE_COLUMNS(now), colour)}\nWorkers\n${table(workers, WORKER_COLUMNS(now), colour)}\n`);
          io.out.write(`Records\n${table(records, COUNT_COLUMNS(now), colour)}`);
        });
      }),
    );

  program
    .command('residency')
    .description('per state: records there now, and p50/p95/p99/max of the stays that ended since --since')
    .argument('<machine>')
    .option('--since <when>', 'a duration back from now (24h, 30m) or an ISO date', '24h')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, o: { since: string; json?: boolean }, g: GlobalOptions) => {
        const from = since(o.since);
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const rows = await rt.residency(machine, { since: from });
          if (o.json) return void io.out.write(json(rows));
          io.out.write(table(rows, RESIDENCY_COLUMNS, colourOn(io)));
        });
      }),
    );

  program
    .command('nodes')
    .description('live nodes: id, host, pid, uptime, last heartbeat')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'none' }, async (rt) => {
          const nodes = await rt.nodes();
          if (o.json) return void io.out.write(json(nodes));
          io.out.write(table(nodes, NODE_COLUMNS(Date.now()), colourOn(io)));
        });
      }),
    );

  program
    .command('workers')
    .description("every node's workers and periodics: status, schedule, next and last run, last metric")
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'none' }, async (rt) => {
          const workers = await rt.supervisor.fleet();
          if (o.json) return void io.out.write(json(workers));
          io.out.write(table(workers, WORKER_COLUMNS(Date.now()), colourOn(io)));
        });
      }),
    );

  program
    .command('runs')
    .description('run records of a worker or periodic, newest first (keyset --after, or --offset)')
    .argument('<worker>')
    .option('--limit <n>', 'runs per page, 1 to 1000', integer('--limit'), 50)
    .option('--after <cursor>', 'the page after this cursor (the printed next)')
    .option('--offset <n>', 'skip this many runs (numbered pages)', integer('--offset'))
    .option('--json', 'print JSON')
    .action(
      run(async (worker: string, o: { limit: number; after?: string; offset?: number; json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'none' }, async (rt) => {
          const page = await rt.supervisor.runs(worker, {
            limit: o.limit,
            ...(o.after !== undefined ? { before: o.after } : {}),
            ...(o.offset !== undefined ? { offset: o.offset } : {}),
          });
          if (o.json) return void io.out.write(json(page));
          io.out.write(table(page.items, RUN_COLUMNS(Date.now()), colourOn(io)));
          if (page.next) io.out.write(`next page: --after ${page.next}\n`);
        });
      }),
    );

  const control = (name: string, what: string, act: (rt: Runtime, value: string) => Promise<void>, done: string) =>
    program
      .command(name)
      .description(what)
      .argument(name === 'pause' || name === 'resume' ? '<tag>' : '<worker>')
      .option('--json', 'print JSON')
      .action(
        run(async (value: string, o: { json?: boolean }, g: GlobalOptions) => {
          await withRuntime(g, io, { machines: 'none' }, async (rt) => {
            await act(rt, value);
            if (o.json) return void io.out.write(json({ ok: true, op: name, value }));
            io.out.write(`${done} ${value}\n`);
          });
        }),
      );
  control('enable', 'enable a worker or periodic on every node (stored)', (rt, v) => rt.supervisor.enable(v), 'enabled');
  control('disable', 'disable a worker or periodic on every node (stored): it finishes its call, then does not run', (rt, v) => rt.supervisor.disable(v), 'disabled');
  control('stop', 'stop a worker or periodic on every live node (until started again or the node restarts)', (rt, v) => rt.supervisor.stopEverywhere(v), 'asked every node to stop');
  control('pause', 'pause every periodic carrying a tag, on every node', (rt, v) => rt.supervisor.pause(v), 'paused');
  control('resume', 'resume the periodics carrying a tag', (rt, v) => rt.supervisor.resume(v), 'resumed');
}
