import type { EventObject } from 'xstate';
import type { SlaBreach } from '../otel/sla.js';
import type { RecordStatus, TransitionRow } from '../record/step.js';
import type { ControlOp } from '../supervisor/control.js';

/** A committed transition as subscribers see it. */
export interface TransitionMessage {
  id: string;
  machine: string;
  version: number;
  from: string | null;
  to: string;
  status: RecordStatus;
  event: EventObject;
  at: Date;
  seq: number;
  /** Every context field whose name ends in `_id`, at this transition. */
  ids: Record<string, unknown>;
  /** W3C trace context of the request behind it, when known (NATS messages carry it). */
  traceparent?: string | null;
}

/**
 * An event a record emitted (XState's `emit()`), committed with its step: what
 * `runtime.on(machine, type, handler)` receives, and what is published to
 * `<prefix>.emit.<machine>.<type>` with NATS.
 */
export interface EmittedMessage<E extends EventObject = EventObject> {
  /** The emitting record's id. */
  id: string;
  machine: string;
  version: number;
  /** The emitted event as the machine built it. */
  event: E;
  /** The record's state after the event that emitted it (its entry/transition actions ran in it). */
  state: string;
  /** The record's history seq after the event that emitted it: the emit comes after that history entry. */
  seq: number;
  /** Every context field whose name ends in `_id`, after the step. */
  ids: Record<string, unknown>;
  at: Date;
  /** The `effects` row's id (text): what deduplicates it on NATS. */
  effectId: string;
}

/** The messages for a record's committed transitions. */
export function transitionMessages(id: string, machine: string, version: number, transitions: TransitionRow[]): TransitionMessage[] {
  return transitions.map((t) => ({
    id,
    machine,
    version,
    from: t.from,
    to: t.to,
    status: t.status,
    event: t.event,
    at: new Date(t.at),
    seq: t.seq,
    ids: t.ids ?? {},
  }));
}

/** Which transitions a subscriber wants; every field is optional. */
export interface TransitionFilter {
  machine?: string;
  /** Target state: exact, or a parent (`b` matches `b.x`). */
  to?: string;
  from?: string;
}

/** Whether a state string matches a filter: itself, a child (`b` → `b.x`), or a parallel leaf. */
export const statePrefixMatch = (want: string | undefined, got: string | null) =>
  want === undefined || got?.split(',').some((leaf) => leaf === want || leaf.startsWith(`${want}.`));

/** Which emitted events a listener of `runtime.on()` wants: one machine's, of one type or (`'*'`) all. */
export interface EmittedFilter {
  machine: string;
  /** The event's `type`, or `'*'` for every type. */
  type: string;
}

/** Whether an emitted event is one a filter wants. */
export const emittedMatch = (filter: EmittedFilter, e: EmittedMessage) =>
  e.machine === filter.machine && (filter.type === '*' || e.event.type === filter.type);

/** What `subscribe()` returns: call it to unsubscribe; `ready` resolves once delivery is set up. */
export type Unsubscribe = (() => void) & { ready: Promise<void> };

export type { ControlOp } from '../supervisor/control.js';

/** An SLA breach as it is published. */
export type Breach = SlaBreach;

/** What a bus calls back into the runtime with, once started. */
export interface BusHandlers {
  /** A `send` request from another process; resolves to the reply. */
  send(machine: string, body: unknown): Promise<unknown>;
  /** A `create` request from another process; resolves to the reply. */
  create(machine: string, body: unknown): Promise<unknown>;
  /** Another node changed control state. */
  control(op: string, value: string, node: string): void;
  /** Another node has work for `queue`, due at `at` (null: now). */
  wake(queue: string, node: string, at: number | null): void;
}

/**
 * How transitions and notices travel between drover and its subscribers and nodes. Two
 * implementations: {@link LocalBus} (in-process) and NatsBus (NATS JetStream with an outbox).
 */
export interface Bus {
  /** Whether committed transitions wait in the outbox for the relay (NATS) rather than going out at once. */
  readonly outbox: boolean;
  /** Sets up what the bus needs (the stream, request/reply, notices). */
  start(handlers: BusHandlers): Promise<void>;
  /** Hands this node's committed transitions to the bus. */
  publish(messages: TransitionMessage[]): void;
  /** Delivers matching transitions to `handler`. */
  subscribe(filter: TransitionFilter, handler: (t: TransitionMessage) => void | Promise<void>, durable?: string): Unsubscribe;
  /** Hands this node's committed emitted events (`emit()`) to the bus: the in-process bus delivers them, NATS leaves them to the relay. */
  publishEmitted(events: EmittedMessage[]): void;
  /** Delivers emitted events that match to `handler` (`runtime.on()`). */
  onEmitted(filter: EmittedFilter, handler: (e: EmittedMessage) => void | Promise<void>): Unsubscribe;
  /** Tells other nodes that `queue` has work, due at `at` (null: now). Best effort: polling finds it anyway. */
  announceWork(queue: string, node: string, at: number | null): void;
  /** Tells other nodes about a control change at once. Best effort: they also re-read it. */
  announceControl(op: ControlOp, value: string, node: string): void;
  /** Publishes an SLA breach where subscribers can see it (nothing on the in-process bus). */
  publishBreach(breach: Breach): Promise<void>;
  close(): Promise<void>;
}
