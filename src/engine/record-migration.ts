import { randomUUID } from 'node:crypto';
import type { EventObject } from 'xstate';
import { type TransitionMessage, transitionMessages } from '../bus/bus.js';
import { type Database, withRetry } from '../db/database.js';
import type { MigratingRow, MovedRecord, VersionQueries } from '../db/version-queries.js';
import { errorMessage, InvalidArgumentError, UnmappedStatesError } from '../errors.js';
import { rejectUnknownKeys } from '../keys.js';
import type { Logger } from '../log.js';
import { jsonProblem } from '../record/check.js';
import { type Landing, land, StateMap } from '../record/migration.js';
import type { MachineRegistry } from '../record/registry.js';
import { contextIds, nextWake, type Timer, type TransitionRow } from '../record/step.js';
import type { Clock } from '../time.js';

/** Options of `migrate()`. */
export interface MigrateOptions<TFrom = Record<string, unknown>, TTo = Record<string, unknown>> {
  /** The version whose live records move. */
  from: number;
  /** The version they move to. */
  to: number;
  /**
   * Where each live state of `from` goes: `{ '<state of from>': '<state of to>' }`. Keys are
   * leaf state paths (`review`, `drafting.text`, one region's `p.l.l1`) or a whole state
   * string (`p.l.l1,p.r.r1`, which then wins over its leaves); every live state needs one, a
   * state kept as it is too (`{ draft: 'draft' }`). A target that is a compound or parallel
   * state lands in its initial children; several targets can be joined by `,` for regions.
   */
  states: Readonly<Record<string, string>>;
  /** Maps each record's context (given a copy); the result must be JSON. Default: kept as it is. */
  context?: (context: TFrom) => TTo;
  /** Count what would move, and check it, without writing anything. */
  dryRun?: boolean;
  /** Records per batch (each batch commits on its own). Default 100, at most 1000. */
  batchSize?: number;
  /** Called after each batch commits, with the records moved so far (for progress). Not called with `dryRun`. */
  onBatch?: (progress: { moved: number }) => void;
}

/** Records that moved (or would move) from one state to another. */
export interface MigrateMove {
  /** The state string in version `from`. */
  from: string;
  /** The state string in version `to`. */
  to: string;
  count: number;
  /** The first ids, at most 100. */
  ids: string[];
}

/** What `migrate()` did (or, with `dryRun`, would do). */
export interface MigrateResult {
  machine: string;
  from: number;
  to: number;
  dryRun: boolean;
  /** Records moved (dryRun: that would move). */
  moved: number;
  /** Per from-state → to-state. */
  moves: MigrateMove[];
  /**
   * Live records of `from` left where they were: still leased to a node when migrate gave up
   * waiting, or gone meanwhile into a state the map does not name (listed in `states`).
   * Running migrate again moves them. Empty with `dryRun`.
   */
  left: { count: number; ids: string[]; states: Array<{ state: string; count: number }> };
}

/** What a migration runs with, given by the runtime. */
export interface MigrationDeps {
  db: Database;
  vq: VersionQueries;
  registry: MachineRegistry;
  clock: Required<Clock>;
  logger: Logger;
  node: string;
  leaseMs: number;
  /** After a batch committed: wake the pollers of `queue` (here and elsewhere), publish the transitions. */
  committed(queue: string, messages: TransitionMessage[], spans: Array<{ id: string; enteredBefore: number; transition: TransitionRow }>): void;
}

const KEYS = ['from', 'to', 'states', 'context', 'dryRun', 'batchSize', 'onBatch'];
const IDS_PER_MOVE = 100;

/**
 * Moves the live records of version `from` to version `to`, a batch at a time (see
 * `Runtime.migrate`). Refuses before writing anything when a live state has no mapping.
 */
export async function migrateRecords(deps: MigrationDeps, machine: string, options: MigrateOptions): Promise<MigrateResult> {
  if (!options || typeof options !== 'object') throw new InvalidArgumentError('migrate() takes options { from, to, states, context?, dryRun?, batchSize? }');
  rejectUnknownKeys(options, KEYS, 'migrate()');
  const { from, to } = options;
  if (!Number.isInteger(from) || !Number.isInteger(to)) throw new InvalidArgumentError('migrate(): from and to must be version numbers');
  if (from === to) throw new InvalidArgumentError(`migrate(): from and to are both version ${from}`);
  const batchSize = options.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1000) throw new InvalidArgumentError('migrate(): batchSize must be an integer from 1 to 1000');
  if (options.context !== undefined && typeof options.context !== 'function') throw new InvalidArgumentError('migrate(): context must be a function');
  const dryRun = options.dryRun === true;
  const fromDef = deps.registry.get(machine, from);
  const toDef = deps.registry.get(machine, to);
  const map = new StateMap(fromDef, toDef, options.states);

  // Refused before anything is written: every live state needs a mapping that holds.
  const live = await withRetry(() => deps.vq.liveStates(deps.db, { machine, version: from }));
  const unmapped = new Map<string, number>();
  for (const { state, count } of live) {
    for (const leaf of map.target(state).unmapped ?? []) unmapped.set(leaf, (unmapped.get(leaf) ?? 0) + count);
  }
  if (unmapped.size > 0) throw new UnmappedStatesError(machine, from, [...unmapped].map(([state, count]) => ({ state, count })));

  const event: EventObject = { type: 'drover.migrate', from, to } as EventObject;
  const moves = new Map<string, MigrateMove>();
  let moved = 0;
  const tally = (fromState: string, toState: string, id: string) => {
    const key = `${fromState}\u0000${toState}`;
    let m = moves.get(key);
    if (!m) {
      m = { from: fromState, to: toState, count: 0, ids: [] };
      moves.set(key, m);
    }
    m.count += 1;
    if (m.ids.length < IDS_PER_MOVE) m.ids.push(id);
    moved += 1;
  };

  // Passes over the live records in id order. A record leased to a node (a step in flight) or
  // changed between the read and the write is left for the next pass; passes go on while they
  // move something, then wait for leases to run out, up to twice the lease. The waits are
  // real time, as withRetry's backoff: a test clock that nobody moves must not hang them.
  const maxWaitMs = 2 * Math.max(deps.leaseMs, 1000);
  for (let idle = 0, waited = 0; ; ) {
    let retry = 0;
    let movedThisPass = 0;
    let after = '';
    for (;;) {
      const rows = await withRetry(() => deps.vq.liveRecords(deps.db, { machine, version: from, after, limit: batchSize }));
      if (rows.length === 0) break;
      after = (rows[rows.length - 1] as MigratingRow).id;
      const now = deps.clock.now();
      const batch: Array<{ row: MigratingRow; landing: Landing; context: unknown }> = [];
      for (const row of rows) {
        if (!dryRun && row.locked_until !== null && row.locked_until.getTime() >= now) {
          retry += 1;
          continue;
        }
        const target = map.target(row.state);
        if (target.value === undefined) continue; // went into an unmapped state meanwhile: reported in `left`
        const context = mapContext(options.context, row);
        let landing: Landing;
        try {
          landing = land(toDef, target.value, context, event, now, row.timers as Timer[]);
        } catch (err) {
          if (err instanceof InvalidArgumentError) throw err;
          throw new InvalidArgumentError(`migrate(): record "${row.id}" cannot enter ${JSON.stringify(target.value)} of version ${to}: ${errorMessage(err)}`);
        }
        batch.push({ row, landing, context });
      }
      if (dryRun) {
        for (const { row, landing } of batch) tally(row.state, landing.state, row.id);
        continue;
      }
      if (batch.length === 0) continue;
      const done = await writeBatch(deps, machine, from, to, event, now, batch);
      for (const { row, landing } of batch) if (done.has(row.id)) tally(row.state, landing.state, row.id);
      movedThisPass += done.size;
      retry += batch.length - done.size;
      options.onBatch?.({ moved });
    }
    if (dryRun || retry === 0) break;
    if (movedThisPass > 0) idle = 0;
    else {
      if (waited >= maxWaitMs) break;
      idle += 1;
      const ms = Math.min(50 * 2 ** (idle - 1), 500);
      waited += ms;
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }

  const result: MigrateResult = {
    machine,
    from,
    to,
    dryRun,
    moved,
    moves: [...moves.values()],
    left: { count: 0, ids: [], states: [] },
  };
  if (!dryRun) {
    const states = await withRetry(() => deps.vq.liveStates(deps.db, { machine, version: from }));
    const count = states.reduce((n, s) => n + s.count, 0);
    if (count > 0) {
      const ids = await withRetry(() => deps.vq.liveIds(deps.db, { machine, version: from, limit: IDS_PER_MOVE }));
      const unmappedLeft = states.filter((s) => map.target(s.state).unmapped !== undefined);
      result.left = { count, ids, states: unmappedLeft };
      deps.logger.warn(
        { machine, from, to, left: count, unmapped: unmappedLeft.map((s) => s.state) },
        'drover: migrate left live records behind (leased, or in states the map does not name); run it again to move them',
      );
    }
    deps.logger.info({ machine, from, to, moved }, 'drover: records migrated');
  }
  return result;
}

/** A record's context through the `context` option (given a copy), checked to be JSON. */
function mapContext(fn: MigrateOptions['context'], row: MigratingRow): unknown {
  const stored = row.snapshot.context ?? {};
  if (!fn) return stored;
  let mapped: unknown;
  try {
    mapped = fn(structuredClone(stored) as Record<string, unknown>);
  } catch (err) {
    throw new InvalidArgumentError(`migrate(): context() threw for record "${row.id}": ${errorMessage(err)}`);
  }
  if (mapped === null || typeof mapped !== 'object' || Array.isArray(mapped)) {
    throw new InvalidArgumentError(`migrate(): context() must return an object (record "${row.id}")`);
  }
  const problem = jsonProblem(mapped);
  if (problem) throw new InvalidArgumentError(`migrate(): context() for record "${row.id}" is not JSON: ${problem}`);
  return mapped;
}

/** Writes one batch of moves (one statement); returns the ids that moved. */
async function writeBatch(
  deps: MigrationDeps,
  machine: string,
  from: number,
  to: number,
  event: EventObject,
  now: number,
  batch: Array<{ row: MigratingRow; landing: Landing; context: unknown }>,
): Promise<Set<string>> {
  const records: MovedRecord[] = [];
  const transitions: TransitionRow[] = [];
  const spawns: Array<{ id: string; invoke_id: string; token: string; src: string; input: unknown }> = [];
  for (const { row, landing, context } of batch) {
    const wake = nextWake({ status: 'active', timers: landing.timers });
    records.push({
      id: row.id,
      row_version: row.row_version,
      state: landing.state,
      snapshot: landing.snapshot,
      timers: landing.timers,
      wake_at: wake === null ? null : new Date(wake),
      seq: row.seq + 1,
    });
    transitions.push({ seq: row.seq + 1, from: row.state, to: landing.state, status: 'active', event, at: now, ids: contextIds(context) });
    for (const s of landing.spawns) spawns.push({ id: row.id, invoke_id: s.id, token: randomUUID(), src: s.src, input: s.input ?? null });
  }
  const rows = await withRetry(() =>
    deps.vq.moveRecords(deps.db, {
      machine,
      from,
      to,
      now: new Date(now),
      records,
      transitions: transitions.map((t, i) => ({
        id: (records[i] as MovedRecord).id,
        seq: t.seq,
        from_state: t.from as string,
        to_state: t.to,
        event: t.event,
        ids: t.ids,
      })),
      spawns,
      node: deps.node,
    }),
  );
  const done = new Set(rows.map((r) => r.id));
  if (done.size === 0) return done;
  const byQueue = new Map<string, { messages: TransitionMessage[]; spans: Array<{ id: string; enteredBefore: number; transition: TransitionRow }> }>();
  const queueOf = new Map(rows.map((r) => [r.id, r.queue]));
  batch.forEach(({ row }, i) => {
    const queue = queueOf.get(row.id);
    if (queue === undefined) return;
    let q = byQueue.get(queue);
    if (!q) {
      q = { messages: [], spans: [] };
      byQueue.set(queue, q);
    }
    const t = transitions[i] as TransitionRow;
    q.messages.push(...transitionMessages(row.id, machine, to, [t]));
    q.spans.push({ id: row.id, enteredBefore: row.entered_at.getTime(), transition: t });
  });
  for (const [queue, q] of byQueue) deps.committed(queue, q.messages, q.spans);
  return done;
}
