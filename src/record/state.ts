import type { AnyMachineSnapshot, AnyStateMachine } from 'xstate';
import { pureRestore } from './pure.js';

/**
 * The string form of an XState state value: the dotted path (`on.second.x`), and for
 * parallel regions the dotted leaf paths joined by `,` (`p.l.l1,p.r.r1`).
 */
export function stateString(value: unknown): string {
  const leaves: string[] = [];
  const walk = (v: unknown, prefix: string) => {
    if (typeof v === 'string') {
      leaves.push(prefix ? `${prefix}.${v}` : v);
      return;
    }
    const entries = Object.entries((v ?? {}) as Record<string, unknown>);
    if (entries.length === 0 && prefix) leaves.push(prefix);
    for (const [key, child] of entries) walk(child, prefix ? `${prefix}.${key}` : key);
  };
  walk(value, '');
  return leaves.join(',');
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
