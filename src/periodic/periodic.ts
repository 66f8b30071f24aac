import type { Database } from '../db/database.js';
import { backoffMs } from '../db/database.js';
import type { SupervisorQueries } from '../db/supervisor-queries.js';
import { DuplicateRecordError, errorMessage, InvalidArgumentError, RunTimeoutError, serializeError } from '../errors.js';
import { optionKeys, rejectUnknownKeys } from '../keys.js';
import type { Logger } from '../log.js';
import { done, type HandlerResult, none } from '../supervisor/results.js';
import { TAG } from '../supervisor/control.js';
import type { HandlerContext } from '../supervisor/worker.js';
import { type Clock, type Duration, parseDuration } from '../time.js';
import * as N from '../otel/names.js';
import type { Telemetry } from '../otel/telemetry.js';
import { dueTicks, jitterDelay, parseSchedule, type Schedule, type ScheduleSpec } from './schedule.js';

/** What a periodic's `run` gets for each tick. */
export interface PeriodicContext {
  name: string;
  /** The tick's scheduled time (before jitter): the same on every node. */
  scheduledFor: Date;
  /** 1 for the first attempt of this tick, then 2, 3… after failures. */
  attempt: number;
  /** Aborted on stop, disable, or when `timeout` runs out. */
  signal: AbortSignal;
  logger: Logger;
}

/** What `run` may return: debug text for the run record, or a machine instance to start for this tick. */
export type PeriodicResult = string | undefined | void | { start: string; input?: unknown };

/** A periodic's work for one tick. */
export type PeriodicRun = (ctx: PeriodicContext) => PeriodicResult | Promise<PeriodicResult>;

/** Options of `runtime.periodic()`. */
export interface PeriodicOptions {
  /** Each run starts up to this much after its tick, at random (spreads a fleet's load). Default 0. */
  jitter?: Duration;
  /** `skip` (default): a tick due while an earlier run is still running anywhere is recorded as skipped. `allow`: runs overlap. */
  overlap?: 'skip' | 'allow';
  /** Tags for `supervisor.pause(tag)` / `resume(tag)`. */
  tags?: readonly string[];
  /** Ticks missed while every node was down: `none` (default), `one` (the newest), or `all` (oldest first, at most 1000). */
  catchUp?: 'none' | 'one' | 'all';
  /** A run that takes longer is aborted and recorded as failed. Default: no limit. */
  timeout?: Duration;
  /** Attempts per tick; failures back off exponentially between them. Default 3. */
  maxAttempts?: number;
  /** Backoff between attempts of one tick: `{ base, max }`. Default 1s doubling up to 1m. */
  backoff?: { base?: Duration; max?: Duration };
}

/** What a periodic needs from the runtime. */
export interface PeriodicDeps {
  db: Database;
  sql: SupervisorQueries;
  clock: Clock;
  node: string;
  logger: Logger;
  /** Starts a machine instance for a tick (`{ start }` results). */
  create: (machine: string, id: string, input: unknown) => Promise<unknown>;
  /** How long a node may go without a heartbeat and still count as live. */
  liveWindowMs: number;
  /** Wraps each tick's run (and its retries) in a `drover.periodic.run` span. */
  telemetry?: Telemetry;
}

/** A periodic's settings, validated. */
export interface PeriodicConfig {
  name: string;
  schedule: Schedule;
  run: PeriodicRun;
  jitterMs: number;
  overlap: 'skip' | 'allow';
  tags: string[];
  catchUp: 'none' | 'one' | 'all';
  timeoutMs: number | undefined;
  maxAttempts: number;
  backoff: { baseMs: number; maxMs: number };
}

const PERIODIC_KEYS = optionKeys<PeriodicOptions>()(['jitter', 'overlap', 'tags', 'catchUp', 'timeout', 'maxAttempts', 'backoff']);
const BACKOFF_KEYS = optionKeys<NonNullable<PeriodicOptions['backoff']>>()(['base', 'max']);

/** Validates `runtime.periodic()` arguments; an unknown option key is an `InvalidArgumentError`. */
export function periodicConfig(name: string, spec: ScheduleSpec, run: PeriodicRun, options: PeriodicOptions = {}): PeriodicConfig {
  if (typeof run !== 'function') throw new InvalidArgumentError(`periodic "${name}": run must be a function`);
  rejectUnknownKeys(options, PERIODIC_KEYS, `periodic("${name}")`);
  rejectUnknownKeys(options.backoff, BACKOFF_KEYS, `periodic("${name}") backoff`);
  const overlap = options.overlap ?? 'skip';
  if (overlap !== 'skip' && overlap !== 'allow') throw new InvalidArgumentError(`periodic "${name}": overlap must be 'skip' or 'allow'`);
  const catchUp = options.catchUp ?? 'none';
  if (!['none', 'one', 'all'].includes(catchUp)) throw new InvalidArgumentError(`periodic "${name}": catchUp must be 'none', 'one' or 'all'`);
  const tags = [...(options.tags ?? [])];
  for (const tag of tags) if (typeof tag !== 'string' || !TAG.test(tag)) throw new InvalidArgumentError(`periodic "${name}": invalid tag "${tag}"`);
  const maxAttempts = options.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new InvalidArgumentError(`periodic "${name}": maxAttempts must be an integer >= 1`);
  return {
    name,
    schedule: parseSchedule(spec),
    run,
    jitterMs: parseDuration(options.jitter ?? 0),
    overlap,
    tags,
    catchUp,
    timeoutMs: options.timeout === undefined ? undefined : parseDuration(options.timeout),
    maxAttempts,
    backoff: { baseMs: parseDuration(options.backoff?.base ?? '1s'), maxMs: parseDuration(options.backoff?.max ?? '1m') },
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

/**
 * A periodic as a worker: each handler call runs the ticks that are due, then sleeps until the
 * next one (`none(ms)`), so stopping, disabling, panics and metrics work as for any worker.
 * A tick runs on the node whose run record insert wins the unique `(name, scheduled_for)`.
 */
export function periodicWorker(config: PeriodicConfig, deps: PeriodicDeps) {
  const { name, schedule } = config;
  let cursor: number | null = null; // the newest tick this node has handled (or decided not to)
  // Aborted when the worker is stopped or disabled: reaches runs started by earlier calls too.
  let halted = new AbortController();
  const inflight = new Set<Promise<void>>();
  // When this node's last awaited run started and ended: ticks due in between were overlapped.
  let ranFrom = Number.POSITIVE_INFINITY;
  let ranUntil = Number.NEGATIVE_INFINITY;
  // Late by up to the jitter plus timer slack is still "due now", not missed.
  const graceMs = config.jitterMs + 2000;

  const execute = async (tick: number, runId: string, stop: AbortSignal): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const controller = new AbortController();
      const onStop = () => controller.abort(stop.reason);
      stop.addEventListener('abort', onStop);
      let timer: NodeJS.Timeout | undefined;
      try {
        const run = Promise.resolve().then(() =>
          config.run({ name, scheduledFor: new Date(tick), attempt, signal: controller.signal, logger: deps.logger }),
        );
        const timeout =
          config.timeoutMs === undefined
            ? undefined
            : new Promise<never>((_, reject) => {
                timer = setTimeout(() => {
                  const err = new RunTimeoutError(name, config.timeoutMs as number);
                  controller.abort(err);
                  reject(err);
                }, config.timeoutMs);
              });
        const result = await (timeout ? Promise.race([run, timeout]) : run);
        let debug: string | null = typeof result === 'string' ? result : null;
        if (result && typeof result === 'object' && typeof result.start === 'string') {
          const id = `${name}:${new Date(tick).toISOString()}`;
          try {
            await deps.create(result.start, id, result.input);
          } catch (err) {
            if (!(err instanceof DuplicateRecordError)) throw err; // an earlier attempt started it
          }
          debug = `started ${result.start} ${id}`;
        }
        await deps.db.query(deps.sql.finishRun, [runId, 'succeeded', new Date(deps.clock.now()), debug, null]);
        return;
      } catch (err) {
        await deps.db.query(deps.sql.finishRun, [runId, 'failed', new Date(deps.clock.now()), null, JSON.stringify(serializeError(err))]);
        deps.logger.error({ periodic: name, scheduledFor: new Date(tick), attempt, err: errorMessage(err) }, 'drover: periodic run failed');
        const delay = backoffMs(attempt, config.backoff.baseMs, config.backoff.maxMs);
        const next = schedule.next(tick);
        // The next tick takes over rather than a retry that would overlap it; a timed-out
        // attempt may still be running (a promise cannot be killed), so it is not retried.
        if (err instanceof RunTimeoutError || attempt >= config.maxAttempts || stop.aborted) return;
        if (next !== null && deps.clock.now() + delay >= next) return;
        await sleep(delay, stop);
        if (stop.aborted) return;
        await deps.db.query(deps.sql.retryRun, [runId, deps.node]);
      } finally {
        clearTimeout(timer);
        stop.removeEventListener('abort', onStop);
      }
    }
  };

  const handleTick = async (tick: number, signal: AbortSignal, overlapped: boolean): Promise<void> => {
    const res = await deps.db.query<{ id: string; status: string }>(deps.sql.claimTick, [
      name,
      new Date(tick),
      new Date(deps.clock.now()),
      deps.node,
      config.tags,
      config.overlap === 'skip',
      overlapped,
      new Date(deps.clock.now() - deps.liveWindowMs),
    ]);
    const row = res.rows[0];
    if (!row || row.status !== 'running') return; // another node took it, it is disabled or paused, or skipped
    const signalNow = halted.signal;
    const work = deps.telemetry
      ? deps.telemetry.span(
          N.SPAN_PERIODIC_RUN,
          { [N.ATTR_PERIODIC]: name, [N.ATTR_SCHEDULED_FOR]: new Date(tick).toISOString(), [N.ATTR_NODE]: deps.node },
          () => execute(tick, row.id, signalNow),
        )
      : execute(tick, row.id, signalNow);
    if (config.overlap === 'allow') {
      const tracked: Promise<void> = work
        .catch((err: unknown) => deps.logger.error({ periodic: name, err: errorMessage(err) }, 'drover: periodic run could not be recorded'))
        .finally(() => inflight.delete(tracked));
      inflight.add(tracked);
    } else {
      const started = deps.clock.now();
      await work;
      ranFrom = started;
      ranUntil = deps.clock.now();
    }
  };

  const handler = async ({ signal }: HandlerContext): Promise<HandlerResult> => {
    const now = deps.clock.now();
    let ticks: number[];
    if (cursor === null) {
      const floorRow = (await deps.db.query<{ floor: Date | null; any_run: boolean }>(deps.sql.tickFloor, [name, config.tags])).rows[0];
      const floor = floorRow?.any_run && floorRow.floor ? floorRow.floor.getTime() : null;
      ticks = dueTicks(schedule, floor, now, config.catchUp, graceMs);
    } else {
      ticks = dueTicks(schedule, cursor, now, 'all', graceMs);
    }
    cursor = Math.max(cursor ?? now, now);
    for (const tick of ticks) {
      if (signal.aborted) break;
      // overlap 'skip': a tick that fell due while this node's own run was in flight is skipped.
      await handleTick(tick, signal, config.overlap === 'skip' && tick > ranFrom && tick <= ranUntil);
      cursor = Math.max(cursor, tick);
    }
    const next = schedule.next(cursor);
    if (next === null) return none(24 * 3_600_000);
    // A long run may have let the next tick come due meanwhile: look again at once.
    if (next <= deps.clock.now()) return done();
    return none(Math.max(0, next - deps.clock.now()) + jitterDelay(config.jitterMs));
  };

  return {
    handler,
    /** Waits for overlapping runs (overlap 'allow') before the worker counts as stopped. */
    drain: async () => {
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
    },
    /** Aborts every run in flight and its retries (stop, disable). */
    halt: () => {
      halted.abort();
    },
    /** On each (re)start: forget the cursor so missed ticks are looked up again from the database. */
    reset: () => {
      halted = new AbortController();
      cursor = null;
      ranFrom = Number.POSITIVE_INFINITY;
      ranUntil = Number.NEGATIVE_INFINITY;
    },
  };
}
