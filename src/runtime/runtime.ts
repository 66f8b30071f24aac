import { type EventObject, matchesState, type StateValue } from 'xstate';
import type { Bus, EmittedMessage, TransitionFilter, TransitionMessage, Unsubscribe } from '../bus/bus.js';
import { LocalBus } from '../bus/local.js';
import { NatsBus } from '../bus/nats.js';
import { createRelay } from '../bus/relay.js';
import { asDatabaseUnavailable, type CallerTransaction, type Database, withRetry } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { createOutboxQueries } from '../db/outbox-queries.js';
import { createQueries, type InstanceRow, type Queries } from '../db/queries.js';
import { createPruneQueries, type PruneQueries } from '../db/prune-queries.js';
import { createResidencyQueries } from '../db/residency-queries.js';
import { createSupervisorQueries } from '../db/supervisor-queries.js';
import { createVersionQueries } from '../db/version-queries.js';
import { type Created, type CreateItem, Engine } from '../engine/engine.js';
import { type MigrateOptions, type MigrateResult, type MigrationDeps, migrateRecords } from '../engine/record-migration.js';
import { prune, type PruneResult } from '../engine/prune.js';
import { type HttpServer, type ServeOptions, serveHttp } from '../http/server.js';
import { RecordInspector } from '../inspect/records.js';
import { repairStateStrings } from '../engine/repair.js';
import { checkMachineVersions } from '../engine/versions.js';
import {
  errorMessage,
  type InputIssue,
  InvalidArgumentError,
  InvalidInputError,
  RecordNotFoundError,
  RuntimeStoppedError,
  WaitTimeoutError,
  WaitUnreachableError,
} from '../errors.js';
import { slaBudgets, watchSla } from '../otel/sla.js';
import { Telemetry } from '../otel/telemetry.js';
import { type PeriodicOptions, type PeriodicRun, periodicConfig, periodicWorker } from '../periodic/periodic.js';
import type { ScheduleSpec } from '../periodic/schedule.js';
import { rejectUnknownKeys } from '../keys.js';
import { checkLookup } from '../record/payload.js';
import { MachineRegistry, withChildMachines } from '../record/registry.js';
import { canonicalStateString } from '../record/state.js';
import { nextWake, type RecordStatus } from '../record/step.js';
import { none } from '../supervisor/results.js';
import { Supervisor, type WorkerHandle } from '../supervisor/supervisor.js';
import { type Clock, sleep } from '../time.js';
import { registerAccess } from './access.js';
import type { AnyDurableMachine } from './infer.js';
import { MAX_TIMER_MS, type ResolvedOptions, type RuntimeOptions, resolveOptions } from './options.js';
import type {
  CreateManyOptions,
  CreateOptions,
  DroverEvent,
  HistoryEntry,
  NodeInfo,
  Page,
  ParkedTransition,
  RecordView,
  ResidencyRow,
  Runtime,
  StateCount,
  WaitCondition,
} from './types.js';

/**
 * Creates a drover runtime: opens (or adopts) the database, applies migrations into the
 * schema under an advisory lock, and registers the machines. Call `start()` to run pollers.
 *
 * The runtime is typed by `machines`: names are checked, and `create`'s input, `send`'s events,
 * and the context, value and state of the records read come from each machine's
 * `setup({ types })`. With `machinesDir`, names from the folder are accepted too, loosely typed.
 *
 * @example
 * const drover = await createRuntime({ database: process.env.DATABASE_URL, machines: [order] });
 * await drover.start();
 */
export async function createRuntime<const T extends readonly AnyDurableMachine[]>(
  options: RuntimeOptions & { machines: T; machinesDir?: undefined },
): Promise<Runtime<T[number]>>;
export async function createRuntime(options?: RuntimeOptions): Promise<Runtime>;
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const resolved = await resolveOptions(options);
  let bus: Bus;
  try {
    await withRetry(() => migrate(resolved.db, resolved.schema));
    await checkMachineVersions(resolved.db, resolved.schema, resolved.machines, { now: resolved.clock.now(), logger: resolved.logger });
    const repaired = await withRetry(() => repairStateStrings(resolved.db, resolved.schema, resolved.machines));
    if (repaired > 0) resolved.logger.info({ records: repaired }, 'drover: repaired state strings to the canonical order of their machines');
    bus =
      resolved.nats !== undefined
        ? await NatsBus.open(resolved.nats, resolved.natsSettings, resolved.logger)
        : new LocalBus((err) => resolved.logger.error({ err: errorMessage(err) }, 'drover: subscriber failed'));
  } catch (err) {
    await resolved.db.close();
    throw asDatabaseUnavailable(err);
  }
  return new DroverRuntime(resolved, bus);
}

/** A typed error as a NATS reply carries it (with the validator's issues for bad input). */
type ReplyError = { code: string; name: string; message: string; issues?: readonly InputIssue[] };
/** The reply of `<prefix>.send.<machine>`: stored, or a typed error. */
type SendReply = { ok: true } | { ok: false; error: ReplyError };
/** The reply of `<prefix>.create.<machine>`: the record created, or a typed error. */
type CreateReply = { ok: true; record: { id: string; state: string; status: RecordStatus } } | { ok: false; error: ReplyError };

function replyError(err: unknown): ReplyError {
  const e = err as { code?: unknown; name?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : 'INTERNAL',
    name: typeof e.name === 'string' ? e.name : 'Error',
    message: errorMessage(err),
    ...(err instanceof InvalidInputError ? { issues: err.issues } : {}),
  };
}

const COUNTS_KEYS = ['machine'] as const;
const CREATE_REQUEST_KEYS = ['id', 'input', 'uniqueKey', 'priority', 'runAt'] as const;

const STATUSES = new Set(['active', 'done', 'failed', 'cancelled']);

/** The longest reason cancel() stores. */
const MAX_REASON_LENGTH = 10_000;

/** An options argument: omitted, or an object. */
function optionsObject<T extends object>(options: T | undefined | null, where: string): T {
  if (options === undefined) return {} as T;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new InvalidArgumentError(`${where}: options must be an object`);
  return options;
}

/** A machine name and record id as get/send/history/cancel/retry/waitFor take them. */
function checkRecordRef(machine: unknown, id: unknown): void {
  checkLookup(machine, 'machine');
  checkLookup(id, 'id');
}

/** A waitFor() condition as a predicate; a condition of another shape is an `InvalidArgumentError`. */
function waitPredicate(condition: unknown): (record: RecordView) => boolean {
  if (typeof condition === 'function') return condition as (record: RecordView) => boolean;
  if (typeof condition === 'object' && condition !== null && !Array.isArray(condition)) {
    const c = condition as { status?: unknown; state?: unknown };
    if ('status' in c) {
      if (typeof c.status !== 'string' || !STATUSES.has(c.status)) {
        throw new InvalidArgumentError(`waitFor(): condition.status must be one of ${[...STATUSES].join(', ')}`);
      }
      return (r) => r.status === c.status;
    }
    if ('state' in c && (typeof c.state === 'string' || (typeof c.state === 'object' && c.state !== null && !Array.isArray(c.state)))) {
      const state = c.state as StateValue;
      return (r) => matchesState(state, r.value);
    }
  }
  throw new InvalidArgumentError('waitFor(): condition must be { state }, { status } or a function (record) => boolean');
}

class DroverRuntime implements Runtime {
  readonly node: string;
  readonly schema: string;
  private readonly db: Database;
  private readonly queries: Queries;
  private readonly registry: MachineRegistry;
  private readonly clock: Required<Clock>;
  private readonly engine: Engine;
  private readonly waiters = new Set<() => void>();
  private state: 'idle' | 'started' | 'stopping' | 'stopped' = 'idle';
  private stopping: Promise<void> | undefined;
  private maxRunTimer: unknown;
  private resolveDone!: () => void;
  private readonly telemetry: Telemetry;
  private readonly rq: ReturnType<typeof createResidencyQueries>;
  private readonly sq: ReturnType<typeof createSupervisorQueries>;
  private readonly pq: PruneQueries;
  private unobserve: (() => void) | undefined;
  private readonly servers = new Set<HttpServer>();
  readonly supervisor: Supervisor;
  readonly done: Promise<void> = new Promise((resolve) => {
    this.resolveDone = resolve;
  });

  constructor(
    private readonly options: ResolvedOptions,
    private readonly bus: Bus,
  ) {
    this.node = options.node;
    this.schema = options.schema;
    this.db = options.db;
    this.clock = options.clock;
    this.queries = createQueries(options.schema, { outbox: bus.outbox });
    this.rq = createResidencyQueries(options.schema);
    this.sq = createSupervisorQueries(options.schema);
    this.pq = createPruneQueries(options.schema);
    this.telemetry = new Telemetry({ tracerProvider: options.tracerProvider, meterProvider: options.meterProvider });
    this.registry = new MachineRegistry(withChildMachines(options.machines));
    this.engine = new Engine({
      db: this.db,
      queries: this.queries,
      registry: this.registry,
      clock: options.clock,
      logger: options.logger,
      node: options.node,
      leaseMs: options.leaseMs,
      batchSize: options.batchSize,
      concurrency: options.concurrency,
      pollIntervalMs: options.pollIntervalMs,
      shutdownGraceMs: options.shutdownGraceMs,
      maxPayload: options.maxPayload,
      telemetry: this.telemetry,
      ...(options.inspect ? { inspector: new RecordInspector(options.inspect, options.logger) } : {}),
      // NOTIFY reaches the other nodes too; on NATS a wake message may come first.
      announceWork: (queue, at) => bus.announceWork(queue, this.node, at),
    });
    this.supervisor = new Supervisor({
      db: this.db,
      sql: this.sq,
      node: options.node,
      logger: options.logger,
      clock: options.clock,
      ...(options.inspect ? { inspect: options.inspect } : {}),
      controlIntervalMs: options.controlIntervalMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      reaperIntervalMs: options.reaperIntervalMs,
      runRetentionMs: options.runRetentionMs,
      shutdownGraceMs: options.shutdownGraceMs,
      assertOpen: () => this.assertOpen(),
      bootEngine: () => this.bootEngine(),
      drainEngine: () => this.drainEngine(),
      announce: (op, value) => bus.announceControl(op, value, this.node),
    });
    registerAccess(this, {
      db: this.db,
      schema: this.schema,
      node: this.node,
      registry: this.registry,
      clock: this.clock,
      bus,
      supervisor: this.supervisor,
      engine: this.engine,
    });
    // The one commit hook: transitions to the bus, the relay woken to publish them, waiters re-read.
    this.engine.onCommitted((messages) => {
      bus.publish(messages);
      for (const w of [...this.waiters]) w();
    });
    // Emitted events: the in-process bus delivers them to on() at once; NATS leaves them to the relay.
    this.engine.onEmitted((events) => bus.publishEmitted(events));
    if (bus instanceof NatsBus) {
      const relay = createRelay({
        db: this.db,
        schema: this.schema,
        bus,
        clock: options.clock,
        logger: options.logger,
        idleMs: options.relayIntervalMs,
      });
      const worker = this.supervisor.addHousekeeping('drover.relay', () => relay.handler());
      this.engine.onCommitted(() => worker.wake());
      this.engine.onEmitted(() => worker.wake());
    }
    const { finishedMs, failedMs, historyMs } = options.retention;
    if (finishedMs !== null || failedMs !== null || historyMs !== null) {
      // Every node runs it: the statements skip rows another node is deleting. Not addEvery:
      // a long backlog stops at the next batch when the runtime stops.
      const intervalMs = options.reaperIntervalMs;
      this.supervisor.addHousekeeping(
        'drover.retention',
        async ({ signal }) => {
          const pruned = await this.runPrune(signal);
          if (pruned.records > 0 || pruned.transitions > 0) options.logger.info({ ...pruned }, 'drover: pruned past retention');
          return none(intervalMs);
        },
        Math.min(1000, intervalMs),
      );
    }
    const budgets = slaBudgets(options.machines);
    if (budgets.length > 0) {
      this.supervisor.addEvery('drover.sla', options.slaIntervalMs, async () => {
        await watchSla({
          db: this.db,
          sql: this.rq,
          clock: options.clock,
          node: this.node,
          telemetry: this.telemetry,
          budgets,
          publish: (breach) => bus.publishBreach(breach),
          onPublishError: (err) => options.logger.warn({ err: errorMessage(err) }, 'drover: SLA breach not published to NATS'),
        });
        await this.db.query(this.rq.pruneBreaches);
      });
    }
  }

  async residency(machine: string, options: { since?: Date | number } = {}): Promise<ResidencyRow[]> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const since = new Date(options.since ?? this.options.clock.now() - 24 * 3_600_000);
    if (Number.isNaN(since.getTime())) throw new InvalidArgumentError('since must be a Date or epoch milliseconds');
    const [now, stays] = await Promise.all([
      withRetry(() => this.db.query<{ state: string; count: number }>(this.rq.residencyNow, [machine])),
      withRetry(() =>
        this.db.query<{ state: string; stays: number; p50: number; p95: number; p99: number; max: number }>(this.rq.residencyStays, [machine, since]),
      ),
    ]);
    const rows = new Map<string, ResidencyRow>();
    const row = (state: string) => {
      let r = rows.get(state);
      if (!r) {
        r = { state, count: 0, stays: 0, p50: null, p95: null, p99: null, max: null };
        rows.set(state, r);
      }
      return r;
    };
    for (const n of now.rows) row(n.state).count = n.count;
    for (const st of stays.rows) Object.assign(row(st.state), { stays: st.stays, p50: st.p50, p95: st.p95, p99: st.p99, max: st.max });
    return [...rows.values()].sort((a, b) => a.state.localeCompare(b.state));
  }

  async counts(options: { machine?: string } = {}): Promise<StateCount[]> {
    this.assertOpen();
    rejectUnknownKeys(options, COUNTS_KEYS, 'counts()');
    if (options.machine !== undefined) this.registry.assertKnown(options.machine);
    const res = await withRetry(() =>
      this.db.query<{ machine: string; state: string; status: RecordStatus; count: number; oldest: Date }>(this.rq.counts, [options.machine ?? null]),
    );
    return res.rows.map((r) => ({ machine: r.machine, state: r.state, status: r.status, count: r.count, oldestEnteredAt: r.oldest }));
  }

  async prune(): Promise<PruneResult> {
    this.assertOpen();
    return this.runPrune();
  }

  private runPrune(signal?: AbortSignal): Promise<PruneResult> {
    return prune({ db: this.db, sql: this.pq, now: this.clock.now(), retention: this.options.retention, ...(signal ? { signal } : {}) });
  }

  /** Answers one `<prefix>.send.<machine>` request: the reply comes once the event is stored. */
  private async answerSend(machine: string, body: unknown): Promise<SendReply> {
    try {
      if (!body || typeof body !== 'object') throw new InvalidArgumentError('the request must be a JSON object { id, event }');
      const { id, event } = body as { id?: unknown; event?: unknown };
      if (typeof id !== 'string' || id.length === 0) throw new InvalidArgumentError('the request needs a non-empty string `id`');
      await this.send(machine, id, event as DroverEvent);
      return { ok: true };
    } catch (err) {
      return { ok: false, error: replyError(err) };
    }
  }

  /** Answers one `<prefix>.create.<machine>` request `{ id?, input?, uniqueKey?, priority?, runAt? }`: the reply comes once the record is stored. */
  private async answerCreate(machine: string, body: unknown): Promise<CreateReply> {
    try {
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        throw new InvalidArgumentError('the request must be a JSON object { id?, input?, uniqueKey?, priority?, runAt? }');
      }
      rejectUnknownKeys(body, CREATE_REQUEST_KEYS, `the ${machine} create request`);
      const record = await this.create(machine, body as CreateOptions);
      return { ok: true, record: { id: record.id, state: record.state, status: record.status } };
    } catch (err) {
      return { ok: false, error: replyError(err) };
    }
  }

  periodic(name: string, schedule: ScheduleSpec, run: PeriodicRun, options: PeriodicOptions = {}): WorkerHandle {
    this.assertOpen();
    const config = periodicConfig(name, schedule, run, options);
    const worker = periodicWorker(config, {
      db: this.db,
      sql: this.sq,
      clock: this.options.clock,
      node: this.node,
      logger: this.options.logger,
      create: (machine, id, input) => this.create(machine, { id, input }),
      liveWindowMs: this.options.heartbeatIntervalMs * 3,
      telemetry: this.telemetry,
    });
    const handle = this.supervisor.register(name, 'periodic', worker.handler, {}, { drain: worker.drain, onRun: worker.reset, onHalt: worker.halt }, {
      schedule: config.schedule.description,
      tags: config.tags,
      next: () => config.schedule.next(this.options.clock.now()),
    });
    if (this.state === 'started') this.supervisor.start(name);
    return handle;
  }

  async parked(options: { limit?: number } = {}): Promise<{ count: number; items: ParkedTransition[] }> {
    this.assertOpen();
    rejectUnknownKeys(options, ['limit'], 'parked()');
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidArgumentError('limit must be an integer from 1 to 1000');
    const outbox = createOutboxQueries(this.schema);
    const [count, rows] = await withRetry(() => Promise.all([outbox.parkedCount(this.db), outbox.parked(this.db, { limit })]));
    const items = rows.map((r) => ({
      id: r.tid,
      machine: r.machine,
      recordId: r.instance_id,
      seq: r.seq,
      state: r.to_state,
      at: r.at,
      parkedAt: r.parked_at,
      error: r.publish_error,
    }));
    return { count, items };
  }

  async nodes(): Promise<NodeInfo[]> {
    return this.supervisor.nodes();
  }

  async serve(options: ServeOptions = {}): Promise<HttpServer> {
    this.assertOpen();
    if (this.state === 'stopping') throw new RuntimeStoppedError();
    const server = await serveHttp(this, options, { logger: this.options.logger });
    this.servers.add(server);
    this.options.logger.info({ node: this.node, url: server.url }, 'drover: serving the HTTP API');
    return server;
  }

  handleSignals(signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): () => void {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        this.options.logger.warn({ signal }, 'drover: second signal while draining, exiting now');
        process.exit(1);
      }
      received = true;
      this.options.logger.info({ signal }, 'drover: draining on signal');
      this.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          this.options.logger.error({ err: errorMessage(err) }, 'drover: drain failed');
          process.exit(1);
        },
      );
    };
    for (const signal of signals) process.on(signal, onSignal);
    return () => {
      for (const signal of signals) process.off(signal, onSignal);
    };
  }

  async create<TInput>(machine: string, options: CreateOptions<TInput> = {}): Promise<RecordView> {
    this.assertOpen();
    return createdView(await this.engine.create(machine, options, options.tx));
  }

  async createMany<TInput>(machine: string, items: readonly CreateItem<TInput>[], options: CreateManyOptions = {}): Promise<RecordView[]> {
    this.assertOpen();
    return (await this.engine.createMany(machine, items, options.tx)).map(createdView);
  }

  async send(machine: string, id: string, event: DroverEvent, options: { tx?: CallerTransaction } = {}): Promise<void> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    // The event is checked and serialised once, by the engine: the stored form is the one checked.
    await this.engine.send(machine, id, event, optionsObject(options, 'send()').tx);
  }

  async get(machine: string, id: string): Promise<RecordView | null> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    const row = (await withRetry(() => this.db.query<InstanceRow>(this.queries.sql.getInstance, [machine, id]))).rows[0];
    return row ? toView(row) : null;
  }

  async list(
    machine: string,
    options: { state?: string; status?: RecordStatus; limit?: number; after?: string | null; parent?: { machine: string; id: string } } = {},
  ): Promise<Page<RecordView>> {
    this.assertOpen();
    checkLookup(machine, 'machine');
    this.registry.assertKnown(machine);
    options = optionsObject(options, 'list()');
    rejectUnknownKeys(options, ['state', 'status', 'limit', 'after', 'parent'], 'list()');
    const parent = options.parent;
    if (parent !== undefined) {
      if (typeof parent !== 'object' || parent === null) throw new InvalidArgumentError('list(): parent must be { machine, id }');
      rejectUnknownKeys(parent, ['machine', 'id'], 'list(): parent');
      checkRecordRef(parent.machine, parent.id);
    }
    if (options.state !== undefined && typeof options.state !== 'string') throw new InvalidArgumentError('list(): state must be a string');
    if (options.state !== undefined) checkLookup(options.state, 'list(): state');
    if (options.after !== undefined && options.after !== null) {
      if (typeof options.after !== 'string') throw new InvalidArgumentError('list(): after must be a record id (the `next` of a page) or null');
      checkLookup(options.after, 'list(): after');
    }
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidArgumentError('limit must be an integer from 1 to 1000');
    if (options.status !== undefined && !STATUSES.has(options.status)) {
      throw new InvalidArgumentError(`status must be one of ${[...STATUSES].join(', ')}`);
    }
    // A parallel state named in another region order is the same state.
    const state = options.state === undefined ? null : canonicalStateString(options.state, this.registry.latest(machine).machine);
    const like = state === null ? null : state.replace(/[\\%_]/g, (c) => `\\${c}`);
    const res = await withRetry(() =>
      this.db.query<InstanceRow>(this.queries.sql.listInstances, [
        machine,
        state,
        like,
        options.status ?? null,
        options.after ?? null,
        limit,
        parent?.machine ?? null,
        parent?.id ?? null,
      ]),
    );
    const items = res.rows.map(toView);
    return { items, next: items.length === limit ? (items[items.length - 1] as RecordView).id : null };
  }

  async history(machine: string, id: string): Promise<HistoryEntry[]> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    const res = await withRetry(() =>
      this.db.query<{
        from_state: string | null;
        to_state: string;
        status: RecordStatus;
        event: EventObject;
        error: HistoryEntry['error'] | null;
        at: Date;
        kind: HistoryEntry['kind'] | null;
        peer_machine: string | null;
        peer_id: string | null;
      }>(this.queries.sql.history, [machine, id]),
    );
    if (res.rows.length === 0 && (await withRetry(() => this.db.query(this.queries.sql.instanceExists, [machine, id]))).rowCount === 0) {
      throw new RecordNotFoundError(machine, id);
    }
    return res.rows.map((r) => ({
      from: r.from_state,
      to: r.to_state,
      event: r.event,
      at: r.at,
      status: r.status,
      ...(r.error ? { error: r.error } : {}),
      ...(r.kind ? { kind: r.kind } : {}),
      ...(r.peer_machine !== null && r.peer_id !== null ? { peer: { machine: r.peer_machine, id: r.peer_id } } : {}),
    }));
  }

  async waitFor(machine: string, id: string, condition: WaitCondition, options: { timeoutMs?: number } = {}): Promise<RecordView> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    options = optionsObject(options, 'waitFor()');
    rejectUnknownKeys(options, ['timeoutMs'], 'waitFor()');
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_TIMER_MS) {
      throw new InvalidArgumentError(`waitFor(): timeoutMs must be a number of milliseconds from 0 to ${MAX_TIMER_MS} (got ${String(timeoutMs)})`);
    }
    const matches = waitPredicate(condition);
    const deadline = this.clock.now() + timeoutMs;
    let delay = 10;
    for (;;) {
      const record = await this.get(machine, id);
      if (!record) throw new RecordNotFoundError(machine, id);
      if (matches(record)) return record;
      // A finished record never changes again.
      if (record.status !== 'active') throw new WaitUnreachableError(machine, id, record.status);
      const left = deadline - this.clock.now();
      if (left <= 0) throw new WaitTimeoutError(machine, id, timeoutMs, `${record.status} in "${record.state}"`);
      // A commit of this node wakes it at once; the sleep catches commits of other nodes.
      const woken = new AbortController();
      const wake = () => woken.abort();
      this.waiters.add(wake);
      await sleep(this.clock, Math.min(delay, left), woken.signal);
      this.waiters.delete(wake);
      delay = Math.min(delay * 2, 200);
    }
  }

  async retry(machine: string, id: string, options: { skipEvent?: boolean } = {}): Promise<RecordView> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    options = optionsObject(options, 'retry()');
    rejectUnknownKeys(options, ['skipEvent'], 'retry()');
    if (options.skipEvent !== undefined && typeof options.skipEvent !== 'boolean') throw new InvalidArgumentError('skipEvent must be a boolean');
    await this.engine.retry(machine, id, options);
    const record = await this.get(machine, id);
    if (!record) throw new RecordNotFoundError(machine, id);
    return record;
  }

  async migrate<TFrom, TTo>(machine: string, options: MigrateOptions<TFrom, TTo>): Promise<MigrateResult> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const deps: MigrationDeps = {
      db: this.db,
      vq: createVersionQueries(this.schema, { outbox: this.bus.outbox, channel: this.queries.channel }),
      registry: this.registry,
      clock: this.clock,
      logger: this.options.logger,
      node: this.node,
      leaseMs: this.options.leaseMs,
      committed: (queue, messages, spans) => {
        this.engine.externalCommit(queue, messages);
        for (const s of spans) this.telemetry.stateSpans(machine, options.from, s.id, s.enteredBefore, [s.transition]);
      },
    };
    return migrateRecords(deps, machine, options as MigrateOptions);
  }

  async cancel(machine: string, id: string, reason = 'cancelled'): Promise<boolean> {
    this.assertOpen();
    checkRecordRef(machine, id);
    this.registry.assertKnown(machine);
    if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH) {
      throw new InvalidArgumentError(`cancel(): reason must be a string of at most ${MAX_REASON_LENGTH} characters`);
    }
    if (reason.length > 0) checkLookup(reason, 'cancel(): reason');
    return this.engine.cancel(machine, id, reason);
  }

  subscribe(
    filter: TransitionFilter,
    handler: (t: TransitionMessage) => void | Promise<void>,
    options: { durable?: string } = {},
  ): Unsubscribe {
    this.assertOpen();
    if (filter.machine !== undefined) this.registry.assertKnown(filter.machine);
    if (options.durable !== undefined && (typeof options.durable !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(options.durable))) {
      throw new InvalidArgumentError('durable must be 1-100 letters, digits, "_" or "-"');
    }
    return this.bus.subscribe(filter, handler, options.durable);
  }

  // The handler is typed by the machine's emitted events at the interface; here any of them.
  on(machine: string, type: string, handler: (e: EmittedMessage<never>) => void | Promise<void>): Unsubscribe {
    this.assertOpen();
    checkLookup(machine, 'on(): machine');
    this.registry.assertKnown(machine);
    checkLookup(type, "on(): type (an emitted event's type, or '*')");
    if (type.length > MAX_EMIT_TYPE_LENGTH) throw new InvalidArgumentError(`on(): type must be at most ${MAX_EMIT_TYPE_LENGTH} characters`);
    if (typeof handler !== 'function') throw new InvalidArgumentError('on(): handler must be a function');
    return this.bus.onEmitted({ machine, type }, handler as (e: EmittedMessage) => void | Promise<void>);
  }

  async start(): Promise<void> {
    this.assertOpen();
    if (this.state !== 'idle') return;
    this.state = 'started';
    await this.supervisor.run();
    if (this.options.maxRunTimeMs !== undefined) {
      this.maxRunTimer = this.clock.setTimeout(() => {
        this.options.logger.info({ node: this.node, maxRunTimeMs: this.options.maxRunTimeMs }, 'drover: maxRunTime reached, draining');
        void this.stop();
      }, this.options.maxRunTimeMs);
    }
  }

  /** Starts the engine (LISTEN, the queue pollers) and the bus (the supervisor calls it once control state is loaded). */
  private async bootEngine(): Promise<void> {
    const pollers = await this.engine.start();
    await this.bus.start({
      send: (machine, body) => this.answerSend(machine, body),
      create: (machine, body) => this.answerCreate(machine, body),
      control: (_op, _value, node) => {
        if (node !== this.node) this.supervisor.refreshControl();
      },
      wake: (queue, node, at) => {
        if (node !== this.node) this.engine.peerWork(queue, at);
      },
    });
    for (const [queue, poller] of pollers) this.supervisor.addService(`drover.poller.${queue}`, poller);
    this.unobserve = this.telemetry.observeStates(
      async () => (await this.db.query<{ machine: string; state: string; count: number; oldest: Date }>(this.rq.stateCounts)).rows,
      () => this.clock.now(),
    );
    this.options.logger.info({ node: this.node, queues: [...pollers.keys()] }, 'drover: started');
  }

  /** After the pollers stopped: running invocations (up to shutdownGrace), LISTEN, leases. */
  private async drainEngine(): Promise<void> {
    this.unobserve?.();
    await this.engine.drain();
  }

  stop(): Promise<void> {
    this.stopping ??= this.drainAndClose();
    return this.stopping;
  }

  private async drainAndClose(): Promise<void> {
    if (this.maxRunTimer !== undefined) this.clock.clearTimeout(this.maxRunTimer);
    this.state = 'stopping';
    try {
      // First: the API takes no more calls while the runtime drains.
      await Promise.all([...this.servers].map((server) => server.close()));
      await this.supervisor.shutdown();
    } finally {
      this.state = 'stopped';
      for (const w of [...this.waiters]) w();
      await this.bus.close().catch((err: unknown) => this.options.logger.warn({ err: errorMessage(err) }, 'drover: bus close failed'));
      await this.db.close();
      this.options.logger.info({ node: this.node }, 'drover: stopped');
      this.resolveDone();
    }
  }

  private assertOpen(): void {
    if (this.state === 'stopped') throw new RuntimeStoppedError();
  }
}

function createdView({ id, def, out, now }: Created): RecordView {
  const wake = nextWake(out);
  return {
    id,
    machine: def.name,
    version: def.version,
    state: out.state,
    value: out.snapshot.value,
    context: out.snapshot.context,
    status: out.status,
    enteredAt: new Date(now),
    wakeAt: wake === null ? null : new Date(wake),
    attempt: 0,
    error: out.error ?? null,
  };
}

/** The longest event type `on()` takes: a NATS subject token, well inside the server's limits. */
const MAX_EMIT_TYPE_LENGTH = 256;

function toView(row: InstanceRow): RecordView {
  return {
    id: row.id,
    machine: row.machine,
    version: row.version,
    state: row.state,
    value: row.snapshot.value as StateValue,
    context: (row.snapshot.context ?? {}) as Record<string, unknown>,
    status: row.status as RecordStatus,
    enteredAt: row.entered_at,
    wakeAt: row.wake_at,
    attempt: row.attempt,
    error: (row.error as RecordView['error']) ?? null,
    ...(row.links?.parent ? { parent: row.links.parent } : {}),
  };
}

/**
 * The public calls that reach the database. Whatever path a call takes (retried or in the
 * caller's transaction), a lost or refused connection reaches the caller as a
 * `DatabaseUnavailableError` with the driver's error as `cause`, never as a raw `pg` error.
 */
const DATABASE_CALLS = [
  'create',
  'createMany',
  'send',
  'get',
  'list',
  'history',
  'waitFor',
  'retry',
  'migrate',
  'cancel',
  'residency',
  'counts',
  'prune',
  'parked',
  'nodes',
  'start',
] as const satisfies ReadonlyArray<keyof Runtime>;

for (const name of DATABASE_CALLS) {
  const call = DroverRuntime.prototype[name] as (this: DroverRuntime, ...args: unknown[]) => Promise<unknown>;
  Object.defineProperty(DroverRuntime.prototype, name, {
    configurable: true,
    writable: true,
    value: async function (this: DroverRuntime, ...args: unknown[]) {
      try {
        return await call.apply(this, args);
      } catch (err) {
        throw asDatabaseUnavailable(err);
      }
    },
  });
}
