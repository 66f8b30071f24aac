import { randomUUID } from 'node:crypto';
import { type TransitionMessage, transitionMessages } from '../bus/bus.js';
import { backoffMs, isTransientError } from '../db/database.js';
import {
  type ClaimedInvocation,
  type EventRow,
  type InstanceRow,
  type InvocationRow,
  type PersistedInstance,
  transitionColumns,
} from '../db/queries.js';
import { errorMessage, serializeError } from '../errors.js';
import * as N from '../otel/names.js';
import { linkTo } from '../otel/telemetry.js';
import type { DurableMachine } from '../record/durable.js';
import { foldStep, nextWake, type RecordState, type Spawn, type StepItem, type Timer } from '../record/step.js';
import type { EngineContext } from './context.js';
import type { Invoker } from './invoker.js';
import {
  type CachedRecord,
  dueItems,
  type PendingStep,
  type RawRecord,
  recordKey,
  reviveEvent,
  type StepTarget,
  toRecordState,
} from './records.js';
import { type WakeReason, WakeUp } from './wakeup.js';

/** Batches of fused results being written at once (each of other records). */
const FUSE_PERSISTS_IN_FLIGHT = 2;

/** A record whose version this node does not know is left for another node for this long. */
const UNKNOWN_VERSION_RETRY_MS = 5000;

/**
 * The poller of one queue: claims due records in batches (`FOR UPDATE SKIP LOCKED` plus a
 * lease), folds their inbox events and due timers through the machine, persists every
 * record of the batch in one statement guarded by each row's version, then runs the
 * effects. It also claims due invocations while the invoker has room.
 *
 * It never waits for a poll when it knows of work: a commit, a NOTIFY, freed invocation room
 * and the earliest known due time (timers, retries, `runAt`) wake it (see {@link WakeUp}).
 * While one batch persists, the next claim is already in flight. Idle, it makes one query
 * per poll interval: when is anything next due.
 */
export class QueuePoller {
  private readonly wakeup: WakeUp;
  private readonly cache = new Map<string, CachedRecord>();
  private fusePending: Array<{ invocation: InvocationRow; event: Record<string, unknown> }> = [];
  private fusing: Promise<void> | undefined;
  /** The persist of the last claimed batch, while it is in flight. */
  private persisting: Promise<void> | undefined;
  private persistError: unknown;
  /** Whether due invocations may be waiting that this node has not claimed (it had no room, or took all it asked for). */
  private invocationsBehind = true;
  /** Whether due records may be waiting (an event, a timer, a full batch last time). */
  private recordsBehind = true;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly ctx: EngineContext,
    readonly queue: string,
    private readonly invoker: Invoker,
  ) {
    this.wakeup = new WakeUp(ctx.clock);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Records have work now (an event, a result in their inbox): look at once. */
  wake(): void {
    this.recordsBehind = true;
    this.wakeup.wake();
  }

  /** A record is due at `at` (epoch ms, a timer): look then, even if nothing else wakes the poller. */
  wakeAt(at: number): void {
    if (at <= this.ctx.clock.now()) return this.wake();
    this.wakeup.wakeAt(at);
  }

  /** Invocations may be due for this queue that no node holds (a create, a retry, a NOTIFY). */
  invocationsDue(at: number | null = null): void {
    this.invocationsBehind = true;
    if (at === null) this.wakeup.wake();
    else this.wakeup.wakeAt(at);
  }

  /** Another node has work for this queue, due at `at` (null: now); the notice does not say whether records or invocations. */
  peerWork(at: number | null): void {
    this.invocationsBehind = true;
    if (at === null || at <= this.ctx.clock.now()) this.wake();
    else this.wakeAt(at);
  }

  /** The invoker has room again: claim what was left waiting, if anything may be. */
  roomFreed(): void {
    if (this.invocationsBehind && this.invoker.wantsWork()) this.wakeup.wake();
  }

  /** Stops claiming; resolves when the batch in hand is persisted. */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeup.wake();
    await this.loop;
    while (this.persisting) await this.persisting;
    while (this.fusing) await this.fusing;
    this.cache.clear();
  }

  private async run(): Promise<void> {
    let failures = 0;
    // Start by asking when work is due: a runtime that restarts knows nothing of the timers
    // stored before it.
    let reason: WakeReason = 'poll';
    // Whether the last probe found work due now, so it armed no timer for what comes after:
    // once that work is done, ask again before sleeping.
    let probeSpent = false;
    let probesInARow = 0;
    while (this.running) {
      try {
        if (reason === 'poll') {
          probesInARow += 1;
          if (!(await this.anythingDue())) {
            probeSpent = false;
            probesInARow = 0;
            reason = await this.wakeup.sleep(this.ctx.pollIntervalMs);
            continue;
          }
          probeSpent = true;
        }
        // A due time passed: a timer or a retry, records or invocations; look at both.
        if (reason === 'due') this.recordsBehind = this.invocationsBehind = true;
        const worked = await this.pass();
        failures = 0;
        if (worked) {
          probesInARow = 0;
          reason = 'woken';
          continue;
        }
        // The probe saw work that the claim did not get (another node took it): ask again,
        // but not in a tight loop if that keeps happening.
        if (probeSpent && probesInARow < 3) {
          reason = 'poll';
          continue;
        }
      } catch (err) {
        failures += 1;
        const transient = isTransientError(err);
        this.ctx.logger[transient ? 'warn' : 'error'](
          { err: errorMessage(err), queue: this.queue, failures },
          transient ? 'drover: database unavailable, backing off' : 'drover: poller error',
        );
        await this.wakeup.sleep(backoffMs(failures, 100, 10_000));
        reason = 'woken'; // after a backoff, look again at once
        this.recordsBehind = this.invocationsBehind = true;
        continue;
      }
      if (this.running) reason = await this.wakeup.sleep(this.ctx.pollIntervalMs);
    }
  }

  /**
   * The idle poll, one query: is anything due now? If not, the wake-up is armed at the
   * earliest due time found, so it fires on time without another poll.
   */
  private async anythingDue(): Promise<boolean> {
    const { ctx } = this;
    this.wakeup.forgetDue();
    const now = ctx.clock.now();
    const { instanceAt, invocationAt } = await ctx.queries.nextDue(ctx.db, { queue: this.queue, now: new Date(now) });
    let due = false;
    if (invocationAt !== null) {
      if (invocationAt > now) this.invocationsDue(invocationAt);
      else {
        this.invocationsBehind = true; // with no room now, freed room wakes the poller
        due = this.invoker.room() > 0;
      }
    }
    if (instanceAt !== null) {
      if (instanceAt > now) this.wakeup.wakeAt(instanceAt);
      else due = this.recordsBehind = true;
    }
    return due;
  }

  /** One look at the queue: due invocations for the free room, then a batch of due records. Returns whether it found work. */
  private async pass(): Promise<boolean> {
    if (this.persistError !== undefined) {
      const err = this.persistError;
      this.persistError = undefined;
      throw err;
    }
    // Invocations first: a create() is waiting on one, and a step's own spawns start without a claim.
    let worked = this.invocationsBehind && (await this.claimInvocations());
    if (this.running && this.recordsBehind) worked = (await this.stepBatch()) || worked;
    return worked;
  }

  /**
   * Claims and steps one batch of due records, and starts persisting it. A full batch is
   * left persisting while the next claim goes out (one persist in flight at a time); a
   * partial one is awaited. Returns whether it found any.
   */
  async stepBatch(): Promise<boolean> {
    const { ctx } = this;
    const now = ctx.clock.now();
    const claimStart = new Date();
    this.recordsBehind = false; // a wake-up while the claim is out sets it again
    const rows = await ctx.queries.claimInstances(ctx.db, {
      queue: this.queue,
      now: new Date(now),
      limit: ctx.batchSize,
      node: ctx.node,
      leaseUntil: new Date(now + ctx.leaseMs),
      retakeOwn: this.persisting === undefined,
    });
    if (rows.length === ctx.batchSize) this.recordsBehind = true;
    if (rows.length === 0) {
      await this.persisting;
      return false;
    }
    // Only claims that found work get a span: an idle poller would otherwise emit one per poll.
    ctx.telemetry.tracer
      .startSpan(N.SPAN_CLAIM, { startTime: claimStart, attributes: { [N.ATTR_QUEUE]: this.queue, [N.ATTR_NODE]: ctx.node, [N.ATTR_RECORDS]: rows.length } })
      .end();
    const events = await ctx.queries.loadEvents(ctx.db, { records: rows.map((r) => ({ machine: r.machine, id: r.id })) });
    const byRecord = new Map<string, EventRow[]>();
    for (const e of events) {
      const key = recordKey(e.machine, e.instance_id);
      const list = byRecord.get(key);
      if (list) list.push(e);
      else byRecord.set(key, [e]);
    }

    const steps: PendingStep[] = [];
    for (const row of rows) {
      let def: DurableMachine;
      try {
        def = ctx.registry.get(row.machine, row.version);
      } catch (err) {
        ctx.logger.warn(
          { machine: row.machine, id: row.id, version: row.version, err: errorMessage(err) },
          'drover: record left for a node that knows its version',
        );
        await ctx.db.query(ctx.queries.sql.releaseInstance, [row.machine, row.id, ctx.node, new Date(now + UNKNOWN_VERSION_RETRY_MS)]);
        continue;
      }
      let record: RecordState;
      try {
        record = toRecordState(def, row);
      } catch (err) {
        await this.failUnrestorable(row, err, now);
        continue;
      }
      const items = dueItems(row.timers as Timer[], byRecord.get(recordKey(row.machine, row.id)) ?? [], now);
      steps.push(this.prepare({ ...row, def, rowVersion: row.row_version, eventSeq: row.event_seq }, record, items, now));
    }
    if (steps.length === 0) return true;
    // The step span links to the requests whose events it handles (W3C traceparent stored with each event).
    const links = events.flatMap((e) => linkTo(e.traceparent)).slice(0, 128);
    const previous = this.persisting;
    const persist = (async () => {
      await previous;
      await ctx.telemetry.span(
        N.SPAN_STEP,
        { [N.ATTR_QUEUE]: this.queue, [N.ATTR_NODE]: ctx.node, [N.ATTR_RECORDS]: steps.length },
        () => this.commitSteps(steps, now),
        links,
      );
    })();
    const tracked: Promise<void> = persist.then(
      () => {
        if (this.persisting === tracked) this.persisting = undefined;
      },
      (err: unknown) => {
        if (this.persisting === tracked) this.persisting = undefined;
        this.persistError ??= err;
        this.wakeup.wake();
      },
    );
    this.persisting = tracked;
    if (rows.length < ctx.batchSize) await tracked;
    return true;
  }

  /**
   * Called by the invoker when an invocation this node runs has finished. If this node still
   * knows the record as it was when the invocation started, the result is folded and
   * persisted here at once (one statement, guarded by the row version) instead of going
   * through the inbox, a claim and a second write. Returns false to use the inbox.
   */
  fuse(invocation: InvocationRow, event: Record<string, unknown>): boolean {
    if (!this.running || !this.cache.has(recordKey(invocation.machine, invocation.instance_id))) return false;
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

  /**
   * Folds and persists finished invocations' results. Two batches may persist at once (of
   * different records): while one is written, the results that came in meanwhile are folded
   * and sent, so neither the database nor this process waits for the other.
   */
  private async fuseLoop(): Promise<void> {
    const { ctx } = this;
    const inFlight = new Set<string>();
    const commits = new Set<Promise<void>>();
    while (this.fusePending.length > 0 || commits.size > 0) {
      if (this.fusePending.length === 0 || commits.size >= FUSE_PERSISTS_IN_FLIGHT) {
        await Promise.race(commits);
        continue;
      }
      const batch = this.fusePending;
      this.fusePending = [];
      const now = ctx.clock.now();
      const steps: PendingStep[] = [];
      const later: typeof batch = [];
      const keys = new Set<string>();
      for (const item of batch) {
        const key = recordKey(item.invocation.machine, item.invocation.instance_id);
        // One step per record at a time: a record in a batch being written waits for its new version.
        if (keys.has(key) || inFlight.has(key)) {
          later.push(item);
          continue;
        }
        const cached = this.cache.get(key);
        if (!cached) {
          this.invoker.complete(item.invocation, item.event);
          continue;
        }
        keys.add(key);
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
        step.onDiscard = () => this.invoker.complete(item.invocation, item.event);
        steps.push(step);
      }
      this.fusePending = later.concat(this.fusePending);
      if (steps.length === 0) {
        if (commits.size > 0) await Promise.race(commits);
        continue;
      }
      for (const key of keys) inFlight.add(key);
      const commit: Promise<void> = this.commitSteps(steps, now)
        .catch((err: unknown) => {
          ctx.logger.warn({ err: errorMessage(err), count: steps.length }, 'drover: fused step failed; results go through the inbox');
          for (const step of steps) step.onDiscard?.();
        })
        .finally(() => {
          for (const key of keys) inFlight.delete(key);
          commits.delete(commit);
        });
      commits.add(commit);
    }
    this.fusing = undefined;
  }

  /** Folds items into a record and reserves invocation slots for what it spawns. */
  private prepare(target: StepTarget, record: RecordState, items: StepItem[], now: number): PendingStep {
    const out = foldStep(target.def, record, items, now);
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
      children: Object.keys((record.snapshot as { children?: object }).children ?? {}),
      out,
      reserved,
      enteredBefore: record.enteredAt,
    };
  }

  /**
   * Persists stepped records in one statement, each guarded by its row version, then runs
   * the effects of those that committed: stop and start invocations, publish transitions.
   */
  private async commitSteps(steps: PendingStep[], now: number): Promise<void> {
    const { ctx } = this;
    const tokens = new Map<Spawn, string>();
    const instances: PersistedInstance[] = [];
    const transitions = [];
    const consumed = [];
    const stops = [];
    const spawns = [];
    for (const { machine, id, rowVersion, eventSeq, out, reserved } of steps) {
      const wake = nextWake(out);
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
    try {
      persisted = await ctx.queries.persistSteps(ctx.db, { now: new Date(now), instances, transitions, consumed, stops, spawns });
    } catch (err) {
      // Nothing was stored: the leases run out and the records are claimed again.
      for (const { machine, id, reserved } of steps) {
        this.cache.delete(recordKey(machine, id));
        for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
      }
      throw err;
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
        if (BigInt(eventSeq) > BigInt(step.eventSeq)) this.wake();
        else {
          const wake = nextWake(out);
          if (wake !== null) this.wakeup.wakeAt(wake);
        }
      }
      if (!committed.has(key)) {
        // A fused step losing to a claim is routine (its result goes through the inbox); a
        // claimed step losing means its lease ran out or the record was cancelled.
        if (step.onDiscard) ctx.logger.debug({ machine, id }, 'drover: fused step discarded, result goes through the inbox');
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
          record: { snapshot: out.snapshot, state: out.state, status: out.status, enteredAt: out.enteredAt, timers: out.timers, seq: out.seq },
        });
      } else {
        this.cache.delete(key);
      }
      messages.push(...transitionMessages(id, machine, version, out.transitions));
      ctx.telemetry.stateSpans(machine, version, id, step.enteredBefore, out.transitions);
    }
    if (messages.length > 0) ctx.commits.emit(messages);
    if (wakeInvocations) this.invocationsDue();
  }

  /** Claims due invocations (new, retried, or left by a crashed node) for the invoker's room. */
  private async claimInvocations(): Promise<boolean> {
    const { ctx } = this;
    const room = this.invoker.room();
    if (room <= 0) return false; // still behind: freed room wakes the poller
    const now = ctx.clock.now();
    this.invocationsBehind = false; // a NOTIFY while the claim is out sets it again
    const rows = await ctx.queries.claimInvocations(ctx.db, {
      queue: this.queue,
      now: new Date(now),
      limit: room,
      node: ctx.node,
      leaseUntil: new Date(now + ctx.leaseMs),
    });
    // All it asked for: more may be waiting.
    if (rows.length === room) this.invocationsBehind = true;
    for (const row of rows) {
      this.remember(row);
      this.invoker.start(row, this.queue);
    }
    return rows.length > 0;
  }

  private async failUnrestorable(row: InstanceRow, err: unknown, now: number): Promise<void> {
    const error = serializeError(err);
    error.message = `the stored snapshot does not restore: ${error.message}`;
    this.ctx.logger.error(
      { machine: row.machine, id: row.id, err: error.message },
      'drover: record failed, its snapshot does not restore (the snapshot is kept)',
    );
    await this.ctx.db.query(this.ctx.queries.sql.failInstance, [
      row.machine,
      row.id,
      this.ctx.node,
      this.ctx.queries.json(error),
      new Date(now),
      row.row_version,
      this.ctx.queries.json({ type: 'drover.restore_failed' }),
    ]);
  }
}
