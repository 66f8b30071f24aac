import type { EventObject, StateValue } from 'xstate';
import type { EmittedMessage, TransitionFilter, TransitionMessage, Unsubscribe } from '../bus/bus.js';
import type { Page } from '../page.js';
import type { CallerTransaction } from '../db/database.js';
import type { PruneResult } from '../engine/prune.js';
import type { MigrateOptions, MigrateResult } from '../engine/record-migration.js';
import type { PeriodicOptions, PeriodicRun } from '../periodic/periodic.js';
import type { ScheduleSpec } from '../periodic/schedule.js';
import type { RecordStatus } from '../record/step.js';
import type { Supervisor, WorkerHandle } from '../supervisor/supervisor.js';
import type { HttpServer, ServeOptions } from '../http/server.js';
import type { AnyDurableMachine, Catalog, EmittedOfType, LooseEvent, NameOf } from './infer.js';

// The public shapes of the runtime: what its calls take and return.

/** A record as `get()`, `list()` and `waitFor()` return it. */
export interface RecordView<TContext = Record<string, unknown>, TValue extends StateValue = StateValue, TState extends string = string> {
  id: string;
  machine: string;
  version: number;
  /** The state in string form: `b.x`, or `p.l.l1,p.r.r1` for parallel regions. */
  state: TState;
  /** XState's state value. */
  value: TValue;
  /** The machine context, as stored (JSON). */
  context: TContext;
  status: RecordStatus;
  /** When the record entered its current state. */
  enteredAt: Date;
  /** When something is next due for it (a timer, an event), if anything. */
  wakeAt: Date | null;
  /** Failed attempts of its current invocation. */
  attempt: number;
  /** The error that failed it (or the last failed attempt's), if any. */
  error: { name: string; message: string; stack?: string } | null;
  /** For a child record (invoked or spawned by another record): its parent, and its key there (the invoke or spawn id). */
  parent?: { machine: string; id: string; key: string };
}

/**
 * One entry of `history()`: a committed change of state or status, or (with `kind`) what the
 * record did between two changes: an event it sent to another record (`sent`) or received from
 * one (`received`), a child record it started (`spawned`), an event it emitted (`emitted`).
 * Those entries have `from` = `to` = the state at the time.
 */
export interface HistoryEntry {
  /** The state before, `null` for the creation entry. */
  from: string | null;
  to: string;
  event: EventObject;
  at: Date;
  /** The record's status after this change. */
  status: RecordStatus;
  error?: { name: string; message: string };
  /** Absent for a change of state or status. */
  kind?: 'sent' | 'received' | 'spawned' | 'emitted';
  /** The other record of a `sent`, `received` or `spawned` entry. */
  peer?: { machine: string; id: string };
}

/** An event for `send()` to a machine without typed events: a `type` and any JSON fields. */
export type DroverEvent = LooseEvent;

/** Options of `create()`. */
export interface CreateOptions<TInput = unknown> {
  /** The record id. Default: a random UUID. */
  id?: string;
  /** The machine input. */
  input?: TInput;
  /** When the record's first work (invocations, timers) starts. Default: now. */
  runAt?: Date | number;
  /** Higher runs first among due invocations. Default 0. */
  priority?: number;
  /** At most one record of this machine has this key. */
  uniqueKey?: string;
  /** The caller's transaction: a `pg` client inside BEGIN, or a PGlite transaction. */
  tx?: CallerTransaction;
}

export type { Page } from '../page.js';
export type { Unsubscribe } from '../bus/bus.js';
export type { MigrateMove, MigrateOptions, MigrateResult } from '../engine/record-migration.js';
export type { PruneResult } from '../engine/prune.js';

/** One record of `createMany()`: what `create()` takes, without `tx`. */
export type CreateManyItem<TInput = unknown> = Omit<CreateOptions<TInput>, 'tx'>;

/** Options of `createMany()`. */
export interface CreateManyOptions {
  /** The caller's transaction: the records commit with it (a failed call leaves it usable). */
  tx?: CreateOptions['tx'];
}

/**
 * What `waitFor()` waits for: a state (matched like `snapshot.matches()`: a dotted path or a
 * state value, a parent state matching its children), a status, or a predicate.
 */
export type WaitCondition<TRecord = RecordView, TMatch = StateValue> = { state: TMatch } | { status: RecordStatus } | ((record: TRecord) => boolean);

/** Options of `list()`. */
export interface ListOptions<TState extends string = string> {
  /** Records in this state or its children (a dotted path, matched like `snapshot.matches()`). */
  state?: TState;
  status?: RecordStatus;
  /** Records per page, 1 to 1,000. Default 50. */
  limit?: number;
  /** The `next` of the previous page; `null` or omitted for the first. */
  after?: string | null;
  /** Only the child records of this record (invoked or spawned by it). */
  parent?: { machine: string; id: string };
}

/** One state's row of `residency()`: records there now, and stays that ended since `since` (seconds). */
export interface ResidencyRow {
  state: string;
  /** Active records in the state now. */
  count: number;
  /** Stays in the state that ended since `since`. */
  stays: number;
  /** Percentiles (PostgreSQL's `percentile_cont`: linear interpolation) and maximum of those stays, in seconds; null without stays. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

/** One row of `counts()`: the records of a machine in one state with one status. */
export interface StateCount {
  machine: string;
  state: string;
  status: RecordStatus;
  count: number;
  /** The earliest `enteredAt` among them: the oldest has been in the state since then. */
  oldestEnteredAt: Date;
}

/** A live node, as `runtime.nodes()` lists it. */
export interface NodeInfo {
  id: string;
  host: string;
  pid: number;
  startedAt: Date;
  lastSeen: Date;
}

/**
 * A running drover: the API services call. Typed by its machines (`createRuntime({ machines })`):
 * machine names are checked, and input, events, context and states come from each machine's
 * `setup({ types })`. A runtime of untyped machines (`Runtime`) takes any name and event.
 */
// `any` by default, so a runtime typed by its machines is still a `Runtime` (what a function taking any runtime declares).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface Runtime<D extends AnyDurableMachine = any> {
  /** This runtime's node id. */
  readonly node: string;
  /** The schema it keeps its tables in. */
  readonly schema: string;
  /**
   * Creates a record and runs its machine's initial transition.
   * @example await drover.create('order', { id: 'o-1', input: { order_id: 'o-1' } });
   */
  create<N extends NameOf<D>>(machine: N, options?: CreateOptions<Catalog<D>[N]['input']>): Promise<Catalog<D>[N]['record']>;
  /**
   * Creates many records of one machine at once: one round trip per 1,000 records, all of
   * them or none. A duplicate id or unique key (in the database or within `items`) fails the
   * call with `DuplicateRecordError` and stores nothing; bad input fails it with
   * `InvalidArgumentError` naming the item. Resolves to the records, in the order of `items`.
   * @example await drover.createMany('order', orders.map((o) => ({ id: o.id, input: { order_id: o.id } })));
   */
  createMany<N extends NameOf<D>>(
    machine: N,
    items: readonly CreateManyItem<Catalog<D>[N]['input']>[],
    options?: CreateManyOptions,
  ): Promise<Catalog<D>[N]['record'][]>;
  /**
   * Stores an event for a record and wakes a poller; resolves once it is stored.
   * @example await drover.send('order', 'o-1', { type: 'payment.confirmed' });
   */
  send<N extends NameOf<D>>(machine: N, id: string, event: Catalog<D>[N]['event'], options?: { tx?: CallerTransaction }): Promise<void>;
  /** A record, or `null` when there is none. */
  get<N extends NameOf<D>>(machine: N, id: string): Promise<Catalog<D>[N]['record'] | null>;
  /** Records of a machine by id, a page at a time. `state` matches like `snapshot.matches()`. */
  list<N extends NameOf<D>>(machine: N, options?: ListOptions<Catalog<D>[N]['path']>): Promise<Page<Catalog<D>[N]['record']>>;
  /** A record's transitions, oldest first. Rejects with `RecordNotFoundError` when there is no such record. */
  history(machine: NameOf<D>, id: string): Promise<HistoryEntry[]>;
  /**
   * Resolves when the record matches; rejects with `WaitTimeoutError` after `timeoutMs`
   * (default 30s), or at once with `WaitUnreachableError` if it finished without matching
   * (a finished record never changes again).
   */
  waitFor<N extends NameOf<D>>(
    machine: N,
    id: string,
    condition: WaitCondition<Catalog<D>[N]['record'], Catalog<D>[N]['match']>,
    options?: { timeoutMs?: number },
  ): Promise<Catalog<D>[N]['record']>;
  /**
   * Takes a `failed` record back to the snapshot it had before the failed step (state, context,
   * timers) and applies the failed event again, or drops it with `skipEvent: true`. A record
   * failed by an invocation (its last attempt failed, no `onError`) gets that invocation
   * started again with a fresh attempt budget (`skipEvent`: not started; the record waits in
   * its state). A record whose snapshot did not restore is restored with the machine as
   * registered now (fix the machine first). History shows the retry as an entry with
   * `event.type` `drover.retry`. Resolves to the record after the retry: it may have failed again.
   * Rejects with `NotFailedError` for a record that has not failed, `SnapshotRestoreError` if
   * the snapshot still does not restore (nothing changes).
   * @example await drover.retry('order', 'o-1'); // after fixing what made it fail
   */
  retry<N extends NameOf<D>>(machine: N, id: string, options?: { skipEvent?: boolean }): Promise<Catalog<D>[N]['record']>;
  /**
   * Moves the live (`active`) records of version `from` to version `to`, in batches that
   * each commit on their own (safe while nodes step: each record's write is guarded by its row
   * version, and a record leased to a node waits for a later batch; re-running after a crash
   * moves what is left). Every live state of `from` needs a target in `states`, else nothing
   * moves and it rejects with `UnmappedStatesError` listing them; a target that is not a live
   * state of `to` is an `InvalidArgumentError`. A moved record keeps its context (through
   * `context` when given), enters its target without running entry actions, loses the `after`
   * timers of the states it left and gets those of the states it lands in, due from now, has
   * the invocations of those states started, and gets a history entry with `event`
   * `{ type: 'drover.migrate', from, to }`. `dryRun: true` returns what would move and writes
   * nothing. See docs/changing-machines.md.
   * @example await drover.migrate('order', { from: 1, to: 2, states: { awaiting_payment: 'payment.waiting', charging: 'payment.charging' } });
   */
  migrate<TFrom = Record<string, unknown>, TTo = Record<string, unknown>>(machine: NameOf<D>, options: MigrateOptions<TFrom, TTo>): Promise<MigrateResult>;
  /** Cancels an active record: status `cancelled`, invocations stopped. False if it had already finished. */
  cancel(machine: NameOf<D>, id: string, reason?: string): Promise<boolean>;
  /**
   * Calls `handler` for each committed transition that matches. With NATS: a JetStream
   * consumer (with `durable`, a named one that a restarted subscriber resumes; a message is
   * acknowledged when the handler resolves). Without: the in-process bus (live only).
   * Returns an unsubscribe function; its `ready` resolves once the consumer is in place.
   * @example const off = drover.subscribe({ machine: 'order', to: 'shipped' }, (t) => notify(t.ids), { durable: 'mailer' }); await off.ready;
   */
  subscribe(filter: TransitionFilter, handler: (t: TransitionMessage) => void | Promise<void>, options?: { durable?: string }): Unsubscribe;
  /**
   * Calls `handler` for every event of `type` (`'*'`: every type) that records of `machine`
   * emit with XState's `emit()`, once their step has committed: with the emitting record's id,
   * state, `*_id` context fields and the event. Typed by the machine's `setup({ types: { emitted } })`.
   * With NATS: a live JetStream consumer of `<prefix>.emit.<machine>.<type>`, so events emitted
   * on every node arrive. Without: the in-process bus, events committed by this runtime, in
   * commit order. Live only (events from before `ready` are not delivered); a handler that
   * throws is logged and does not stop delivery, nor is the event delivered again.
   * Returns an unsubscribe function; its `ready` resolves once the consumer is in place.
   * @example const off = drover.on('order', 'order.receipt', (e) => mail(e.ids.order_id, e.event)); await off.ready;
   */
  on<N extends NameOf<D>, T extends Catalog<D>[N]['emitted']['type'] | '*'>(
    machine: N,
    type: T,
    handler: (e: EmittedMessage<EmittedOfType<Catalog<D>[N]['emitted'], T>>) => void | Promise<void>,
  ): Unsubscribe;
  /** The operator API: workers, periodics, enable/disable, pause/resume, run records. */
  readonly supervisor: Supervisor;
  /**
   * Registers a periodic actor: `every` (`30s`, `PT5M`) or `cron` (+ IANA `timezone`). Exactly
   * one run per tick across every node on the database; starts with the runtime (at once if it runs).
   * @example drover.periodic('nightly-report', { cron: '0 3 * * *', timezone: 'Europe/London' }, async () => 'sent 12 mails', { jitter: '30s' });
   */
  periodic(name: string, schedule: ScheduleSpec, run: PeriodicRun, options?: PeriodicOptions): WorkerHandle;
  /**
   * Residency per state, from the transition history in SQL (no OpenTelemetry backend needed):
   * the count now, and p50/p95/p99/max of the stays that ended since `since` (default: 24 h ago).
   * @example for (const r of await drover.residency('order', { since: Date.now() - 3_600_000 })) console.log(r.state, r.count, r.p95);
   */
  residency(machine: NameOf<D>, options?: { since?: Date | number }): Promise<ResidencyRow[]>;
  /**
   * Records per machine, state and status, with when the oldest of them entered the state: one
   * SQL aggregate over the records (no record is loaded). `machine` limits it to one machine
   * (an unknown name is an `UnknownMachineError`). Sorted by machine, state and status.
   * @example for (const c of await drover.counts({ machine: 'order' })) console.log(c.state, c.status, c.count);
   */
  counts(options?: { machine?: NameOf<D> }): Promise<StateCount[]>;
  /**
   * Prunes now what `retention` no longer keeps (housekeeping does the same on every node
   * every `reaperInterval`): finished records past `retention.finished` with their history,
   * inbox, invocations and SLA breaches, and history rows past `retention.history`. Runs in
   * batches of 1,000 rows; never deletes a transition still waiting in the NATS outbox.
   * Resolves to what it deleted.
   *
   * @example const { records, transitions } = await drover.prune();
   */
  prune(): Promise<PruneResult>;
  /**
   * Transitions the NATS relay parked because NATS refused the message itself (for example a
   * record id with CR/LF in a header): never published, kept with their error, oldest first.
   * `count` is all of them, `items` up to `limit` (default 100). Empty without NATS.
   *
   * @example const { count, items } = await drover.parked(); if (count) console.warn(items[0]?.error.message);
   */
  parked(options?: { limit?: number }): Promise<{ count: number; items: ParkedTransition[] }>;
  /** Nodes whose heartbeat is recent (within three heartbeat intervals). */
  nodes(): Promise<NodeInfo[]>;
  /**
   * Serves the HTTP API (JSON under `/api/`, the OpenAPI document at `/api/openapi.json`,
   * Server-Sent Events of transitions at `/api/events`); `stop()` closes it. Binds 127.0.0.1:7070
   * by default; any other host needs a bearer `token`. See docs/http.md.
   * @example const server = await drover.serve({ port: 7070 }); console.log(`${server.url}/api/machines`);
   */
  serve(options?: ServeOptions): Promise<HttpServer>;
  /**
   * Makes SIGINT/SIGTERM drain gracefully and exit 0 (a second signal exits at once with 1).
   * Returns a function that removes the handlers.
   */
  handleSignals(signals?: readonly NodeJS.Signals[]): () => void;
  /** Resolves once the runtime has stopped: `stop()`, a signal, or `maxRunTime`. */
  readonly done: Promise<void>;
  /** Starts the supervisor: pollers, housekeeping, every worker and periodic. A runtime never started is a client: its calls work, nothing runs. */
  start(): Promise<void>;
  /** Drains: stops claiming and ticking, lets in-flight work finish (up to `shutdownGrace`), releases leases, closes. */
  stop(): Promise<void>;
}

/** A transition the NATS relay could not publish and parked (see `Runtime.parked`). */
export interface ParkedTransition {
  /** The history row's id: `UPDATE <schema>.transitions SET parked_at = NULL, publish_error = NULL WHERE id = …` re-queues it. */
  id: string;
  machine: string;
  recordId: string;
  seq: number;
  /** The state the transition went to. */
  state: string;
  at: Date;
  parkedAt: Date;
  /** Why NATS refused it. */
  error: { name: string; message: string };
}
