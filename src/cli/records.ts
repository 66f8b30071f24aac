import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { RecordNotFoundError } from '../errors.js';
import type { RecordStatus } from '../record/step.js';
import type { DroverEvent, HistoryEntry, RecordView } from '../runtime/types.js';
import { type GlobalOptions, UsageError, withRuntime } from './connect.js';
import { type Command as Cmd, integer, parseStateMap } from './parse.js';
import { ago, type Column, colourOn, fields, iso, json, Progress, statusStyle, table } from './output.js';
import type { Io } from './output.js';

// The record commands: list, get, history, create, send, cancel, retry, migrate-records.

const STATUSES: readonly RecordStatus[] = ['active', 'done', 'failed', 'cancelled'];

/** A JSON argument, inline or `@file`. */
async function jsonArg(text: string, what: string): Promise<unknown> {
  let source = text;
  if (text.startsWith('@')) {
    try {
      source = await readFile(text.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`${what}: cannot read ${text.slice(1)}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(source);
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

const recordColumns = (now: number): Column<RecordView>[] => [
  { header: 'ID', cell: (r) => r.id },
  { header: 'STATE', cell: (r) => r.state },
  { header: 'STATUS', cell: (r) => r.status, style: (r) => statusStyle(r.status) },
  { header: 'IN STATE', cell: (r) => ago(r.enteredAt, now), align: 'right' },
  { header: 'WAKE', cell: (r) => (r.wakeAt ? iso(r.wakeAt) : '-') },
  { header: 'ATTEMPT', cell: (r) => String(r.attempt), align: 'right' },
  { header: 'ERROR', cell: (r) => (r.error ? `${r.error.name}: ${r.error.message}`.slice(0, 80) : '') },
];

function showRecord(io: Io, r: RecordView, asJson: boolean): void {
  if (asJson) {
    io.out.write(json(r));
    return;
  }
  const colour = colourOn(io);
  io.out.write(
    fields(
      [
        ['machine', `${r.machine} (version ${r.version})`],
        ['id', r.id],
        ['state', r.state],
        ['status', r.status],
        ['entered', `${iso(r.enteredAt)} (${ago(r.enteredAt, Date.now())} ago)`],
        ['wake at', iso(r.wakeAt)],
        ['attempt', String(r.attempt)],
        ...(r.error ? [['error', `${r.error.name}: ${r.error.message}`] as const] : []),
      ],
      colour,
    ),
  );
  io.out.write(`context\n${JSON.stringify(r.context, null, 2)}\n`);
}

/** Adds the record commands to the program. */
export function recordCommands(program: Command, io: Io, run: Cmd): void {
  program
    .command('list')
    .description('list records of a machine, a page at a time (keyset: pass --after the printed next)')
    .argument('<machine>')
    .option('--state <state>', 'only records in this state (matches like snapshot.matches())')
    .option('--status <status>', `only records with this status: ${STATUSES.join(', ')}`)
    .option('--limit <n>', 'records per page, 1 to 1000', integer('--limit'), 50)
    .option('--after <cursor>', 'the page after this cursor (the `next` of an earlier page)')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, o: { state?: string; status?: string; limit: number; after?: string; json?: boolean }, g: GlobalOptions) => {
        if (o.status !== undefined && !STATUSES.includes(o.status as RecordStatus)) {
          throw new UsageError(`--status must be one of ${STATUSES.join(', ')} (got "${o.status}")`);
        }
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const page = await rt.list(machine, {
            limit: o.limit,
            ...(o.state !== undefined ? { state: o.state } : {}),
            ...(o.status !== undefined ? { status: o.status as RecordStatus } : {}),
            ...(o.after !== undefined ? { after: o.after } : {}),
          });
          if (o.json) return void io.out.write(json(page));
          io.out.write(table(page.items, recordColumns(Date.now()), colourOn(io)));
          if (page.next) io.out.write(`next page: --after ${page.next}\n`);
        });
      }),
    );

  program
    .command('get')
    .description('show one record: state, status, timers, error and context')
    .argument('<machine>')
    .argument('<id>')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, id: string, o: { json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const record = await rt.get(machine, id);
          if (!record) throw new RecordNotFoundError(machine, id);
          showRecord(io, record, o.json === true);
        });
      }),
    );

  program
    .command('history')
    .description("show a record's transitions, oldest first")
    .argument('<machine>')
    .argument('<id>')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, id: string, o: { json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const entries = await rt.history(machine, id);
          if (o.json) return void io.out.write(json(entries));
          const columns: Column<HistoryEntry>[] = [
            { header: 'AT', cell: (e) => iso(e.at) },
            { header: 'FROM', cell: (e) => e.from ?? '(created)' },
            { header: 'TO', cell: (e) => e.to },
            { header: 'EVENT', cell: (e) => e.event.type },
            { header: 'STATUS', cell: (e) => e.status, style: (e) => statusStyle(e.status) },
            { header: 'ERROR', cell: (e) => (e.error ? `${e.error.name}: ${e.error.message}`.slice(0, 80) : '') },
          ];
          io.out.write(table(entries, columns, colourOn(io)));
        });
      }),
    );

  program
    .command('create')
    .description("create a record and run its machine's initial transition")
    .argument('<machine>')
    .option('--id <id>', 'the record id (default: a random UUID)')
    .option('--input <json>', 'the machine input: JSON, or @file to read it from a file')
    .option('--unique-key <key>', 'at most one record of the machine has this key')
    .option('--priority <n>', 'higher runs first among due invocations', integer('--priority'))
    .option('--json', 'print the record as JSON')
    .action(
      run(async (machine: string, o: { id?: string; input?: string; uniqueKey?: string; priority?: number; json?: boolean }, g: GlobalOptions) => {
        const input = o.input === undefined ? undefined : await jsonArg(o.input, '--input');
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const record = await rt.create(machine, {
            ...(o.id !== undefined ? { id: o.id } : {}),
            ...(input !== undefined ? { input } : {}),
            ...(o.uniqueKey !== undefined ? { uniqueKey: o.uniqueKey } : {}),
            ...(o.priority !== undefined ? { priority: o.priority } : {}),
          });
          if (o.json) return void io.out.write(json(record));
          io.out.write(`created ${machine} ${record.id}: ${record.state} (${record.status})\n`);
        });
      }),
    );

  program
    .command('send')
    .description("store an event in a record's inbox (a node steps it)")
    .argument('<machine>')
    .argument('<id>')
    .argument('<event>', 'the event as JSON ({"type":"paid"}), @file, or just its type (paid)')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, id: string, eventText: string, o: { json?: boolean }, g: GlobalOptions) => {
        const looksJson = eventText.startsWith('{') || eventText.startsWith('@');
        const event = looksJson ? await jsonArg(eventText, 'the event') : { type: eventText };
        if (typeof event !== 'object' || event === null || Array.isArray(event) || typeof (event as { type?: unknown }).type !== 'string') {
          throw new UsageError('the event must be a JSON object with a string "type", e.g. {"type":"payment.confirmed"}');
        }
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          await rt.send(machine, id, event as DroverEvent);
          if (o.json) return void io.out.write(json({ sent: true, machine, id, event }));
          io.out.write(`sent ${(event as DroverEvent).type} to ${machine} ${id}\n`);
        });
      }),
    );

  program
    .command('cancel')
    .description('cancel an active record: status cancelled, its invocations stopped')
    .argument('<machine>')
    .argument('<id>')
    .option('--reason <text>', 'why (kept in its history)')
    .option('--json', 'print JSON')
    .action(
      run(async (machine: string, id: string, o: { reason?: string; json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          if (!(await rt.get(machine, id))) throw new RecordNotFoundError(machine, id);
          const cancelled = await rt.cancel(machine, id, o.reason);
          if (o.json) return void io.out.write(json({ cancelled }));
          io.out.write(cancelled ? `cancelled ${machine} ${id}\n` : `${machine} ${id} had already finished: nothing to cancel\n`);
        });
      }),
    );

  program
    .command('retry')
    .description('take a failed record back before its failed step and run it again')
    .argument('<machine>')
    .argument('<id>')
    .option('--skip-event', 'drop the failed event instead of applying it again')
    .option('--json', 'print the record as JSON')
    .action(
      run(async (machine: string, id: string, o: { skipEvent?: boolean; json?: boolean }, g: GlobalOptions) => {
        await withRuntime(g, io, { machines: 'required' }, async (rt) => {
          const record = await rt.retry(machine, id, o.skipEvent ? { skipEvent: true } : {});
          if (o.json) return void io.out.write(json(record));
          io.out.write(`retried ${machine} ${id}: now ${record.state} (${record.status})\n`);
        });
      }),
    );

  program
    .command('migrate-records')
    .description('move the live records of one machine version to another (docs/changing-machines.md)')
    .argument('<machine>')
    .requiredOption('--from <version>', 'the version whose live records move', integer('--from'))
    .requiredOption('--to <version>', 'the version they move to', integer('--to'))
    .option('--map <from=to...>', 'where a state goes, repeatable: --map awaiting_payment=payment.waiting')
    .option('--states <json>', 'the whole state map as JSON ({"from":"to"}), or @file')
    .option('--batch-size <n>', 'records per batch, 1 to 1000', integer('--batch-size'))
    .option('--dry-run', 'count and check what would move; write nothing')
    .option('--json', 'print the result as JSON')
    .action(
      run(
        async (
          machine: string,
          o: { from: number; to: number; map?: string[]; states?: string; batchSize?: number; dryRun?: boolean; json?: boolean },
          g: GlobalOptions,
        ) => {
          const states = parseStateMap(o.map ?? [], o.states === undefined ? undefined : await jsonArg(o.states, '--states'));
          await withRuntime(g, io, { machines: 'required' }, async (rt) => {
            const base = { from: o.from, to: o.to, states, ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}) };
            const plan = await rt.migrate(machine, { ...base, dryRun: true });
            if (o.dryRun) {
              if (o.json) return void io.out.write(json(plan));
              io.out.write(`would move ${plan.moved} record(s) of ${machine} from version ${o.from} to ${o.to}\n`);
              io.out.write(table(plan.moves, MOVE_COLUMNS, colourOn(io)));
              return;
            }
            const progress = new Progress(io, `moving ${machine} v${o.from} → v${o.to}`, plan.moved);
            progress.update(0);
            const result = await rt.migrate(machine, { ...base, onBatch: ({ moved }) => progress.update(Math.min(moved, plan.moved)) });
            progress.update(plan.moved);
            if (o.json) return void io.out.write(json(result));
            io.out.write(`moved ${result.moved} record(s) of ${machine} from version ${o.from} to ${o.to}\n`);
            io.out.write(table(result.moves, MOVE_COLUMNS, colourOn(io)));
            if (result.left.count > 0) io.out.write(`left where they were: ${result.left.count} (run again to move them)\n`);
          });
        },
      ),
    );
}

const MOVE_COLUMNS: Column<{ from: string; to: string; count: number }>[] = [
  { header: 'FROM', cell: (m) => m.from },
  { header: 'TO', cell: (m) => m.to },
  { header: 'RECORDS', cell: (m) => String(m.count), align: 'right' },
];
