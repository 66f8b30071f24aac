import { describe, expect, it } from 'vitest';
import { WakeUp } from '../../src/engine/wakeup.js';
import { TestClock } from '../../src/index.js';

describe('WakeUp on a test clock', () => {
  it('ends at the earliest due time it was told of, re-armed by an earlier one, else at the poll', async () => {
    const clock = new TestClock(0);
    const w = new WakeUp(clock);
    w.wakeAt(500);
    const first = w.sleep(1000);
    w.wakeAt(200); // earlier: re-arms
    w.wakeAt(800); // later: changes nothing
    clock.advance(199);
    expect(clock.pending).toBe(1);
    clock.advance(1);
    expect(await first).toBe('due');
    const second = w.sleep(1000);
    clock.advance(1000);
    expect(await second).toBe('poll');
  });

  it('a wake-up cuts the sleep short; one that comes before the sleep is kept for it', async () => {
    const clock = new TestClock(0);
    const w = new WakeUp(clock);
    const sleeping = w.sleep(1000);
    w.wake();
    expect(await sleeping).toBe('woken');
    w.wake();
    expect(await w.sleep(1000)).toBe('woken');
    expect(clock.pending).toBe(0);
  });

  it('a wake-up at or after the due time is reported as due, so the due work is not forgotten', async () => {
    // A clock whose timers have not fired yet although its time has passed them (a timer
    // callback queued behind other work): the wake-up comes first.
    let t = 0;
    const late = { now: () => t, setTimeout: () => 1, clearTimeout: () => {} };
    const w = new WakeUp(late);
    w.wakeAt(100);
    const sleeping = w.sleep(1000);
    t = 101;
    w.wake();
    expect(await sleeping).toBe('due');
    expect(w.nextDue).toBe(Number.POSITIVE_INFINITY);
    // A wake-up pending when a sleep starts past the due time: due too.
    w.wakeAt(200);
    w.wake();
    t = 250;
    expect(await w.sleep(1000)).toBe('due');
  });
});

describe('WakeUp told of a due time that has just passed', () => {
  it('ends its next sleep as due, not as a bare wake-up', async () => {
    // The poller learns the next due time from a query; time moves while it is out, so the
    // answer may already have passed when it arrives.
    const clock = new TestClock(1000);
    const w = new WakeUp(clock);
    w.wakeAt(999);
    expect(await w.sleep(1000)).toBe('due');
    const sleeping = w.sleep(1000);
    w.wakeAt(1000);
    expect(await sleeping).toBe('due');
  });
});
