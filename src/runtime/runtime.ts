import { randomUUID } from 'node:crypto';
import { type EventObject, matchesState, type StateValue } from 'xstate';
import { LocalBus, type TransitionFilter, type TransitionMessage, transitionMessages } from '../bus/local.js';
import { NatsBus, subjectToken } from '../bus/nats.js';
import { createRelay } from '../bus/relay.js';
import { adoptTransaction, type CallerTransaction, type Database, type Queryable, withRetry } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { createQueries, type InstanceRow, type Queries, transitionColumns } from '../db/queries.js';
import { createResidencyQueries } from '../db/residency-queries.js';
import { createSupervisorQueries } from '../db/supervisor-queries.js';
import { slaBudgets, watchSla } from '../otel/sla.js';
import { captureTraceparent, Telemetry } from '../otel/telemetry.js';
import {
  DuplicateRecordError,
  EventNotAcceptedError,
  errorMessage,
  InvalidArgumentError,
  RecordNotFoundError,
  RuntimeStoppedError,
  SnapshotRestoreError,
  WaitTimeoutError,
  WaitUnreachableError,
} from '../errors.js';
import type { EngineContext } from '../polling/context.js';
import { Invoker } from '../polling/invoker.js';
import { QueuePoller } from '../polling/poller.js';
import { type PeriodicOptions, type PeriodicRun, periodicConfig, periodicWorker } from '../periodic/periodic.js';
import type { ScheduleSpec } from '../periodic/schedule.js';
import { MachineRegistry } from '../record/registry.js';
import { restoreSnapshot } from '../record/state.js';
import { contextIds, initialStep, nextWake, type RecordStatus } from '../record/step.js';
import { type ResolvedOptions, type RuntimeOptions, resolveOptions } from './options.js';
import { Supervisor, type WorkerHandle } from '../supervisor/supervisor.js';
import type {
  CreateOptions,
  DroverEvent,
  HistoryEntry,
  NodeInfo,
  Page,
  RecordView,
  ResidencyRow,
  Runtime,
  Unsubscribe,
  WaitCondition,
} from './types.js';

/**
 * Creates a drover runtime: opens (or adopts) the database, applies migrations into the
 * schema under an advisory lock, and registers the machines. Call `start()` to run pollers.
 *
 * @example
 * const drover = await createRuntime({ database: process.env.DATABASE_URL, machines: [order] });
 * await drover.start();
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const resolved = await resolveOptions(options);
  let nats: NatsBus | undefined;
  try {
    await withRetry(() => migrate(resolved.db, resolved.schema));
    if (resolved.nats !== undefined) nats = await NatsBus.open(resolved.nats, resolved.natsSettings, resolved.logger);
  } catch (err) {
    await resolved.db.close();
    throw err;
  }
  return new DroverRuntime(resolved, nats);
}

/** The reply of `<prefix>.send.<machine>`: stored, or a typed error. */
type SendReply = { ok: true } | { ok: false; error: { code: string; name: string; message: string } };

const STATUSES = new Set(['active', 'done', 'failed', 'cancelled']);

class DroverRuntime implements Runtime {
  readonly node: string;
  readonly schema: string;
  private readonly db: Database;
  private readonly queries: Queries;
  private readonly registry: MachineRegistry;
  private readonly bus: LocalBus;
  private readonly ctx: EngineContext;
  private readonly invoker: Invoker;
  private readonly pollers = new Map<string, QueuePoller>();
  private readonly waiters = new Set<() => void>();
  private unlisten: (() => Promise<void>) | undefined;
  private state: 'idle' | 'started' | 'stopping' | 'stopped' = 'idle';
  private stopping: Promise<void> | undefined;
  private maxRunTimer: NodeJS.Timeout | undefined;
  private resolveDone!: () => void;
  private readonly telemetry: Telemetry;
  private readonly rq: ReturnType<typeof createResidencyQueries>;
  private readonly sq: ReturnType<typeof createSupervisorQueries>;
  private unobserve: (() => void) | undefined;
  readonly supervisor: Supervisor;
  readonly done: Promise<void> = new Promise((resolve) => {
    this.resolveDone = resolve;
  });

  constructor(
    private readonly options: ResolvedOptions,
    private readonly nats: NatsBus | undefined,
  ) {
    this.node = options.node;
    this.schema = options.schema;
    this.db = options.db;
    this.queries = createQueries(options.schema, { outbox: nats !== undefined });
    this.rq = createResidencyQueries(options.schema);
    this.sq = createSupervisorQueries(options.schema);
    this.telemetry = new Telemetry({ tracerProvider: options.tracerProvider, meterProvider: options.meterProvider });
    this.registry = new MachineRegistry(options.machines);
    this.bus = new LocalBus((err) => options.logger.error({ err: errorMessage(err) }, 'drover: subscriber failed'));
    this.ctx = {
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
      bus: this.bus,
      telemetry: this.telemetry,
      changed: () => {
        for (const w of [...this.waiters]) w();
        this.committed();
      },
      wake: (queue) => this.pollers.get(queue)?.wake(),
    };
    this.invoker = new Invoker(this.ctx);
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
      ...(nats ? { announce: (op, value) => nats.publishControl(op, value, this.node) } : {}),
    });
    if (nats) {
      const relay = createRelay({
        db: this.db,
        schema: this.schema,
        bus: nats,
        clock: options.clock,
        logger: options.logger,
        idleMs: options.relayIntervalMs,
      });
      this.supervisor.addHousekeeping('drover.relay', () => relay.handler());
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
          ...(nats ? { publish: (breach) => nats.publishBreach(breach) } : {}),
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

  /** After a commit of this node: the relay publishes it now instead of at its next look. */
  private committed(): void {
    if (this.nats) this.supervisor.wake('drover.relay');
  }

  /** After create()/send() outside a caller transaction: pollers on other nodes look now. */
  private announceWork(queue: string): void {
    this.nats?.publishWake(queue, this.node);
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
      const e = err as { code?: unknown; name?: unknown };
      return {
        ok: false,
        error: { code: typeof e.code === 'string' ? e.code : 'INTERNAL', name: typeof e.name === 'string' ? e.name : 'Error', message: errorMessage(err) },
      };
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
    const handle = this.supervisor.register(name, 'periodic', worker.handler, {}, { drain: worker.drain, onRun: worker.reset, onHalt: worker.halt });
    if (this.state === 'started') this.supervisor.start(name);
    return handle;
  }

  async nodes(): Promise<NodeInfo[]> {
    return this.supervisor.nodes();
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
    const def = this.registry.latest(machine);
    const id = options.id ?? randomUUID();
    if (typeof id !== 'string' || id.length === 0 || id.length > 200)
      throw new InvalidArgumentError('id must be a non-empty string of at most 200 characters');
    const priority = options.priority ?? 0;
    if (!Number.isInteger(priority)) throw new InvalidArgumentError('priority must be an integer');
    const now = this.options.clock.now();
    const runAt = options.runAt === undefined ? now : new Date(options.runAt).getTime();
    if (!Number.isFinite(runAt)) throw new InvalidArgumentError('runAt must be a Date or epoch milliseconds');
    const start = Math.max(now, runAt);
    let out: ReturnType<typeof initialStep>;
    try {
      out = initialStep(def, options.input, now, start, captureTraceparent());
    } catch (err) {
      throw new InvalidArgumentError(`machine "${machine}" could not start with this input: ${errorMessage(err)}`);
    }
    const { json, sql } = this.queries;
    const wake = nextWake(out);
    const spawns =
      out.status !== 'active'
        ? []
        : [...out.spawns.values()].map((s) => ({
            invoke_id: s.id,
            token: randomUUID(),
            src: s.src,
            input: s.input ?? null,
            locked_until: new Date(start),
          }));
    const transitions = out.transitions.map(transitionColumns);
    const params = [
      def.name,
      id,
      def.version,
      def.queue,
      out.state,
      json(def.machine.getPersistedSnapshot(out.snapshot)),
      out.status,
      new Date(now),
      wake === null ? null : new Date(wake),
      json(out.timers),
      priority,
      options.uniqueKey ?? null,
      out.error ? json(out.error) : null,
      out.seq,
      json(transitions),
      json(spawns),
      // Pollers skip notifications from their own node, woken directly instead; a caller's
      // transaction commits later, so then every node (this one too) is notified.
      options.tx ? '' : this.node,
    ];
    const run = async (q: Queryable) => {
      const res = await q.query<{ created: number }>(sql.createInstance, params);
      if (res.rows[0]?.created === 1) return;
      const exists = await q.query(sql.instanceExists, [def.name, id]);
      throw exists.rowCount > 0
        ? new DuplicateRecordError(def.name, 'id', id)
        : new DuplicateRecordError(def.name, 'uniqueKey', options.uniqueKey ?? '');
    };
    if (options.tx) await run(adoptTransaction(options.tx));
    else {
      await withRetry(() => run(this.db));
      this.ctx.wake(def.queue);
      this.announceWork(def.queue);
      this.committed();
      this.bus.publish(transitionMessages(id, def.name, def.version, out.transitions));
    }
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

  async send(machine: string, id: string, event: DroverEvent, options: { tx?: CallerTransaction } = {}): Promise<void> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    if (!event || typeof event !== 'object' || typeof event.type !== 'string' || event.type.length === 0) {
      throw new InvalidArgumentError('event must be an object with a non-empty string `type`');
    }
    if (event.type.startsWith('xstate.')) throw new InvalidArgumentError(`event type "${event.type}" is reserved for XState`);
    const { sql, json } = this.queries;
    const run = async (q: Queryable) => {
      const row = (await q.query<InstanceRow & { pending: boolean }>(sql.getInstanceForSend, [machine, id])).rows[0];
      if (!row) throw new RecordNotFoundError(machine, id);
      if (row.status !== 'active') throw new EventNotAcceptedError(machine, id, event.type, `the record is ${row.status}`);
      const def = this.registry.get(machine, row.version);
      if (!row.pending) {
        // With nothing queued ahead of it, the stored state is the one that will take it.
        let snapshot: ReturnType<typeof restoreSnapshot>;
        try {
          snapshot = restoreSnapshot(def.machine, row.snapshot);
        } catch (err) {
          throw new SnapshotRestoreError(machine, id, err);
        }
        let accepted: boolean;
        try {
          accepted = snapshot.can(event);
        } catch {
          // A guard threw: store the event and let the step fail the record, as it would
          // had other events been queued ahead of this one.
          accepted = true;
        }
        if (!accepted) throw new EventNotAcceptedError(machine, id, event.type, `state "${row.state}" has no transition for it`);
      }
      const res = await q.query<{ event_id: string | null }>(sql.sendEvent, [
        machine,
        id,
        json(event),
        captureTraceparent() ?? null,
        new Date(this.options.clock.now()),
        options.tx ? '' : this.node,
      ]);
      if (!res.rows[0]?.event_id) throw new EventNotAcceptedError(machine, id, event.type, 'the record finished meanwhile');
      return def.queue;
    };
    if (options.tx) await run(adoptTransaction(options.tx));
    else {
      const queue = await withRetry(() => run(this.db));
      this.ctx.wake(queue);
      this.announceWork(queue);
    }
  }

  async get(machine: string, id: string): Promise<RecordView | null> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const row = (await withRetry(() => this.db.query<InstanceRow>(this.queries.sql.getInstance, [machine, id]))).rows[0];
    return row ? toView(row) : null;
  }

  async list(
    machine: string,
    options: { state?: string; status?: RecordStatus; limit?: number; after?: string | null } = {},
  ): Promise<Page<RecordView>> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidArgumentError('limit must be an integer from 1 to 1000');
    if (options.status !== undefined && !STATUSES.has(options.status)) {
      throw new InvalidArgumentError(`status must be one of ${[...STATUSES].join(', ')}`);
    }
    const state = options.state ?? null;
    const like = state === null ? null : state.replace(/[\\%_]/g, (c) => `\\${c}`);
    const res = await withRetry(() =>
      this.db.query<InstanceRow>(this.queries.sql.listInstances, [machine, state, like, options.status ?? null, options.after ?? null, limit]),
    );
    const items = res.rows.map(toView);
    return { items, next: items.length === limit ? (items[items.length - 1] as RecordView).id : null };
  }

  async history(machine: string, id: string): Promise<HistoryEntry[]> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const res = await withRetry(() =>
      this.db.query<{
        from_state: string | null;
        to_state: string;
        status: RecordStatus;
        event: EventObject;
        error: HistoryEntry['error'] | null;
        at: Date;
      }>(this.queries.sql.history, [machine, id]),
    );
    return res.rows.map((r) => ({
      from: r.from_state,
      to: r.to_state,
      event: r.event,
      at: r.at,
      status: r.status,
      ...(r.error ? { error: r.error } : {}),
    }));
  }

  async waitFor(machine: string, id: string, condition: WaitCondition, options: { timeoutMs?: number } = {}): Promise<RecordView> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const matches =
      typeof condition === 'function'
        ? condition
        : 'status' in condition
          ? (r: RecordView) => r.status === condition.status
          : (r: RecordView) => matchesState(condition.state, r.value);
    let delay = 10;
    for (;;) {
      const record = await this.get(machine, id);
      if (!record) throw new RecordNotFoundError(machine, id);
      if (matches(record)) return record;
      // A finished record never changes again.
      if (record.status !== 'active') throw new WaitUnreachableError(machine, id, record.status);
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(machine, id, timeoutMs, `${record.status} in "${record.state}"`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(delay, left));
        this.waiters.add(done);
      });
      delay = Math.min(delay * 2, 200);
    }
  }

  async cancel(machine: string, id: string, reason = 'cancelled'): Promise<boolean> {
    this.assertOpen();
    this.registry.assertKnown(machine);
    const now = new Date(this.options.clock.now());
    const event = { type: 'drover.cancel', reason };
    const { sql, json } = this.queries;
    const res = await withRetry(() =>
      this.db.query<{ n: number }>(sql.cancelInstance, [machine, id, json({ name: 'Cancelled', message: reason }), now, json(event)]),
    );
    if (res.rows[0]?.n !== 1) {
      const exists = await this.db.query(sql.instanceExists, [machine, id]);
      if (exists.rowCount === 0) throw new RecordNotFoundError(machine, id);
      return false;
    }
    this.invoker.abortRecord(machine, id);
    const row = (await this.db.query<InstanceRow>(sql.getInstance, [machine, id])).rows[0];
    if (row) {
      const message = {
        id,
        machine,
        version: row.version,
        from: row.state,
        to: row.state,
        status: 'cancelled' as const,
        event,
        at: now,
        seq: row.seq,
        ids: contextIds(row.snapshot.context),
      };
      this.telemetry.stateSpans(machine, row.version, id, row.entered_at.getTime(), [
        { seq: row.seq, from: row.state, to: row.state, status: 'cancelled', event, at: now.getTime() },
      ]);
      this.bus.publish([message]);
      this.ctx.changed([message]);
    }
    return true;
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
    if (this.nats) return this.nats.subscribe(filter, handler, options.durable);
    if (options.durable !== undefined) {
      throw new InvalidArgumentError('a durable subscription needs NATS (the `nats` option); the in-process bus delivers live transitions only');
    }
    return Object.assign(this.bus.subscribe(filter, handler), { ready: Promise.resolve() });
  }

  async start(): Promise<void> {
    this.assertOpen();
    if (this.state !== 'idle') return;
    this.state = 'started';
    await this.supervisor.run();
    if (this.options.maxRunTimeMs !== undefined) {
      this.maxRunTimer = setTimeout(() => {
        this.options.logger.info({ node: this.node, maxRunTimeMs: this.options.maxRunTimeMs }, 'drover: maxRunTime reached, draining');
        void this.stop();
      }, this.options.maxRunTimeMs);
    }
  }

  /** Starts LISTEN and the queue pollers (the supervisor calls it once control state is loaded). */
  private async bootEngine(): Promise<void> {
    this.unlisten = await this.db.listen(this.queries.channel, (payload) => {
      // Payload `queue|node`: this node's own create()/send() already woke its poller.
      const [queue, node] = payload.split('|');
      if (node === this.node) return;
      if (queue) this.pollers.get(queue)?.wake();
      else for (const p of this.pollers.values()) p.wake();
    });
    if (this.nats) {
      const nats = this.nats;
      await nats.ensureStream();
      nats.serveSend((machine, body) => this.answerSend(machine, body));
      nats.onControl((_op, _value, node) => {
        if (node !== this.node) this.supervisor.refreshControl();
      });
      nats.onWake((queue, node) => {
        if (node === this.node) return;
        for (const p of this.pollers.values()) if (subjectToken(p.queue) === queue) p.wake();
      });
    }
    this.invoker.fuse = (queue, row, event) => this.pollers.get(queue)?.fuse(row, event) ?? false;
    this.invoker.startHeartbeat();
    for (const queue of this.registry.queues()) {
      const poller = new QueuePoller(this.ctx, queue, this.invoker);
      this.pollers.set(queue, poller);
      this.supervisor.addService(`drover.poller.${queue}`, poller);
    }
    this.unobserve = this.telemetry.observeStates(
      async () => (await this.db.query<{ machine: string; state: string; count: number; oldest: Date }>(this.rq.stateCounts)).rows,
      () => this.options.clock.now(),
    );
    this.options.logger.info({ node: this.node, queues: [...this.pollers.keys()] }, 'drover: started');
  }

  /** After the pollers stopped: running invocations (up to shutdownGrace), LISTEN, leases. */
  private async drainEngine(): Promise<void> {
    this.unobserve?.();
    if (this.pollers.size === 0 && !this.unlisten) return;
    await this.invoker.stop(this.options.shutdownGraceMs);
    await this.unlisten?.();
    try {
      // Invocations cut short go back at once instead of waiting out their lease.
      await this.db.query(this.queries.sql.releaseInvocations, [this.node, new Date(this.options.clock.now())]);
    } catch (err) {
      this.options.logger.warn({ err: errorMessage(err) }, 'drover: could not release leases; they expire on their own');
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.drainAndClose();
    return this.stopping;
  }

  private async drainAndClose(): Promise<void> {
    clearTimeout(this.maxRunTimer);
    this.state = 'stopping';
    try {
      await this.supervisor.shutdown();
    } finally {
      this.state = 'stopped';
      for (const w of [...this.waiters]) w();
      await this.nats?.close().catch((err: unknown) => this.options.logger.warn({ err: errorMessage(err) }, 'drover: NATS close failed'));
      await this.db.close();
      this.options.logger.info({ node: this.node }, 'drover: stopped');
      this.resolveDone();
    }
  }

  private assertOpen(): void {
    if (this.state === 'stopped') throw new RuntimeStoppedError();
  }
}

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
  };
}
