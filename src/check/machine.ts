import { type AnyEventObject, type AnyMachineSnapshot, type AnyStateMachine, type EventObject, fromPromise } from 'xstate';
import { getAdjacencyMap } from 'xstate/graph';
import { errorMessage, InvalidArgumentError, MachineDefinitionError } from '../errors.js';
import { rejectUnknownKeys } from '../keys.js';
import { checkDefinition, jsonProblem } from '../record/check.js';
import { durable, type DurableMachine, isDurableMachine } from '../record/durable.js';
import { validateInput } from '../record/input.js';
import { DEFAULT_MAX_PAYLOAD, serialised } from '../record/payload.js';
import { pureInitialTransition, pureTransition } from '../record/pure.js';
import { stateString } from '../record/state.js';
import { type CheckProblem, checkStart, type Replay, replayPath } from './replay.js';

export type { CheckProblem, CheckProblemKind } from './replay.js';

/** Options of {@link checkMachine}. */
export interface CheckOptions {
  /**
   * Sample events, for events that carry a payload. In each state the walk sends every event
   * type the state handles: the samples of that type when there are some (all of them), else
   * `{ type }` alone. A function is asked in each state. An invoke's result is an event too:
   * `{ type: 'xstate.done.actor.<invoke id>', output }` here overrides `outputs`.
   */
  events?: readonly AnyEventObject[] | ((snapshot: AnyMachineSnapshot) => readonly AnyEventObject[]);
  /** The input every run starts from (as `create()` takes it). Default: none. */
  input?: unknown;
  /**
   * What each invoked promise resolves with, by actor name (`setup({ actors })` key) or invoke
   * id. Default `undefined`. Invoked actors never run: their result is delivered as an event.
   */
  outputs?: Record<string, unknown>;
  /** The most distinct states (value and context) the walk visits. Default 500. */
  maxStates?: number;
}

const OPTION_KEYS = Object.keys({ events: true, input: true, outputs: true, maxStates: true } satisfies Record<keyof CheckOptions, true>);

/** What {@link checkMachine} found. */
export interface CheckResult {
  /** The machine name. */
  machine: string;
  /** `true` when there are no problems. */
  ok: boolean;
  /** Each problem once (the first path that shows it), in the order found. */
  problems: CheckProblem[];
  /** How many distinct states (value and context) the walk reached. */
  states: number;
  /** How many paths were run, durably and in memory: one per transition out of each state reached. */
  paths: number;
  /** `true` when the walk stopped at `maxStates`: states beyond were not reached. */
  truncated: boolean;
  /**
   * Events the walk could not take because they throw in memory too (a guard or an assign
   * reading a payload the sample lacks): not problems, but not checked. Give samples with
   * `events` to check them.
   */
  unexplored: Array<{ state: string; event: string; message: string }>;
}

const UNDEFINED = '\u0000undefined';
const INTERNAL = ['xstate.done.state.', 'xstate.snapshot.', 'xstate.init'];

/**
 * Checks that a machine survives persistence: that drover runs it as in-memory XState does,
 * with a restart between every event. Nothing is stored; no database is needed.
 *
 * It runs the static checks of `durable()` (a plain XState machine's refusals come back as
 * problems), then walks the machine with `xstate/graph` and runs every transition of every
 * state it reaches, after the shortest path to that state, twice: durably, through drover's own step, with the snapshot and timers
 * persisted, sent through JSON (in `jsonb`'s key order) and restored between every event;
 * and in memory by plain XState. After every event the state, the status and the
 * JSON-normalised context must agree, and the context must be JSON. An `after` timer on a
 * path is waited for: the durable side fires the stored timer, in-memory XState advances a
 * `SimulatedClock`. Invoked promises never run: their result is delivered as an event (see
 * `outputs`). Custom actions run, on both sides, as they do in a step.
 *
 * Problems come back in the result; a bad argument throws `InvalidArgumentError`.
 *
 * @example
 * const result = await checkMachine(order, { input: { order_id: 'o-1', amount: 10 }, outputs: { charge: { receipt: 'r-1' } } });
 * for (const p of result.problems) console.log(`${p.kind} in ${p.state} after ${p.path.map((e) => e.type).join(' → ')}: ${p.message}`);
 */
export async function checkMachine(machine: DurableMachine | AnyStateMachine, options: CheckOptions = {}): Promise<CheckResult> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('checkMachine() options must be an object { events?, input?, outputs?, maxStates? }');
  rejectUnknownKeys(options, OPTION_KEYS, 'checkMachine()');
  const maxStates = options.maxStates ?? 500;
  if (!Number.isInteger(maxStates) || maxStates < 1) throw new InvalidArgumentError(`checkMachine(): maxStates must be a whole number >= 1 (got ${String(options.maxStates)})`);
  const samples = sampleEvents(options.events);
  const outputs = options.outputs ?? {};
  if (typeof outputs !== 'object' || outputs === null || Array.isArray(outputs)) throw new InvalidArgumentError('checkMachine(): outputs must be an object { [actor name or invoke id]: output }');
  for (const [name, output] of Object.entries(outputs)) {
    const problem = jsonProblem(output, `outputs.${name}`);
    if (problem) throw new InvalidArgumentError(`checkMachine(): ${problem} (an invocation's output is stored as JSON)`);
  }

  const result = (name: string): CheckResult => ({ machine: name, ok: true, problems: [], states: 0, paths: 0, truncated: false, unexplored: [] });
  let def: DurableMachine;
  if (isDurableMachine(machine)) def = machine;
  else {
    if (!machine || typeof (machine as AnyStateMachine).transition !== 'function' || !(machine as AnyStateMachine).root) {
      throw new InvalidArgumentError('checkMachine() takes a durable machine or an XState v5 machine made with createMachine() or setup().createMachine()');
    }
    try {
      checkDefinition(machine);
      def = durable(machine);
    } catch (err) {
      if (!(err instanceof MachineDefinitionError || err instanceof InvalidArgumentError)) throw err;
      const out = result(String(machine.id));
      out.ok = false;
      out.problems.push({ kind: 'definition', machine: String(machine.id), state: /state "([^"]+)"/.exec(err.message)?.[1] ?? '', path: [], message: err.message });
      return out;
    }
  }

  const input = serialised(options.input, 'checkMachine(): input', DEFAULT_MAX_PAYLOAD);
  const validated = await validateInput(def, input);
  if (!validated.ok) {
    throw new InvalidArgumentError(`checkMachine(): the machine's input validator refuses the input: ${validated.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const replay: Replay = { def, memory: stubbed(def.machine), input: validated.value };
  const out = result(def.name);
  const start = checkStart(replay);
  if (start) {
    out.ok = false;
    out.problems.push(start);
    return out;
  }

  const paths = walk(def, replay.input, samples, invokeSources(def.machine), outputs, maxStates, out);
  const seen = new Set<string>();
  for (const path of paths) {
    out.paths += 1;
    const problem = replayPath(replay, path);
    if (!problem) continue;
    const key = `${problem.kind}\u0000${problem.state}\u0000${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.problems.push(problem);
  }
  out.ok = out.problems.length === 0;
  return out;
}

/** The sample events as a function of the state, checked to be events. */
function sampleEvents(events: CheckOptions['events']): (snapshot: AnyMachineSnapshot) => readonly EventObject[] {
  if (events === undefined) return () => [];
  const checked = (list: unknown): readonly EventObject[] => {
    if (!Array.isArray(list)) throw new InvalidArgumentError('checkMachine(): events must be an array of events { type, ... } or a function of the state returning one');
    for (const e of list) {
      if (typeof e !== 'object' || e === null || typeof (e as { type?: unknown }).type !== 'string' || (e as EventObject).type === '') {
        throw new InvalidArgumentError(`checkMachine(): each sample event must be an object with a non-empty string type (got ${JSON.stringify(e) ?? String(e)})`);
      }
    }
    return list as readonly EventObject[];
  };
  if (typeof events === 'function') return (snapshot) => checked(events(snapshot));
  const list = checked(events);
  return () => list;
}

/** The machine as in-memory XState runs it here: every registered actor a promise that never settles, so no user work runs. */
function stubbed(machine: AnyStateMachine): AnyStateMachine {
  const actors = Object.keys(machine.implementations?.actors ?? {});
  if (actors.length === 0) return machine;
  return machine.provide({ actors: Object.fromEntries(actors.map((name) => [name, fromPromise(() => new Promise<never>(() => {}))])) });
}

/** Invoke id → actor name, over every state. */
function invokeSources(machine: AnyStateMachine): Map<string, string> {
  const sources = new Map<string, string>();
  interface NodeLike {
    invoke: Array<{ id: string; src: unknown }>;
    states: Record<string, NodeLike>;
  }
  const visit = (node: NodeLike) => {
    for (const inv of node.invoke ?? []) if (typeof inv.src === 'string') sources.set(inv.id, inv.src);
    for (const child of Object.values(node.states ?? {})) visit(child);
  };
  visit(machine.root as unknown as NodeLike);
  return sources;
}

/**
 * The paths to run: every transition out of every distinct state (value and context) reached
 * from the initial one, each after the shortest path to its state, at most `maxStates`
 * states. So every event each state takes is run once, a transition back to a state seen
 * before (a timer back to the start, a self-transition) too, which the shortest paths to
 * each state alone would miss. The walk is `xstate/graph`'s adjacency map over XState's own
 * transition in an inert scope: nothing is started and no custom action runs. An event that
 * throws there stays where it is and is listed in `unexplored`.
 */
function walk(
  def: DurableMachine,
  input: unknown,
  samples: (snapshot: AnyMachineSnapshot) => readonly EventObject[],
  sources: Map<string, string>,
  outputs: Record<string, unknown>,
  maxStates: number,
  out: CheckResult,
): EventObject[][] {
  const machine = def.machine;
  const unexplored = new Map<string, CheckResult['unexplored'][number]>();
  const logic = {
    // drover's own inert scope (src/record/pure.ts): as a step sees it, with a parent for sendParent.
    transition: (snapshot: AnyMachineSnapshot, event: EventObject) => {
      try {
        return pureTransition(machine, snapshot, event)[0];
      } catch (err) {
        const state = stateString(snapshot.value, machine);
        unexplored.set(`${state}\u0000${event.type}`, { state, event: event.type, message: errorMessage(err) });
        return snapshot;
      }
    },
    getInitialSnapshot: () => pureInitialTransition(machine, input)[0],
  };
  const events = (snapshot: AnyMachineSnapshot): EventObject[] => {
    const given = samples(snapshot);
    // Every event type a state in the configuration handles (XState's getAllOwnEventDescriptors; `_nodes` is internal, 5.33).
    const nodes = (snapshot as unknown as { _nodes: Array<{ ownEvents: string[] }> })._nodes;
    const types = [...new Set(nodes.flatMap((n) => n.ownEvents))];
    return types.flatMap((type): EventObject[] => {
      if (INTERNAL.some((prefix) => type.startsWith(prefix))) return [];
      const matching = given.filter((e) => e.type === type);
      if (matching.length > 0) return [...matching];
      if (type.startsWith('xstate.done.actor.')) {
        const id = type.slice('xstate.done.actor.'.length);
        const src = sources.get(id);
        const output = Object.hasOwn(outputs, id) ? outputs[id] : src !== undefined && Object.hasOwn(outputs, src) ? outputs[src] : undefined;
        return [{ type, output, actorId: id } as EventObject];
      }
      if (type.startsWith('xstate.error.actor.')) {
        const id = type.slice('xstate.error.actor.'.length);
        return [{ type, error: new Error(`checkMachine: a sample failure of "${sources.get(id) ?? id}"`), actorId: id } as EventObject];
      }
      return [{ type }];
    });
  };
  let states = 0;
  const [fromState] = pureInitialTransition(machine, input);
  const adjacency = getAdjacencyMap(logic as never, {
    fromState: fromState as never,
    events: events as never,
    serializeState: (snapshot: AnyMachineSnapshot) => key(snapshot),
    // Called once per new state: past maxStates, states are still reached but not expanded.
    stopWhen: () => {
      states += 1;
      if (states <= maxStates) return false;
      out.truncated = true;
      return true;
    },
  } as never) as unknown as Record<string, { transitions: Record<string, { event: EventObject; state: AnyMachineSnapshot }> }>;
  out.unexplored.push(...unexplored.values());
  // The shortest path to each state (breadth first), then every transition out of it.
  const start = key(fromState);
  const pathTo = new Map<string, EventObject[]>([[start, []]]);
  const queue = [start];
  for (let k = queue.shift(); k !== undefined; k = queue.shift()) {
    for (const t of Object.values(adjacency[k]?.transitions ?? {})) {
      const next = key(t.state);
      if (pathTo.has(next) || !adjacency[next]) continue;
      pathTo.set(next, [...(pathTo.get(k) as EventObject[]), t.event]);
      queue.push(next);
    }
  }
  out.states = pathTo.size;
  const paths: EventObject[][] = [];
  for (const [k, path] of pathTo) for (const t of Object.values(adjacency[k]?.transitions ?? {})) paths.push([...path, t.event]);
  return paths;
}

/**
 * A state's identity for the walk: value, status and context, an `undefined` field told apart
 * from a missing one (JSON drops it on the way to storage: a guard that tells them apart is
 * what the walk should reach). A context JSON cannot write is told apart by its value alone.
 */
function key(snapshot: AnyMachineSnapshot): string {
  try {
    return JSON.stringify({ value: snapshot.value, status: snapshot.status, context: snapshot.context }, (_k, v: unknown) => (v === undefined ? UNDEFINED : v));
  } catch {
    return JSON.stringify({ value: snapshot.value, status: snapshot.status });
  }
}
