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
  readonly logic: AnyActorLogic | undefined;
  readonly src: AnyActorLogic | string | undefined;
  readonly _parent: StandIn | undefined;
  snapshot: unknown;
  readonly children: Map<string, StandIn>;
  getSnapshot(): unknown;
  send(): void;
}

function standIn(id: string, sessionId: string, logic: AnyActorLogic | undefined, parent: StandIn | undefined, snapshot: unknown): StandIn {
  return {
    id,
    sessionId,
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
 */
export class RecordInspector {
  private readonly records = new Map<string, StandIn>();
  private readonly emit: (event: InspectionEvent) => void;

  constructor(
    observer: InspectObserver,
    private readonly logger: Logger,
  ) {
    this.emit = typeof observer === 'function' ? observer : (event) => observer.next?.(event);
  }

  /** After a commit of this node: the record `id` of `def` took the step `out`. */
  stepped(def: DurableMachine, id: string, out: Pick<StepOutcome, 'folded' | 'spawns' | 'snapshot'>): void {
    if (out.folded.length === 0 && out.spawns.size === 0) return;
    try {
      const record = this.record(def, id, out.folded[0]?.snapshot ?? out.snapshot);
      for (const { event, snapshot } of out.folded) {
        record.snapshot = snapshot;
        const rootId = record.sessionId;
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
    if (record && record.logic !== def.machine) record = undefined; // migrated to another version: a new definition
    if (record) {
      this.records.delete(sessionId); // most recently stepped last, for the cap
      this.records.set(sessionId, record);
      return record;
    }
    record = standIn(id, sessionId, def.machine as unknown as AnyActorLogic, undefined, snapshot);
    this.records.set(sessionId, record);
    if (this.records.size > KEPT_RECORDS) this.records.delete(this.records.keys().next().value as string);
    this.emit({ type: '@xstate.actor', actorRef: record as unknown as AnyActorRef, rootId: sessionId });
    return record;
  }

  private child(def: DurableMachine, record: StandIn, spawn: Spawn): void {
    const logic = (def.machine.implementations.actors as Record<string, AnyActorLogic | undefined>)[spawn.src];
    const child = standIn(spawn.id, `${record.sessionId}/${spawn.id}`, logic, record, { status: 'active', input: spawn.input });
    record.children.set(spawn.id, child);
    this.emit({ type: '@xstate.actor', actorRef: child as unknown as AnyActorRef, rootId: record.sessionId });
  }
}

/** The child whose result `event` is, when the record's invocation of it was seen here. */
function sourceOf(record: StandIn, event: EventObject): StandIn | undefined {
  const prefix = event.type.startsWith(DONE) ? DONE : event.type.startsWith(ERROR) ? ERROR : undefined;
  if (prefix === undefined) return undefined;
  const child = record.children.get(event.type.slice(prefix.length));
  if (child) {
    child.snapshot = { status: prefix === DONE ? 'done' : 'error' };
    record.children.delete(child.id);
  }
  return child;
}
