import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { dueTicks, jitterDelay, parseSchedule, type Schedule, type ScheduleSpec } from '../../src/periodic/schedule.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The ticks in (from, to], walked with next(); fails (rather than hangs) if next() does not move forward. */
function ticks(schedule: Schedule, from: number, to: number): number[] {
  const out: number[] = [];
  for (let prev = from, t = schedule.next(from); t !== null && t <= to; prev = t, t = schedule.next(t)) {
    if (t <= prev || out.length >= 1000) throw new Error(`next(${iso(prev)}) gave ${iso(t)} after ${out.length} ticks`);
    out.push(t);
  }
  return out;
}

function rejects(spec: unknown, message: RegExp): void {
  expect(() => parseSchedule(spec as ScheduleSpec)).toThrow(InvalidArgumentError);
  expect(() => parseSchedule(spec as ScheduleSpec)).toThrow(message);
}

describe('parseSchedule: every', () => {
  it('ticks at multiples of the interval since the Unix epoch, strictly after `after`', () => {
    const s = parseSchedule({ every: '30s' });
    expect(s.description).toBe('every 30s');
    const t = Date.UTC(2026, 0, 1, 12, 0, 0);
    expect(s.next(t - 1)).toBe(t);
    expect(s.next(t)).toBe(t + 30_000);
    expect(s.next(t + 1)).toBe(t + 30_000);
    expect(s.next(t + 29_999)).toBe(t + 30_000);
    // 7 s does not divide a minute: still aligned to the epoch, not to the minute or to `after`
    const seven = parseSchedule({ every: 7000 });
    expect(seven.next(0)).toBe(7000);
    expect(seven.next(Date.UTC(2026, 0, 1, 0, 0, 1))).toBe(Date.UTC(2026, 0, 1, 0, 0, 7)); // 2026-01-01T00:00Z = 252460800 × 7 s
    expect(seven.next(Date.UTC(2026, 0, 1, 0, 1))).toBe(Date.UTC(2026, 0, 1, 0, 1, 3)); // 00:01:00 is 8 × 7 s + 4 s past it
  });

  it('describes the interval in its largest whole unit', () => {
    expect(parseSchedule({ every: 'PT1H' }).description).toBe('every 1h');
    expect(parseSchedule({ every: 90_000 }).description).toBe('every 90s');
    expect(parseSchedule({ every: '1d' }).description).toBe('every 1d');
    expect(parseSchedule({ every: 1500 }).description).toBe('every 1500ms');
  });
});

describe('parseSchedule: bad input', () => {
  it('names the problem in a typed error', () => {
    rejects({}, /exactly one of "every" or "cron" \(got neither\)/);
    rejects({ every: '1m', cron: '* * * * *' }, /exactly one of "every" or "cron" \(got both\)/);
    rejects({ every: '500ms' }, /at least 1s, got 500 ms/);
    rejects({ every: 999 }, /at least 1s/);
    rejects({ every: 'soon' }, /"soon" is not a duration/);
    rejects({ every: -5 }, /duration -5 must be/);
    rejects({ every: {} }, /"every" must be a duration, got object/);
    // croner's own message is kept
    rejects({ cron: 'bad' }, /invalid cron expression "bad": .*exactly five, six, or seven space separated parts/);
    rejects({ cron: '61 * * * *' }, /invalid cron expression "61 \* \* \* \*": .*Invalid value for minute: 61/);
    rejects({ cron: '2026-01-01T00:00:00' }, /invalid cron expression/); // croner would take this as a one-off date
    rejects({ cron: '0 3 * * *', timezone: 'Mars/Base' }, /unknown timezone "Mars\/Base".*IANA/);
    rejects({ cron: '0 3 * * *', timezone: '' }, /unknown timezone ""/);
  });
});

describe('parseSchedule: cron', () => {
  it('defaults to UTC and is strictly after `after` at millisecond edges', () => {
    const daily = parseSchedule({ cron: '0 3 * * *' });
    expect(daily.description).toBe('cron 0 3 * * * (UTC)');
    const t = Date.UTC(2026, 0, 1, 3);
    expect(daily.next(t - 1)).toBe(t);
    expect(daily.next(t)).toBe(t + 24 * HOUR);
    expect(daily.next(t + 1)).toBe(t + 24 * HOUR);
    const everySecond = parseSchedule({ cron: '* * * * * *' });
    expect(everySecond.next(t - 1)).toBe(t);
    expect(everySecond.next(t)).toBe(t + 1000);
    expect(everySecond.next(t + 1)).toBe(t + 1000);
    expect(everySecond.next(t + 999)).toBe(t + 1000);
  });

  it('returns null when the cron has no future run', () => {
    expect(parseSchedule({ cron: '0 0 0 1 1 * 2027' }).next(Date.UTC(2026, 5, 1))).toBe(Date.UTC(2027, 0, 1));
    expect(parseSchedule({ cron: '0 0 0 1 1 * 2027' }).next(Date.UTC(2027, 0, 1))).toBeNull();
    expect(parseSchedule({ cron: '0 0 30 2 *' }).next(Date.UTC(2026, 0, 1))).toBeNull();
  });

  it('0 3 * * * Europe/London is 03:00 UTC in winter and 02:00 UTC in summer', () => {
    const s = parseSchedule({ cron: '0 3 * * *', timezone: 'Europe/London' });
    expect(s.description).toBe('cron 0 3 * * * (Europe/London)');
    expect(iso(s.next(Date.UTC(2026, 0, 15)))).toBe('2026-01-15T03:00:00.000Z');
    expect(iso(s.next(Date.UTC(2026, 6, 15)))).toBe('2026-07-15T02:00:00.000Z');
  });

  it('30 1 * * * Europe/London runs once on the spring-forward day, whose 01:30 does not exist', () => {
    const s = parseSchedule({ cron: '30 1 * * *', timezone: 'Europe/London' });
    // Observed: croner moves the missing 01:30 forward by the gap, to 02:30 BST = 01:30Z, so the
    // job runs exactly once that day (croner's README says such runs are skipped; they are not).
    expect(ticks(s, Date.UTC(2026, 2, 27), Date.UTC(2026, 2, 31)).map(iso)).toEqual([
      '2026-03-27T01:30:00.000Z', // 01:30 GMT
      '2026-03-28T01:30:00.000Z', // 01:30 GMT
      '2026-03-29T01:30:00.000Z', // 02:30 BST: 01:30 local was skipped by the clocks
      '2026-03-30T00:30:00.000Z', // 01:30 BST
    ]);
  });

  it('30 1 * * * Europe/London runs once on the fall-back day, whose 01:30 happens twice', () => {
    const s = parseSchedule({ cron: '30 1 * * *', timezone: 'Europe/London' });
    // Observed: croner takes the first occurrence (01:30 BST = 00:30Z) and skips 01:30 GMT = 01:30Z.
    expect(ticks(s, Date.UTC(2026, 9, 24), Date.UTC(2026, 9, 27)).map(iso)).toEqual([
      '2026-10-24T00:30:00.000Z',
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
    ]);
    // asked from inside the repeated hour (01:10 GMT), the answer is in the future, not 00:30Z
    expect(iso(s.next(Date.UTC(2026, 9, 25, 1, 10)))).toBe('2026-10-26T01:30:00.000Z');
  });

  it('an hourly cron ticks exactly 1 h apart in UTC across both DST changes', () => {
    const s = parseSchedule({ cron: '0 * * * *', timezone: 'Europe/London' });
    for (const from of [Date.UTC(2026, 2, 28, 22), Date.UTC(2026, 9, 24, 22)]) {
      const got = ticks(s, from, from + 8 * HOUR);
      expect(got).toEqual(Array.from({ length: 8 }, (_, i) => from + (i + 1) * HOUR));
    }
    // and so does every 15 minutes, through the repeated hour 01:00-02:00 of 2026-10-25
    const quarter = parseSchedule({ cron: '*/15 * * * *', timezone: 'Europe/London' });
    const from = Date.UTC(2026, 9, 24, 23);
    expect(ticks(quarter, from, from + 4 * HOUR)).toEqual(Array.from({ length: 16 }, (_, i) => from + (i + 1) * 15 * MIN));
    expect(iso(quarter.next(Date.UTC(2026, 9, 25, 1, 0)))).toBe('2026-10-25T01:15:00.000Z');
  });
});

describe('dueTicks', () => {
  const t0 = Date.UTC(2026, 4, 1, 10, 0);
  const minutely = parseSchedule({ every: '1m' });
  const hourly = parseSchedule({ cron: '0 * * * *' });
  // five missed minutes, t0+1m … t0+5m, and now 30 s after the newest
  const now = t0 + 5 * MIN + 30_000;

  it('never catches up when nothing was ever handled', () => {
    for (const policy of ['none', 'one', 'all'] as const) expect(dueTicks(minutely, null, now, policy, MIN)).toEqual([]);
  });

  it('every: each catch-up policy', () => {
    const at = (...m: number[]) => m.map((n) => t0 + n * MIN);
    expect(dueTicks(minutely, t0, now, 'all', 0)).toEqual(at(1, 2, 3, 4, 5));
    expect(dueTicks(minutely, t0, now, 'all', 0, 3)).toEqual(at(3, 4, 5));
    expect(dueTicks(minutely, t0, now, 'one', 0)).toEqual(at(5));
    expect(dueTicks(minutely, t0, now, 'none', MIN)).toEqual(at(5)); // 30 s late: due, not missed
    expect(dueTicks(minutely, t0, now, 'none', 30_000)).toEqual(at(5)); // grace is inclusive
    expect(dueTicks(minutely, t0, now, 'none', 29_999)).toEqual([]);
    expect(dueTicks(minutely, t0 + 5 * MIN, now, 'all', 0)).toEqual([]); // newest already handled
    expect(dueTicks(minutely, t0 + 30_000, now, 'all', 0)).toEqual(at(1, 2, 3, 4, 5)); // `last` off the grid
    expect(dueTicks(minutely, t0, t0 + 5 * MIN, 'none', 0)).toEqual(at(5)); // now exactly on a tick
  });

  it('every: a year behind on a 1 s interval is computed, not walked', () => {
    const s = parseSchedule({ every: '1s' });
    const n = Date.UTC(2026, 4, 1, 10, 0, 0, 250);
    const last = n - 365 * 24 * HOUR;
    const newest = Date.UTC(2026, 4, 1, 10, 0, 0);
    expect(dueTicks(s, last, n, 'one', 0)).toEqual([newest]);
    const all = dueTicks(s, last, n, 'all', 0);
    expect(all).toHaveLength(1000);
    expect(all[0]).toBe(newest - 999_000);
    expect(all[999]).toBe(newest);
  });

  it('cron: each catch-up policy', () => {
    const at = (...h: number[]) => h.map((n) => Date.UTC(2026, 4, 1, n));
    const last = Date.UTC(2026, 4, 1, 10);
    const n = Date.UTC(2026, 4, 1, 13, 20);
    expect(dueTicks(hourly, last, n, 'all', 0)).toEqual(at(11, 12, 13));
    expect(dueTicks(hourly, last, n, 'all', 0, 2)).toEqual(at(12, 13));
    expect(dueTicks(hourly, last, n, 'one', 0)).toEqual(at(13));
    expect(dueTicks(hourly, last, n, 'none', 30 * MIN)).toEqual(at(13));
    expect(dueTicks(hourly, last, n, 'none', 10 * MIN)).toEqual([]);
    expect(dueTicks(hourly, Date.UTC(2026, 4, 1, 13), n, 'all', 0)).toEqual([]);
  });

  it('cron: a year behind on a daily cron gives the newest tick or the newest `limit`', () => {
    const daily = parseSchedule({ cron: '0 3 * * *' });
    const n = Date.UTC(2026, 4, 1, 12);
    const last = Date.UTC(2025, 4, 1, 3);
    expect(dueTicks(daily, last, n, 'one', 0)).toEqual([Date.UTC(2026, 4, 1, 3)]);
    expect(dueTicks(daily, last, n, 'all', 0, 3)).toEqual([Date.UTC(2026, 3, 29, 3), Date.UTC(2026, 3, 30, 3), Date.UTC(2026, 4, 1, 3)]);
    expect(dueTicks(daily, last, n, 'all', 0)).toHaveLength(365);
  });

  it('cron: catches up through the repeated hour of a fall-back change', () => {
    const london = parseSchedule({ cron: '0 * * * *', timezone: 'Europe/London' });
    const got = dueTicks(london, Date.UTC(2026, 9, 24, 23), Date.UTC(2026, 9, 25, 2, 30), 'all', 0);
    expect(got.map(iso)).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z']);
  });

  it('works on any Schedule, however uneven its ticks', () => {
    // ticks at 1, 2, 4, 8, … 2^k ms: the search window has to widen many times
    const doubling: Schedule = {
      description: 'powers of two',
      next: (after) => {
        let t = 1;
        while (t <= after) t *= 2;
        return t;
      },
    };
    expect(dueTicks(doubling, 3, 100, 'all', 0)).toEqual([4, 8, 16, 32, 64]);
    expect(dueTicks(doubling, 0, 3 * 2 ** 39, 'one', 0)).toEqual([2 ** 40]);
    expect(dueTicks(doubling, 0, 3 * 2 ** 39, 'all', 0, 2)).toEqual([2 ** 39, 2 ** 40]);
    expect(dueTicks(doubling, 2 ** 39, 3 * 2 ** 39, 'all', 0)).toEqual([2 ** 40]);
  });

  it('rejects a limit below 1', () => {
    expect(() => dueTicks(minutely, t0, now, 'all', 0, 0)).toThrow(InvalidArgumentError);
  });
});

describe('jitterDelay', () => {
  it('maps random() in [0, 1) to whole ms in [0, jitterMs)', () => {
    expect(jitterDelay(1000, () => 0)).toBe(0);
    expect(jitterDelay(1000, () => 0.5)).toBe(500);
    expect(jitterDelay(1000, () => 0.999_999_999)).toBe(999);
    expect(jitterDelay(0, () => 0.7)).toBe(0);
    for (let i = 0; i < 1000; i++) {
      const d = jitterDelay(50);
      expect(Number.isInteger(d) && d >= 0 && d < 50).toBe(true);
    }
  });

  it('rejects a negative or non-finite jitter', () => {
    expect(() => jitterDelay(-1)).toThrow(InvalidArgumentError);
    expect(() => jitterDelay(Number.NaN)).toThrow(InvalidArgumentError);
  });
});
