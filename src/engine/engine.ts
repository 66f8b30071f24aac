import { randomUUID } from 'node:crypto';
import { type EmittedMessage, type TransitionMessage, transitionMessages } from '../bus/bus.js';
import { adoptTransaction, type CallerTransaction, type Queryable, withRetry } from '../db/database.js';
import { type InstanceRow, type NewInstance, transitionColumns } from '../db/queries.js';
import {
  DuplicateRecordError,
  EventNotAcceptedError,
  errorMessage,
  InvalidArgumentError,
  InvalidInputError,
  MachineDefinitionError,
  RecordNotFoundError,
  SnapshotRestoreError,
  UndeliverableMessageError,
} from '../errors.js';
import { captureTraceparent } from '../otel/telemetry.js';
import { jsonProblem } from '../record/check.js';
import type { DurableMachine } from '../record/durable.js';
import { validateInput } from '../record/input.js';
import { checkLookup, checkNewId, checkText, DEFAULT_MAX_PAYLOAD, serialised, serialisedEvent } from '../record/payload.js';
import { restoreSnapshot } from '../record/state.js';
import { contextIds, initialStep, nextWake } from '../record/step.js';
import { type ActorPlan, type ActorStep, type ActorWrite, actorsCommitted, deliverableFor, emptyActorPlan, emptyPlan, planActors, recordTargets, writeActors } from './actors.js';
import { Commits, type EngineContext, type EngineDeps } from './context.js';

export type { EngineDeps } from './context.js';
import { Invoker } from './invoker.js';
import { QueuePoller } from './poller.js';
import { prepareRetry, type RetryOptions } from './retry.js';
import { recordKey } from './records.js';
import { StepWriter } from './steps.js';

/** One record of `createMany()`. */
export interface CreateItem<TInput = unknown> {
  id?: string;
  input?: TInput;
  runAt?: Date | number;
  priority?: number;
  uniqueKey?: string;
}

/** A record as it was just created, before any view is made of it. */
export interface Created {
  id: string;
  def: DurableMachine;
  out: ReturnType<typeof initialStep>;
  now: number;
  wake: number | null;
}

/** The earliest due time of new records (null: none has work due). */
function earliestDue(records: readonly Created[]): number | null {
  let min: number | null = null;
  for (const r of records) if (r.wake !== null && (min === null || r.wake < min)) min = r.wake;
  return min;
}

/** How a due time travels in notices: null when it is due now (or has passed). */
const laterThan = (now: number, at: number | null) => (at !== null && at > now ? at : null);

/**
 * Why a state refuses an event: no transition for it at all, or transitions whose guards
 * all refused it (`snapshot.can()` is false either way).
 */
function refusal(snapshot: ReturnType<typeof restoreSnapshot>, type: string, state: string): string {
  const guarded = snapshot._nodes.some((node) => {
    const on = (node as { transitions?: Map<string, unknown[]> }).transitions;
    return on?.has(type) === true || [...(on?.keys() ?? [])].some((k) => k === '*' || (k.endsWith('.*') && type.startsWith(k.slice(0, -1))));
  });
  return guarded
    ? `no enabled transition for it in state "${state}" (every transition for it has a guard that refused it)`
    : `state "${state}" has no transition for it`;
}

/** A record's input through the machine's `input` validator: its output, or `InvalidInputError` with the issues. */
async function validated(def: DurableMachine, input: unknown, item?: number): Promise<unknown> {
  const result = await validateInput(def, input);
  if (!result.ok) throw new InvalidInputError(def.name, result.issues, item === undefined ? {} : { item });
  return result.value;
}

/** PostgreSQL's int4, the type of `priority`. */
const INT4_MIN = -2_147_483_648;
const INT4_MAX = 2_147_483_647;

/** Records per statement of `createMany()`. */
const CREATE_CHUNK = 1000;

/** Thrown inside createMany()'s single-statement write when a record needs actor rows: it is written again in a transaction. */
const NEEDS_TRANSACTION = new Error('drover: createMany needs a transaction');

/** Whether a step wrote anything beside its record (child records, messages, emitted events). */
function hasActorEffects(out: ReturnType<typeof initialStep>): boolean {
  return out.childStarts.length + out.messages.length + out.emitted.length > 0;
}

/**
 * The data path: the writes of create/send/cancel, the queue pollers and the invoker, the
 * wake-ups (this node's commits, NOTIFY and bus notices from other nodes, freed invocation
 * room, the earliest known due time), and one commit hook, {@link Engine.onCommitted}, that
 * feeds the bus, the relay and the waiters.
 */
export class Engine {
  private readonly ctx: EngineContext;
  private readonly commits = new Commits();
  private readonly invoker: Invoker;
  private readonly pollers = new Map<string, QueuePoller>();
  private unlisten: (() => Promise<void>) | undefined;

  constructor(private readonly deps: EngineDeps) {
    this.ctx = {
      ...deps,
      commits: this.commits,
      wakeQueues: (queues) => {
        for (const queue of queues) {
          this.pollers.get(queue)?.peerWork(null);
          this.deps.announceWork(queue, null);
        }
      },
    };
    this.invoker = new Invoker(this.ctx, {
      fuse: (queue, row, event) => this.pollers.get(queue)?.fuse(row, event) ?? false,
      inboxed: (queue) => this.pollers.get(queue)?.wake(),
      roomFreed: () => {
        for (const p of this.pollers.values()) p.roomFreed();
      },
      retryAt: (queue, at) => this.pollers.get(queue)?.invocationsDue(at),
    });
  }

  private get maxPayload(): number {
    return this.deps.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  }

  /** Calls `listener` after every commit of this node that changed records. Returns an unsubscribe. */
  onCommitted(listener: (messages: TransitionMessage[]) => void): () => void {
    return this.commits.onCommitted(listener);
  }

  /** Calls `listener` after every commit of this node whose steps emitted events (`emit()`), in order. Returns an unsubscribe. */
  onEmitted(listener: (events: EmittedMessage[]) => void): () => void {
    return this.commits.onEmitted(listener);
  }

  /** The queue pollers, one per queue, for the supervisor to run. Starts LISTEN and the invoker's heartbeat. */
  async start(): Promise<Map<string, QueuePoller>> {
    this.unlisten = await this.deps.db.listen(this.deps.queries.channel, (payload) => {
      // Payload `queue|node|at`: this node's own writes already woke its poller.
      const [queue, node, at] = payload.split('|');
      if (node === this.deps.node) return;
      this.peerWork(queue || null, at ? Number(at) : null);
    });
    this.invoker.startHeartbeat();
    for (const queue of this.deps.registry.queues()) this.pollers.set(queue, new QueuePoller(this.ctx, queue, this.invoker));
    return this.pollers;
  }

  /** Whether this node's engine is doing nothing: every poller asleep, no invocation held, nothing being written. */
  settled(): boolean {
    return !this.invoker.busy && [...this.pollers.values()].every((p) => p.idle);
  }

  /** Makes every poller look at its records and invocations now. */
  wakeAll(): void {
    for (const p of this.pollers.values()) {
      p.wake();
      p.invocationsDue();
    }
  }

  /** When anything of this node's queues is next due, records or invocations (epoch ms; null: nothing waits). */
  async nextDue(now: number): Promise<number | null> {
    let next: number | null = null;
    for (const queue of this.deps.registry.queues()) {
      const { instanceAt, invocationAt } = await this.deps.queries.nextDue(this.deps.db, { queue, now: new Date(now) });
      for (const at of [instanceAt, invocationAt]) if (at !== null && (next === null || at < next)) next = at;
    }
    return next;
  }

  /** Another node has work for `queue` (null: any), due at `at` (null: now). */
  peerWork(queue: string | null, at: number | null): void {
    const targets = queue === null ? [...this.pollers.values()] : [this.pollers.get(queue)].filter((p) => p !== undefined);
    for (const p of targets) p.peerWork(at !== null && Number.isFinite(at) ? at : null);
  }

  /** After the pollers stopped: running invocations (up to shutdownGrace), LISTEN, leases. */
  async drain(): Promise<void> {
    if (this.pollers.size === 0 && !this.unlisten) return;
    await this.invoker.stop(this.deps.shutdownGraceMs);
    await this.unlisten?.();
    this.unlisten = undefined;
    try {
      // Invocations cut short or never started go back at once instead of waiting out their lease.
      await this.deps.db.query(this.deps.queries.sql.releaseInvocations, [this.deps.node, new Date(this.deps.clock.now())]);
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'drover: could not release leases; they expire on their own');
    }
  }

  /** Runs a new record's initial transition and the columns it is stored with. */
  private prepareCreate(def: DurableMachine, item: CreateItem, now: number): { created: Created; row: NewInstance } {
    const id = checkNewId(item.id ?? randomUUID());
    const priority = item.priority ?? 0;
    if (!Number.isInteger(priority) || priority < INT4_MIN || priority > INT4_MAX) {
      throw new InvalidArgumentError(`priority must be an integer from ${INT4_MIN} to ${INT4_MAX} (got ${String(priority)})`);
    }
    if (item.uniqueKey !== undefined) {
      if (typeof item.uniqueKey !== 'string') throw new InvalidArgumentError('uniqueKey must be a string');
      checkText(item.uniqueKey, 'uniqueKey');
    }
    const runAt =
      item.runAt === undefined ? now : item.runAt instanceof Date || typeof item.runAt === 'number' || typeof item.runAt === 'string' ? new Date(item.runAt).getTime() : NaN;
    if (!Number.isFinite(runAt)) throw new InvalidArgumentError('runAt must be a Date or epoch milliseconds');
    const start = Math.max(now, runAt);
    let out: ReturnType<typeof initialStep>;
    try {
      // A new record has no parent: a sendParent in its initial state fails it.
      out = initialStep(def, item.input, now, start, captureTraceparent(), { deliverable: deliverableFor(null) });
    } catch (err) {
      throw new InvalidInputError(def.name, [{ message: errorMessage(err), path: [] }], { cause: err });
    }
    // An entry action that threw: a record that failed before it began is not stored.
    if (out.status === 'failed') throw new InvalidInputError(def.name, [{ message: out.error?.message ?? 'the initial transition failed', path: [] }]);
    // Context goes through JSON on every step: what does not survive it is refused before it is stored.
    const problem = jsonProblem(out.snapshot.context);
    if (problem) {
      throw new MachineDefinitionError(
        `machine "${def.name}", state "${out.state}": the initial context is not JSON-safe: ${problem} (drover stores context as JSON)`,
      );
    }
    const wake = nextWake(out);
    const spawns =
      out.status !== 'active'
        ? []
        : [...out.spawns.values()].map((s) => ({
            invoke_id: s.id,
            token: randomUUID(),
            src: s.src,
            input: s.input ?? null,
            locked_until: new Date(start),
          }));
    // The first work due: an invocation at runAt, or the earliest timer.
    const due = spawns.length > 0 ? Math.min(start, wake ?? start) : wake;
    return {
      created: { id, def, out, now, wake: due },
      row: {
        id,
        state: out.state,
        snapshot: def.machine.getPersistedSnapshot(out.snapshot),
        status: out.status,
        wake_at: wake === null ? null : new Date(wake),
        timers: out.timers,
        priority,
        unique_key: item.uniqueKey ?? null,
        error: out.error ?? null,
        seq: out.seq,
        transitions: out.transitions.map(transitionColumns),
        spawns,
      },
    };
  }

  /** Creates one record; in a caller's transaction when `tx` is given. */
  async create(machine: string, item: CreateItem, tx?: CallerTransaction): Promise<Created> {
    const def = this.deps.registry.latest(checkLookup(machine, 'machine'));
    if (typeof item !== 'object' || item === null) throw new InvalidArgumentError('create() options must be an object { id?, input?, runAt?, priority?, uniqueKey?, tx? }');
    // The serialised input is what is validated, run and stored.
    item = { ...item, input: serialised(item.input, 'input', this.maxPayload) };
    if (def.input) item = { ...item, input: await validated(def, item.input) };
    const now = this.deps.clock.now();
    const { created, row } = this.prepareCreate(def, item, now);
    const { queries } = this.deps;
    const actors = await this.createdActors([{ machine: def.name, id: created.id, version: def.version, out: created.out }], now);
    let written: ActorWrite | undefined;
    const run = async (q: Queryable) => {
      const inserted = await queries.createInstance(q, {
        ...row,
        machine: def.name,
        version: def.version,
        queue: def.queue,
        now: new Date(now),
        // Pollers skip notifications from their own node, woken directly instead; a caller's
        // transaction commits later, so then every node (this one too) is notified.
        notify: { node: tx ? '' : this.deps.node, at: laterThan(now, created.wake) },
      });
      if (inserted) {
        if (actors) written = await this.writeCreatedActors(q, actors, now);
        return;
      }
      const exists = await q.query(queries.sql.instanceExists, [def.name, created.id]);
      throw exists.rowCount > 0
        ? new DuplicateRecordError(def.name, 'id', created.id)
        : new DuplicateRecordError(def.name, 'uniqueKey', item.uniqueKey ?? '');
    };
    if (tx) await run(adoptTransaction(tx));
    else {
      await withRetry(() => (actors ? this.deps.db.transaction(run) : run(this.deps.db)));
      this.created(def, [created], written);
    }
    return created;
  }

  /**
   * Creates many records of one machine: one statement per chunk of {@link CREATE_CHUNK}, all
   * of them or none (a duplicate id or unique key fails the call and stores nothing). In a
   * caller's transaction the records commit with it; a failed call leaves that transaction
   * usable (it runs under a savepoint).
   */
  async createMany(machine: string, items: readonly CreateItem[], tx?: CallerTransaction): Promise<Created[]> {
    if (!Array.isArray(items)) throw new InvalidArgumentError('items must be an array of { id?, input?, runAt?, priority?, uniqueKey? }');
    const def = this.deps.registry.latest(checkLookup(machine, 'machine'));
    if (items.length === 0) return [];
    // Every item is serialised (and validated) before anything is written: one bad input stores nothing.
    items = items.map((item, i) => {
      if (!item || typeof item !== 'object') throw new InvalidArgumentError(`items[${i}] must be an object`);
      return { ...item, input: serialised(item.input, `items[${i}].input`, this.maxPayload) };
    });
    if (def.input) {
      items = await Promise.all(items.map(async (item, i) => ({ ...item, input: await validated(def, item.input, i) })));
    }
    const node = tx ? '' : this.deps.node;
    let prepared: Array<{ created: Created; row: NewInstance }> = [];
    // Chunk by chunk: the next chunk's initial transitions run while the last one is written.
    // More than one chunk runs in one transaction, so a failure anywhere stores nothing.
    // `single`: one statement outside any transaction, which is atomic only without actor rows.
    const write = async (q: Queryable, single = false) => {
      const now = this.deps.clock.now();
      prepared = [];
      const ids = new Set<string>();
      const keys = new Set<string>();
      let writing: Promise<unknown> | undefined;
      written = undefined;
      try {
        for (let i = 0; i < items.length; i += CREATE_CHUNK) {
          const chunk = items.slice(i, i + CREATE_CHUNK).map((item, k) => this.prepareItem(def, item, i + k, now, ids, keys));
          prepared.push(...chunk);
          if (single && chunk.some((p) => hasActorEffects(p.created.out))) throw NEEDS_TRANSACTION;
          const insert = this.deps.queries.createInstances(q, {
            machine: def.name,
            version: def.version,
            queue: def.queue,
            now: new Date(now),
            items: chunk.map((p) => p.row),
            notify: { node, at: laterThan(now, earliestDue(chunk.map((p) => p.created))) },
          });
          insert.catch(() => {}); // awaited below; a failure is seen there
          await writing;
          writing = insert;
        }
        await writing;
        const actors = await this.createdActors(
          prepared.map((p) => ({ machine: def.name, id: p.created.id, version: def.version, out: p.created.out })),
          now,
        );
        if (actors) written = await this.writeCreatedActors(q, actors, now);
      } catch (err) {
        await writing?.catch(() => {});
        throw err;
      }
    };
    let written: ActorWrite | undefined;
    try {
      if (tx) {
        const q = adoptTransaction(tx);
        await q.query('SAVEPOINT drover_create_many');
        try {
          await write(q);
        } catch (err) {
          await q.query('ROLLBACK TO SAVEPOINT drover_create_many');
          throw err;
        }
        await q.query('RELEASE SAVEPOINT drover_create_many');
      } else if (items.length <= CREATE_CHUNK) {
        // One statement, atomic on its own; records that start child records or send need a transaction.
        await withRetry(() => write(this.deps.db, true)).catch((err: unknown) => {
          if (err !== NEEDS_TRANSACTION) throw err;
          return withRetry(() => this.deps.db.transaction(write));
        });
      } else {
        await withRetry(() => this.deps.db.transaction(write));
      }
    } catch (err) {
      throw await this.duplicateError(def, prepared, err);
    }
    const created = prepared.map((p) => p.created);
    if (!tx) this.created(def, created, written);
    return created;
  }

  /**
   * The actor plan of new records (child records their initial states start, messages,
   * emits), or undefined when they have none. A `sendToRecord` to a record that does not
   * exist is refused before anything is written.
   */
  private async createdActors(records: ActorStep[], now: number): Promise<ActorPlan | undefined> {
    const targets = records.flatMap((r) => recordTargets(r.out));
    if (targets.length > 0) {
      const found = new Set((await this.deps.queries.actors.existing(this.deps.db, targets)).map((r) => recordKey(r.machine, r.id)));
      const missing = targets.find((t) => !found.has(recordKey(t.machine, t.id)));
      if (missing) throw new UndeliverableMessageError(`sendToRecord: machine "${missing.machine}" has no record "${missing.id}" (sent by the initial state of a new record)`);
    }
    const plan = planActors(this.ctx, records, now);
    return emptyPlan(plan) ? undefined : plan;
  }

  /** Writes new records' actor plan in their transaction. */
  private async writeCreatedActors(q: Queryable, plan: ActorPlan, now: number): Promise<ActorWrite> {
    const links = [...plan.links].map(([key, children]) => {
      const [machine, id] = key.split('\u0000') as [string, string];
      return { machine, id, children };
    });
    if (links.length > 0) await this.deps.queries.actors.setChildren(q, links);
    return writeActors(this.ctx, q, plan, now);
  }

  /** One item of createMany(): checked, its initial transition run, and not a duplicate of an earlier item. */
  private prepareItem(def: DurableMachine, item: CreateItem, i: number, now: number, ids: Set<string>, keys: Set<string>) {
    if (!item || typeof item !== 'object') throw new InvalidArgumentError(`items[${i}] must be an object`);
    let p: { created: Created; row: NewInstance };
    try {
      p = this.prepareCreate(def, item, now);
    } catch (err) {
      if (err instanceof InvalidInputError) throw new InvalidInputError(def.name, err.issues, { cause: err.cause, item: i });
      if (err instanceof InvalidArgumentError) err.message = `items[${i}]: ${err.message}`;
      throw err;
    }
    if (ids.has(p.created.id)) throw new DuplicateRecordError(def.name, 'id', p.created.id);
    ids.add(p.created.id);
    if (p.row.unique_key !== null) {
      if (keys.has(p.row.unique_key)) throw new DuplicateRecordError(def.name, 'uniqueKey', p.row.unique_key);
      keys.add(p.row.unique_key);
    }
    return p;
  }

  /** A unique violation of createMany() as the typed error of create(). */
  private async duplicateError(def: DurableMachine, prepared: Array<{ created: Created; row: NewInstance }>, err: unknown): Promise<unknown> {
    if ((err as { code?: unknown }).code !== '23505') return err;
    const constraint = String((err as { constraint?: unknown }).constraint ?? '');
    const detail = String((err as { detail?: unknown }).detail ?? '');
    if (constraint === 'instances_unique_key' || /unique_key/.test(detail)) {
      const key = prepared.find((p) => p.row.unique_key !== null && detail.includes(p.row.unique_key))?.row.unique_key;
      return new DuplicateRecordError(def.name, 'uniqueKey', key ?? '');
    }
    // The detail names the key on PostgreSQL; PGlite may not: then ask which ids are taken.
    let id = prepared.find((p) => detail.includes(`, ${p.created.id})`))?.created.id;
    if (id === undefined) {
      const taken = await this.deps.db.query<{ id: string }>(
        `SELECT id FROM ${this.deps.queries.schema}.instances WHERE machine = $1 AND id = ANY($2::text[]) LIMIT 1`,
        [def.name, prepared.map((p) => p.created.id)],
      );
      id = taken.rows[0]?.id;
    }
    return id === undefined ? err : new DuplicateRecordError(def.name, 'id', id);
  }

  /** After this node committed new records: its poller looks when their work is due, other nodes are told, listeners hear of it. */
  private created(def: DurableMachine, records: Created[], actors?: ActorWrite): void {
    const poller = this.pollers.get(def.queue);
    const messages: TransitionMessage[] = [];
    for (const r of records) {
      if (r.wake !== null && poller) {
        if (r.out.spawns.size > 0 && r.out.status === 'active') poller.invocationsDue(laterThan(r.now, r.wake));
        else poller.wakeAt(r.wake);
      }
      messages.push(...transitionMessages(r.id, def.name, def.version, r.out.transitions));
      this.deps.inspector?.stepped(def, r.id, r.out);
    }
    // Their child records after them: the inspector sees a parent before its children.
    if (actors) messages.push(...actorsCommitted(this.ctx, actors, (machine, id) => this.invoker.abortRecord(machine, id)));
    const due = earliestDue(records);
    if (due !== null) this.deps.announceWork(def.queue, laterThan(this.deps.clock.now(), due));
    this.commits.emit(messages);
  }

  /**
   * Stores an event for a record and wakes its poller, here and on the other nodes. The
   * event is checked against the stored state when nothing is queued ahead of it.
   */
  async send(machine: string, id: string, given: { type: string }, tx?: CallerTransaction): Promise<void> {
    // The machine name and id were checked by the runtime's send(). The serialised event is
    // what the state is asked about and what is stored.
    const event = serialisedEvent(given, this.maxPayload);
    const { queries } = this.deps;
    const run = async (q: Queryable) => {
      const row = await queries.instanceForSend(q, { machine, id });
      if (!row) throw new RecordNotFoundError(machine, id);
      if (row.status !== 'active') throw new EventNotAcceptedError(machine, id, event.type, `the record is ${row.status}`);
      const def = this.deps.registry.get(machine, row.version);
      if (!row.pending) {
        // With nothing queued ahead of it, the stored state is the one that will take it.
        let snapshot: ReturnType<typeof restoreSnapshot>;
        try {
          snapshot = restoreSnapshot(def.machine, row.snapshot);
        } catch (err) {
          throw new SnapshotRestoreError(machine, id, err);
        }
        let accepted: boolean;
        try {
          accepted = snapshot.can(event);
        } catch {
          // A guard threw: store the event and let the step fail the record, as it would
          // had other events been queued ahead of this one.
          accepted = true;
        }
        if (!accepted) throw new EventNotAcceptedError(machine, id, event.type, refusal(snapshot, event.type, row.state));
      }
      const stored = await queries.sendEvent(q, {
        machine,
        id,
        event,
        traceparent: captureTraceparent() ?? null,
        now: new Date(this.deps.clock.now()),
        notifyNode: tx ? '' : this.deps.node,
      });
      if (!stored) throw new EventNotAcceptedError(machine, id, event.type, 'the record finished meanwhile');
      return def.queue;
    };
    if (tx) {
      await run(adoptTransaction(tx));
      return;
    }
    const queue = await withRetry(() => run(this.deps.db));
    this.pollers.get(queue)?.wake();
    this.deps.announceWork(queue, null);
  }

  /**
   * Takes a failed record back to before its failed step and applies the failed event again
   * (see {@link prepareRetry}), in one version-guarded write; the queue's pollers, here and on
   * the other nodes, are told. Resolves to the step's outcome: the record may have failed again.
   */
  async retry(machine: string, id: string, options: RetryOptions): Promise<{ def: DurableMachine; out: ReturnType<typeof initialStep> }> {
    for (;;) {
      const { def, step } = await withRetry(() => prepareRetry(this.ctx, machine, id, options));
      const poller = this.pollers.get(def.queue);
      const writer = new StepWriter(this.ctx, def.queue, this.invoker, {
        recordDue: (at) => (at === null ? poller?.wake() : poller?.wakeAt(at)),
        invocationsLeft: () => poller?.invocationsDue(null),
      });
      const committed = await withRetry(() => writer.commitSteps([step], this.deps.clock.now()));
      // Lost to another write (a concurrent retry or cancel): read the record again.
      if (committed === 0) continue;
      await this.deps.queries.notifyWork(this.deps.db, { queue: def.queue, node: this.deps.node }).catch(() => {});
      this.deps.announceWork(def.queue, null);
      return { def, out: step.out };
    }
  }

  /**
   * After a write of this node outside the step path committed (a live migration): the
   * queue's poller here looks now, at records and invocations, other nodes are told on the
   * bus (the write's NOTIFY told them too), and the transitions go to the commit hook.
   */
  externalCommit(queue: string, messages: TransitionMessage[]): void {
    this.pollers.get(queue)?.peerWork(null);
    this.deps.announceWork(queue, null);
    if (messages.length > 0) this.commits.emit(messages);
  }

  /**
   * Cancels an active record: false if it had already finished. Its child records (and
   * theirs) are cancelled with it; a child record's parent gets `xstate.error.actor.<key>`,
   * as an invoke whose actor failed. All in one transaction.
   */
  async cancel(machine: string, id: string, reason: string): Promise<boolean> {
    const { db, queries } = this.deps;
    const { sql, json } = queries;
    const now = new Date(this.deps.clock.now());
    const event = { type: 'drover.cancel', reason };
    const error = { name: 'Cancelled', message: reason };
    const res = await withRetry(() =>
      db.transaction(async (tx) => {
        const cancelled = await tx.query<{ n: number }>(sql.cancelInstance, [machine, id, json(error), now, json(event)]);
        if (cancelled.rows[0]?.n !== 1) return null;
        const row = (await tx.query<InstanceRow>(sql.getInstance, [machine, id])).rows[0];
        const descendants = await queries.actors.cancelChildren(tx, { roots: [{ machine, id }], now, reason: `its parent ${machine} "${id}" was cancelled` });
        const parent = row?.links?.parent;
        let queues: string[] = [];
        if (row && parent) {
          const failed = { type: `xstate.error.actor.${parent.key}`, error, actorId: parent.key };
          const peer = { peer_machine: parent.machine, peer_id: parent.id };
          ({ queues } = await queries.actors.deliver(tx, {
            children: [],
            messages: [{ n: 0, machine: parent.machine, instance_id: parent.id, event: failed, peer_machine: machine, peer_id: id }],
            newEvents: [],
            effects: [{ machine, instance_id: id, version: row.version, seq: row.seq, kind: 'sent', ...peer, event: failed, state: row.state, ids: {}, at: now }],
            now,
            node: this.deps.node,
          }));
        }
        return { row, descendants, queues };
      }),
    );
    if (res === null) {
      const exists = await db.query(sql.instanceExists, [machine, id]);
      if (exists.rowCount === 0) throw new RecordNotFoundError(machine, id);
      return false;
    }
    const children = actorsCommitted(
      this.ctx,
      { part: emptyActorPlan(), queues: res.queues, emittedIds: [], undelivered: [], cancelled: res.descendants, now: now.getTime() },
      (m, i) => this.invoker.abortRecord(m, i),
    );
    if (children.length > 0) this.commits.emit(children);
    this.invoker.abortRecord(machine, id);
    const { row } = res;
    if (row) {
      this.deps.telemetry.stateSpans(machine, row.version, id, row.entered_at.getTime(), [
        { seq: row.seq, from: row.state, to: row.state, status: 'cancelled', event, at: now.getTime() },
      ]);
      this.commits.emit([
        {
          id,
          machine,
          version: row.version,
          from: row.state,
          to: row.state,
          status: 'cancelled',
          event,
          at: now,
          seq: row.seq,
          ids: contextIds(row.snapshot.context),
        },
      ]);
    }
    return true;
  }
}
