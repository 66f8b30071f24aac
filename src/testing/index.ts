// drover/testing: a runtime for tests of machines, on an in-memory database and a clock the test moves.

import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { TransitionMessage } from '../bus/bus.js';
import { quoteSchema } from '../db/database.js';
import { openCachedPGlite } from '../db/pglite.js';
import { DroverError, InvalidArgumentError } from '../errors.js';
import { accessOf, type RuntimeAccess } from '../runtime/access.js';
import type { AnyDurableMachine, NameOf } from '../runtime/infer.js';
import type { RuntimeOptions } from '../runtime/options.js';
import { createRuntime } from '../runtime/runtime.js';
import type { HistoryEntry, Runtime } from '../runtime/types.js';
import type { RunRecord } from '../supervisor/supervisor.js';
import { type Duration, parseDuration, TestClock } from '../time.js';

/** Options of {@link createTestRuntime}: those of `createRuntime()`, without the clock (the test runtime brings its own). */
export type TestRuntimeOptions = Omit<RuntimeOptions, 'clock'> & {
  /** Where the test clock starts. Default 2026-01-01T00:00:00Z. */
  now?: Date | number;
  /** Start the runtime (pollers, workers, periodics), so records run as the test drives them. Default true. */
  start?: boolean;
  /** How long `drain()` may take, in real time, before it gives up with a `DrainTimeoutError`. Default 10s. */
  drainTimeout?: Duration;
};

/** One committed change of a record during a `drain()` or `advance()`. */
export interface RanTransition {
  machine: string;
  id: string;
  from: string | null;
  to: string;
  /** The event's type (`xstate.after.…` for a timer, `xstate.done.actor.…` for an invocation's result). */
  event: string;
  status: TransitionMessage['status'];
  at: Date;
}

/** What a `drain()` or `advance()` ran. */
export interface DrainResult {
  /** Every committed transition, in commit order. */
  transitions: RanTransition[];
  /** Every periodic run that finished (succeeded, failed or skipped). */
  runs: RunRecord[];
}

/** The test clock of a test runtime: reading it and moving it runs what falls due. */
export interface TestRuntimeClock {
  /** The current time (epoch ms). */
  now(): number;
  /**
   * Moves time forward by `by` (`'1h'`, `'PT30M'`, ms), stopping at every due time on the way
   * (a record's timer, an invocation's retry, a periodic's tick) to run what falls due there
   * before going on, so a timer set by a timer fires too when it falls inside `by`. Resolves
   * when nothing is due any more at the new time, with what ran.
   */
  advance(by: Duration): Promise<DrainResult>;
  /** Moves time forward to `to`, as {@link advance} does. Time never moves back. */
  set(to: Date | number): Promise<DrainResult>;
}

/** A runtime for tests: a `Runtime` typed by its machines, with a clock the test moves and a way to run until nothing is due. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface TestRuntime<D extends AnyDurableMachine = any> extends Runtime<D> {
  readonly clock: TestRuntimeClock;
  /**
   * Runs until nothing is due at the current time: records with events or due timers,
   * invocations (their promises run to the end), and periodics whose tick has come. Does not
   * move the clock. Resolves with what ran; rejects with `DrainTimeoutError` when work keeps
   * coming for longer than `drainTimeout` (a machine looping on `always`, or a never-settling promise).
   */
  drain(): Promise<DrainResult>;
  /** The states a record went through, oldest first: the `to` of each history entry. */
  states(machine: NameOf<D>, id: string): Promise<string[]>;
  /** The types of the events that moved a record, oldest first (`xstate.init` first). */
  events(machine: NameOf<D>, id: string): Promise<string[]>;
  /** Stops the runtime and drops its schema (on the shared in-memory database). */
  stop(): Promise<void>;
}

/** `drain()` kept finding work for longer than `drainTimeout`. */
export class DrainTimeoutError extends DroverError {
  constructor(
    readonly timeoutMs: number,
    readonly waitingFor: string,
  ) {
    super(
      'DRAIN_TIMEOUT',
      `drain() still had work after ${timeoutMs} ms (${waitingFor}): a machine that never settles, or a promise that never resolves?`,
    );
  }
}

let shared: Promise<PGlite> | undefined;
let schemas = 0;

/**
 * One in-memory PGlite per process, shared by the test runtimes that name no database: booting
 * one costs seconds, a schema a fifth of one. It boots from the fresh cluster saved in
 * `node_modules/.cache/drover` by an earlier boot (saved there on the first).
 */
function sharedDatabase(): Promise<PGlite> {
  shared ??= openCachedPGlite(join(process.cwd(), 'node_modules', '.cache', 'drover'));
  return shared;
}

/**
 * A runtime for tests of machines, on an in-memory PGlite (one per process, a fresh schema per
 * test runtime) and a {@link TestRuntimeClock}. Records run as in production; `drain()` runs
 * until nothing is due, and `clock.advance()` moves time, firing timers and periodics on the way.
 *
 * @example
 * const t = await createTestRuntime({ machines: [order] });
 * await t.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 20 } });
 * await t.clock.advance('24h'); // the payment window passes
 * expect((await t.get('order', 'o-1'))?.state).toBe('expired');
 * await t.stop();
 */
export async function createTestRuntime<const T extends readonly AnyDurableMachine[]>(
  options: TestRuntimeOptions & { machines: T; machinesDir?: undefined },
): Promise<TestRuntime<T[number]>>;
export async function createTestRuntime(options?: TestRuntimeOptions): Promise<TestRuntime>;
export async function createTestRuntime(options: TestRuntimeOptions = {}): Promise<TestRuntime> {
  const { now, start = true, drainTimeout = '10s', ...rest } = options;
  if ('clock' in rest) throw new InvalidArgumentError('createTestRuntime(): the test runtime brings its own clock (set where it starts with `now`)');
  const drainTimeoutMs = parseDuration(drainTimeout);
  const testClock = new TestClock(now === undefined ? undefined : new Date(now).getTime());
  const ownSchema = rest.database === undefined;
  schemas += 1;
  const schema = rest.schema ?? (ownSchema ? `drover_test_${process.pid}_${schemas}` : 'drover');
  if (ownSchema) quoteSchema(schema);
  const database = rest.database ?? (await sharedDatabase());
  // No grace at stop(): it would wait on the test clock, which nothing moves once the test is over.
  const runtime = await createRuntime({ shutdownGrace: 0, ...rest, database, schema, clock: testClock });
  const access = accessOf(runtime);
  if (start) await runtime.start();
  const drain = () => drainRuntime(access, testClock, drainTimeoutMs);
  const moveTo = async (target: number): Promise<DrainResult> => {
    const result = await drain();
    for (;;) {
      const next = earliest(await access.engine.nextDue(testClock.now()), access.supervisor.nextPeriodicAt());
      if (next === null || next > target) break;
      testClock.set(Math.max(next, testClock.now() + 1));
      merge(result, await drain());
    }
    testClock.set(Math.max(target, testClock.now()));
    merge(result, await drain());
    return result;
  };
  const clock: TestRuntimeClock = {
    now: () => testClock.now(),
    advance: (by) => moveTo(testClock.now() + parseDuration(by)),
    set: (to) => moveTo(typeof to === 'number' ? to : to.getTime()),
  };
  const stop = runtime.stop.bind(runtime);
  const history = (machine: string, id: string): Promise<HistoryEntry[]> => runtime.history(machine, id);
  return Object.assign(runtime, {
    clock,
    drain,
    states: async (machine: string, id: string) => (await history(machine, id)).map((h) => h.to),
    events: async (machine: string, id: string) => (await history(machine, id)).map((h) => h.event.type),
    stop: async () => {
      // stop() waits on the clock too (a zero grace is a zero-ms timer): fire what is due at each look.
      let stopped = false;
      const stopping = stop().finally(() => {
        stopped = true;
      });
      while (!stopped) {
        testClock.set(testClock.now());
        await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS))]);
      }
      await stopping;
      if (ownSchema) await (await sharedDatabase()).exec(`DROP SCHEMA IF EXISTS ${quoteSchema(schema)} CASCADE`);
    },
  }) as TestRuntime;
}

const earliest = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

function merge(into: DrainResult, from: DrainResult): void {
  into.transitions.push(...from.transitions);
  into.runs.push(...from.runs);
}

/** Real time between looks at whether the runtime has settled. */
const SETTLE_POLL_MS = 1;

/** Runs the runtime until nothing is due at the test clock's time; see {@link TestRuntime.drain}. */
async function drainRuntime(access: RuntimeAccess, clock: TestClock, timeoutMs: number): Promise<DrainResult> {
  const { engine, supervisor } = access;
  const transitions: RanTransition[] = [];
  const off = engine.onCommitted((messages) => {
    for (const m of messages) transitions.push({ machine: m.machine, id: m.id, from: m.from, to: m.to, event: m.event.type, status: m.status, at: m.at });
  });
  const before = await supervisor.lastRunId();
  // Real time, not the test clock: this bounds a drain that never ends, whatever the clock says.
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      engine.wakeAll();
      for (;;) {
        const busy = supervisor.busyPeriodics();
        if (engine.settled() && busy.length === 0) break;
        if (Date.now() > deadline) throw new DrainTimeoutError(timeoutMs, busy.length ? `periodics running: ${busy.join(', ')}` : 'records or invocations still running');
        await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
      }
      const due = await engine.nextDue(clock.now());
      if (due === null || due > clock.now()) break;
      if (Date.now() > deadline) throw new DrainTimeoutError(timeoutMs, 'records or invocations still due');
    }
  } finally {
    off();
  }
  const runs = await supervisor.runsAfter(before);
  return { transitions, runs };
}
