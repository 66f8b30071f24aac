import { randomUUID } from 'node:crypto';
import { type TransitionMessage, transitionMessages } from '../bus/local.js';
import { backoffMs, isTransientError } from '../db/database.js';
import { type ClaimedInvocation, type EventRow, type InstanceRow, type InvocationRow, transitionColumns } from '../db/queries.js';
import { errorMessage, serializeError } from '../errors.js';
import * as N from '../otel/names.js';
import { linkTo } from '../otel/telemetry.js';
import type { DurableMachine } from '../record/durable.js';
import { foldStep, nextWake, type RecordState, type Spawn, type StepItem, type Timer } from '../record/step.js';
import { type EngineContext, Wakeable } from './context.js';
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

/** A record whose version this node does not know is left for another node for this long. */
const UNKNOWN_VERSION_RETRY_MS = 5000;

/**
 * The poller of one queue: claims due records in batches (`FOR UPDATE SKIP LOCKED` plus a
 * lease), folds their inbox events and due timers through the machine, persists every
 * record of the batch in one statement guarded by each row's version, then runs the
 * effects. It also claims due invocations while the invoker has free slots.
 */
export class QueuePoller {
  private readonly signal = new Wakeable();
  private readonly cache = new Map<string, CachedRecord>();
  private fusePending: Array<{ invocation: InvocationRow; event: Record<string, unknown> }> = [];
  private fusing: Promise<void> | undefined;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly ctx: EngineContext,
    readonly queue: string,
    private readonly invoker: Invoker,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  wake(): void {
    this.signal.wake();
  }

  /** Stops claiming; resolves when the batch in hand is persisted. */
  async stop(): Promise<void> {
    this.running = false;
    this.signal.wake();
    await this.loop;
    while (this.fusing) await this.fusing;
    this.cache.clear();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let worked = false;
      try {
        // Invocations first: a create() is waiting on one, and a step's own spawns start without a claim.
        worked = (await this.claimInvocations()) || worked;
        if (this.running) worked = (await this.stepBatch()) || worked;
        failures = 0;
      } catch (err) {
        failures += 1;
        const transient = isTransientError(err);
        this.ctx.logger[transient ? 'warn' : 'error'](
          { err: errorMessage(err), queue: this.queue, failures },
          transient ? 'drover: database unavailable, backing off' : 'drover: poller error',
        );
        await this.signal.sleep(backoffMs(failures, 100, 10_000));
        continue;
      }
      if (!worked && this.running) await this.signal.sleep(this.ctx.pollIntervalMs);
    }
  }

  /** Claims, steps and persists one batch of due records. Returns whether it found any. */
  async stepBatch(): Promise<boolean> {
    const { ctx } = this;
    const now = ctx.clock.now();
    const claimStart = new Date();
    const rows = await ctx.queries.claimInstances(ctx.db, this.queue, new Date(now), ctx.batchSize, ctx.node, new Date(now + ctx.leaseMs));
    if (rows.length === 0) return false;
    // Only claims that found work get a span: an idle poller would otherwise emit one per poll.
    ctx.telemetry.tracer
      .startSpan(N.SPAN_CLAIM, { startTime: claimStart, attributes: { [N.ATTR_QUEUE]: this.queue, [N.ATTR_NODE]: ctx.node, [N.ATTR_RECORDS]: rows.length } })
      .end();
    const events = await ctx.queries.loadEvents(
      ctx.db,
      rows.map((r) => ({ machine: r.machine, id: r.id })),
    );
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
    if (steps.length > 0) {
      // The step span links to the requests whose events it handles (W3C traceparent stored with each event).
      const links = events.flatMap((e) => linkTo(e.traceparent)).slice(0, 128);
      await ctx.telemetry.span(
        N.SPAN_STEP,
        { [N.ATTR_QUEUE]: this.queue, [N.ATTR_NODE]: ctx.node, [N.ATTR_RECORDS]: steps.length },
        () => this.commitSteps(steps, now),
        links,
      );
    }
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
    const cap = Math.max(1000, this.ctx.concurrency * 4);
    if (this.cache.size > cap) this.cache.delete(this.cache.keys().next().value as string);
  }

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
        step.onDiscard = () => this.invoker.complete(item.invocation, item.event);
        steps.push(step);
      }
      if (steps.length === 0) continue;
      try {
        await this.commitSteps(steps, now);
      } catch (err) {
        ctx.logger.warn({ err: errorMessage(err), count: steps.length }, 'drover: fused step failed; results go through the inbox');
        for (const step of steps) step.onDiscard?.();
      }
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
    const instances = [];
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

    const { json } = ctx.queries;
    let persisted: { rows: Array<{ machine: string; id: string; event_seq: string }> };
    try {
      persisted = await ctx.db.query<{ machine: string; id: string; event_seq: string }>(ctx.queries.sql.persistSteps, [
        json(instances),
        new Date(now),
        json(transitions),
        json(consumed),
        json(stops),
        json(spawns),
      ]);
    } catch (err) {
      // Nothing was stored: the leases run out and the records are claimed again.
      for (const { machine, id, reserved } of steps) {
        this.cache.delete(recordKey(machine, id));
        for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
      }
      throw err;
    }
    // The inbox counter each record had when its write landed (newer events set wake_at).
    const committed = new Map(persisted.rows.map((r) => [recordKey(r.machine, r.id), r.event_seq]));

    const messages: TransitionMessage[] = [];
    let wakeInvocations = false;
    for (const step of steps) {
      const { machine, id, version, out, reserved } = step;
      const key = recordKey(machine, id);
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
    if (messages.length > 0) {
      ctx.bus.publish(messages);
      ctx.changed(messages);
    }
    if (wakeInvocations) this.signal.wake();
  }

  /** Claims due invocations (new, retried, or left by a crashed node) for the free slots. */
  private async claimInvocations(): Promise<boolean> {
    const { ctx } = this;
    const free = this.invoker.free();
    if (free <= 0) return false;
    const now = ctx.clock.now();
    const rows = await ctx.queries.claimInvocations(ctx.db, this.queue, new Date(now), free, ctx.node, new Date(now + ctx.leaseMs));
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
