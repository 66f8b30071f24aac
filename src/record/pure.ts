import { parentRef } from './actors.js';
import { type AnyActorScope, type AnyMachineSnapshot, type AnyStateMachine, createActor, type EventObject, initialTransition, transition } from 'xstate';

// XState's pure `transition()` and `initialTransition()` build a new inert actor scope on
// every call, and building it constructs an Actor, which evaluates the machine's initial
// snapshot (checked on xstate 5.33.3: 10 % of the CPU of a durable step here). These do the
// same through the public ActorLogic methods (`transition`, `getInitialSnapshot`,
// `restoreSnapshot`) with one inert scope per machine, built once.
//
// The scope's system is shared across calls: nothing is started in it, so nothing registers,
// except children with a `systemId`, which XState refuses to register twice. A machine that
// hits that goes back to XState's own functions for good.

interface Scope {
  scope: AnyActorScope;
  actions: unknown[];
  own: boolean;
}

const scopes = new WeakMap<AnyStateMachine, Scope>();
const SYSTEM_ID_CLASH = /system ID/i;

function scopeOf(machine: AnyStateMachine): Scope {
  let s = scopes.get(machine);
  if (!s) {
    // Every record has a parent here, so `sendParent` resolves (see parentRef).
    const self = createActor(machine, { parent: parentRef() });
    const entry: Scope = { scope: undefined as never, actions: [], own: true };
    entry.scope = {
      self,
      defer: () => {},
      id: '',
      logger: () => {},
      sessionId: '',
      stopChild: () => {},
      system: self.system,
      emit: () => {},
      actionExecutor: (action: unknown) => {
        entry.actions.push(action);
      },
    } as unknown as AnyActorScope;
    s = entry;
    scopes.set(machine, s);
  }
  return s;
}

function clash(s: Scope, err: unknown): boolean {
  if (!(err instanceof Error) || !SYSTEM_ID_CLASH.test(err.message)) return false;
  s.own = false;
  return true;
}

/** `transition(machine, snapshot, event)`: the next snapshot and the actions left to the host. */
export function pureTransition(machine: AnyStateMachine, snapshot: AnyMachineSnapshot, event: EventObject): [AnyMachineSnapshot, unknown[]] {
  const s = scopeOf(machine);
  if (s.own) {
    const actions: unknown[] = [];
    s.actions = actions;
    try {
      return [machine.transition(snapshot, event, s.scope) as AnyMachineSnapshot, actions];
    } catch (err) {
      if (!clash(s, err)) throw err;
    }
  }
  return transition(machine, snapshot, event) as [AnyMachineSnapshot, unknown[]];
}

/** `initialTransition(machine, input)`: the first snapshot and its actions. */
export function pureInitialTransition(machine: AnyStateMachine, input: unknown): [AnyMachineSnapshot, unknown[]] {
  const s = scopeOf(machine);
  if (s.own) {
    const actions: unknown[] = [];
    s.actions = actions;
    try {
      return [machine.getInitialSnapshot(s.scope, input) as AnyMachineSnapshot, actions];
    } catch (err) {
      if (!clash(s, err)) throw err;
    }
  }
  return initialTransition(machine, input) as [AnyMachineSnapshot, unknown[]];
}

/** A persisted snapshot restored (children and `historyValue` kept), nothing started. */
export function pureRestore(machine: AnyStateMachine, persisted: unknown): AnyMachineSnapshot {
  const s = scopeOf(machine);
  if (s.own) {
    try {
      return machine.restoreSnapshot(persisted as never, s.scope) as AnyMachineSnapshot;
    } catch (err) {
      if (!clash(s, err)) throw err;
    }
  }
  return createActor(machine, { snapshot: persisted as never }).getSnapshot() as AnyMachineSnapshot;
}
