import { isDeepStrictEqual } from 'node:util';
import { type AnyMachineSnapshot, type AnyStateMachine, createActor, createMachine, type EventObject, SimulatedClock } from 'xstate';
import { dueItems, reviveEvent, toRecordState } from '../engine/records.js';
import { errorMessage, serializeError } from '../errors.js';
import { jsonProblem } from '../record/check.js';
import type { DurableMachine } from '../record/durable.js';
import { DEFAULT_MAX_PAYLOAD, serialisedEvent } from '../record/payload.js';
import { stateString } from '../record/state.js';
import { foldStep, initialStep, type RecordState, type StepItem, type StepOutcome } from '../record/step.js';

/*
 * One path of events run twice: durably, as the engine runs a record (drover's own step,
 * initialStep/foldStep, with the snapshot and timers through JSON and back between every
 * event, restored by the engine's own toRecordState), and in memory by plain XState
 * (createActor on a SimulatedClock). After every event the two must agree.
 */

/** What kind of problem {@link CheckProblem} reports. */
export type CheckProblemKind =
  /** durable() refuses the machine (an undefined delay, an actor that cannot run durably, a static context that is not JSON). */
  | 'definition'
  /** The machine does not start with the given input (its context factory or an entry action throws). */
  | 'input'
  /** A context that does not survive JSON (a Date, a Map, a class instance…), after the event in `path`. */
  | 'context'
  /** An event of `path` cannot be sent to a record: the door refuses it (not JSON-safe), or `send()` would refuse it in the restored state. */
  | 'event'
  /** The durable run and in-memory XState differ: state, context or status. */
  | 'mismatch'
  /** The durable step failed (an action, a guard or a restore threw) where in-memory XState did not. */
  | 'error'
  /** An `after` timer was not stored, or firing it after a restore does not do what in-memory XState does. */
  | 'timer'
  /** An invoke's result arrived for an invocation the durable step never started. */
  | 'invoke';

/** One thing that does not survive persistence, with where it happened. */
export interface CheckProblem {
  kind: CheckProblemKind;
  /** The machine name (its id). */
  machine: string;
  /** The state the record was in (drover's state string, as `get().state` shows it), or `''` for the whole machine. */
  state: string;
  /** The events from the initial state up to the one that went wrong (empty: at the start). */
  path: EventObject[];
  message: string;
}

/** What a replay needs besides the path. */
export interface Replay {
  def: DurableMachine;
  /** The machine in-memory XState runs: `def.machine` with every actor stubbed (invoked work never runs). */
  memory: AnyStateMachine;
  /** The input both sides start from (serialised and validated, as create() would). */
  input: unknown;
}

const AFTER = 'xstate.after.';
const DONE = 'xstate.done.actor.';
const ERROR = 'xstate.error.actor.';

/** A value as it reads back from a `jsonb` column: through JSON, object keys in jsonb's order (shorter first, then bytewise). */
export function throughJsonb<T>(value: T): T {
  return value === undefined ? value : (reorder(JSON.parse(JSON.stringify(value))) as T);
}

function reorder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reorder);
  if (typeof value !== 'object' || value === null) return value;
  const keys = Object.keys(value).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = reorder((value as Record<string, unknown>)[key]);
  return out;
}

/**
 * A step's outcome as the next step sees it after a commit and a restart: the persisted
 * snapshot and the timers through jsonb, restored by the engine's own `toRecordState`.
 */
function stored(def: DurableMachine, out: StepOutcome): RecordState {
  return toRecordState(def, {
    snapshot: throughJsonb(def.machine.getPersistedSnapshot(out.snapshot)),
    state: out.state,
    status: out.status,
    entered_at: new Date(out.enteredAt),
    timers: throughJsonb(out.timers),
    seq: out.seq,
  });
}

/** In-memory XState on a simulated clock, its failure kept (an actor with no error observer rethrows it later). */
function startMemory(r: Replay): { actor: ReturnType<typeof createActor<AnyStateMachine>>; clock: SimulatedClock; failure: () => unknown; stop: () => void } {
  const clock = new SimulatedClock();
  let failed: { error: unknown } | undefined;
  // A parent to send to, as a child record has one: sendParent from a root actor throws.
  // The child takes its parent's system, and with it the clock: the parent gets the simulated one.
  const parent = createActor(createMachine({ id: 'drover.check.parent' }), { clock });
  const actor = createActor(r.memory, { input: r.input, clock, parent });
  actor.subscribe({ error: (error) => (failed ??= { error }) });
  actor.start();
  // XState refuses to stop an actor with a parent directly; on a simulated clock with stubbed
  // actors nothing of it runs on, so it is left to the garbage collector.
  return { actor, clock, failure: () => failed?.error, stop: () => {} };
}

/**
 * Runs `path` durably and in memory from the start: the first problem, or `undefined` when
 * the two agree after every event (the start itself is {@link checkStart}'s).
 */
export function replayPath(r: Replay, path: readonly EventObject[]): CheckProblem | undefined {
  const { def } = r;
  const memory = startMemory(r);
  try {
    let now = 0;
    let out = initialStep(def, r.input, now);
    // Invocations the record has: an invoke's result can only arrive for one of them.
    // Child machines become child records: their done and error events come back the same way.
    const live = new Set([...out.spawns.keys(), ...out.childStarts.map((c) => c.key)]);
    let record = stored(def, out);
    for (let i = 0; i < path.length; i++) {
      const event = path[i] as EventObject;
      const problem = (kind: CheckProblemKind, message: string): CheckProblem => ({ kind, machine: def.name, state: record.state, path: path.slice(0, i + 1), message });
      let items: StepItem[];
      if (event.type.startsWith(AFTER)) {
        // Waiting for the timer: the durable side fires the stored row when it falls due (with
        // any other due by then, as the poller does), in-memory XState on its simulated clock.
        const timer = record.timers.filter((t) => t.event.type === event.type).sort((a, b) => a.at - b.at)[0];
        // The walk takes timers in any order; in time, a shorter one fired with a longer one: no such path.
        if (!timer && !canTake(memory.actor.getSnapshot(), event)) return undefined;
        if (!timer) return problem('timer', `the after timer "${event.type}" was not stored with the record (stored: ${record.timers.map((t) => t.event.type).join(', ') || 'none'}), so it never fires durably`);
        now = Math.max(now, timer.at);
        items = dueItems(record.timers, [], now);
        memory.clock.set(now);
      } else if (event.type.startsWith(DONE) || event.type.startsWith(ERROR)) {
        const done = event.type.startsWith(DONE);
        const id = event.type.slice(done ? DONE.length : ERROR.length);
        if (!live.has(id)) return problem('invoke', `the result of invocation "${id}" arrived, but the durable step never started it (started: ${[...live].join(', ') || 'none'})`);
        // The invoker's event, as the inbox stores and revives it.
        const result = done ? { type: event.type, output: (event as { output?: unknown }).output, actorId: id } : { type: event.type, error: serializeError((event as { error?: unknown }).error), actorId: id };
        let sent: EventObject;
        try {
          sent = reviveEvent(throughJsonb(result) as never);
        } catch (err) {
          return problem('event', `the output of invocation "${id}" cannot be stored: ${errorMessage(err)}`);
        }
        items = [{ kind: 'event', eventId: String(i), event: sent, at: now }];
        memory.actor.send(event);
      } else {
        let sent: EventObject;
        try {
          sent = throughJsonb(serialisedEvent(event, DEFAULT_MAX_PAYLOAD));
        } catch (err) {
          return problem('event', `send() refuses the event "${event.type}": ${errorMessage(err)}`);
        }
        // send() asks the stored state whether it takes the event, and refuses it when not.
        if (canTake(memory.actor.getSnapshot(), event) && !canTake(record.snapshot, sent)) {
          return problem('event', `send() would refuse "${event.type}" in the restored state, while in-memory XState takes it`);
        }
        items = [{ kind: 'event', eventId: String(i), event: sent, at: now }];
        memory.actor.send(event);
      }
      out = foldStep(def, record, items, now);
      const found = compare(r, out, memory.actor.getSnapshot(), memory.failure(), event.type.startsWith(AFTER) ? 'timer' : 'mismatch');
      if (found) return problem(found.kind, found.message);
      for (const id of [...out.stops, ...out.childStops]) live.delete(id);
      for (const id of [...out.spawns.keys(), ...out.childStarts.map((c) => c.key)]) live.add(id);
      if (out.status !== 'active') return undefined;
      try {
        record = stored(def, out);
      } catch (err) {
        return problem('error', `the snapshot after "${event.type}" does not restore: ${errorMessage(err)}`);
      }
    }
    return undefined;
  } finally {
    memory.stop();
  }
}

/**
 * The initial step, durably and in memory: a problem when the machine does not start with
 * the input, its first context is not JSON, or the two differ already.
 */
export function checkStart(r: Replay): CheckProblem | undefined {
  const { def } = r;
  const at = (kind: CheckProblemKind, state: string, message: string): CheckProblem => ({ kind, machine: def.name, state, path: [], message });
  let out: StepOutcome;
  const refused = (state: string, why: string) =>
    at(
      'input',
      state,
      `the machine does not start with ${r.input === undefined ? 'no input' : 'the input given'} (create() would refuse it): ${why}; give a sample input (checkMachine(machine, { input }), or checkOptions in its module for drover check)`,
    );
  try {
    out = initialStep(def, r.input, 0);
  } catch (err) {
    return refused((def.machine.root.initial?.target[0]?.path ?? []).join('.'), errorMessage(err));
  }
  // A context factory or entry action that throws leaves XState's first snapshot in error.
  if (out.status === 'failed') return refused(out.state, out.error?.message ?? 'the initial transition failed');
  const memory = startMemory(r);
  try {
    const found = compare(r, out, memory.actor.getSnapshot(), memory.failure(), 'mismatch', true);
    return found ? at(found.kind, out.state, found.message) : undefined;
  } finally {
    memory.stop();
  }
}

interface Found {
  kind: CheckProblemKind;
  message: string;
}

/** Where the durable outcome and in-memory XState part: context not JSON, a failure on one side only, state, status, context. */
function compare(r: Replay, out: StepOutcome, mem: AnyMachineSnapshot, memFailure: unknown, kind: CheckProblemKind, initial = false): Found | undefined {
  const when = initial ? 'the initial context' : 'the context after it';
  const contextProblem = out.status === 'failed' ? null : jsonProblem(out.snapshot.context);
  if (contextProblem) return { kind: 'context', message: `${when} does not survive JSON: ${contextProblem}` };
  const memFailed = mem.status === 'error';
  if (out.status === 'failed' && !memFailed) return { kind: 'error', message: `the durable step fails (${out.error?.name ?? 'Error'}: ${out.error?.message ?? ''}) where in-memory XState does not` };
  if (memFailed && out.status !== 'failed') return { kind, message: `in-memory XState fails (${errorMessage(memFailure ?? mem.error)}) where the durable step does not` };
  if (memFailed) return undefined; // both fail: the machine's own behaviour, not persistence's
  const durableState = stateString(out.snapshot.value, r.def.machine);
  const memoryState = stateString(mem.value, r.def.machine);
  if (durableState !== memoryState) return { kind, message: `durably the record reaches "${durableState}", in-memory XState "${memoryState}"` };
  const memStatus = mem.status === 'done' ? 'done' : 'active';
  if (out.status !== memStatus) return { kind, message: `durably the record is ${out.status}, in-memory XState is ${memStatus}` };
  const durableContext = throughJsonb(out.snapshot.context) as unknown;
  const memoryContext = throughJsonb(mem.context) as unknown;
  if (!isDeepStrictEqual(durableContext, memoryContext)) {
    const where = difference(durableContext, memoryContext, 'context');
    return { kind, message: `the context differs at ${where.path}: durably ${where.durable}, in-memory XState ${where.memory}` };
  }
  return undefined;
}

/** The first path where two JSON values differ, with each side's value there (shortened). */
function difference(a: unknown, b: unknown, path: string): { path: string; durable: string; memory: string } {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && Array.isArray(a) === Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const key of keys) {
      const x = (a as Record<string, unknown>)[key];
      const y = (b as Record<string, unknown>)[key];
      if (!isDeepStrictEqual(x, y)) return difference(x, y, Array.isArray(a) ? `${path}[${key}]` : `${path}.${key}`);
    }
  }
  return { path, durable: shown(a), memory: shown(b) };
}

function shown(value: unknown): string {
  const text = value === undefined ? 'absent' : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** `snapshot.can(event)`; a guard that throws counts as taking it (send() stores the event then, and the step fails). */
function canTake(snapshot: AnyMachineSnapshot, event: EventObject): boolean {
  try {
    return snapshot.can(event);
  } catch {
    return true;
  }
}
