import { InvalidArgumentError } from './errors.js';

/** A timer handle, as a {@link Clock} hands it out. */
export type TimerHandle = unknown;

/**
 * Where drover gets the time and waits on it. Core logic asks the clock instead of calling
 * `Date.now()` or `setTimeout()`, so tests can move time by hand.
 */
export interface Clock {
  now(): number;
  /**
   * Calls `fn` once after `ms` of this clock's time. Optional: a clock with only `now()`
   * waits on real timers.
   */
  setTimeout?(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer of {@link Clock.setTimeout}. */
  clearTimeout?(handle: TimerHandle): void;
}

/** The wall clock and real timers. */
export const systemClock: Required<Clock> = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A clock with timers: the given one, with real timers where it has none. */
export function withTimers(clock: Clock): Required<Clock> {
  if (clock.setTimeout && clock.clearTimeout) return clock as Required<Clock>;
  return { now: () => clock.now(), setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout };
}

/** Resolves after `ms` on `clock` (or at once when `signal` aborts). */
export function sleep(clock: Required<Clock>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clock.clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A clock that only moves when told to: for tests of timer logic. Its timers fire, in due
 * order, when {@link TestClock.advance} or {@link TestClock.set} moves time past them.
 *
 * @example
 * const clock = new TestClock();
 * const drover = await createRuntime({ clock, machines: [order] });
 * clock.advance('24h'); // the order's paymentWindow timer fires now
 */
export class TestClock implements Required<Clock> {
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  constructor(private current = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.current;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }
  /** Timers not yet fired. */
  get pending(): number {
    return this.timers.size;
  }
  /** Moves time forward by a duration, firing the timers it passes. */
  advance(by: Duration): void {
    this.set(this.current + parseDuration(by));
  }
  /** Sets the time, firing the timers due by then (time never moves back for timers). */
  set(to: number | Date): void {
    const target = typeof to === 'number' ? to : to.getTime();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.current = Math.max(this.current, next[1].at);
      next[1].fn();
    }
    this.current = target;
  }
}

/** Milliseconds as a number, or a string: `250ms`, `30s`, `5m`, `1h`, `1d`, `1w`, or ISO 8601 `PT1H30M`. */
export type Duration = number | string;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const SHORT = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/;
const ISO = /^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/**
 * Parses a duration into milliseconds.
 *
 * @example parseDuration('30s') // 30000
 * @example parseDuration('PT1H') // 3600000
 */
export function parseDuration(input: Duration): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return input;
    throw new InvalidArgumentError(`duration ${input} must be a finite number of milliseconds >= 0`);
  }
  const text = input.trim();
  const short = SHORT.exec(text);
  if (short) return Math.round(Number(short[1]) * (UNIT_MS[short[2] as string] as number));
  const iso = ISO.exec(text);
  if (iso && text !== 'P' && !text.endsWith('T')) {
    const [, w, d, h, m, s] = iso.map((part) => Number(part ?? 0));
    return Math.round(((((w as number) * 7 + (d as number)) * 24 + (h as number)) * 60 + (m as number)) * 60_000 + (s as number) * 1000);
  }
  throw new InvalidArgumentError(`"${input}" is not a duration: use milliseconds, 30s / 5m / 1h / 1d, or ISO 8601 like PT1H`);
}
