import { type AnyActorLogic, createActor } from 'xstate';
import { backoffMs, isLockTimeout, isTransientError } from '../db/database.js';
import { OutageLog } from '../db/outage.js';
import type { InvocationRow } from '../db/queries.js';
import { errorMessage, serializeError, UnstorableValueError } from '../errors.js';
import { storageProblem } from '../record/check.js';
import { JobCancelledError } from '../record/durable.js';
import { sleep } from '../time.js';
import type { EngineContext } from './context.js';
import { recordKey } from './records.js';

interface Running {
  row: InvocationRow;
  queue: string;
  actor: { stop(): void };
  aborted: boolean;
}

/** The longest wait before a result whose record is locked is written again. */
const HELD_RESULT_RETRY_MAX_MS = 1000;
/** After how many tries a result whose record stays locked is logged. */
const HELD_RESULT_WARN_AFTER = 8;

interface Completion {
  machine: string;
  instance_id: string;
  invoke_id: string;
  token: string;
  event: Record<string, unknown>;
  n: number;
  /** The attempts it failed, when the result is its final error (what `get().attempt` shows). */
  failed_attempt: number | null;
  /** How many times its record was found locked by another write (see {@link Invoker.holdBack}). */
  held?: number;
}

/** The attempts an invocation failed, when `event` is its final error; null for a result. */
export function failedAttempts(row: InvocationRow, event: Record<string, unknown>): number | null {
  return typeof event.type === 'string' && event.type.startsWith('xstate.error.actor.') ? row.attempt : null;
}

const keyOf = (machine: string, instanceId: string, invokeId: string) => `${machine}\u0000${instanceId}\u0000${invokeId}`;

/** How the invoker reaches the pollers, given once at construction. */
export interface InvokerHooks {
  /** A finished invocation's result: its queue's poller steps it at once when it can (false: it goes to the inbox). */
  fuse(queue: string, row: InvocationRow, event: Record<string, unknown>): boolean;
  /** Results went to the inboxes of records of `queue`: its poller has work now. */
  inboxed(queue: string): void;
  /** Room freed up (an invocation finished or was dropped): invocations left for a claim can be taken now. */
  roomFreed(): void;
  /** A failed attempt was scheduled to run again at `at`: its poller arms a timer for it. */
  retryAt(queue: string, at: number): void;
}

/**
 * Runs invoked promise actors outside any record step. At most `concurrency` run at once;
 * up to twice `batchSize` more that this node holds (claimed, or spawned by its own steps) wait in
 * a local queue for a slot, so a slot that frees is filled at once, without a claim. Each
 * held invocation has its own lease, renewed by a heartbeat; its result goes back to the
 * record (fused into a step, or as an inbox event `xstate.done.actor.<id>` /
 * `xstate.error.actor.<id>`). Completions are batched: whatever finished while one batch was
 * being written goes in the next.
 */
export class Invoker {
  private readonly running = new Map<string, Running>();
  /** Held here, waiting for a slot, in arrival order. */
  private readonly waiting = new Map<string, { row: InvocationRow; queue: string }>();
  private reserved = 0;
  private pending: Completion[] = [];
  /** Results put off because their record was locked (see {@link holdBack}): their invocations keep their leases meanwhile. */
  private readonly heldResults = new Set<Completion>();
  private flushing: Promise<void> | undefined;
  private heartbeatTimer: unknown;
  private stopped = false;
  private counter = 0;
  private idle: Array<() => void> = [];
  private readonly perRecord = new Map<string, number>();

  /** The heartbeat and result writes say once that the database is away, not on every try. */
  private readonly outage: OutageLog;

  constructor(
    private readonly ctx: EngineContext,
    private readonly hooks: InvokerHooks,
  ) {
    this.outage = new OutageLog(ctx.logger, { component: 'invoker' }, () => ctx.clock.now());
  }

  /** How many invocations this node holds at most: running, waiting for a slot, or reserved by a step in flight. */
  private get capacity(): number {
    return this.ctx.concurrency + 2 * this.ctx.batchSize;
  }

  /** Whether it holds anything: an invocation running or waiting for a slot, a reservation, or a result not yet written. */
  get busy(): boolean {
    return this.running.size + this.waiting.size + this.reserved + this.pending.length + this.heldResults.size > 0 || this.flushing !== undefined;
  }

  /** How many more invocations this node can take on (claim, or own when its steps spawn them). */
  room(): number {
    return Math.max(0, this.capacity - this.running.size - this.waiting.size - this.reserved);
  }

  /** Whether a claim is worth it now: nothing waits for a slot, or a good part of the room is free. */
  wantsWork(): boolean {
    const room = this.room();
    return room > 0 && (this.waiting.size === 0 || room >= Math.ceil(this.capacity / 4));
  }

  /** Reserves room for an invocation a step is about to spawn; false when there is none (it is then left for a claim). */
  reserve(): boolean {
    if (this.room() <= 0) return false;
    this.reserved += 1;
    return true;
  }

  unreserve(): void {
    this.reserved = Math.max(0, this.reserved - 1);
    this.hooks.roomFreed();
  }

  /** Invocations of one record running here. */
  runningFor(machine: string, instanceId: string): number {
    return this.perRecord.get(recordKey(machine, instanceId)) ?? 0;
  }

  private track(row: InvocationRow, delta: number): void {
    const key = recordKey(row.machine, row.instance_id);
    const n = (this.perRecord.get(key) ?? 0) + delta;
    if (n > 0) this.perRecord.set(key, n);
    else this.perRecord.delete(key);
  }

  startHeartbeat(): void {
    this.stopped = false;
    const every = Math.max(50, Math.floor(this.ctx.leaseMs / 3));
    const beat = () => {
      this.heartbeatTimer = this.ctx.clock.setTimeout(() => {
        void this.heartbeat().finally(() => {
          if (!this.stopped) beat();
        });
      }, every);
      (this.heartbeatTimer as { unref?: () => void }).unref?.();
    };
    beat();
  }

  /**
   * Takes on a claimed (or just spawned and reserved) invocation: it starts now if a slot is
   * free, else it waits here for one, its lease kept by the heartbeat.
   */
  start(row: InvocationRow, queue: string, fromReservation = false): void {
    if (fromReservation) this.reserved = Math.max(0, this.reserved - 1);
    const key = keyOf(row.machine, row.instance_id, row.invoke_id);
    // A newer start of the same invocation (the record entered the state again) replaces one
    // still waiting here.
    const waiting = this.waiting.get(key);
    if (waiting) {
      this.waiting.delete(key);
      this.track(waiting.row, -1);
    }
    if (this.running.size >= this.ctx.concurrency && !this.running.has(key)) {
      this.track(row, 1);
      this.waiting.set(key, { row, queue });
      return;
    }
    this.run(key, row, queue);
  }

  /** Starts the invocations waiting here while slots are free. */
  private fill(): void {
    for (const [key, next] of this.waiting) {
      if (this.stopped || this.running.size >= this.ctx.concurrency) break;
      this.waiting.delete(key);
      this.track(next.row, -1);
      this.run(key, next.row, next.queue);
    }
  }

  private run(key: string, row: InvocationRow, queue: string): void {
    const previous = this.running.get(key);
    if (previous) {
      previous.aborted = true;
      previous.actor.stop();
      this.running.delete(key);
      this.track(previous.row, -1);
    }
    let logic: AnyActorLogic | undefined;
    try {
      const def = this.ctx.registry.get(row.machine, row.version);
      logic = (def.machine.implementations.actors as Record<string, AnyActorLogic>)[row.src];
      if (!logic) throw new Error(`actor "${row.src}" is not registered in setup({ actors })`);
    } catch (err) {
      this.settle(row, queue, { error: err });
      return;
    }
    const actor = createActor(logic, { input: row.input });
    const entry: Running = { row, queue, actor, aborted: false };
    this.running.set(key, entry);
    this.track(row, 1);
    actor.subscribe({
      complete: () => {
        if (entry.aborted) return;
        const output = (actor.getSnapshot() as { output?: unknown }).output;
        // The output is stored with the record (its inbox, its history): one that cannot be is the invocation's error.
        const problem = storageProblem(output, 'output');
        if (problem === null) this.settle(row, queue, { output });
        else this.settle(row, queue, { error: new UnstorableValueError(`invocation "${row.invoke_id}" (${row.src}) returned an output that cannot be stored: ${problem}`) });
      },
      error: (error) => {
        if (!entry.aborted) this.settle(row, queue, { error });
      },
    });
    actor.start();
  }

  /** Stops a local invocation (its record left the invoking state, or was cancelled). */
  abort(machine: string, instanceId: string, invokeId: string): void {
    const key = keyOf(machine, instanceId, invokeId);
    const waiting = this.waiting.get(key);
    if (waiting) {
      this.waiting.delete(key);
      this.track(waiting.row, -1);
      this.hooks.roomFreed();
      return;
    }
    const entry = this.running.get(key);
    if (!entry) return;
    entry.aborted = true;
    this.running.delete(key);
    this.track(entry.row, -1);
    entry.actor.stop();
    this.fill();
    this.notifyIdle();
    this.hooks.roomFreed();
  }

  /** Stops every local invocation of a record (it was cancelled). */
  abortRecord(machine: string, instanceId: string): void {
    for (const { row } of [...this.running.values(), ...this.waiting.values()]) {
      if (row.machine === machine && row.instance_id === instanceId) this.abort(machine, instanceId, row.invoke_id);
    }
  }

  /** Stops everything still running and waits for pending completions to be written. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer !== undefined) this.ctx.clock.clearTimeout(this.heartbeatTimer);
    // Invocations that never started go back with the node's other leases (released by the engine).
    for (const { row } of this.waiting.values()) this.track(row, -1);
    this.waiting.clear();
    if (this.running.size > 0) {
      const grace = new AbortController();
      await Promise.race([new Promise<void>((resolve) => this.idle.push(resolve)), sleep(this.ctx.clock, graceMs, grace.signal)]);
      grace.abort();
    }
    for (const entry of [...this.running.values()]) {
      // Left for another node to claim when the lease runs out (at-least-once).
      entry.aborted = true;
      entry.actor.stop();
    }
    this.running.clear();
    this.perRecord.clear();
    await this.flush();
  }

  private settle(row: InvocationRow, queue: string, result: { output?: unknown; error?: unknown }): void {
    const key = keyOf(row.machine, row.instance_id, row.invoke_id);
    const current = this.running.get(key);
    if (current && current.row.token !== row.token) return;
    if (current) {
      this.running.delete(key);
      this.track(current.row, -1);
    }
    this.fill();
    this.notifyIdle();
    this.hooks.roomFreed();
    if ('error' in result) {
      const def = safeDef(this.ctx, row);
      const retriable = !(result.error instanceof JobCancelledError) && def !== undefined && row.attempt < def.maxAttempts;
      if (retriable && def) {
        const delay = backoffMs(row.attempt, def.backoff.baseMs, def.backoff.maxMs);
        this.ctx.logger.warn(
          { machine: row.machine, id: row.instance_id, invoke: row.invoke_id, attempt: row.attempt, err: errorMessage(result.error) },
          'drover: invocation failed, will retry',
        );
        void this.retry(row, queue, delay, result.error);
        return;
      }
      this.finish(queue, row, { type: `xstate.error.actor.${row.invoke_id}`, error: serializeError(result.error), actorId: row.invoke_id });
    } else {
      this.finish(queue, row, { type: `xstate.done.actor.${row.invoke_id}`, output: result.output, actorId: row.invoke_id });
    }
  }

  private finish(queue: string, row: InvocationRow, event: Record<string, unknown>): void {
    if (this.hooks.fuse(queue, row, event)) return;
    this.complete(row, event);
  }

  private async retry(row: InvocationRow, queue: string, delay: number, error: unknown): Promise<void> {
    const at = new Date(this.ctx.clock.now() + delay);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ctx.queries.retryInvocation(this.ctx.db, {
          machine: row.machine,
          instance_id: row.instance_id,
          invoke_id: row.invoke_id,
          token: row.token,
          at,
          error: serializeError(error),
        });
        this.hooks.retryAt(queue, at.getTime());
        return;
      } catch (err) {
        if (!isTransientError(err) || attempt > 20) {
          this.ctx.logger.error(
            { err: errorMessage(err), machine: row.machine, id: row.instance_id },
            'drover: could not schedule a retry',
          );
          return; // the lease runs out and another claim retries it
        }
        await sleep(this.ctx.clock, backoffMs(attempt, 100, 5000));
      }
    }
  }

  /** Writes an invocation's result to its record's inbox (batched with other results). */
  complete(row: InvocationRow, event: Record<string, unknown>): void {
    this.pending.push({
      machine: row.machine,
      instance_id: row.instance_id,
      invoke_id: row.invoke_id,
      token: row.token,
      event,
      n: this.counter++,
      failed_attempt: failedAttempts(row, event),
    });
    if (!this.flushing) this.flushing = this.flushLoop();
  }

  /** Writes every pending completion; resolves when none is left. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    let failures = 0;
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        const now = new Date(this.ctx.clock.now());
        let written: { queues: string[]; held: number[] };
        try {
          // Results that met a locked record before go with SKIP LOCKED at once, not waiting again.
          written = await this.ctx.queries.completeInvocations(this.ctx.db, { completions: batch, now, skipLocked: batch.some((c) => c.held) });
        } catch (err) {
          if (!isLockTimeout(err)) throw err;
          // A record stayed locked (another session idle in a transaction): write the others now.
          written = await this.ctx.queries.completeInvocations(this.ctx.db, { completions: batch, now, skipLocked: true });
        }
        failures = 0;
        this.outage.ok();
        for (const queue of written.queues) this.hooks.inboxed(queue);
        if (written.held.length > 0) this.holdBack(batch, new Set(written.held));
      } catch (err) {
        failures += 1;
        if (!this.outage.failed(err)) this.ctx.logger.warn({ err: errorMessage(err), count: batch.length }, 'drover: writing invocation results failed, retrying');
        this.pending = batch.concat(this.pending);
        if (!isTransientError(err) && failures > 5) {
          this.ctx.logger.error(
            { err: errorMessage(err) },
            'drover: giving up on invocation results; leases will expire and they run again',
          );
          this.pending = [];
          break;
        }
        await sleep(this.ctx.clock, backoffMs(failures, 100, 5000));
      }
    }
    this.flushing = undefined;
  }

  /**
   * Results whose record was locked when they were written (by a step of another node for a
   * moment, or by another session idle in a transaction): written again after a backoff, out
   * of the way of the others meanwhile. Said once per result, when it has waited a while.
   */
  private holdBack(batch: Completion[], held: Set<number>): void {
    const later = batch.filter((c) => held.has(c.n)).map((c) => ({ ...c, held: (c.held ?? 0) + 1 }));
    const tries = Math.max(...later.map((c) => c.held));
    const long = later.filter((c) => c.held === HELD_RESULT_WARN_AFTER);
    if (long.length > 0) {
      this.ctx.logger.warn(
        { records: long.map((c) => `${c.machine}/${c.instance_id}`).slice(0, 10), count: long.length },
        'drover: invocation results wait: their records stay locked by another session; they are written once the lock is gone',
      );
    }
    for (const c of later) this.heldResults.add(c);
    void sleep(this.ctx.clock, backoffMs(tries, 20, HELD_RESULT_RETRY_MAX_MS)).then(() => {
      for (const c of later) this.heldResults.delete(c);
      // A stopped node leaves them: the invocations' leases run out and they run again elsewhere.
      if (this.stopped) return;
      this.pending.push(...later);
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  private async heartbeat(): Promise<void> {
    const entries: Array<{ row: InvocationRow }> = [...this.running.values(), ...this.waiting.values()];
    if (entries.length === 0 && this.heldResults.size === 0) return;
    // Held results' invocations keep their leases too, so they are not run again meanwhile.
    const leased = [...entries.map((e) => e.row), ...this.heldResults];
    try {
      const rows = await this.ctx.queries.heartbeatInvocations(this.ctx.db, {
        node: this.ctx.node,
        leaseUntil: new Date(this.ctx.clock.now() + this.ctx.leaseMs),
        invocations: leased.map(({ machine, instance_id, invoke_id, token }) => ({ machine, instance_id, invoke_id, token })),
      });
      this.outage.ok();
      const alive = new Set(rows.map((r) => keyOf(r.machine, r.instance_id, r.invoke_id)));
      for (const e of entries) {
        const key = keyOf(e.row.machine, e.row.instance_id, e.row.invoke_id);
        // Gone from the table: stopped by a step on another node, or the record was cancelled.
        if (!alive.has(key) && (this.running.get(key) === e || this.waiting.get(key) === e))
          this.abort(e.row.machine, e.row.instance_id, e.row.invoke_id);
      }
    } catch (err) {
      if (!this.outage.failed(err)) this.ctx.logger.warn({ err: errorMessage(err) }, 'drover: invocation heartbeat failed');
    }
  }

  private notifyIdle(): void {
    if (this.running.size > 0) return;
    for (const resolve of this.idle.splice(0)) resolve();
  }
}

function safeDef(ctx: EngineContext, row: InvocationRow) {
  try {
    return ctx.registry.get(row.machine, row.version);
  } catch {
    return undefined;
  }
}
