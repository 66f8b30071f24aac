import type { AnyMachineSnapshot, AnyStateMachine } from 'xstate';
import { pureRestore } from './pure.js';

interface NodeLike {
  states?: Record<string, NodeLike>;
}

/**
 * The string form of an XState state value: the dotted path (`on.second.x`), and for
 * parallel regions the dotted leaf paths joined by `,` (`p.l.l1,p.r.r1`).
 *
 * With the machine, the form is canonical: regions come in the order the machine defines
 * them, at every depth, whatever the key order of `value` (a state value read back from
 * JSONB has its keys sorted by length, then bytes). drover names every state this way: the
 * stored `state` column, history, residency, SLA budgets, filters, NATS subjects, spans.
 * Without the machine, regions come in the key order of `value`.
 *
 * @example stateString({ active: { usage: 'normal', billing: 'waiting' } }, order.machine) // 'active.billing.waiting,active.usage.normal' if billing is defined first
 */
export function stateString(value: unknown, machine?: AnyStateMachine): string {
  const leaves: string[] = [];
  const walk = (v: unknown, prefix: string, node: NodeLike | undefined) => {
    if (typeof v === 'string') {
      leaves.push(prefix ? `${prefix}.${v}` : v);
      return;
    }
    const obj = (v ?? {}) as Record<string, unknown>;
    const keys = orderedKeys(obj, node);
    if (keys.length === 0 && prefix) leaves.push(prefix);
    for (const key of keys) walk(obj[key], prefix ? `${prefix}.${key}` : key, node?.states?.[key]);
  };
  walk(value, '', machine?.root as NodeLike | undefined);
  return leaves.join(',');
}

/** The keys of a state value object in the order the machine defines its child states (unknown keys last, as they come). */
function orderedKeys(obj: Record<string, unknown>, node: NodeLike | undefined): string[] {
  const keys = Object.keys(obj);
  if (keys.length < 2 || !node?.states) return keys;
  const defined = Object.keys(node.states).filter((k) => k in obj);
  return defined.length === keys.length ? defined : [...defined, ...keys.filter((k) => !(k in node.states!))];
}

/**
 * A state string in canonical form for `machine` (see {@link stateString}): the `,`-joined
 * leaf paths in the order the machine defines its regions. Used to repair strings stored
 * before drover named states canonically; a path the machine does not know keeps its place
 * at the end.
 */
export function canonicalStateString(state: string, machine: AnyStateMachine): string {
  if (!state.includes(',')) return state;
  const value: Record<string, unknown> = {};
  for (const leaf of state.split(',')) {
    const parts = leaf.split('.');
    let at = value;
    for (let i = 0; i < parts.length - 1; i++) {
      const key = parts[i] as string;
      if (typeof at[key] !== 'object' || at[key] === null) at[key] = {};
      at = at[key] as Record<string, unknown>;
    }
    at[parts[parts.length - 1] as string] = {};
  }
  return stateString(value, machine);
}

/**
 * Restores a persisted snapshot without starting anything: `machine.restoreSnapshot()` (what
 * `createActor(machine, { snapshot })` runs) keeps `historyValue` and children, which
 * `machine.resolveState` would lose.
 */
export function restoreSnapshot(machine: AnyStateMachine, persisted: unknown): AnyMachineSnapshot {
  const snapshot = pureRestore(machine, persisted);
  if (!snapshot || typeof snapshot.value === 'undefined') throw new Error('the snapshot has no state value');
  // Resolving the value checks that every state in it exists in this machine.
  machine.resolveState({ value: snapshot.value, context: snapshot.context });
  return snapshot;
}
