import { randomUUID } from 'node:crypto';
import { type TransitionMessage, transitionMessages } from '../bus/bus.js';
import { isLockTimeout } from '../db/database.js';
import {
  type ClaimedInvocation,
  type EventRow,
  type InvocationRow,
  LOCK_TIMEOUT_MS,
  type PersistedInstance,
  type StoredFailure,
  transitionColumns,
} from '../db/queries.js';
import { errorMessage, serializeError, UnstorableValueError } from '../errors.js';
import type { DurableMachine } from '../record/durable.js';
import { foldStep, nextWake, type RecordState, type Spawn, type StepItem } from '../record/step.js';
import { type ActorWrite, actorsCommitted, committedPart, deliverableFor, emptyPlan, planActors, recordTargets, writeActors } from './actors.js';
import type { EngineContext } from './context.js';
import { failedAttempts, type Invoker } from './invoker.js';
import { type CachedRecord, type PendingStep, type RawRecord, recordKey, reviveEvent, type StepTarget, toRecordState } from './records.js';

/** What the step writer tells its poller after a commit. */
export interface StepHooks {
  /** A committed record is due again: at `at` (its next timer), or now (null: newer events came in). */
  recordDue(at: number | null): void;
  /** A step spawned invocations this node had no room for: they wait in the database for a claim. */
  invocationsLeft(): void;
}

/**
 * How one queue's steps are written: folded through the machine ({@link StepWriter.prepare}),
 * persisted in one version-guarded statement per batch, then their effects run (invocations
 * stopped and started, transitions to the commit hook). It also keeps the records whose
 * invocations run here, so a finished invocation's result is folded and written at once
 * ({@link StepWriter.fuse}) instead of going through the inbox.
 */
export class StepWriter {
  private readonly cache = new Map<string, CachedRecord>();
  private fusePending: Array<{ invocation: InvocationRow; event: Record<string, unknown> }> = [];
  private fusing: Promise<void> | undefined;

  constructor(
    private readonly ctx: EngineContext,
    private readonly queue: string,
    private readonly invoker: Invoker,
    private readonly hooks: StepHooks,
  ) {}

  /** Resolves when the fused steps in hand are written (its poller takes no more results first). */
  async close(): Promise<void> {
    while (this.fusing) await this.fusing;
    this.cache.clear();
  }

  /**
   * Called by the invoker when an invocation this node runs has finished. If this node still
   * knows the record as it was when the invocation started, the result is folded and
   * persisted here at once (one statement, guarded by the row version) instead of going
   * through the inbox, a claim and a second write. Returns false to use the inbox.
   */
  fuse(invocation: InvocationRow, event: Record<string, unknown>): boolean {
    if (!this.cache.has(recordKey(invocation.machine, invocation.instance_id))) return false;
    this.fusePending.push({ invocation, event });
    if (!this.fusing) this.fusing = this.fuseLoop();
    return true;
  }

  /** Remembers a record whose invocation was claimed here, for {@link fuse}. */
  remember(row: ClaimedInvocation): void {
    // Waiting inbox events must be stepped by a claim: a fused step would not consume them.
    if (row.i_row_version === null || row.i_status !== 'active' || row.i_pending) return;
    let def: DurableMachine;
    try {
      def = this.ctx.registry.get(row.machine, row.version);
    } catch {
      return;
    }
    this.remembered(recordKey(row.machine, row.instance_id), {
      machine: row.machine,
      id: row.instance_id,
      version: row.version,
      def,
      links: row.i_links,
      rowVersion: row.i_row_version,
      eventSeq: row.i_event_seq,
      raw: { snapshot: row.i_snapshot, state: row.i_state, status: row.i_status, entered_at: row.i_entered_at, timers: row.i_timers, seq: row.i_seq },
    });
  }

  /**
   * Stores a cache entry. Entries leave on the record's next commit or discard; the cap
   * bounds the ones whose invocation moved to another node (a retry, an abort). An evicted
   * record's result simply goes through the inbox.
   */
  private remembered(key: string, entry: CachedRecord): void {
    this.cache.delete(key);
    this.cache.set(key, entry);
    const cap = Math.max(1000, (this.ctx.concurrency + this.ctx.batchSize) * 4);
    if (this.cache.size > cap) this.cache.delete(this.cache.keys().next().value as string);
  }

  /** Folds and persists finished invocations' results, a batch at a time: whatever finished while one was written goes in the next. */
  private async fuseLoop(): Promise<void> {
    const { ctx } = this;
    while (this.fusePending.length > 0) {
      const batch = this.fusePending;
      this.fusePending = [];
      const now = ctx.clock.now();
      const steps: PendingStep[] = [];
      const inBatch = new Set<string>();
      for (const item of batch) {
        const key = recordKey(item.invocation.machine, item.invocation.instance_id);
        const cached = this.cache.get(key);
        if (!cached) {
          this.invoker.complete(item.invocation, item.event);
          continue;
        }
        if (inBatch.has(key)) {
          this.fusePending.push(item); // one step per record per batch: the next batch sees the new version
          continue;
        }
        inBatch.add(key);
        let record: RecordState;
        try {
          record = cached.record ?? toRecordState(cached.def, cached.raw as RawRecord);
        } catch {
          this.cache.delete(key);
          this.invoker.complete(item.invocation, item.event);
          continue;
        }
        const event = reviveEvent(item.event as EventRow['event']);
        const step = this.prepare(cached, record, [{ kind: 'event', eventId: '', event, at: now }], now);
        step.out.consumedEventIds = [];
        // The finished invocation's row goes with this step (XState stops the child only when
        // the state is left; an onDone that stays must not leave the row to be claimed again).
        if (!step.out.spawns.has(item.invocation.invoke_id)) step.out.stops.add(item.invocation.invoke_id);
        step.failedAttempt = failedAttempts(item.invocation, item.event);
        step.onDiscard = () => this.invoker.complete(item.invocation, item.event);
        steps.push(step);
      }
      if (steps.length === 0) continue;
      try {
        await this.commitSteps(steps, now, { lockTimeoutMs: LOCK_TIMEOUT_MS.fused });
      } catch (err) {
        ctx.logger.warn({ err: errorMessage(err), count: steps.length }, 'drover: fused step failed; results go through the inbox');
        for (const step of steps) step.onDiscard?.();
      }
    }
    this.fusing = undefined;
  }

  /** Folds items into a record and reserves invocation slots for what it spawns. */
  prepare(target: StepTarget, record: RecordState, items: StepItem[], now: number): PendingStep {
    const fold = (missing?: ReadonlySet<string>) => foldStep(target.def, record, items, now, { deliverable: deliverableFor(target.links, missing) });
    const out = fold();
    for (const ignored of out.ignored) {
      this.ctx.logger.debug(
        { machine: target.machine, id: target.id, event: ignored.type, state: out.state },
        'drover: event not taken in this state, dropped',
      );
    }
    const reserved = new Map<string, boolean>();
    for (const id of out.spawns.keys()) reserved.set(id, this.invoker.reserve());
    return {
      machine: target.machine,
      id: target.id,
      version: target.version,
      def: target.def,
      rowVersion: target.rowVersion,
      eventSeq: target.eventSeq,
      links: target.links ?? null,
      refold: fold,
      children: Object.keys((record.snapshot as { children?: object }).children ?? {}),
      out,
      reserved,
      enteredBefore: record.enteredAt,
    };
  }

  /**
   * Persists stepped records in one statement, each guarded by its row version, then runs
   * the effects of those that committed: stop and start invocations, publish transitions.
   * Resolves to how many committed (the others lost to a newer write of their record).
   */
  async commitSteps(steps: PendingStep[], now: number, options: { isolate?: boolean; lockTimeoutMs?: number } = {}): Promise<number> {
    const { ctx } = this;
    steps = await this.checkTargets(steps);
    if (steps.length === 0) return 0;
    // What the steps write beside their records (child records, messages, effects), in the same transaction.
    const plan = planActors(ctx, steps, now);
    const tokens = new Map<Spawn, string>();
    const instances: PersistedInstance[] = [];
    const transitions = [];
    const consumed = [];
    const stops = [];
    const spawns = [];
    for (const { machine, id, rowVersion, eventSeq, out, reserved, failedAttempt } of steps) {
      const wake = nextWake(out);
      const failure = out.failure;
      instances.push({
        machine,
        id,
        row_version: rowVersion,
        state: out.state,
        status: out.status,
        snapshot: out.snapshot.machine.getPersistedSnapshot(out.snapshot),
        entered_at: new Date(out.enteredAt),
        wake_at: wake === null ? null : new Date(wake),
        timers: out.timers,
        error: out.error ?? null,
        seq: out.seq,
        event_seq: eventSeq,
        failure: failure
          ? {
              kind: 'step',
              event: failure.event,
              snapshot: failure.snapshot.machine.getPersistedSnapshot(failure.snapshot),
              state: failure.state,
              entered_at: failure.enteredAt,
              timers: failure.timers,
            }
          : null,
        // A new invocation starts with no failed attempts.
        attempt: failedAttempt ?? (out.spawns.size > 0 ? 0 : null),
        children: plan.links.get(recordKey(machine, id)) ?? null,
      });
      for (const t of out.transitions) transitions.push({ machine, instance_id: id, ...transitionColumns(t) });
      for (const eventId of out.consumedEventIds) consumed.push({ machine, instance_id: id, id: eventId });
      for (const invokeId of out.stops) if (!out.spawns.has(invokeId)) stops.push({ machine, instance_id: id, invoke_id: invokeId });
      for (const spawn of out.spawns.values()) {
        const token = randomUUID();
        tokens.set(spawn, token);
        const mine = reserved.get(spawn.id) === true;
        spawns.push({
          machine,
          instance_id: id,
          invoke_id: spawn.id,
          token,
          src: spawn.src,
          input: spawn.input ?? null,
          attempt: mine ? 1 : 0,
          locked_by: mine ? ctx.node : null,
          locked_until: new Date(mine ? now + ctx.leaseMs : now),
        });
      }
    }

    let persisted: Array<{ machine: string; id: string; event_seq: string }>;
    let actors: ActorWrite | undefined;
    // Whether rows that another session holds locked were left out of the write.
    let skippedLocked = false;
    try {
      const lockTimeoutMs = options.lockTimeoutMs ?? LOCK_TIMEOUT_MS.claimed;
      const batch = { now: new Date(now), instances, transitions, consumed, stops, spawns, lockTimeoutMs };
      const write = async (skipLocked: boolean) => {
        if (emptyPlan(plan)) return { persisted: await ctx.queries.persistSteps(ctx.db, { ...batch, skipLocked }), actors: undefined };
        return ctx.db.transaction(async (tx) => {
          const rows = await ctx.queries.persistSteps(tx, { ...batch, skipLocked });
          const done = new Set(rows.map((r) => recordKey(r.machine, r.id)));
          return { persisted: rows, actors: await writeActors(ctx, tx, committedPart(plan, (root) => done.has(root)), now) };
        });
      };
      try {
        ({ persisted, actors } = await write(false));
      } catch (err) {
        if (!isLockTimeout(err)) throw err;
        // A row stayed locked by another session (idle in a transaction that holds it FOR
        // UPDATE): commit the rest without it; the lease of a row left out runs out, and the
        // claim (SKIP LOCKED) takes it again once the other session lets go.
        skippedLocked = true;
        ({ persisted, actors } = await write(true));
      }
    } catch (err) {
      // Nothing was stored. A value the database refuses is one record's: split the batch to
      // find it, so the others commit and it fails alone, instead of the batch failing forever.
      const refused = options.isolate === true && refusedWrite(err);
      if (refused && steps.length > 1) {
        const half = steps.length >> 1;
        return (await this.commitSteps(steps.slice(0, half), now, options)) + (await this.commitSteps(steps.slice(half), now, options));
      }
      // Otherwise the leases run out and the records are claimed again.
      for (const { machine, id, reserved } of steps) {
        this.cache.delete(recordKey(machine, id));
        for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
      }
      if (!refused) throw err;
      const [step] = steps as [PendingStep];
      const error = new UnstorableValueError(`the database refused to store the record's step: ${errorMessage(err)}`);
      await this.failAlone(step, error, 'drover.store_failed', { kind: 'store' }, now);
      return 0;
    }
    // The inbox counter each record had when its write landed (newer events set wake_at).
    const committed = new Map(persisted.map((r) => [recordKey(r.machine, r.id), r.event_seq]));

    const messages: TransitionMessage[] = [];
    let wakeInvocations = false;
    for (const step of steps) {
      const { machine, id, version, out, reserved } = step;
      const key = recordKey(machine, id);
      // When the record is next due: a newer event arrived while it was stepped (now), or its earliest timer.
      const eventSeq = committed.get(key);
      if (eventSeq !== undefined && out.status === 'active') {
        if (BigInt(eventSeq) > BigInt(step.eventSeq)) this.hooks.recordDue(null);
        else {
          const wake = nextWake(out);
          if (wake !== null) this.hooks.recordDue(wake);
        }
      }
      if (!committed.has(key)) {
        // A fused step losing to a claim is routine (its result goes through the inbox); a
        // claimed step losing means its lease ran out or the record was cancelled.
        if (step.onDiscard) ctx.logger.debug({ machine, id }, 'drover: fused step discarded, result goes through the inbox');
        else if (skippedLocked)
          ctx.logger.warn({ machine, id }, 'drover: step put off: another session holds the record locked; it runs again once the lock is gone');
        else ctx.logger.warn({ machine, id }, 'drover: step discarded, the record changed under its lease (another node or a cancel)');
        this.cache.delete(key);
        for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
        step.onDiscard?.();
        continue;
      }
      for (const invokeId of out.stops) this.invoker.abort(machine, id, invokeId);
      if (out.status !== 'active') for (const child of step.children) this.invoker.abort(machine, id, child);
      for (const spawn of out.spawns.values()) {
        if (reserved.get(spawn.id) !== true) {
          wakeInvocations = true;
          continue;
        }
        if (out.status !== 'active') {
          this.invoker.unreserve();
          continue;
        }
        const token = tokens.get(spawn) as string;
        this.invoker.start(
          { machine, instance_id: id, invoke_id: spawn.id, token, version, src: spawn.src, input: spawn.input ?? null, attempt: 1 },
          this.queue,
          true,
        );
      }
      // Keep the committed state while an invocation of the record runs here, for fuse().
      if (out.status === 'active' && this.invoker.runningFor(machine, id) > 0) {
        this.remembered(key, {
          machine,
          id,
          version,
          def: step.def,
          rowVersion: step.rowVersion + 1,
          eventSeq: committed.get(key) as string,
          links: plan.links.has(key) ? { parent: step.links?.parent ?? null, children: plan.links.get(key) ?? {} } : (step.links ?? null),
          record: { snapshot: out.snapshot, state: out.state, status: out.status, enteredAt: out.enteredAt, timers: out.timers, seq: out.seq },
        });
      } else {
        this.cache.delete(key);
      }
      if (out.status === 'failed') {
        const last = out.transitions[out.transitions.length - 1];
        ctx.logger.warn(
          { machine, id, version, state: out.state, event: last?.event.type, err: out.error?.message },
          'drover: record failed (retry() takes it back to before the failed step)',
        );
      }
      messages.push(...transitionMessages(id, machine, version, out.transitions));
      ctx.telemetry.stateSpans(machine, version, id, step.enteredBefore, out.transitions);
      ctx.inspector?.stepped(step.def, id, out);
    }
    if (actors) messages.push(...actorsCommitted(ctx, actors, (machine, id) => this.invoker.abortRecord(machine, id)));
    if (messages.length > 0) ctx.commits.emit(messages);
    if (wakeInvocations) this.hooks.invocationsLeft();
    return committed.size;
  }

  /**
   * The `sendToRecord` targets of the steps that do not exist fail their senders: each such
   * step is folded again, failing on the event that sent to one. A fused step goes back to the
   * inbox path instead (its claim folds it with the check).
   */
  private async checkTargets(steps: PendingStep[]): Promise<PendingStep[]> {
    const targets = steps.flatMap((step) => recordTargets(step.out));
    if (targets.length === 0) return steps;
    const found = await this.ctx.queries.actors.existing(this.ctx.db, targets);
    const known = new Set(found.map((r) => recordKey(r.machine, r.id)));
    const missing = new Set(targets.map((t) => recordKey(t.machine, t.id)).filter((k) => !known.has(k)));
    if (missing.size === 0) return steps;
    const kept: PendingStep[] = [];
    for (const step of steps) {
      if (!recordTargets(step.out).some((t) => missing.has(recordKey(t.machine, t.id)))) {
        kept.push(step);
        continue;
      }
      for (const mine of step.reserved.values()) if (mine) this.invoker.unreserve();
      if (step.onDiscard || !step.refold) {
        this.cache.delete(recordKey(step.machine, step.id));
        step.onDiscard?.();
        continue;
      }
      const out = step.refold(missing);
      const reserved = new Map<string, boolean>();
      for (const id of out.spawns.keys()) reserved.set(id, this.invoker.reserve());
      kept.push({ ...step, out, reserved });
    }
    return kept;
  }

  /**
   * Fails a record this node holds the lease of, alone, keeping its stored row (snapshot,
   * timers, inbox) as it was: for a snapshot that does not restore and a step the database
   * refused. History gets `event`; `retry()` resumes the record from the kept row.
   */
  async failAlone(
    record: { machine: string; id: string; version: number; rowVersion: number; state?: string },
    err: Error,
    event: string,
    failure: StoredFailure,
    now: number,
  ): Promise<void> {
    const { ctx } = this;
    const error = serializeError(err);
    ctx.logger.warn(
      { machine: record.machine, id: record.id, version: record.version, state: record.state, event, err: error.message },
      'drover: record failed alone, its row kept as it was (fix the cause, then retry())',
    );
    await ctx.db.query(ctx.queries.sql.failInstance, [
      record.machine,
      record.id,
      ctx.node,
      ctx.queries.json(error),
      new Date(now),
      record.rowVersion,
      ctx.queries.json({ type: event }),
      ctx.queries.json(failure),
    ]);
  }
}

/**
 * Whether the database refused a write for what it holds (a data exception, a violated
 * constraint, a program limit), or JSON could not serialise it: the same write fails again,
 * so it is one record's fault, not the database's.
 */
function refusedWrite(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return /^(22|23|54)/.test(code);
  return (err instanceof TypeError && /BigInt|circular/i.test(err.message)) || (err instanceof RangeError && /call stack/i.test(err.message));
}
