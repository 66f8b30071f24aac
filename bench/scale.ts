// `npm run bench:scale [create|idle|nodes|history]…` (default: all four): the numbers of
// docs/operations.md. Every part runs drover on `createRuntime({ database, schema, machines })`
// defaults, each in a fresh schema of its own that is dropped afterwards.
//   create  createMany() of SCALE_CREATE records (default 200,000) in calls of 1,000: time and rate
//   idle    SCALE_IDLE records (default 1,000,000) waiting for an event: createMany() time, the claim
//           and idle-poll statements under EXPLAIN ANALYZE (and timed as the runtime runs them),
//           disk per record and per transition, and the RSS of a node process idle on 0 and on
//           SCALE_IDLE records (bench/scale-node.ts, 20 s after start)
//   nodes   SCALE_NODES_RECORDS one-step jobs (default 30,000) worked off by 3 node processes
//           (bench/drover-node.ts on defaults): records finished per node, the spread
//   history SCALE_HISTORY_RECORDS records (default 10,000) with 100 history rows each, written by SQL
//           60-90 days in the past, on two schemas: retention.history '30d' by DELETE (a plain
//           history) against by DROP (partitionHistory(), monthly); the conversion timed too
//   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/test
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createQueries } from '../src/db/queries.js';
import { createRuntime, partitionHistory, type Runtime } from '../src/index.js';
import { admin, DATABASE_URL, dropSchema, schemaName } from './common.js';
import { oneStep } from './drover.js';
import { scaleIdle } from './scale-machines.js';


const CREATE_N = Number(process.env.SCALE_CREATE ?? 200_000);
const IDLE_N = Number(process.env.SCALE_IDLE ?? 1_000_000);
const NODES_N = Number(process.env.SCALE_NODES_RECORDS ?? 30_000);
const CHUNK = 1000;

const log = (msg: string) => console.error(`[scale ${new Date().toISOString().slice(11, 19)} load ${loadavg().map((l) => l.toFixed(2)).join(' ')}] ${msg}`);
const out = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function createInCalls(rt: Runtime, machine: string, n: number, prefix: string): Promise<number> {
  const t0 = performance.now();
  for (let c = 0; c < n; c += CHUNK) {
    const items = [];
    for (let i = c; i < Math.min(n, c + CHUNK); i++) items.push({ id: `${prefix}${i}` });
    await rt.createMany(machine, items);
  }
  return performance.now() - t0;
}

async function create(): Promise<void> {
  const schema = schemaName('scale_create');
  const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [scaleIdle] });
  try {
    await rt.createMany(scaleIdle.name, [{ id: 'warm' }]);
    const ms = await createInCalls(rt, scaleIdle.name, CREATE_N, 'c');
    out(`create: ${CREATE_N} records with createMany() in calls of ${CHUNK}: ${(ms / 1000).toFixed(1)} s, ${Math.round(CREATE_N / (ms / 1000))}/s`);
  } finally {
    await rt.stop();
    await dropSchema(schema);
  }
}

/** A node process (scale-node.ts) on `schema`: its RSS and heap `settleMs` after start. */
async function nodeMemory(schema: string, settleMs: number): Promise<{ rss: number; heap: number }> {
  const entry = fileURLToPath(new URL('./scale-node.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, schema, String(settleMs)], { stdio: 'pipe', env: process.env });
  child.stderr.on('data', (d) => process.stderr.write(`[scale-node] ${d}`));
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const m = /^memory (\d+) (\d+)$/.exec(line);
      if (m) resolve({ rss: Number(m[1]), heap: Number(m[2]) });
    });
    child.on('exit', (code) => reject(new Error(`scale-node exited ${code} before reporting`)));
  });
}

const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;

async function explain(sql: string, params: unknown[]): Promise<{ ms: number; plan: string }> {
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    const res = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
    await client.query('ROLLBACK');
    const plan = res.rows.map((r) => r['QUERY PLAN']).join('\n');
    const ms = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? NaN);
    return { ms, plan };
  } finally {
    client.release();
  }
}

async function timed(sql: string, params: unknown[], rounds: number): Promise<number[]> {
  const client = await admin.connect();
  const times: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      await client.query('BEGIN');
      const t0 = performance.now();
      await client.query(sql, params);
      times.push(performance.now() - t0);
      await client.query('ROLLBACK');
    }
  } finally {
    client.release();
  }
  return times.sort((a, b) => a - b);
}

async function idle(): Promise<void> {
  const empty = schemaName('scale_empty');
  const schema = schemaName('scale_idle');
  try {
    // The node on an empty schema first: it creates the schema itself.
    const m0 = await nodeMemory(empty, 20_000);
    out(`idle: node on 0 records, 20 s after start: RSS ${mb(m0.rss)}, heap ${mb(m0.heap)}`);

    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [scaleIdle] });
    const ms = await createInCalls(rt, scaleIdle.name, IDLE_N, 'i');
    await rt.stop();
    out(`idle: ${IDLE_N} records with createMany() in calls of ${CHUNK}: ${(ms / 1000).toFixed(1)} s, ${Math.round(IDLE_N / (ms / 1000))}/s`);
    await admin.query(`VACUUM ANALYZE "${schema}".instances`);
    await admin.query(`VACUUM ANALYZE "${schema}".transitions`);

    for (const table of ['instances', 'transitions', 'events', 'invocations']) {
      const { rows } = await admin.query<{ n: string; total: string; heap: string; idx: string }>(
        `SELECT (SELECT count(*) FROM "${schema}".${table})::text AS n,
                pg_total_relation_size('"${schema}".${table}')::text AS total,
                pg_table_size('"${schema}".${table}')::text AS heap,
                pg_indexes_size('"${schema}".${table}')::text AS idx`,
      );
      const r = rows[0] as { n: string; total: string; heap: string; idx: string };
      const n = Number(r.n);
      out(
        `disk: ${table}: ${n} rows, ${mb(Number(r.total))} in all (table+toast ${mb(Number(r.heap))}, indexes ${mb(Number(r.idx))})` +
          (n > 0 ? `, ${Math.round(Number(r.total) / n)} bytes/row` : ''),
      );
    }
    const { rows: idx } = await admin.query<{ name: string; size: string }>(
      `SELECT c.relname AS name, pg_relation_size(c.oid)::text AS size FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 ORDER BY pg_relation_size(c.oid) DESC LIMIT 8`,
      [schema],
    );
    out(`disk: indexes: ${idx.map((r) => `${r.name} ${mb(Number(r.size))}`).join(', ')}`);

    const q = createQueries(schema);
    const now = new Date();
    const claimArgs = [scaleIdle.queue, now, 100, 'bench-node', new Date(now.getTime() + 30_000), false];
    const claim = await explain(q.sql.claimInstances, claimArgs);
    const due = await explain(q.sql.nextDue, [scaleIdle.queue, now]);
    const inv = await explain(q.sql.claimInvocations, [scaleIdle.queue, now, 100, 'bench-node', new Date(now.getTime() + 30_000)]);
    out(`claim: EXPLAIN ANALYZE claimInstances on ${IDLE_N} idle records: ${claim.ms} ms`);
    out(`claim: EXPLAIN ANALYZE nextDue (the idle poll): ${due.ms} ms`);
    out(`claim: EXPLAIN ANALYZE claimInvocations: ${inv.ms} ms`);
    console.error(`${claim.plan}\n\n${due.plan}\n\n${inv.plan}`);
    const times = await timed(q.sql.claimInstances, claimArgs, 200);
    const p = (f: number) => (times[Math.min(times.length - 1, Math.floor(f * times.length))] as number).toFixed(2);
    out(`claim: claimInstances from the client, 200 rounds: p50 ${p(0.5)} ms, p99 ${p(0.99)} ms (round trip included)`);

    const m1 = await nodeMemory(schema, 20_000);
    out(`idle: node on ${IDLE_N} records, 20 s after start: RSS ${mb(m1.rss)}, heap ${mb(m1.heap)}`);
  } finally {
    await dropSchema(schema);
    await dropSchema(empty);
  }
}

async function nodes(): Promise<void> {
  const schema = schemaName('scale_nodes');
  const count = 3;
  const entry = fileURLToPath(new URL('./drover-node.ts', import.meta.url));
  const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [oneStep] });
  await createInCalls(rt, oneStep.name, NODES_N, 'n');
  await rt.stop();
  await admin.query(`VACUUM ANALYZE "${schema}".instances`);
  const children: ChildProcessWithoutNullStreams[] = [];
  const perChild: number[] = [];
  try {
    for (let k = 0; k < count; k++) {
      // drover-node.ts on defaults (no BENCH_DROVER_* set): counts the records of this node that reach `done`.
      const env = { ...process.env };
      for (const key of Object.keys(env)) if (key.startsWith('BENCH_DROVER_')) delete env[key];
      const child = spawn(process.execPath, ['--import', 'tsx', entry, schema, 'a'], { stdio: 'pipe', env });
      child.stderr.on('data', (d) => process.stderr.write(`[node ${k}] ${d}`));
      children.push(child);
      perChild.push(0);
      await new Promise<void>((resolve) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line === 'ready') resolve();
          const m = /^done (\d+)$/.exec(line);
          if (m) perChild[k] = Number(m[1]);
        });
      });
    }
    const t0 = performance.now();
    for (const child of children) child.stdin.write('go\n');
    for (;;) {
      const total = perChild.reduce((a, b) => a + b, 0);
      if (total >= NODES_N) break;
      if (performance.now() - t0 > 600_000) throw new Error(`nodes: only ${total} of ${NODES_N} done after 600 s`);
      await sleep(50);
    }
    const ms = performance.now() - t0;
    const mean = NODES_N / count;
    const spread = Math.max(...perChild.map((c) => Math.abs(c - mean) / mean));
    out(
      `nodes: ${NODES_N} one-step jobs on ${count} node processes in ${(ms / 1000).toFixed(1)} s (${Math.round(NODES_N / (ms / 1000))}/s): ` +
        `${perChild.join(' / ')} per node, largest deviation from the mean ${(spread * 100).toFixed(1)} %`,
    );
    const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".instances WHERE status = 'done'`);
    out(`nodes: ${rows[0]?.n} records done in the database`);
  } finally {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    await dropSchema(schema);
  }
}

const HISTORY_N = Number(process.env.SCALE_HISTORY_RECORDS ?? 10_000);

async function history(): Promise<void> {
  const plain = schemaName('scale_hist_plain');
  const parted = schemaName('scale_hist_parted');
  const retention = { finished: false, failed: false, history: '30d' } as const;
  try {
    for (const schema of [plain, parted]) {
      const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [scaleIdle], retention });
      await rt.stop();
      // 100 entries per record, 7 h apart, 90 to 61 days ago: all past a 30-day retention, so
      // only each record's creation entry and latest entry are kept.
      await admin.query(
        `INSERT INTO "${schema}".transitions (machine, instance_id, version, seq, from_state, to_state, status, event, at, ids, published_at)
         SELECT 'scale_idle', 'h' || r, 1, k, CASE WHEN k = 1 THEN NULL ELSE 'idle' END, 'idle', 'active', '{"type":"poke"}'::jsonb, t, '{}'::jsonb, t
         FROM generate_series(1, $1::int) r, generate_series(1, 100) k,
              LATERAL (SELECT now() - interval '90 days' + k * interval '7 hours' + r * interval '1 ms' AS t) x`,
        [HISTORY_N],
      );
      await admin.query(`VACUUM ANALYZE "${schema}".transitions`);
    }
    const rows = HISTORY_N * 100;
    let t0 = performance.now();
    const converted = await partitionHistory({ database: DATABASE_URL, schema: parted });
    out(`history: partitionHistory() of ${rows} rows (monthly): ${((performance.now() - t0) / 1000).toFixed(1)} s, partitions ${converted.partitions.join(' ')}`);
    for (const [schema, how] of [
      [plain, 'DELETE in batches of 1,000 (plain history)'],
      [parted, 'DROP PARTITION (partitioned history)'],
    ] as const) {
      const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [scaleIdle], retention });
      try {
        // A reader of one record's history every 10 ms while the prune runs: how long it waited at worst.
        let reading = true;
        let worst = 0;
        let reads = 0;
        const reader = (async () => {
          while (reading) {
            const s0 = performance.now();
            await admin.query(`SELECT seq FROM "${schema}".transitions WHERE machine = 'scale_idle' AND instance_id = 'h1' ORDER BY seq`);
            worst = Math.max(worst, performance.now() - s0);
            reads += 1;
            await sleep(10);
          }
        })();
        t0 = performance.now();
        const r = await rt.prune();
        const ms = performance.now() - t0;
        reading = false;
        await reader;
        const { rows: left } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".transitions`);
        out(
          `history: prune() of ${rows} rows past retention by ${how}: ${(ms / 1000).toFixed(2)} s, ${JSON.stringify(r)}, ${left[0]?.n} rows left; ` +
            `a history read every 10 ms meanwhile (${reads} reads) took ${worst.toFixed(0)} ms at worst`,
        );
      } finally {
        await rt.stop();
      }
    }
  } finally {
    if (process.env.SCALE_KEEP !== '1') {
      await dropSchema(plain);
      await dropSchema(parted);
    }
  }
}

const parts = process.argv.slice(2).filter((a) => a !== '--');
const want = parts.length > 0 ? parts : ['create', 'idle', 'nodes', 'history'];
const { rows: ver } = await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
out(`machine: ${(await import('node:os')).cpus().length} cores, PostgreSQL ${ver[0]?.v}, Node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')} at start`);
for (const part of want) {
  log(`${part}…`);
  if (part === 'create') await create();
  else if (part === 'idle') await idle();
  else if (part === 'nodes') await nodes();
  else if (part === 'history') await history();
  else throw new Error(`unknown part "${part}" (create, idle, nodes, history)`);
  out(`(${part} done, load ${loadavg().map((l) => l.toFixed(2)).join(' ')})`);
}
await admin.end();
