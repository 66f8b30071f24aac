import type { Clock, TimerHandle } from '../time.js';

/** Why a {@link WakeUp.sleep} ended. */
export type WakeReason = 'woken' | 'due' | 'poll';

/**
 * How a loop waits for work: a sleep that ends at once when something wakes it (a commit, a
 * NOTIFY, a freed slot), or at the earliest due time it was told of (a timer's `wake_at`, a
 * retry, a `runAt`), or at the poll interval, whichever comes first. The poll is only the
 * safety net for what no notification reached (clock skew, a lost NOTIFY, a crashed node's
 * lease).
 */
export class WakeUp {
  private pending = false;
  private due = Number.POSITIVE_INFINITY;
  private sleeping: { resolve: (reason: WakeReason) => void; timer: TimerHandle; until: number; poll: boolean } | undefined;

  constructor(private readonly clock: Required<Clock>) {}

  /** Work is waiting now. */
  wake(): void {
    if (this.sleeping) this.finish('woken');
    else this.pending = true;
  }

  /** Work is due at `at` (epoch ms): the sleep ends then, unless something ends it before. */
  wakeAt(at: number): void {
    if (!Number.isFinite(at)) return;
    // Kept even when it has passed already (time moves while a probe is out): the sleep then
    // ends as 'due', so the caller looks at what is due instead of taking it for a bare wake.
    if (at < this.due) this.due = at;
    if (!this.sleeping || at >= this.sleeping.until) return;
    if (at <= this.clock.now()) this.finish('due');
    else this.arm(at, false);
  }

  /** Whether the loop is waiting in {@link sleep} with nothing told to it since. */
  get asleep(): boolean {
    return this.sleeping !== undefined && !this.pending;
  }

  /** The earliest due time it knows of (Infinity: none). */
  get nextDue(): number {
    return this.due;
  }

  /** Forgets the due times it knows: the caller is about to read them afresh from the database. */
  forgetDue(): void {
    this.due = Number.POSITIVE_INFINITY;
  }

  /** Waits until woken, the earliest due time, or `pollMs`. */
  sleep(pollMs: number): Promise<WakeReason> {
    const now = this.clock.now();
    // A due time that has passed wins over any other reason: the caller must look at it.
    if (this.due <= now) {
      this.pending = false;
      this.due = Number.POSITIVE_INFINITY;
      return Promise.resolve('due');
    }
    if (this.pending) {
      this.pending = false;
      return Promise.resolve('woken');
    }
    return new Promise((resolve) => {
      this.sleeping = { resolve, timer: undefined, until: Number.POSITIVE_INFINITY, poll: true };
      const poll = now + pollMs;
      this.arm(Math.min(poll, this.due), poll <= this.due);
    });
  }

  private arm(until: number, poll: boolean): void {
    const s = this.sleeping;
    if (!s) return;
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer);
    s.until = until;
    s.poll = poll;
    s.timer = this.clock.setTimeout(() => this.finish(s.poll ? 'poll' : 'due'), Math.max(0, until - this.clock.now()));
  }

  private finish(reason: WakeReason): void {
    const s = this.sleeping;
    if (!s) return;
    this.sleeping = undefined;
    this.pending = false;
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer);
    // Woken (or polled) at or after the due time: report it as due, or it would be forgotten
    // with nobody looking at it (seen: a wake-up 1 ms after the due time lost a timer).
    if (this.due <= this.clock.now()) reason = 'due';
    if (reason === 'due') this.due = Number.POSITIVE_INFINITY;
    s.resolve(reason);
  }
}
