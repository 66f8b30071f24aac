import { InvalidArgumentError } from './errors.js';

/**
 * Where drover gets the time. Core logic asks the clock instead of calling `Date.now()`, so
 * tests can move time by hand.
 */
export interface Clock {
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to: for tests of timer logic. */
export class TestClock implements Clock {
  constructor(private current = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.current;
  }
  /** Moves time forward by a duration. */
  advance(by: Duration): void {
    this.current += parseDuration(by);
  }
  /** Sets the time. */
  set(to: number | Date): void {
    this.current = typeof to === 'number' ? to : to.getTime();
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
