import { type AnyActorLogic, createActor, type EventObject, type StateValue } from 'xstate';
import { errorMessage, InvalidArgumentError } from '../errors.js';
import { isMachineLogic } from './actors.js';
import type { DurableMachine } from './durable.js';
import { fingerprint, type MachineFingerprint } from './fingerprint.js';
import { restoreSnapshot, stateString } from './state.js';
import type { Spawn, Timer } from './step.js';

// The pure half of `migrate()`: which state of the new version a live record goes to, and
// the record as it lands there (snapshot, timers, invocations), without running anything.

/** Where a stored state string goes: its target state value, or the leaf paths the map does not name. */
export type StateTarget = { value: StateValue; unmapped?: undefined } | { value?: undefined; unmapped: string[] };

/**
 * A state map checked against both versions. Keys are leaf paths of `from` (`b.x`), or a
 * whole stored state string (`p.l.l1,p.r.r1`) that then takes precedence over its leaves;
 * values are states of `to` (a compound or parallel state lands in its initial children), or
 * several leaf paths joined by `,` for parallel regions.
 */
export class StateMap {
  private readonly toFp: MachineFingerprint;
  private readonly cache = new Map<string, StateTarget>();

  constructor(
    private readonly from: DurableMachine,
    private readonly to: DurableMachine,
    private readonly states: Readonly<Record<string, string>>,
  ) {
    if (!states || typeof states !== 'object' || Array.isArray(states)) {
      throw new InvalidArgumentError('migrate(): states must be an object { "<state of from>": "<state of to>", … }');
    }
    const fromFp = fingerprint(from.machine);
    this.toFp = fingerprint(to.machine);
    const fromLeaves = leafPaths(fromFp);
    for (const [key, target] of Object.entries(states)) {
      for (const leaf of key.split(',')) {
        if (!fromLeaves.includes(leaf)) {
          const under = fromLeaves.filter((l) => l.startsWith(`${leaf}.`));
          throw new InvalidArgumentError(
            `migrate(): "${key}" is not a state of machine "${from.name}" version ${from.version}` +
              (under.length ? ` that a record can be in; map its leaf states instead: ${under.join(', ')}` : `; its states: ${fromLeaves.join(', ')}`),
          );
        }
      }
      if (typeof target !== 'string' || target.length === 0) throw new InvalidArgumentError(`migrate(): the target of "${key}" must be a state name`);
      for (const leaf of target.split(',')) {
        const shape = this.toFp.states[leaf];
        const known = Object.keys(this.toFp.states).filter((p) => p !== '' && this.toFp.states[p]?.type !== 'history');
        if (leaf === '' || !shape || shape.type === 'history') {
          throw new InvalidArgumentError(
            `migrate(): target "${target}" of "${key}" is not a state of machine "${to.name}" version ${to.version} (its states: ${known.join(', ')})`,
          );
        }
        if (shape.type === 'final') {
          throw new InvalidArgumentError(
            `migrate(): target "${target}" of "${key}" is a final state; a migration moves live records between live states (cancel records instead of finishing them)`,
          );
        }
      }
    }
  }

  /** Where a record in `state` goes; throws InvalidArgumentError when the targets of its leaves cannot hold together. */
  target(state: string): StateTarget {
    let t = this.cache.get(state);
    if (!t) {
      t = this.resolve(state);
      this.cache.set(state, t);
    }
    return t;
  }

  private resolve(state: string): StateTarget {
    const whole = own(this.states, state);
    const leaves = state.split(',');
    const targets: string[] = [];
    if (whole !== undefined) targets.push(...whole.split(','));
    else {
      const unmapped: string[] = [];
      for (const leaf of leaves) {
        const t = own(this.states, leaf);
        if (t === undefined) unmapped.push(leaf);
        else targets.push(...t.split(','));
      }
      if (unmapped.length > 0) return { unmapped };
    }
    try {
      return { value: valueOf([...new Set(targets)], this.toFp) };
    } catch (err) {
      throw new InvalidArgumentError(
        `migrate(): records in "${state}" would go to ${targets.map((t) => `"${t}"`).join(' and ')}, which cannot hold at once in version ${this.to.version} (${errorMessage(err)}); map the whole state string "${state}" to one target`,
      );
    }
  }
}

/** The leaf paths a record can be in: atomic and final states. */
function leafPaths(fp: MachineFingerprint): string[] {
  return Object.entries(fp.states)
    .filter(([path, s]) => path !== '' && (s.type === 'atomic' || s.type === 'final'))
    .map(([path]) => path);
}

const own = (o: Readonly<Record<string, string>>, key: string): string | undefined =>
  Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;

/** The state value of a set of state paths: `['p.l.l1', 'p.r']` → `{ p: { l: 'l1', r: {} } }`; one child per compound state. */
function valueOf(paths: string[], fp: MachineFingerprint): StateValue {
  const root: Record<string, unknown> = {};
  for (const path of paths) {
    const parts = path.split('.');
    let at = root;
    for (let i = 0; i < parts.length; i++) {
      const key = parts[i] as string;
      at[key] ??= {};
      at = at[key] as Record<string, unknown>;
    }
  }
  const check = (obj: Record<string, unknown>, prefix: string) => {
    const keys = Object.keys(obj);
    const type = fp.states[prefix]?.type;
    if (keys.length > 1 && type !== 'parallel') {
      throw new Error(`${prefix === '' ? 'the machine root' : `"${prefix}"`} is not parallel, so only one of ${keys.join(', ')} can be active`);
    }
    for (const key of keys) check(obj[key] as Record<string, unknown>, prefix ? `${prefix}.${key}` : key);
  };
  check(root, '');
  // A lone child path is written as a string (`{ a: 'x' }`), as XState writes values.
  const form = (obj: Record<string, unknown>): StateValue => {
    const keys = Object.keys(obj);
    if (keys.length === 1) {
      const child = obj[keys[0] as string] as Record<string, unknown>;
      if (Object.keys(child).length === 0) return keys[0] as string;
    }
    const out: Record<string, StateValue> = {};
    for (const key of keys) out[key] = form(obj[key] as Record<string, unknown>);
    return out as StateValue;
  };
  return form(root);
}

/** A record as it lands in the new version. */
export interface Landing {
  /** The persisted snapshot to store. */
  snapshot: unknown;
  state: string;
  timers: Timer[];
  spawns: Spawn[];
}

interface NodeLike {
  type: string;
  states: Record<string, NodeLike>;
  after: Array<{ delay: unknown; eventType: string }>;
  invoke: Array<{ id: string; src: unknown; input?: unknown; systemId?: string; onSnapshot?: unknown }>;
}

/**
 * A record entering the configuration `value` of `to` with `context`, without entry
 * actions: the snapshot from `resolveState` (persisted, with the children of the invokes it
 * lands in, as a step would have them), the `after` timers of every state it is now in, due
 * from `now` (ids and event types as XState's own: `xstate.after.<delay>.<state id>`, so a
 * later exit cancels them), plus the record's `kept` timers that are not `after` timers
 * (delayed events it sent itself), and the invocations to start.
 */
export function land(to: DurableMachine, value: StateValue, context: unknown, event: EventObject, now: number, kept: Timer[]): Landing {
  const machine = to.machine;
  const resolved = machine.resolveState({ value, context: context as never });
  const args = { context, event, self: undefined, system: undefined };
  const delays = (machine.implementations?.delays ?? {}) as Record<string, unknown>;
  const actors = (machine.implementations?.actors ?? {}) as Record<string, AnyActorLogic>;
  const timers = new Map<string, Timer>();
  for (const t of kept) if (!t.event.type.startsWith('xstate.after.')) timers.set(t.id, t);
  const spawns: Spawn[] = [];
  const children: Record<string, unknown> = {};
  const enter = (node: NodeLike) => {
    for (const a of node.after) {
      if (timers.has(a.eventType)) continue; // one timer per delay, whatever the guarded alternatives
      const configured = typeof a.delay === 'string' ? delays[a.delay] : a.delay;
      const ms = typeof configured === 'function' ? (configured as (x: unknown, p: unknown) => unknown)(args, undefined) : configured;
      // As XState: a delay that is not a number is no delay (the event is due at once).
      timers.set(a.eventType, { id: a.eventType, at: now + (typeof ms === 'number' && Number.isFinite(ms) ? Math.max(0, ms) : 0), event: { type: a.eventType } });
    }
    for (const inv of node.invoke) {
      const src = typeof inv.src === 'string' ? inv.src : undefined;
      const logic = src === undefined ? undefined : actors[src];
      if (src === undefined || !logic) throw new InvalidArgumentError(`migrate(): state invokes "${String(inv.src)}", which is not registered in setup({ actors })`);
      if (isMachineLogic(logic)) {
        throw new InvalidArgumentError(
          `migrate(): state invokes the child machine "${src}"; landing records in a state that starts child records is not supported: map them to a state before it and send the event that enters it`,
        );
      }
      const input = typeof inv.input === 'function' ? (inv.input as (x: unknown) => unknown)({ context, event, self: undefined }) : inv.input;
      spawns.push({ id: inv.id, src, input });
      // The child as a step's spawn leaves it in the snapshot: its exit then stops it.
      const child = createActor(logic, { id: inv.id, input });
      children[inv.id] = {
        snapshot: child.getPersistedSnapshot(),
        src,
        syncSnapshot: Boolean(inv.onSnapshot),
        ...(inv.systemId ? { systemId: inv.systemId } : {}),
      };
    }
  };
  const walk = (node: NodeLike, v: StateValue) => {
    enter(node);
    if (typeof v === 'string') {
      const child = node.states[v];
      if (child) walk(child, {});
      return;
    }
    // Children in the order the machine defines them, as XState enters them.
    for (const key of Object.keys(node.states ?? {})) if (key in v) walk(node.states[key] as NodeLike, (v as Record<string, StateValue>)[key] as StateValue);
  };
  walk(machine.root as unknown as NodeLike, resolved.value);
  const persisted = { ...(machine.getPersistedSnapshot(resolved) as Record<string, unknown>), children };
  // What a poller will do with it: it must restore.
  const restored = restoreSnapshot(machine, persisted);
  return { snapshot: persisted, state: stateString(restored.value, machine), timers: [...timers.values()], spawns };
}
