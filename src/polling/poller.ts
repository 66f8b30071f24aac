import { randomUUID } from 'node:crypto';
import type { EventObject } from 'xstate';
import type { TransitionMessage } from '../bus/local.js';
import { backoffMs, isTransientError } from '../db/database.js';
import type { EventRow, InstanceRow } from '../db/queries.js';
import { errorMessage, serializeError } from '../errors.js';
import type { DurableMachine } from '../record/durable.js';
import { restoreSnapshot } from '../record/state.js';
import { foldStep, type RecordStatus, type StepItem, type StepOutcome, type Timer } from '../record/step.js';
import { type EngineContext, Wakeable } from './context.js';
import type { Invoker } from './invoker.js';

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
    const rows = await ctx.queries.claimInstances(ctx.db, this.queue, new Date(now), ctx.batchSize, ctx.node, new Date(now + ctx.leaseMs));
    if (rows.length === 0) return false;
    const events = await ctx.queries.loadEvents(
      ctx.db,
      rows.map((r) => ({ machine: r.machine, id: r.id })),
    );
    const byRecord = new Map<string, EventRow[]>();
    for (const e of events) {
      const key = `${e.machine}\u0000${e.instance_id}`;
      const list = byRecord.get(key);
      if (list) list.push(e);
      else byRecord.set(key, [e]);
    }

    const steps: Array<{ row: InstanceRow; def: DurableMachine; out: StepOutcome; reserved: Map<string, boolean> }> = [];
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
      let snapshot: ReturnType<typeof restoreSnapshot>;
      try {
        snapshot = restoreSnapshot(def.machine, row.snapshot);
      } catch (err) {
        await this.failUnrestorable(row, err, now);
        continue;
      }
      const items = dueItems(row.timers as Timer[], byRecord.get(`${row.machine}\u0000${row.id}`) ?? [], now);
      const out = foldStep(
        def,
        {
          snapshot,
          state: row.state,
          status: row.status as RecordStatus,
          enteredAt: row.entered_at.getTime(),
          timers: row.timers as Timer[],
          seq: row.seq,
        },
        items,
        now,
      );
      for (const ignored of out.ignored) {
        ctx.logger.debug(
          { machine: row.machine, id: row.id, event: ignored.type, state: out.state },
          'drover: event not taken in this state, dropped',
        );
      }
      const reserved = new Map<string, boolean>();
      for (const id of out.spawns.keys()) reserved.set(id, this.invoker.reserve());
      steps.push({ row, def, out, reserved });
    }
    if (steps.length === 0) return true;

    const tokens = new Map<string, string>();
    const instances = [];
    const transitions = [];
    const consumed = [];
    const stops = [];
    const spawns = [];
    for (const { row, out, reserved } of steps) {
      const wake = out.status === 'active' && out.timers.length > 0 ? Math.min(...out.timers.map((t) => t.at)) : null;
      instances.push({
        machine: row.machine,
        id: row.id,
        row_version: row.row_version,
        state: out.state,
        status: out.status,
        snapshot: out.snapshot.machine.getPersistedSnapshot(out.snapshot),
        entered_at: new Date(out.enteredAt),
        wake_at: wake === null ? null : new Date(wake),
        timers: out.timers,
        error: out.error ?? null,
        seq: out.seq,
        event_seq: row.event_seq,
      });
      for (const t of out.transitions) {
        transitions.push({
          machine: row.machine,
          instance_id: row.id,
          seq: t.seq,
          from_state: t.from,
          to_state: t.to,
          status: t.status,
          event: t.event,
          error: t.error ?? null,
          at: new Date(t.at),
        });
      }
      for (const id of out.consumedEventIds) consumed.push({ machine: row.machine, instance_id: row.id, id });
      for (const id of out.stops) if (!out.spawns.has(id)) stops.push({ machine: row.machine, instance_id: row.id, invoke_id: id });
      for (const spawn of out.spawns.values()) {
        const token = randomUUID();
        tokens.set(`${row.machine}\u0000${row.id}\u0000${spawn.id}`, token);
        const mine = reserved.get(spawn.id) === true;
        spawns.push({
          machine: row.machine,
          instance_id: row.id,
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
    let persisted: { rows: Array<{ machine: string; id: string }> };
    try {
      persisted = await ctx.db.query<{ machine: string; id: string }>(ctx.queries.sql.persistSteps, [
        json(instances),
        new Date(now),
        json(transitions),
        json(consumed),
        json(stops),
        json(spawns),
      ]);
    } catch (err) {
      // Nothing was stored: the leases run out and the records are claimed again.
      for (const { reserved } of steps) for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
      throw err;
    }
    const committed = new Set(persisted.rows.map((r) => `${r.machine}\u0000${r.id}`));

    // After the commit: stop and start invocations, publish transitions.
    const messages: TransitionMessage[] = [];
    let wakeInvocations = false;
    for (const { row, out, reserved } of steps) {
      const ok = committed.has(`${row.machine}\u0000${row.id}`);
      if (!ok) {
        ctx.logger.warn(
          { machine: row.machine, id: row.id },
          'drover: step discarded, the record changed under its lease (another node or a cancel)',
        );
        for (const mine of reserved.values()) if (mine) this.invoker.unreserve();
        continue;
      }
      for (const id of out.stops) this.invoker.abort(row.machine, row.id, id);
      if (out.status !== 'active')
        for (const id of row.snapshot.children ? Object.keys(row.snapshot.children) : []) this.invoker.abort(row.machine, row.id, id);
      for (const spawn of out.spawns.values()) {
        if (reserved.get(spawn.id) !== true) {
          wakeInvocations = true;
          continue;
        }
        if (out.status !== 'active') {
          this.invoker.unreserve();
          continue;
        }
        const token = tokens.get(`${row.machine}\u0000${row.id}\u0000${spawn.id}`) as string;
        this.invoker.start(
          {
            machine: row.machine,
            instance_id: row.id,
            invoke_id: spawn.id,
            token,
            version: row.version,
            src: spawn.src,
            input: spawn.input ?? null,
            attempt: 1,
          },
          this.queue,
          true,
        );
      }
      for (const t of out.transitions) {
        messages.push({
          id: row.id,
          machine: row.machine,
          version: row.version,
          from: t.from,
          to: t.to,
          status: t.status,
          event: t.event,
          at: new Date(t.at),
          seq: t.seq,
        });
      }
    }
    if (messages.length > 0) {
      ctx.bus.publish(messages);
      ctx.changed(messages);
    }
    if (wakeInvocations) this.signal.wake();
    return true;
  }

  /** Claims due invocations (new, retried, or left by a crashed node) for the free slots. */
  private async claimInvocations(): Promise<boolean> {
    const { ctx } = this;
    const free = this.invoker.free();
    if (free <= 0) return false;
    const now = ctx.clock.now();
    const rows = await ctx.queries.claimInvocations(ctx.db, this.queue, new Date(now), free, ctx.node, new Date(now + ctx.leaseMs));
    for (const row of rows) this.invoker.start(row, this.queue);
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

/**
 * Due timers and inbox events merged by time. Events keep their inbox (id) order whatever
 * their timestamps say, so events sent in order are delivered in order.
 */
function dueItems(timers: Timer[], events: EventRow[], now: number): StepItem[] {
  const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at);
  const items: StepItem[] = [];
  let i = 0;
  for (const e of events) {
    const at = e.created_at.getTime();
    while (i < due.length && (due[i] as Timer).at <= at) items.push({ kind: 'timer', timer: due[i++] as Timer });
    items.push({ kind: 'event', eventId: e.id, event: reviveEvent(e.event), at });
  }
  while (i < due.length) items.push({ kind: 'timer', timer: due[i++] as Timer });
  return items;
}

/** Error events were stored as `{ name, message }`; machines expect an Error. */
function reviveEvent(event: EventRow['event']): EventObject {
  if (event.type.startsWith('xstate.error.actor.') && event.error && typeof event.error === 'object') {
    const stored = event.error as { name?: string; message?: string };
    const error = new Error(stored.message ?? 'invocation failed');
    if (stored.name) error.name = stored.name;
    return { ...event, error } as EventObject;
  }
  return event as EventObject;
}
