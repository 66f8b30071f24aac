import { backoffMs } from '../db/database.js';
import { OutageLog } from '../db/outage.js';
import type { EventRow, InstanceRow, InvocationRow } from '../db/queries.js';
import { errorMessage } from '../errors.js';
import * as N from '../otel/names.js';
import { linkTo } from '../otel/telemetry.js';
import type { DurableMachine } from '../record/durable.js';
import type { RecordState, Timer } from '../record/step.js';
import type { EngineContext } from './context.js';
import type { Invoker } from './invoker.js';
import { dueItems, type PendingStep, recordKey, toRecordState } from './records.js';
import { StepWriter } from './steps.js';
import { type WakeReason, WakeUp } from './wakeup.js';

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
  private readonly steps: StepWriter;
  /** The persist of the last claimed batch, while it is in flight. */
  private persisting: Promise<void> | undefined;
  private persistError: unknown;
  /** Whether due invocations may be waiting that this node has not claimed (it had no room, or took all it asked for). */
  private invocationsBehind = true;
  /** Whether due records may be waiting (an event, a timer, a full batch last time). */
  private recordsBehind = true;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly outage: OutageLog;

  constructor(
    private readonly ctx: EngineContext,
    readonly queue: string,
    private readonly invoker: Invoker,
  ) {
    this.wakeup = new WakeUp(ctx.clock);
    this.outage = new OutageLog(ctx.logger, { queue }, () => ctx.clock.now());
    this.steps = new StepWriter(ctx, queue, invoker, {
      recordDue: (at) => (at === null ? this.wake() : this.wakeAt(at)),
      invocationsLeft: () => this.invocationsDue(),
    });
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
    if (at === null) this.wake();
    else this.wakeAt(at);
  }

  /** The invoker has room again: claim what was left waiting, if anything may be. */
  roomFreed(): void {
    if (this.invocationsBehind && this.invoker.wantsWork()) this.wakeup.wake();
  }

  /** Whether the poller is asleep with nothing in hand: no claim, step or persist under way (for `drover/testing`'s drain). */
  get idle(): boolean {
    return this.wakeup.asleep && this.persisting === undefined;
  }

  /** Stops claiming; resolves when the batch in hand is persisted. */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeup.wake();
    await this.loop;
    while (this.persisting) await this.persisting;
    await this.steps.close();
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
          const due = await this.anythingDue();
          this.outage.ok();
          if (due === 'nothing') {
            probeSpent = false;
            probesInARow = 0;
            reason = await this.wakeup.sleep(this.ctx.pollIntervalMs);
            continue;
          }
          // Due invocations need no second probe: freed room and full claims keep finding them.
          probeSpent = due === 'records';
        }
        // A due time passed: a timer or a retry, records or invocations; look at both. The
        // wake-up kept only the earliest due time, so once it is handled, ask for the next.
        if (reason === 'due') {
          this.recordsBehind = this.invocationsBehind = true;
          probeSpent = true;
        }
        const worked = await this.pass();
        failures = 0;
        this.outage.ok();
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
        // The database away is said once per outage; any other error each time.
        if (!this.outage.failed(err)) this.ctx.logger.error({ err: errorMessage(err), queue: this.queue, failures }, 'drover: poller error');
        await this.wakeup.sleep(backoffMs(failures, 100, 10_000));
        reason = 'woken'; // after a backoff, look again at once
        this.recordsBehind = this.invocationsBehind = true;
        continue;
      }
      if (this.running) reason = await this.wakeup.sleep(this.ctx.pollIntervalMs);
    }
  }

  /**
   * The idle poll, one query: is anything due now, records or invocations? What is due later
   * arms the wake-up at its time, so it fires on time without another poll.
   */
  private async anythingDue(): Promise<'nothing' | 'records' | 'invocations'> {
    const { ctx } = this;
    this.wakeup.forgetDue();
    const now = ctx.clock.now();
    const { instanceAt, invocationAt } = await ctx.queries.nextDue(ctx.db, { queue: this.queue, now: new Date(now) });
    let due: 'nothing' | 'records' | 'invocations' = 'nothing';
    if (invocationAt !== null) {
      if (invocationAt > now) this.invocationsDue(invocationAt);
      else {
        this.invocationsBehind = true; // with no room now, freed room wakes the poller
        if (this.invoker.room() > 0) due = 'invocations';
      }
    }
    if (instanceAt !== null) {
      if (instanceAt > now) this.wakeup.wakeAt(instanceAt);
      else {
        this.recordsBehind = true;
        due = 'records';
      }
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
  private async stepBatch(): Promise<boolean> {
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
      steps.push(this.steps.prepare({ ...row, def, rowVersion: row.row_version, eventSeq: row.event_seq }, record, items, now));
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
        () => this.steps.commitSteps(steps, now, { isolate: true }),
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
   * Called by the invoker when an invocation this node runs has finished: the result is
   * folded and written at once when this node still knows the record. False: use the inbox.
   */
  fuse(invocation: InvocationRow, event: Record<string, unknown>): boolean {
    return this.running && this.steps.fuse(invocation, event);
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
      this.steps.remember(row);
      this.invoker.start(row, this.queue);
    }
    return rows.length > 0;
  }

  private async failUnrestorable(row: InstanceRow, err: unknown, now: number): Promise<void> {
    const error = new Error(`the stored snapshot does not restore: ${errorMessage(err)}`);
    if (err instanceof Error) Object.assign(error, { name: err.name, stack: err.stack });
    const record = { machine: row.machine, id: row.id, version: row.version, rowVersion: row.row_version, state: row.state };
    await this.steps.failAlone(record, error, 'drover.restore_failed', { kind: 'restore' }, now);
  }

}
