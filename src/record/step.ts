import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { serializeError, UndeliverableMessageError, UnstorableValueError } from '../errors.js';
import { type ChildStart, isMachineLogic, isParentRef, isSendToRecord, type Message, type MessageTarget } from './actors.js';

/** How a fold learns whether a message can be delivered: an error fails the record on the event that sent it. */
export interface FoldOptions {
  deliverable?: (to: MessageTarget, event: EventObject) => Error | undefined;
}
import { storageProblem } from './check.js';
import type { DurableMachine } from './durable.js';
import { pureInitialTransition, pureTransition } from './pure.js';
import { stateString } from './state.js';

/** A record's status: `active` (running or waiting), `done` (final state), `failed`, `cancelled`. */
export type RecordStatus = 'active' | 'done' | 'failed' | 'cancelled';

/** A pending delayed event (an `after` timer or a delayed raise/sendTo to self). */
export interface Timer {
  id: string;
  /** Due time, epoch milliseconds. */
  at: number;
  event: EventObject;
}

/** An invoked actor to start: the registered logic `src` with `input`. */
export interface Spawn {
  id: string;
  src: string;
  input: unknown;
}

/** One committed change of state or status, as stored in history and the outbox. */
export interface TransitionRow {
  seq: number;
  from: string | null;
  to: string;
  status: RecordStatus;
  event: EventObject;
  error?: ReturnType<typeof serializeError>;
  at: number;
  /** Every context field whose name ends in `_id`, as published with the transition. */
  ids?: Record<string, unknown>;
  /** W3C trace context of the request whose event caused it. */
  traceparent?: string;
}

/** The context fields whose names end in `_id` (top level): what a published transition carries. */
export function contextIds(context: unknown): Record<string, unknown> {
  const ids: Record<string, unknown> = {};
  if (context && typeof context === 'object') {
    for (const [key, value] of Object.entries(context)) if (key.endsWith('_id') && value !== undefined) ids[key] = value;
  }
  return ids;
}

/** Something due for a record: an inbox event or a timer. */
export type StepItem =
  | { kind: 'event'; eventId: string; event: EventObject; at: number; traceparent?: string }
  | { kind: 'timer'; timer: Timer };

/** A record as the step sees it. */
export interface RecordState {
  snapshot: AnyMachineSnapshot;
  state: string;
  status: RecordStatus;
  enteredAt: number;
  timers: Timer[];
  seq: number;
}

/**
 * What `retry()` needs of a failed step: the event (a timer's event for a timer) whose step
 * failed, and the record as it was before that event.
 */
export interface FailedStep {
  event: EventObject;
  snapshot: AnyMachineSnapshot;
  state: string;
  enteredAt: number;
  timers: Timer[];
}

/** What one step produced: the new record state plus the effects to store and run. */
export interface StepOutcome extends RecordState {
  error?: ReturnType<typeof serializeError>;
  /** Set when the step failed the record: what it failed on, for `retry()`. */
  failure?: FailedStep;
  transitions: TransitionRow[];
  /** Invocations to start after the commit, by id. */
  spawns: Map<string, Spawn>;
  /** Invocations to stop (a restarted invocation is in both `stops` and `spawns`). */
  stops: Set<string>;
  /** Events the machine emitted (`emit()`), with the history seq and state its event's macrostep left the record in. */
  emitted: Array<{ event: EventObject; seq: number; state: string }>;
  /** Child machines invoked or spawned, in order: each becomes a child record. */
  childStarts: ChildStart[];
  /** Keys of child machines stopped (their records are cancelled). */
  childStops: string[];
  /** Events sent to other records, in order. */
  messages: Message[];
  /** Events the record could not take; they are consumed and dropped. */
  ignored: EventObject[];
  consumedEventIds: string[];
  /** Every event the step took through XState, in order, with the snapshot after it (what the inspector is shown). */
  folded: Array<{ event: EventObject; snapshot: AnyMachineSnapshot }>;
  /** The trace context of the item being folded (stamped on the transitions it causes). */
  cause?: string;
}

const SELF_SEND = 'xstate.sendTo';

/** When the record is next due on its own: its earliest timer, or never once it has finished. */
export function nextWake(out: Pick<StepOutcome, 'status' | 'timers'>): number | null {
  return out.status === 'active' && out.timers.length > 0 ? Math.min(...out.timers.map((t) => t.at)) : null;
}

/** The first step of a new record: XState's initial transition and its effects. */
export function initialStep(def: DurableMachine, input: unknown, now: number, timerBase = now, traceparent?: string, options: FoldOptions = {}): StepOutcome {
  const out = emptyOutcome({ snapshot: undefined as never, state: '', status: 'active', enteredAt: now, timers: [], seq: 0 });
  if (traceparent) out.cause = traceparent;
  const init: EventObject = { type: 'xstate.init' };
  let snapshot: AnyMachineSnapshot;
  let actions: unknown[];
  try {
    [snapshot, actions] = pureInitialTransition(def.machine, input);
  } catch (err) {
    // A throwing context factory or entry assign: there is no snapshot to keep.
    throw err instanceof Error ? err : new Error(String(err));
  }
  out.snapshot = snapshot;
  out.state = stateString(snapshot.value, def.machine);
  const queue: EventObject[] = [];
  const failure = applyActions(out, actions, timerBase, queue, snapshot, options);
  if (failure === undefined) childChanges(out, undefined, snapshot);
  out.transitions.push({
    seq: 1,
    from: null,
    to: out.state,
    status: 'active',
    event: init,
    at: now,
    ids: contextIds(snapshot.context),
    ...(out.cause ? { traceparent: out.cause } : {}),
  });
  out.seq = 1;
  // What the initial actions sent and emitted comes after the creation entry.
  for (const e of [...out.messages, ...out.emitted]) {
    e.seq = 1;
    e.state = out.state;
  }
  settle(out, snapshot, init, now, failure);
  out.folded.push({ event: init, snapshot: out.snapshot });
  if (out.status === 'active' && queue.length > 0) fold(def, out, queue, now, options);
  return out;
}

/**
 * Folds due events and timers through XState's pure `transition()`, one macrostep each, and
 * collects the effects. Nothing here touches the database or starts anything.
 */
export function foldStep(def: DurableMachine, record: RecordState, items: StepItem[], now: number, options: FoldOptions = {}): StepOutcome {
  const out = emptyOutcome(record);
  for (const item of items) {
    // Events after a failure stay in the inbox: a retry delivers them after the failed one.
    if (out.status === 'failed') break;
    if (item.kind === 'event') out.consumedEventIds.push(item.eventId);
    if (out.status !== 'active') {
      if (item.kind === 'event') out.ignored.push(item.event);
      continue;
    }
    let event: EventObject;
    if (item.kind === 'event' && item.traceparent) out.cause = item.traceparent;
    else delete out.cause;
    if (item.kind === 'timer') {
      const index = out.timers.findIndex((t) => t.id === item.timer.id);
      if (index === -1) continue; // cancelled earlier in this step
      out.timers.splice(index, 1);
      event = item.timer.event;
    } else {
      event = item.event;
    }
    fold(def, out, [event], now, options);
  }
  return out;
}

/**
 * A failed record's retry: the `drover.retry` transition out of `failed` back to `record`
 * (the record as it was before the failed step), then `items` (the failed event again, or
 * nothing) folded as a step is.
 */
export function retryStep(
  def: DurableMachine,
  record: RecordState,
  failedState: string,
  event: EventObject,
  items: StepItem[],
  now: number,
  options: FoldOptions = {},
): StepOutcome {
  const seq = record.seq + 1;
  const retried: TransitionRow = { seq, from: failedState, to: record.state, status: 'active', event, at: now, ids: contextIds(record.snapshot.context) };
  const out = foldStep(def, { ...record, status: 'active', seq }, items, now, options);
  out.transitions.unshift(retried);
  return out;
}

function fold(def: DurableMachine, out: StepOutcome, queue: EventObject[], now: number, options: FoldOptions): void {
  while (queue.length > 0 && out.status === 'active') {
    const event = queue.shift() as EventObject;
    // applyActions replaces out.timers rather than changing it: this is the list before the event.
    const timersBefore = out.timers;
    let next: AnyMachineSnapshot;
    let actions: unknown[];
    try {
      [next, actions] = pureTransition(def.machine, out.snapshot, event);
    } catch (err) {
      // A throwing guard or assign: keep the last good snapshot, fail the record.
      settle(out, out.snapshot, event, now, err, timersBefore);
      out.folded.push({ event, snapshot: out.snapshot });
      return;
    }
    if (next === out.snapshot && actions.length === 0) {
      out.ignored.push(event);
      out.folded.push({ event, snapshot: out.snapshot });
      continue;
    }
    const [sent, emitted] = [out.messages.length, out.emitted.length];
    const failure = applyActions(out, actions, now, queue, next, options) ?? unstorableContext(next, out.snapshot);
    if (failure !== undefined) {
      // The failed event sent and emitted nothing.
      out.messages.length = sent;
      out.emitted.length = emitted;
    }
    if (failure === undefined) childChanges(out, out.snapshot, next);
    settle(out, failure === undefined ? next : out.snapshot, event, now, failure, timersBefore);
    // What the event sent and emitted belongs to its macrostep: after its history entry, in the state it left the record in.
    for (const e of [...out.messages.slice(sent), ...out.emitted.slice(emitted)]) {
      e.seq = out.seq;
      e.state = out.state;
    }
    out.folded.push({ event, snapshot: out.snapshot });
  }
}

/**
 * The failure of a step whose new context cannot be stored (an assign put a BigInt, a cycle, a
 * NUL in it): the record fails alone on that event, as if the assign had thrown, instead of
 * failing its whole batch's write. An unchanged context was stored before and is not checked.
 */
function unstorableContext(next: AnyMachineSnapshot, before: AnyMachineSnapshot): UnstorableValueError | undefined {
  if (next.context === before.context) return undefined;
  const problem = storageProblem(next.context, 'context');
  return problem === null ? undefined : new UnstorableValueError(`the step's new context cannot be stored: ${problem}`);
}

/** The failure of an action whose event or input would be stored (a delayed or self-sent event, an invocation's input) and cannot be. */
function unstorableValue(value: unknown, what: string): UnstorableValueError | undefined {
  const problem = storageProblem(value, what);
  return problem === null ? undefined : new UnstorableValueError(`the step's ${what} cannot be stored: ${problem}`);
}

/**
 * Records the new snapshot, and a transition row when the state or status changed. With
 * `timersBefore` (a folded event), a failure keeps the record as it was before the event.
 */
function settle(out: StepOutcome, next: AnyMachineSnapshot, event: EventObject, now: number, failure: unknown, timersBefore?: Timer[]): void {
  const from = out.state;
  const snapshotBefore = out.snapshot;
  const enteredBefore = out.enteredAt;
  out.snapshot = next;
  out.state = stateString(next.value, next.machine);
  let status: RecordStatus = 'active';
  if (failure !== undefined) {
    status = 'failed';
    out.error = serializeError(failure);
  } else if (next.status === 'error') {
    status = 'failed';
    out.error = serializeError(next.error);
  } else if (next.status === 'done') {
    status = 'done';
  }
  const changedState = out.state !== from;
  if (changedState) out.enteredAt = now;
  if (changedState || status !== out.status) {
    out.seq += 1;
    out.transitions.push({
      seq: out.seq,
      from,
      to: out.state,
      status,
      event,
      error: status === 'failed' ? out.error : undefined,
      at: now,
      ids: contextIds(next.context),
      ...(out.cause ? { traceparent: out.cause } : {}),
    });
  }
  out.status = status;
  if (status === 'failed' && timersBefore) out.failure = { event, snapshot: snapshotBefore, state: from, enteredAt: enteredBefore, timers: timersBefore };
  if (status !== 'active') out.timers = [];
}

interface ActionLike {
  type: string;
  params?: Record<string, unknown>;
  info?: unknown;
  exec?: (info: unknown, params: unknown) => void;
}

/** Turns the actions `transition()` returned into timer rows, invocations and queued events; runs custom actions. */
function applyActions(out: StepOutcome, actions: unknown[], now: number, queue: EventObject[], next: AnyMachineSnapshot, options: FoldOptions): unknown {
  const send = (to: MessageTarget, event: EventObject): unknown => {
    const unstorable = unstorableValue(event, 'event');
    if (unstorable) return unstorable;
    const refused = options.deliverable?.(to, event);
    if (refused) return refused;
    out.messages.push({ to, event, seq: out.seq, state: out.state });
    return undefined;
  };
  for (const raw of actions) {
    const action = raw as ActionLike;
    const params = action.params ?? {};
    switch (action.type) {
      case 'xstate.raise':
      case SELF_SEND: {
        const event = params.event as EventObject;
        const delay = params.delay as number | undefined;
        if (action.type === SELF_SEND) {
          const target = sendTarget(out.snapshot, next, params.to);
          if (target === 'promise') break; // promise children take no events
          if (target !== 'self') {
            if (typeof delay === 'number') return new UndeliverableMessageError(`a delayed event to another record ("${event.type}") is not supported; send it at once and let the receiver set a timer`);
            const failed = send(target, event);
            if (failed !== undefined) return failed;
            break;
          }
        }
        // A delayed event is stored as a timer, a self-sent one in history: both must be storable.
        if (typeof delay === 'number' || action.type === SELF_SEND) {
          const unstorable = unstorableValue(event, 'event');
          if (unstorable) return unstorable;
        }
        if (typeof delay === 'number') {
          const id = typeof params.id === 'string' ? params.id : `${out.seq}.${out.timers.length}.${event.type}`;
          out.timers = out.timers.filter((t) => t.id !== id);
          out.timers.push({ id, at: now + delay, event });
        } else if (action.type === SELF_SEND) {
          queue.push(event); // an undelayed raise is already applied; an undelayed sendTo self is not
        }
        break;
      }
      case 'xstate.cancel':
        out.timers = out.timers.filter((t) => t.id !== params.sendId);
        break;
      case 'xstate.spawnChild': {
        // A child machine becomes a record of its own: childChanges() sees it in the new children.
        if (isMachineLogic((params.actorRef as { logic?: unknown } | undefined)?.logic)) break;
        const id = params.id as string;
        const unstorable = unstorableValue(params.input, `input of invocation "${id}"`);
        if (unstorable) return unstorable;
        out.spawns.set(id, { id, src: params.src as string, input: params.input });
        break;
      }
      case 'xstate.stopChild': {
        const ref = params.id as string | { id: string };
        const id = typeof ref === 'string' ? ref : ref.id;
        if (out.spawns.delete(id) && !out.stops.has(id)) break; // started and stopped in one step: never ran
        out.stops.add(id);
        break;
      }
      case 'xstate.emit': {
        const unstorable = unstorableValue(params.event, 'emitted event');
        if (unstorable) return unstorable;
        out.emitted.push({ event: params.event as EventObject, seq: out.seq, state: out.state });
        break;
      }
      case 'xstate.sendParent':
      case 'xstate.log':
        break;
      default:
        if (action.type.startsWith('xstate.')) break;
        try {
          if (isSendToRecord(action.exec)) {
            const request = action.exec(action.info, action.params);
            if (typeof request.id !== 'string' || request.id.length === 0)
              return new UndeliverableMessageError(`sendToRecord("${request.machine}") resolved to no record id (got ${JSON.stringify(request.id)})`);
            if (!request.event || typeof request.event.type !== 'string')
              return new UndeliverableMessageError(`sendToRecord("${request.machine}", "${request.id}") resolved to no event with a type`);
            const failed = send({ kind: 'record', machine: request.machine, id: request.id }, request.event);
            if (failed !== undefined) return failed;
          } else action.exec?.(action.info, action.params);
        } catch (err) {
          return err;
        }
    }
  }
  return undefined;
}

type ChildRef = { id: string; logic?: unknown; src?: unknown; options?: { input?: unknown } };

/** Where a resolved `sendTo` goes: the record itself, its parent, a child record by key, or a promise child (nowhere). */
function sendTarget(before: AnyMachineSnapshot | undefined, next: AnyMachineSnapshot, to: unknown): 'self' | 'promise' | Message['to'] {
  if (isParentRef(to)) return { kind: 'parent' };
  const id = typeof to === 'string' ? to : (to as { id?: string } | undefined)?.id;
  if (id === undefined) return 'self';
  const child = (next.children as Record<string, ChildRef>)[id] ?? (before?.children as Record<string, ChildRef> | undefined)?.[id];
  if (!child) return 'self';
  return isMachineLogic(child.logic) ? { kind: 'child', key: id } : 'promise';
}

/**
 * The child machines a macrostep started and stopped, read from the snapshot's children
 * (an invoke's `spawnChild` and an `assign` spawn alike: XState reports the latter as no action).
 * A child started and stopped within the step never ran and is neither.
 */
function childChanges(out: StepOutcome, before: AnyMachineSnapshot | undefined, next: AnyMachineSnapshot): void {
  const was = (before?.children ?? {}) as Record<string, ChildRef>;
  const now = next.children as Record<string, ChildRef>;
  for (const [key, ref] of Object.entries(was)) {
    if (now[key] === ref || !isMachineLogic(ref.logic)) continue;
    const started = out.childStarts.findIndex((c) => c.key === key);
    if (started !== -1) out.childStarts.splice(started, 1);
    else out.childStops.push(key);
  }
  for (const [key, ref] of Object.entries(now)) {
    if (was[key] === ref || !isMachineLogic(ref.logic)) continue;
    out.childStarts.push({ key, machine: ref.logic, input: ref.options?.input });
  }
}

function emptyOutcome(record: RecordState): StepOutcome {
  return {
    ...record,
    timers: [...record.timers],
    transitions: [],
    spawns: new Map(),
    stops: new Set(),
    emitted: [],
    childStarts: [],
    childStops: [],
    messages: [],
    ignored: [],
    consumedEventIds: [],
    folded: [],
  };
}
