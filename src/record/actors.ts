import { type AnyActorRef, type AnyStateMachine, createActor, createMachine, type EventObject, StateMachine } from 'xstate';

// Records as actors: what a step's fold needs to tell child machines, parents and other
// records apart. The fold stays pure: it collects these intents; the engine turns them into
// rows (src/engine/actors.ts).

/** Where a message goes: the record's parent, one of its child records by key, or any record. */
export type MessageTarget = { kind: 'parent' } | { kind: 'child'; key: string } | { kind: 'record'; machine: string; id: string };

/** An event a step sends to another record, delivered to its inbox in the step's transaction. */
export interface Message {
  to: MessageTarget;
  event: EventObject;
  /** The sender's history seq and state after the macrostep that sent it. */
  seq: number;
  state: string;
}

/** A child machine a step invoked or spawned: it becomes a record of its own. */
export interface ChildStart {
  /** Its key among the parent's children: the invoke or spawn id. */
  key: string;
  machine: AnyStateMachine;
  input: unknown;
}

/** Whether actor logic is a state machine (a child record) rather than a promise, callback or observable. */
export function isMachineLogic(logic: unknown): logic is AnyStateMachine {
  return logic instanceof StateMachine;
}

// The parent every record's inert actor scope has, so that XState resolves `sendParent` instead
// of throwing "Unable to send event to actor '#_parent'": the fold then sees an `xstate.sendTo`
// to this ref and routes it to the record's parent record (or fails a record that has none).
const parentSink = createActor(createMachine({ id: 'drover.parent' }));

/** The parent given to every record's inert scope (see {@link isParentRef}). */
export function parentRef(): AnyActorRef {
  return parentSink;
}

/** Whether a resolved `sendTo` target is the record's parent. */
export function isParentRef(ref: unknown): boolean {
  return ref === parentSink;
}

type Resolvable<T> = T | ((args: { context: unknown; event: EventObject }) => T);

const SEND_TO_RECORD = Symbol.for('drover.sendToRecord');

/** What a `sendToRecord` action resolves to when a step runs it. */
export interface RecordSend {
  machine: string;
  id: string;
  event: EventObject;
}

/**
 * An action that sends `event` to the record `id` of `machine`. The event lands in the
 * target's inbox in the same transaction as the sending step: exactly once, in order per
 * sender. `id` and `event` may be functions of `{ context, event }`. A target that does not
 * exist fails the sending record with `UndeliverableMessageError` (in its history; `retry()`
 * sends again). Run by plain XState outside drover, it does nothing.
 *
 * @example on: { paid: { actions: sendToRecord('order', ({ context }) => context.order_id, { type: 'paid' }) } }
 */
export function sendToRecord<TContext = unknown, TEvent extends EventObject = EventObject>(
  machine: string,
  id: string | ((args: { context: TContext; event: TEvent }) => string),
  event: EventObject | ((args: { context: TContext; event: TEvent }) => EventObject),
): (args: { context: TContext; event: TEvent }) => RecordSend {
  const action = (args: { context: TContext; event: TEvent }): RecordSend => ({
    machine,
    id: resolve(id as Resolvable<string>, args),
    event: resolve(event as Resolvable<EventObject>, args),
  });
  Object.defineProperty(action, 'name', { value: 'drover.sendToRecord' });
  Object.defineProperty(action, SEND_TO_RECORD, { value: true });
  return action;
}

function resolve<T>(value: Resolvable<T>, args: { context: unknown; event: EventObject }): T {
  return typeof value === 'function' ? (value as (a: typeof args) => T)(args) : value;
}

/** Whether an action's implementation is a {@link sendToRecord}. */
export function isSendToRecord(exec: unknown): exec is (info: unknown, params: unknown) => RecordSend {
  return typeof exec === 'function' && (exec as unknown as Record<symbol, unknown>)[SEND_TO_RECORD] === true;
}
