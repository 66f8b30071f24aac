import { hostname } from 'node:os';
import { type Actor, type AnyActorRef, createActor, type InspectionEvent, type Observer, waitFor } from 'xstate';
import type { Database } from '../db/database.js';
import type { RunRow, SupervisorQueries } from '../db/supervisor-queries.js';
import { DuplicateWorkerError, errorMessage, InvalidArgumentError, serializeError, WorkerNotFoundError } from '../errors.js';
import { optionKeys, rejectUnknownKeys } from '../keys.js';
import type { Logger } from '../log.js';
import type { Page } from '../page.js';
import { type Clock, type Duration, parseDuration, withTimers } from '../time.js';
import { type Service, serviceMachine, supervisorMachine } from './machines.js';
import { type MetricEvent, MetricsHub, type MetricStream } from './metrics.js';
import { type HandlerResult, none } from './results.js';
import { type ControlOp, TAG } from './control.js';
import { createStatusStore, type WorkerEntry, type WorkerStatus } from './store.js';
import { type WorkerActor, type WorkerHandler, type WorkerInput, workerMachine, workerStatus } from './worker.js';

/** Options of `supervisor.add()`. */
export interface WorkerConfig {
  /** Panics in a row (throws, rejections) before the worker stops itself as `crashed`. Default 0: no limit. */
  maxPanicAttempts?: number;
  /** The pause after a panic; `stop()` cuts it short. Default 1s. */
  panicBackoff?: Duration;
  /** Keep a run record of every call that does work (`done()`, `fail()`, a panic). Default false. */
  record?: boolean;
}

/** Options of `supervisor.runs()`. */
export interface RunsOptions {
  /** Keyset paging: only runs older than this one (a `next` from an earlier page). */
  before?: string | null;
  /** Runs per page, 1 to 1000. Default 50. */
  limit?: number;
  /** Offset paging: skip this many runs (after `before`, if given). Default 0. */
  offset?: number;
}

/** The handle `add()` returns: the worker's metrics. */
export interface WorkerHandle {
  readonly name: string;
  /** Metric events as an async iterable; bounded buffer per reader, oldest dropped; ends when the worker stops. */
  metrics(): MetricStream;
  /** The newest metric event, if any. */
  lastMetric(): MetricEvent | undefined;
}

/** A run record: one periodic tick, or one recorded worker call. */
export interface RunRecord {
  id: string;
  worker: string;
  kind: 'tick' | 'call';
  scheduledFor: Date;
  startedAt: Date;
  finishedAt: Date | null;
  status: 'running' | 'succeeded' | 'failed' | 'skipped';
  attempt: number;
  debug: string | null;
  error: { name: string; message: string; stack?: string } | null;
  node: string;
}

/** What a periodic tells the fleet view about itself. */
export interface PeriodicAbout {
  /** The schedule in words: `every 30s`, `cron 0 3 * * * (Europe/London)`. */
  schedule: string;
  tags: string[];
  /** The next tick after now (epoch ms), or null if the schedule has no future tick. */
  next(): number | null;
}

/** One node's view of a worker in {@link Supervisor.fleet}. */
export interface FleetWorkerNode {
  node: string;
  status: WorkerStatus;
  /** Panics since the last handler call that returned. */
  panics: number;
  lastMetric: MetricEvent | null;
}

/** A worker or periodic across every live node, as `supervisor.fleet()` lists it. */
export interface FleetWorker {
  name: string;
  kind: 'worker' | 'periodic';
  /** The stored enable flag, honoured by every node. */
  enabled: boolean;
  /**
   * Across its nodes: `running` if it runs on any, else `crashed` if it crashed on any, else
   * `disabled` when disabled, else `stopped` (also for a worker no live node registers).
   */
  status: WorkerStatus;
  /** A periodic's schedule in words, else null. */
  schedule: string | null;
  tags: string[];
  /** A periodic's next tick, else null. */
  nextRun: Date | null;
  /** Each live node that registers it, as of that node's last heartbeat (this node: now). */
  nodes: FleetWorkerNode[];
  /** Its newest run record (periodic ticks, recorded calls), or null. */
  lastRun: RunRecord | null;
}

interface HeartbeatWorker {
  name: string;
  kind: WorkerEntry['kind'];
  status: WorkerStatus;
  panics: number;
  lastMetric: (Omit<MetricEvent, 'at'> & { at: string }) | null;
  schedule: string | null;
  tags: string[];
  nextRun: string | null;
}

/** What the supervisor needs from its runtime, resolved once. */
export interface SupervisorDeps {
  db: Database;
  sql: SupervisorQueries;
  node: string;
  logger: Logger;
  clock: Clock;
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  controlIntervalMs: number;
  heartbeatIntervalMs: number;
  reaperIntervalMs: number;
  runRetentionMs: number;
  shutdownGraceMs: number;
  assertOpen(): void;
  /** Starts the engine (LISTEN, pollers) once control state is loaded. */
  bootEngine(): Promise<void>;
  /** Stops the engine after the pollers: running invocations, LISTEN, leases. */
  drainEngine(): Promise<void>;
  /** Tells the other nodes about a control change at once (NATS); they also find it by polling. */
  announce?: (op: ControlOp, value: string) => void;
}

interface Entry {
  name: string;
  kind: WorkerEntry['kind'];
  internal: boolean;
  actor: WorkerActor;
  hub: MetricsHub;
  handle: WorkerHandle;
  about: PeriodicAbout | undefined;
}

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const WORKER_CONFIG_KEYS = optionKeys<WorkerConfig>()(['maxPanicAttempts', 'panicBackoff', 'record']);
const RUNS_KEYS = optionKeys<RunsOptions>()(['before', 'limit', 'offset']);

const toRun = (r: RunRow): RunRecord => ({
  id: r.id,
  worker: r.worker,
  kind: r.kind,
  scheduledFor: r.scheduled_for,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  status: r.status,
  attempt: r.attempt,
  debug: r.debug,
  error: r.error,
  node: r.node,
});

const timeout = (ms: number) =>
  new Promise<'timeout'>((resolve) => {
    setTimeout(() => resolve('timeout'), ms).unref();
  });

/**
 * The operator of a runtime's workers: named user workers, periodics and housekeeping, each
 * an XState actor under one supervisor actor. Enable/disable and pause/resume are stored in
 * the database and honoured by every node.
 */
export class Supervisor {
  /** The status store (`@xstate/store`): worker status and last metric by name. */
  readonly store = createStatusStore();
  private readonly entries = new Map<string, Entry>();
  private readonly services = new Map<string, AnyActorRef>();
  private readonly root: Actor<typeof supervisorMachine>;
  private disabled = new Set<string>();
  /** The newest fleet-wide start/stop command applied (null until boot reads it). */
  private commandCursor: string | null = null;
  private paused = new Set<string>();
  private readonly startedAt: Date;

  constructor(private readonly deps: SupervisorDeps) {
    this.startedAt = new Date(deps.clock.now());
    const timers = withTimers(deps.clock);
    this.root = createActor(supervisorMachine, {
      input: {
        boot: () => this.boot(),
        drain: () =>
          this.drain().catch((err: unknown) => {
            deps.logger.error({ err: errorMessage(err) }, 'drover: drain failed');
            throw err;
          }),
      },
      ...(deps.inspect ? { inspect: deps.inspect } : {}),
      // Workers' idle sleeps and panic backoffs are XState delays: they wait on the injected clock.
      clock: { setTimeout: (fn, ms) => timers.setTimeout(fn, ms), clearTimeout: (handle) => timers.clearTimeout(handle) },
    });
    this.root.start();
    this.addEvery('drover.control', deps.controlIntervalMs, () => this.syncControl());
    this.addEvery('drover.heartbeat', deps.heartbeatIntervalMs, () => this.heartbeat());
    this.addEvery('drover.reaper', deps.reaperIntervalMs, () => this.reap());
  }

  /** The supervisor actor's state: `idle`, `starting`, `running`, `draining` or `stopped`. */
  get state(): string {
    return String(this.root.getSnapshot().value);
  }

  /** The XState actor of the supervisor (for inspection). */
  get actor(): Actor<typeof supervisorMachine> {
    return this.root;
  }

  /**
   * Registers a worker (not started: call `start(name)`, or `runtime.start()` starts all).
   * Throws `InvalidArgumentError` for a bad name or config, an unknown config key naming the
   * nearest valid one.
   * @example
   * drover.supervisor.add('email-send', async ({ signal }) => (await sendBatch(signal)) ? done() : none('5s'), { maxPanicAttempts: 5 });
   */
  add(name: string, handler: WorkerHandler, config: WorkerConfig = {}): WorkerHandle {
    if (typeof handler !== 'function') throw new InvalidArgumentError(`worker "${name}": handler must be a function`);
    rejectUnknownKeys(config, WORKER_CONFIG_KEYS, `supervisor.add("${name}")`);
    return this.register(name, 'worker', handler, config);
  }

  /** @internal Registers a periodic's worker. */
  register(
    name: string,
    kind: WorkerEntry['kind'],
    handler: WorkerHandler,
    config: WorkerConfig,
    extra: Pick<WorkerInput, 'drain' | 'onRun' | 'onHalt'> = {},
    about?: PeriodicAbout,
  ): WorkerHandle {
    this.deps.assertOpen();
    if (typeof name !== 'string' || !NAME.test(name) || name.startsWith('drover.')) {
      throw new InvalidArgumentError(
        `worker name "${String(name)}" is invalid: use 1-100 letters, digits, "_", "-" or "." (names starting with "drover." are reserved)`,
      );
    }
    if (this.entries.has(name)) throw new DuplicateWorkerError(name);
    const maxPanicAttempts = config.maxPanicAttempts ?? 0;
    if (!Number.isInteger(maxPanicAttempts) || maxPanicAttempts < 0) {
      throw new InvalidArgumentError(`worker "${name}": maxPanicAttempts must be an integer >= 0 (0 = no limit)`);
    }
    const panicBackoffMs = parseDuration(config.panicBackoff ?? '1s');
    return this.spawn(
      name,
      kind,
      false,
      {
        handler,
        maxPanicAttempts,
        panicBackoffMs,
        ...(config.record ? { around: (call: () => Promise<HandlerResult>) => this.recorded(name, call) } : {}),
        ...extra,
      },
      about,
    );
  }

  /**
   * Starts a worker; a no-op when it is running. Throws `worker NAME not found`. Workers run
   * while the runtime runs: before `runtime.start()` (which starts every worker) this only
   * checks the name.
   */
  start(name: string): void {
    this.deps.assertOpen();
    const entry = this.entry(name);
    if (this.root.getSnapshot().value === 'idle') return;
    entry.actor.send({ type: 'START' });
  }

  /** Starts every registered worker and periodic, stopping at the first error. */
  startAll(): void {
    for (const entry of this.entries.values()) if (!entry.internal) this.start(entry.name);
  }

  /** Stops a worker; resolves once its handler has returned and it has really stopped. */
  async stop(name: string): Promise<void> {
    await this.stopEntry(this.entry(name));
  }

  private async stopEntry(entry: Entry): Promise<void> {
    entry.actor.send({ type: 'STOP' });
    await waitFor(entry.actor, (s) => !s.matches('running'), { timeout: Number.POSITIVE_INFINITY });
  }

  /** Stops every worker and periodic; resolves when all have stopped. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.values()].filter((e) => !e.internal).map((e) => this.stop(e.name)));
  }

  /**
   * Starts a worker or periodic on every live node that registers it (this one too), within
   * one control interval (at once with NATS). Unlike `enable()` nothing is kept: a node that
   * restarts starts its workers as usual. Works from a client runtime (the CLI's `drover start
   * <worker>`). Throws `InvalidArgumentError` for a malformed name; a name no node registers
   * is a no-op.
   */
  async startEverywhere(name: string): Promise<void> {
    await this.command('start', name);
  }

  /**
   * Stops a worker or periodic on every live node that registers it, within one control
   * interval; it stays stopped until started again or its node restarts (to keep it off,
   * `disable()` it). Resolves once the request is stored, not when every node has stopped it.
   */
  async stopEverywhere(name: string): Promise<void> {
    await this.command('stop', name);
  }

  private async command(op: 'start' | 'stop', name: string): Promise<void> {
    this.deps.assertOpen();
    if (typeof name !== 'string' || !NAME.test(name) || name.startsWith('drover.')) throw new InvalidArgumentError(`worker name "${String(name)}" is invalid`);
    await this.deps.db.query(this.deps.sql.addCommand, [op, name, new Date(this.deps.clock.now())]);
    if (this.commandCursor !== null) await this.syncControl();
    this.deps.announce?.(op, name);
  }

  /** `running`, `stopped`, `crashed` or `disabled` (stored as disabled, fleet wide). */
  status(name: string): WorkerStatus {
    this.entry(name);
    return (this.store.getSnapshot().context.workers[name] as WorkerEntry).status;
  }

  /** Every user worker and periodic with its status and last metric. */
  workers(): WorkerEntry[] {
    const all = this.store.getSnapshot().context.workers;
    return [...this.entries.values()].filter((e) => !e.internal).map((e) => all[e.name] as WorkerEntry);
  }

  /** The handle of a worker (the one `add()` returned). */
  worker(name: string): WorkerHandle {
    return this.entry(name).handle;
  }

  /** Enables a worker or periodic on every node (stored; applied within one control interval). */
  async enable(name: string): Promise<void> {
    await this.setEnabled(name, true);
  }

  /** Disables a worker or periodic on every node: it finishes its current call, then does not run. */
  async disable(name: string): Promise<void> {
    await this.setEnabled(name, false);
  }

  /** Pauses every periodic carrying `tag`, on every node, until `resume(tag)`. */
  async pause(tag: string): Promise<void> {
    await this.setPaused(tag, true);
  }

  /** Resumes the periodics carrying `tag`; ticks that fell while paused are not caught up. */
  async resume(tag: string): Promise<void> {
    await this.setPaused(tag, false);
  }

  /** Whether a tag is paused (as of the last control refresh on this node). */
  isPaused(tag: string): boolean {
    return this.paused.has(tag);
  }

  /**
   * Run records of a worker or periodic, newest first, a page at a time. Page by keyset (pass
   * `next` back as `before`: stable while new runs are recorded) or by offset (`offset` rows
   * skipped: page N is `{ offset: N * limit }`, for numbered pages). Both combine: `offset`
   * rows are skipped after `before`. `next` is the id of the page's last item when the page
   * is full, else null.
   *
   * Throws `InvalidArgumentError` for a `limit` that is not an integer from 1 to 1000, an
   * `offset` that is not an integer >= 0, or a `before` that is not a `next` value.
   *
   * @example
   * const { items, next } = await drover.supervisor.runs('nightly-report', { limit: 20 });
   * const third = await drover.supervisor.runs('nightly-report', { limit: 20, offset: 40 });
   */
  async runs(name: string, options: RunsOptions = {}): Promise<Page<RunRecord>> {
    this.deps.assertOpen();
    rejectUnknownKeys(options, RUNS_KEYS, 'supervisor.runs()');
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidArgumentError('limit must be an integer from 1 to 1000');
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`offset must be an integer >= 0 (got ${String(offset)})`);
    const before = options.before ?? null;
    if (before !== null && !/^\d{1,19}$/.test(before)) throw new InvalidArgumentError('before must be a `next` value from an earlier page');
    const res = await this.deps.db.query<RunRow>(this.deps.sql.runs, [name, before, limit, offset]);
    const items = res.rows.map(toRun);
    return { items, next: items.length === limit ? (items[items.length - 1] as RunRecord).id : null };
  }

  /** @internal The id of the newest run record of any worker ('0' when none): where `drover/testing` starts counting runs. */
  async lastRunId(): Promise<string> {
    return (await this.deps.db.query<{ id: string }>(this.deps.sql.lastRunId)).rows[0]?.id ?? '0';
  }

  /** @internal The finished run records of every worker after run id `after`, oldest first. */
  async runsAfter(after: string): Promise<RunRecord[]> {
    return (await this.deps.db.query<RunRow>(this.deps.sql.runsAfter, [after])).rows.map(toRun);
  }

  /** The newest run record of a worker or periodic, or null. */
  async lastRun(name: string): Promise<RunRecord | null> {
    return (await this.runs(name, { limit: 1 })).items[0] ?? null;
  }

  /** @internal Adds a queue poller as a child actor; it starts at once. */
  addService(name: string, service: Service): void {
    this.root.send({ type: 'ADD', name, logic: serviceMachine, input: service });
    this.services.set(name, this.root.getSnapshot().children[name] as AnyActorRef);
  }

  /** @internal Runs the supervisor: control state, heartbeat, engine, every worker. */
  async run(): Promise<void> {
    this.root.send({ type: 'START' });
    const s = await waitFor(this.root, (snap) => snap.matches('running') || snap.matches('stopped') || snap.matches('draining'), {
      timeout: Number.POSITIVE_INFINITY,
    });
    if (!s.matches('running')) throw s.context.error ?? new Error('drover: the supervisor did not start');
  }

  /** @internal Drains: stop claiming, let work in flight finish (up to shutdownGrace), release leases. */
  async shutdown(): Promise<void> {
    if (this.root.getSnapshot().status !== 'active') return;
    this.root.send({ type: 'DRAIN' });
    await waitFor(this.root, (snap) => snap.matches('stopped'), { timeout: Number.POSITIVE_INFINITY });
  }

  private async boot(): Promise<void> {
    this.commandCursor = (await this.deps.db.query<{ id: string }>(this.deps.sql.lastCommand)).rows[0]?.id ?? '0';
    await this.syncControl();
    await this.heartbeat();
    await this.deps.bootEngine();
    for (const e of this.entries.values()) e.actor.send({ type: 'START' });
    this.deps.logger.info({ node: this.deps.node, workers: this.workers().map((w) => w.name) }, 'drover: supervisor running');
  }

  private async drain(): Promise<void> {
    const { logger, shutdownGraceMs } = this.deps;
    await Promise.all(
      [...this.services.values()].map((ref) => {
        ref.send({ type: 'STOP' });
        return waitFor(ref, (s) => s.status === 'done', { timeout: Number.POSITIVE_INFINITY });
      }),
    );
    const stopped = await Promise.race([this.stopAll().then(() => 'ok' as const), timeout(shutdownGraceMs)]);
    if (stopped === 'timeout') {
      logger.warn({ still: this.workers().filter((w) => w.status === 'running').map((w) => w.name) }, 'drover: workers still running after shutdownGrace');
    }
    await this.deps.drainEngine();
    await Promise.all([...this.entries.values()].filter((e) => e.internal).map((e) => this.stopEntry(e)));
    for (const e of this.entries.values()) e.hub.end();
    try {
      await this.deps.db.query(this.deps.sql.removeNode, [this.deps.node]);
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'drover: could not remove the node row; it ages out');
    }
  }

  private entry(name: string): Entry {
    const entry = this.entries.get(name);
    if (!entry || entry.internal) throw new WorkerNotFoundError(name);
    return entry;
  }

  /** @internal Adds an engine actor (`drover.*`) that runs `tick` every `intervalMs` while the supervisor runs. */
  addEvery(name: string, intervalMs: number, tick: () => Promise<void>): void {
    this.addHousekeeping(
      name,
      async () => {
        await tick();
        return none(intervalMs);
      },
      Math.min(1000, intervalMs),
    );
  }

  /**
   * @internal Adds an engine actor (`drover.*`) that starts and stops with the supervisor.
   * The handle's `wake()` cuts its idle sleep short (the relay after a commit).
   */
  addHousekeeping(name: string, handler: WorkerHandler, panicBackoffMs = 1000): { wake(): void } {
    this.spawn(name, 'worker', true, { handler, maxPanicAttempts: 0, panicBackoffMs });
    return { wake: () => this.entries.get(name)?.actor.send({ type: 'WAKE' }) };
  }

  /** @internal The periodics whose handler is running now (what `drover/testing`'s drain waits for). */
  busyPeriodics(): string[] {
    return [...this.entries.values()].filter((e) => e.kind === 'periodic' && e.actor.getSnapshot().matches({ running: 'calling' })).map((e) => e.name);
  }

  /** @internal The earliest next tick of a running periodic (epoch ms), or null: where `drover/testing` stops the clock. */
  nextPeriodicAt(): number | null {
    let next: number | null = null;
    for (const e of this.entries.values()) {
      if (e.kind !== 'periodic' || !e.about || !e.actor.getSnapshot().matches('running')) continue;
      const at = e.about.next();
      if (at !== null && (next === null || at < next)) next = at;
    }
    return next;
  }

  /** @internal Re-reads control state now (a control message from another node). */
  refreshControl(): void {
    this.syncControl().catch((err: unknown) => this.deps.logger.warn({ err: errorMessage(err) }, 'drover: control refresh failed'));
  }

  private spawn(
    name: string,
    kind: WorkerEntry['kind'],
    internal: boolean,
    input: Pick<WorkerInput, 'handler' | 'maxPanicAttempts' | 'panicBackoffMs' | 'around' | 'drain' | 'onRun' | 'onHalt'>,
    about?: PeriodicAbout,
  ): WorkerHandle {
    const hub = new MetricsHub();
    this.store.trigger.registered({ name, kind });
    const full: WorkerInput = {
      ...input,
      name,
      logger: this.deps.logger,
      metrics: hub,
      disabled: !internal && this.disabled.has(name),
      emit: (event) => {
        hub.publish(event);
        this.store.trigger.metric({ name, metric: event });
        if (event.kind === 'lifecycle' && event.event !== 'started') hub.end();
      },
    };
    this.root.send({ type: 'ADD', name, logic: workerMachine, input: full });
    const actor = this.root.getSnapshot().children[name] as unknown as WorkerActor;
    actor.subscribe((s) => this.store.trigger.status({ name, status: workerStatus(s), panics: s.context.panics }));
    const handle: WorkerHandle = { name, metrics: () => hub.iterate(), lastMetric: () => hub.last };
    this.entries.set(name, { name, kind, internal, actor, hub, handle, about });
    return handle;
  }

  private async recorded(name: string, call: () => Promise<HandlerResult>): Promise<HandlerResult> {
    const { db, sql, clock, node, logger } = this.deps;
    const finish = async (id: string | undefined, status: 'succeeded' | 'failed', error: unknown) => {
      if (!id) return;
      try {
        await db.query(sql.finishRun, [id, status, new Date(clock.now()), null, error ? JSON.stringify(serializeError(error)) : null]);
      } catch (err) {
        logger.warn({ worker: name, err: errorMessage(err) }, 'drover: could not finish a run record');
      }
    };
    let id: string | undefined;
    try {
      id = (await db.query<{ id: string }>(sql.startCall, [name, new Date(clock.now()), node])).rows[0]?.id;
    } catch (err) {
      logger.warn({ worker: name, err: errorMessage(err) }, 'drover: could not start a run record');
    }
    let result: HandlerResult;
    try {
      result = await call();
    } catch (err) {
      await finish(id, 'failed', err);
      throw err;
    }
    // A call that found no work leaves no record.
    if (result.kind === 'none' && id) await db.query(sql.deleteRun, [id]).catch(() => {});
    else await finish(id, result.kind === 'fail' ? 'failed' : 'succeeded', result.kind === 'fail' ? result.error : null);
    return result;
  }

  private async setEnabled(name: string, enabled: boolean): Promise<void> {
    this.deps.assertOpen();
    if (typeof name !== 'string' || !NAME.test(name)) throw new InvalidArgumentError(`worker name "${String(name)}" is invalid`);
    await this.deps.db.query(this.deps.sql.setEnabled, [name, enabled, new Date(this.deps.clock.now())]);
    await this.syncControl();
    this.deps.announce?.(enabled ? 'enable' : 'disable', name);
  }

  private async setPaused(tag: string, paused: boolean): Promise<void> {
    this.deps.assertOpen();
    if (typeof tag !== 'string' || !TAG.test(tag)) throw new InvalidArgumentError(`tag "${String(tag)}" is invalid: use 1-200 letters, digits or _.:-`);
    await this.deps.db.query(this.deps.sql.setPaused, [tag, paused, new Date(this.deps.clock.now())]);
    await this.syncControl();
    this.deps.announce?.(paused ? 'pause' : 'resume', tag);
  }

  private controlSync: Promise<void> = Promise.resolve();

  /** Reads control state and applies it, one read at a time (start/stop commands apply in order). */
  private syncControl(): Promise<void> {
    const next = this.controlSync.catch(() => {}).then(() => this.readControl());
    this.controlSync = next;
    return next;
  }

  /** Reads enable/disable, paused tags and new start/stop commands, and applies them to the actors. */
  private async readControl(): Promise<void> {
    const row = (await this.deps.db.query<{ disabled: string[]; paused: string[] }>(this.deps.sql.controlState)).rows[0];
    this.disabled = new Set(row?.disabled ?? []);
    this.paused = new Set(row?.paused ?? []);
    for (const e of this.entries.values()) {
      if (e.internal) continue;
      const want = this.disabled.has(e.name);
      if (want !== e.actor.getSnapshot().context.disabled) e.actor.send({ type: want ? 'DISABLE' : 'ENABLE' });
    }
    if (this.commandCursor === null) return; // not booted: a client runtime has no workers to command
    const commands = await this.deps.db.query<{ id: string; op: 'start' | 'stop'; name: string }>(this.deps.sql.commandsAfter, [this.commandCursor]);
    for (const c of commands.rows) {
      this.commandCursor = c.id;
      const entry = this.entries.get(c.name);
      if (!entry || entry.internal || !this.root.getSnapshot().matches('running')) continue;
      entry.actor.send({ type: c.op === 'start' ? 'START' : 'STOP' });
    }
  }

  private async heartbeat(): Promise<void> {
    const { db, sql, node, clock } = this.deps;
    await db.query(sql.heartbeat, [node, hostname(), process.pid, this.startedAt, new Date(clock.now()), JSON.stringify(this.ownWorkers())]);
  }

  /** This node's user workers as a heartbeat stores them. */
  private ownWorkers(): HeartbeatWorker[] {
    const all = this.store.getSnapshot().context.workers;
    return [...this.entries.values()]
      .filter((e) => !e.internal)
      .map((e) => {
        const w = all[e.name] as WorkerEntry;
        const next = e.about?.next() ?? null;
        return {
          name: e.name,
          kind: e.kind,
          status: w.status,
          panics: w.panics,
          lastMetric: w.lastMetric ? { ...w.lastMetric, at: w.lastMetric.at.toISOString() } : null,
          schedule: e.about?.schedule ?? null,
          tags: e.about?.tags ?? [],
          nextRun: next === null ? null : new Date(next).toISOString(),
        };
      });
  }

  /**
   * Every worker and periodic on every live node: what each node reported in its last
   * heartbeat (this node's own, as of now), the stored enable flags (a disabled worker no
   * live node registers is listed too) and each one's newest run record. Works on a client
   * runtime (never started) as well, which has no workers of its own.
   *
   * @example for (const w of await drover.supervisor.fleet()) console.log(w.name, w.status, w.nodes.length, w.nextRun);
   */
  async fleet(): Promise<FleetWorker[]> {
    const { db, sql, node, clock } = this.deps;
    this.deps.assertOpen();
    const since = new Date(clock.now() - this.deps.heartbeatIntervalMs * 3);
    const [live, flags] = await Promise.all([
      db.query<{ node: string; workers: HeartbeatWorker[] }>(sql.liveWorkers, [since]),
      db.query<{ name: string; enabled: boolean }>(sql.workerFlags),
    ]);
    const running = this.root.getSnapshot().matches('running');
    const reports = live.rows.filter((r) => !(running && r.node === node));
    if (running) reports.unshift({ node, workers: this.ownWorkers() });
    const enabled = new Map(flags.rows.map((r) => [r.name, r.enabled]));
    const byName = new Map<string, FleetWorker>();
    for (const report of reports) {
      for (const w of report.workers) {
        let entry = byName.get(w.name);
        if (!entry) {
          entry = { name: w.name, kind: w.kind, enabled: enabled.get(w.name) ?? true, status: 'stopped', schedule: w.schedule, tags: w.tags, nextRun: w.nextRun ? new Date(w.nextRun) : null, nodes: [], lastRun: null };
          byName.set(w.name, entry);
        }
        const lastMetric = w.lastMetric ? ({ ...w.lastMetric, at: new Date(w.lastMetric.at) } as MetricEvent) : null;
        entry.nodes.push({ node: report.node, status: w.status, panics: w.panics, lastMetric });
      }
    }
    for (const [name, on] of enabled) {
      if (!byName.has(name)) byName.set(name, { name, kind: 'worker', enabled: on, status: 'stopped', schedule: null, tags: [], nextRun: null, nodes: [], lastRun: null });
    }
    const runs = await db.query<RunRow>(sql.lastRuns, [[...byName.keys()]]);
    for (const r of runs.rows) (byName.get(r.worker) as FleetWorker).lastRun = toRun(r);
    for (const w of byName.values()) {
      const statuses = new Set(w.nodes.map((n) => n.status));
      w.status = statuses.has('running') ? 'running' : statuses.has('crashed') ? 'crashed' : !w.enabled ? 'disabled' : 'stopped';
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private async reap(): Promise<void> {
    const { db, sql, clock, node } = this.deps;
    const now = clock.now();
    const liveSince = new Date(now - this.deps.heartbeatIntervalMs * 3);
    await db.query(sql.failLostRuns, [liveSince, new Date(now), node]);
    // A bounded batch per statement; a few in a row catch up with a busy recorded worker.
    for (let i = 0; i < 20; i++) {
      const pruned = await db.query(sql.pruneRuns, [new Date(now - this.deps.runRetentionMs)]);
      if (pruned.rowCount < 1000) break;
    }
    await db.query(sql.pruneNodes, [new Date(now - 24 * 3_600_000)]);
    await db.query(sql.pruneCommands, [new Date(now - 24 * 3_600_000)]);
  }

  /** Live nodes: those that heartbeated within three heartbeat intervals. */
  async nodes(): Promise<Array<{ id: string; host: string; pid: number; startedAt: Date; lastSeen: Date }>> {
    this.deps.assertOpen();
    const since = new Date(this.deps.clock.now() - this.deps.heartbeatIntervalMs * 3);
    const res = await this.deps.db.query<{ id: string; host: string; pid: number; started_at: Date; last_seen: Date }>(this.deps.sql.liveNodes, [since]);
    return res.rows.map((r) => ({ id: r.id, host: r.host, pid: r.pid, startedAt: r.started_at, lastSeen: r.last_seen }));
  }
}
