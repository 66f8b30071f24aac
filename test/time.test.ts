import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, parseDuration, TestClock } from '../src/index.js';

describe('parseDuration', () => {
  it.each([
    [1500, 1500],
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['2w', 1_209_600_000],
    ['1.5s', 1500],
    ['PT1H', 3_600_000],
    ['PT1H30M', 5_400_000],
    ['P1DT2H', 93_600_000],
    ['PT0.5S', 500],
    ['P2W', 1_209_600_000],
  ])('%s → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', 'soon', '5 minutes', 'P', 'PT', '-5s', 'P1H'])('rejects %j with a typed error', (input) => {
    expect(() => parseDuration(input)).toThrow(InvalidArgumentError);
  });

  it('rejects negative and non-finite numbers', () => {
    expect(() => parseDuration(-1)).toThrow(InvalidArgumentError);
    expect(() => parseDuration(Number.NaN)).toThrow(InvalidArgumentError);
  });
});

describe('TestClock', () => {
  it('moves only when told to', () => {
    const clock = new TestClock(1000);
    expect(clock.now()).toBe(1000);
    clock.advance('2s');
    expect(clock.now()).toBe(3000);
    clock.set(new Date(5000));
    expect(clock.now()).toBe(5000);
  });
});
