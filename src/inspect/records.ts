import type { AnyActorLogic, AnyActorRef, AnyMachineSnapshot, EventObject, InspectionEvent, Observer } from 'xstate';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DurableMachine } from '../record/durable.js';
import type { Spawn, StepOutcome } from '../record/step.js';

/** An XState inspection observer, as `createActor(…, { inspect })` takes it. */
export type InspectObserver = Observer<InspectionEvent> | ((event: InspectionEvent) => void);

/** How many records' actor stand-ins are kept; one stepped again after it left is registered again. */
const KEPT_RECORDS = 10_000;

const DONE = 'xstate.done.actor.';
const ERROR = 'xstate.error.actor.';

/**
 * The actor an inspector is shown for a record. Records are stepped with XState's pure
 * `transition()`, so there is no live actor: this stand-in carries what inspectors read of one
 * (`sessionId`, `id`, `logic` with its machine config, `_parent`, `getSnapshot()`).
 */
interface StandIn {
  readonly id: string;
  readonly sessionId: string;
  /** The session id of the actor at the top of its tree: the record itself, or a child record's root record. */
  readonly rootId: string;
  /** Whether it stands for a record (a child record among its parent's children), not an invocation. */
  readonly isRecord: boolean;
  readonly logic: AnyActorLogic | undefined;
  readonly src: AnyActorLogic | string | undefined;
  readonly _parent: StandIn | undefined;
  snapshot: unknown;
  readonly children: Map<string, StandIn>;
  getSnapshot(): unknown;
  send(): void;
}

function standIn(id: string, sessionId: string, logic: AnyActorLogic | undefined, parent: StandIn | undefined, snapshot: unknown, isRecord: boolean): StandIn {
  return {
    id,
    sessionId,
    rootId: parent?.rootId ?? sessionId,
    isRecord,
    logic,
    src: logic,
    _parent: parent,
    snapshot,
    children: new Map(),
    getSnapshot() {
      return this.snapshot;
    },
    send() {}, // an inspector never sends; a record's events go through send()
  };
}

/**
 * Reports every committed step of a record to an XState inspection observer (the Stately
 * inspector's `inspect`) as if the record were a live actor: the record registers once as an
 * actor with session id `<machine>:<id>` and its machine definition (`@xstate.actor`), then
 * each event the step took is an `@xstate.event` followed by an `@xstate.snapshot` with the
 * snapshot after it. Invocations the step started register as the record's children
 * (`<machine>:<id>/<invoke id>`), and their done and error events name them as the source.
 * A child record (a child machine the record invoked or spawned, seen started here) registers
 * under its own session id `<child machine>:<child id>` as a child of its parent's actor, in
 * its parent's tree (`rootId`); the parent's `xstate.done.actor.<key>` names it as the source.
 */
export class RecordInspector {
  private readonly records = new Map<string, StandIn>();
  /** Child records started by a step seen here and not stepped yet, by their session id: their parent and key. */
  private readonly unborn = new Map<string, { parent: StandIn; key: string }>();
  private readonly emit: (event: InspectionEvent) => void;

  constructor(
    observer: InspectObserver,
    private readonly logger: Logger,
  ) {
    this.emit = typeof observer === 'function' ? observer : (event) => observer.next?.(event);
  }

  /** After a commit of this node: the record `id` of `def` took the step `out`. */
  stepped(def: DurableMachine, id: string, out: Pick<StepOutcome, 'folded' | 'spawns' | 'snapshot'> & Partial<Pick<StepOutcome, 'childStarts'>>): void {
    const starts = out.childStarts ?? [];
    if (out.folded.length === 0 && out.spawns.size === 0 && starts.length === 0) return;
    try {
      const record = this.record(def, id, out.folded[0]?.snapshot ?? out.snapshot);
      for (const start of starts) this.childRecord(`${start.machine.id}:${id}.${start.key}`, { parent: record, key: start.key });
      for (const { event, snapshot } of out.folded) {
        record.snapshot = snapshot;
        const rootId = record.rootId;
        const actorRef = record as unknown as AnyActorRef;
        const sourceRef = sourceOf(record, event) as unknown as AnyActorRef | undefined;
        this.emit({ type: '@xstate.event', actorRef, rootId, event, sourceRef });
        this.emit({ type: '@xstate.snapshot', actorRef, rootId, event, snapshot: snapshot as AnyMachineSnapshot });
      }
      for (const spawn of out.spawns.values()) this.child(def, record, spawn);
    } catch (err) {
      // An observer's fault must never fail a committed step.
      this.logger.debug({ machine: def.name, id, err: errorMessage(err) }, 'drover: inspection observer threw');
    }
  }

  private record(def: DurableMachine, id: string, snapshot: unknown): StandIn {
    const sessionId = `${def.name}:${id}`;
    let record = this.records.get(sessionId);
    const before = record;
    if (record && record.logic !== def.machine) record = undefined; // migrated to another version: a new definition
    if (record) {
      this.records.delete(sessionId); // most recently stepped last, for the cap
      this.records.set(sessionId, record);
      return record;
    }
    const link = this.born(sessionId) ?? (before?._parent ? { parent: before._parent, key: [...before._parent.children].find(([, c]) => c === before)?.[0] ?? id } : undefined);
    record = standIn(id, sessionId, def.machine as unknown as AnyActorLogic, link?.parent, snapshot, true);
    if (link) link.parent.children.set(link.key, record);
    this.records.set(sessionId, record);
    if (this.records.size > KEPT_RECORDS) this.records.delete(this.records.keys().next().value as string);
    this.emit({ type: '@xstate.actor', actorRef: record as unknown as AnyActorRef, rootId: record.rootId });
    return record;
  }

  /**
   * A child record the step started. A step's child records are usually reported after it
   * (kept here until they are); a new record's are reported before it (the engine's create
   * path): that child, registered as a root a moment ago, registers again under its parent.
   */
  private childRecord(sessionId: string, link: { parent: StandIn; key: string }): void {
    const orphan = this.records.get(sessionId);
    if (orphan && orphan._parent === undefined) {
      const child = standIn(orphan.id, sessionId, orphan.logic, link.parent, orphan.snapshot, true);
      link.parent.children.set(link.key, child);
      this.records.set(sessionId, child);
      this.emit({ type: '@xstate.actor', actorRef: child as unknown as AnyActorRef, rootId: child.rootId });
      return;
    }
    this.unborn.set(sessionId, link);
    if (this.unborn.size > KEPT_RECORDS) this.unborn.delete(this.unborn.keys().next().value as string);
  }

  /** The parent of a child record first seen now: its id is `<parent id>.<key>`, or `<parent id>.<key>.<n>` for the key's n-th start. */
  private born(sessionId: string): { parent: StandIn; key: string } | undefined {
    const exact = this.unborn.get(sessionId);
    const name = exact ? sessionId : sessionId.replace(/\.\d+$/, '');
    const link = exact ?? this.unborn.get(name);
    if (link) this.unborn.delete(name);
    return link;
  }

  private child(def: DurableMachine, record: StandIn, spawn: Spawn): void {
    const logic = (def.machine.implementations.actors as Record<string, AnyActorLogic | undefined>)[spawn.src];
    const child = standIn(spawn.id, `${record.sessionId}/${spawn.id}`, logic, record, { status: 'active', input: spawn.input }, false);
    record.children.set(spawn.id, child);
    this.emit({ type: '@xstate.actor', actorRef: child as unknown as AnyActorRef, rootId: record.rootId });
  }
}

/** The child whose result `event` is, when the record's invocation of it was seen here. */
function sourceOf(record: StandIn, event: EventObject): StandIn | undefined {
  const prefix = event.type.startsWith(DONE) ? DONE : event.type.startsWith(ERROR) ? ERROR : undefined;
  if (prefix === undefined) return undefined;
  const child = record.children.get(event.type.slice(prefix.length));
  if (child) {
    // A child record's own steps show its last snapshot.
    if (!child.isRecord) child.snapshot = { status: prefix === DONE ? 'done' : 'error' };
    record.children.delete(child.id);
  }
  return child;
}
