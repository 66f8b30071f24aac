import type { AnyStateMachine } from 'xstate';
import type { DurableMachine } from '../record/durable.js';

/** One transition of a state, as plain JSON. */
export interface GraphTransition {
  /** The event type, `after <delay>`, `always`, or a `done.invoke…`/`xstate.…` event. */
  event: string;
  /** Target state ids (empty for a targetless transition). */
  targets: string[];
  /** The guard's name, if any. */
  guard?: string;
  /** The delay of an `after` transition: its name, or milliseconds. */
  delay?: string | number;
}

/** One state of a machine graph. */
export interface GraphState {
  id: string;
  /** Path of keys from the root (empty for the root). */
  path: string[];
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** The initial child's id, for a compound state. */
  initial?: string;
  invokes: string[];
  transitions: GraphTransition[];
  /** Child states in definition order (for a parallel state: its regions). */
  states: GraphState[];
}

/** The state graph of a registered durable machine. */
export interface MachineGraph {
  name: string;
  version: number;
  root: GraphState;
}

interface NodeLike {
  id: string;
  path: string[];
  type: GraphState['type'];
  initial?: { target?: readonly NodeLike[] };
  states: Record<string, NodeLike>;
  invoke: readonly { src: unknown }[];
  transitions: Map<string, readonly TransitionLike[]>;
  after: readonly (TransitionLike & { delay: string | number })[];
  always?: readonly TransitionLike[];
}

interface TransitionLike {
  eventType: string;
  target?: readonly NodeLike[];
  guard?: unknown;
  delay?: string | number;
}

/** A built-in guard as xstate 5.33 makes it: `and`/`or`/`not` carry `guards`, `stateIn` its `stateValue`. */
interface BuiltinGuardLike {
  name: string;
  check?: unknown;
  guards?: unknown[];
  stateValue?: unknown;
}

/**
 * The name of a guard: a named guard's name (a string or `{ type }`), an inline function's
 * name (`'inline'` when it has none), and the built-in combinators spelled out, e.g.
 * `and(isPaid, not(isLate))` or `stateIn(#order.paid)`.
 */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const g = guard as unknown as BuiltinGuardLike;
    if (typeof g.check === 'function') {
      if (Array.isArray(g.guards) && (g.name === 'and' || g.name === 'or' || g.name === 'not')) {
        return `${g.name}(${g.guards.map((inner) => guardName(inner) ?? 'inline').join(', ')})`;
      }
      if (g.name === 'stateIn') {
        return `stateIn(${typeof g.stateValue === 'string' ? g.stateValue : JSON.stringify(g.stateValue)})`;
      }
    }
    return guard.name || 'inline';
  }
  if (typeof guard === 'object' && 'type' in guard && typeof (guard as { type: unknown }).type === 'string') {
    return (guard as { type: string }).type;
  }
  return 'inline';
}

function transitionOf(t: TransitionLike, event: string): GraphTransition {
  const out: GraphTransition = { event, targets: (t.target ?? []).map((n) => n.id) };
  const guard = guardName(t.guard);
  if (guard !== undefined) out.guard = guard;
  return out;
}

function stateOf(node: NodeLike): GraphState {
  const transitions: GraphTransition[] = [];
  const delayed = new Set(node.after.map((t) => t.eventType));
  for (const t of node.after) {
    transitions.push({ ...transitionOf(t, `after ${String(t.delay)}`), delay: t.delay });
  }
  for (const t of node.always ?? []) transitions.push(transitionOf(t, 'always'));
  for (const [event, list] of node.transitions) {
    if (delayed.has(event)) continue;
    for (const t of list) transitions.push(transitionOf(t, event));
  }
  const state: GraphState = {
    id: node.id,
    path: [...node.path],
    type: node.type,
    invokes: node.invoke.map((i) => (typeof i.src === 'string' ? i.src : 'inline')),
    transitions,
    states: Object.values(node.states).map(stateOf),
  };
  const initial = node.initial?.target?.[0];
  if (node.type === 'compound' && initial) state.initial = initial.id;
  return state;
}

/**
 * The state graph of a durable machine as plain JSON, in definition order: states as a tree
 * (type, initial, parallel regions), each with its invoked actors by name and its transitions
 * (event, `after <delay>`, `always`), targets and guard names.
 */
export function machineGraph(def: DurableMachine): MachineGraph {
  const machine: AnyStateMachine = def.machine;
  return { name: def.name, version: def.version, root: stateOf(machine.root as unknown as NodeLike) };
}
