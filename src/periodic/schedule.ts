import { Cron, CronPattern } from 'croner';
import { InvalidArgumentError, errorMessage } from '../errors.js';
import { type Duration, parseDuration } from '../time.js';

/** When a periodic job ticks: a fixed interval aligned to the Unix epoch, or a cron expression in an IANA timezone (default UTC). */
export type ScheduleSpec = { every: Duration } | { cron: string; timezone?: string };

/** A validated schedule: pure, clock-free arithmetic on epoch milliseconds. */
export interface Schedule {
  /** Human text, e.g. 'every 30s' or 'cron 0 3 * * * (Europe/London)'. */
  readonly description: string;
  /** The first tick strictly after `after` (epoch ms), as epoch ms; null if the cron has no future run. */
  next(after: number): number | null;
}

const HOUR = 3_600_000;
const UNITS: [string, number][] = [['d', 24 * HOUR], ['h', HOUR], ['m', 60_000], ['s', 1000]];

/** `every` ticks at whole multiples of the interval since 1970-01-01T00:00Z, so every node computes the same times. */
class EverySchedule implements Schedule {
  readonly description: string;
  constructor(readonly everyMs: number) {
    const [unit, size] = UNITS.find(([, ms]) => everyMs % ms === 0) ?? ['ms', 1];
    this.description = `every ${everyMs / size}${unit}`;
  }
  next(after: number): number {
    return (Math.floor(after / this.everyMs) + 1) * this.everyMs;
  }
}

/**
 * Cron ticks from croner, with one correction. Croner runs a wall time that a fall-back change
 * repeats only at its first occurrence: right for `30 1 * * *` (once a day), but it leaves an
 * hourly job a 2 h gap. So a pattern that fires in every hour (hour field `*`) also ticks in the
 * repeated hour, exactly one shift after each first-occurrence tick (vixie cron's rule for jobs
 * without a fixed hour). Spring-forward gaps are croner's: a missing wall time runs once, shifted
 * forward by the gap (01:30 on 2026-03-29 in Europe/London runs at 02:30 BST = 01:30Z).
 */
class CronSchedule implements Schedule {
  readonly description: string;
  private readonly cron: Cron;
  private readonly everyHour: boolean;
  private readonly parts: Intl.DateTimeFormat;
  constructor(pattern: string, timezone: string) {
    this.description = `cron ${pattern} (${timezone})`;
    this.everyHour = new CronPattern(pattern, timezone).hour.every((on) => on);
    this.cron = new Cron(pattern, { timezone, paused: true });
    const n = 'numeric';
    this.parts = new Intl.DateTimeFormat('en-US', { timeZone: timezone, hourCycle: 'h23', year: n, month: n, day: n, hour: n, minute: n, second: n });
  }
  /**
   * Croner's first run after `after`. Croner maps a repeated wall time to its first occurrence, so
   * asked from inside the repeated hour it answers in the past: then ask again from the repeat's end.
   */
  private croner(after: number): number | null {
    const run = this.cron.nextRun(new Date(after))?.getTime() ?? null;
    if (run === null || run > after) return run;
    const back = this.fallBack(after);
    if (back === null || after >= back.change + back.shift) throw new Error(`croner gave ${run} as the run after ${after} (${this.description})`);
    return this.croner(back.change + back.shift - 1);
  }
  /** The timezone's UTC offset in ms at `at` (second resolution). */
  private offset(at: number): number {
    const p = Object.fromEntries(this.parts.formatToParts(at).map(({ type, value }) => [type, Number(value)]));
    return Date.UTC(p.year as number, (p.month as number) - 1, p.day, p.hour, p.minute, p.second) - Math.floor(at / 1000) * 1000;
  }
  /** The fall-back change within 3 h of `at` (its first second on the new offset, and how far clocks go back), or null. */
  private fallBack(at: number): { change: number; shift: number } | null {
    const before = this.offset(at - 3 * HOUR);
    const shift = before - this.offset(at + 3 * HOUR);
    if (shift <= 0) return null;
    let [lo, hi] = [Math.floor(at / 1000) - 3 * 3600, Math.floor(at / 1000) + 3 * 3600]; // bisect in seconds: lo on the old offset, hi on the new
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      [lo, hi] = this.offset(mid * 1000) === before ? [mid, hi] : [lo, mid];
    }
    return { change: hi * 1000, shift };
  }
  next(after: number): number | null {
    const run = this.croner(after);
    const back = this.everyHour ? this.fallBack(after) : null;
    if (back === null) return run;
    // the first first-occurrence tick whose repeat (one shift later) is after `after`
    const first = this.croner(Math.max(after - back.shift, back.change - back.shift - 1));
    const repeat = first !== null && first < back.change ? first + back.shift : null;
    return repeat !== null && (run === null || repeat < run) ? repeat : run;
  }
}

/**
 * Validates a spec and builds its schedule.
 *
 * @throws InvalidArgumentError for neither or both of `every` and `cron`, an `every` that is not a
 *   duration or is under 1 s, a cron expression croner rejects, or an unknown IANA timezone.
 * @example parseSchedule({ cron: '0 3 * * *', timezone: 'Europe/London' }).next(Date.UTC(2026, 6, 1)) // 2026-07-01T02:00Z
 */
export function parseSchedule(spec: ScheduleSpec): Schedule {
  const { every, cron, timezone } = spec as { every?: Duration; cron?: string; timezone?: string };
  if ((every === undefined) === (cron === undefined)) {
    throw new InvalidArgumentError(`a schedule needs exactly one of "every" or "cron" (got ${every === undefined ? 'neither' : 'both'})`);
  }
  if (every !== undefined) {
    if (typeof every !== 'number' && typeof every !== 'string') throw new InvalidArgumentError(`schedule "every" must be a duration, got ${typeof every}`);
    const ms = parseDuration(every);
    if (!Number.isInteger(ms) || ms < 1000) throw new InvalidArgumentError(`schedule "every" must be a whole number of ms and at least 1s, got ${ms} ms`);
    return new EverySchedule(ms);
  }
  const zone = timezone ?? 'UTC';
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: zone });
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new InvalidArgumentError(`unknown timezone ${JSON.stringify(zone)} in schedule: use an IANA name such as "Europe/London"`);
  }
  const pattern = typeof cron === 'string' ? cron.trim() : '';
  try {
    const schedule = new CronSchedule(pattern, zone);
    schedule.next(0); // croner reports some errors only when it computes a run
    return schedule;
  } catch (error) {
    throw new InvalidArgumentError(`invalid cron expression ${JSON.stringify(cron)}: ${errorMessage(error)}`);
  }
}

/** The newest `count` ticks in (last, now], ascending; widens a window back from `now` so it never walks from a stale `last`. */
function newestTicks(schedule: Schedule, last: number, now: number, count: number): number[] {
  if (schedule instanceof EverySchedule) {
    const step = schedule.everyMs;
    const newest = Math.floor(now / step) * step;
    const n = Math.min(count, Math.max(0, (newest - schedule.next(last)) / step + 1));
    return Array.from({ length: n }, (_, i) => newest - (n - 1 - i) * step);
  }
  let ticks: number[] = [];
  for (let span = 1000, to = now; ticks.length < count && to > last; span *= 2) {
    const from = Math.max(last, now - span); // each round adds the ticks in (from, to], older than those found so far
    const older: number[] = [];
    for (let t = schedule.next(from); t !== null && t <= to; t = schedule.next(t)) {
      older.push(t);
      if (older.length >= 2 * count) older.splice(0, count);
    }
    ticks = older.concat(ticks).slice(-count);
    to = from;
  }
  return ticks;
}

/**
 * The ticks to run now, ascending, each <= `now` and after `last` (the scheduled time of the newest tick
 * already handled anywhere, or null if none ever was: then [] and the caller waits for `next(now)`).
 * `catchUp` 'none' returns the newest due tick only if it is within `graceMs` of `now` (due, not missed);
 * 'one' returns the newest due tick; 'all' returns every due tick, but only the newest `limit`.
 */
export function dueTicks(schedule: Schedule, last: number | null, now: number, catchUp: 'none' | 'one' | 'all', graceMs: number, limit = 1000): number[] {
  if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgumentError(`dueTicks limit must be a whole number >= 1, got ${limit}`);
  if (last === null) return [];
  const ticks = newestTicks(schedule, last, now, catchUp === 'all' ? limit : 1);
  return catchUp === 'none' ? ticks.filter((t) => now - t <= graceMs) : ticks;
}

/**
 * A random delay in [0, jitterMs), whole milliseconds, to spread nodes that wake for the same tick.
 *
 * @param random a source in [0, 1); tests pass their own.
 */
export function jitterDelay(jitterMs: number, random: () => number = Math.random): number {
  if (!Number.isFinite(jitterMs) || jitterMs < 0) throw new InvalidArgumentError(`jitter must be a finite number of ms >= 0, got ${jitterMs}`);
  return jitterMs === 0 ? 0 : Math.floor(random() * jitterMs);
}
