import type { AnyStateMachine } from 'xstate';

// The structure of a machine, as stored for each registered (machine, version) and compared
// when a runtime starts: a version whose structure changed under live records strands them
// (their stored state no longer exists), so the change needs a new version.

/** The type of a state node, as XState names it. */
export type StateType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

/** One state of a {@link MachineFingerprint}. Targets are state paths (`a.b`), `[]` for a targetless transition. */
export interface StateShape {
  type: StateType;
  /** A compound state's initial child (its key). */
  initial?: string;
  /** A history state's kind. */
  history?: 'shallow' | 'deep';
  /** Per event type: the targets of each candidate transition, in order (guarded alternatives). */
  on: Record<string, string[][]>;
  /** Eventless (`always`) transitions: the targets of each candidate, in order. */
  always: string[][];
  /** Per `after` key (milliseconds, or a delay name): the targets of each candidate. */
  after: Record<string, string[][]>;
  /** Invoked logic, in order: the invocation id and the registered `src`. */
  invoke: Array<{ id: string; src: string }>;
}

/** The structure of a machine: its states by path (`''` is the root), each with its transitions, delays and invokes. */
export interface MachineFingerprint {
  format: 1;
  states: Record<string, StateShape>;
}

interface TransitionLike {
  target?: ReadonlyArray<{ path: string[] }>;
}

interface NodeLike {
  type: StateType;
  path: string[];
  history: false | 'shallow' | 'deep';
  states: Record<string, NodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  after: Array<TransitionLike & { delay: unknown; eventType: string }>;
  invoke: Array<{ id: string; src: unknown }>;
  initial?: TransitionLike;
}

const targets = (t: TransitionLike): string[] => (t.target ?? []).map((n) => n.path.join('.'));

/** The structural fingerprint of a machine: state paths and types, transition targets per event, `after` keys, invoke sources. */
export function fingerprint(machine: AnyStateMachine): MachineFingerprint {
  const states: Record<string, StateShape> = {};
  const visit = (node: NodeLike) => {
    // `after` transitions are also in `transitions` under their event type; they are kept apart, by delay.
    const afterTypes = new Set(node.after.map((t) => t.eventType));
    const on: Record<string, string[][]> = {};
    for (const [event, list] of node.transitions) if (!afterTypes.has(event)) on[event] = list.map(targets);
    const after: Record<string, string[][]> = {};
    for (const t of node.after) (after[String(t.delay)] ??= []).push(targets(t));
    const shape: StateShape = {
      type: node.type,
      on,
      always: (node.always ?? []).map(targets),
      after,
      invoke: node.invoke.map((i) => ({ id: i.id, src: typeof i.src === 'string' ? i.src : '(inline)' })),
    };
    if (node.type === 'compound' && node.initial) {
      const initial = node.initial.target?.[0]?.path;
      if (initial) shape.initial = initial[initial.length - 1] as string;
    }
    // XState treats a history state without `history: 'deep'` as shallow.
    if (node.type === 'history') shape.history = node.history === 'deep' ? 'deep' : 'shallow';
    states[node.path.join('.')] = shape;
    for (const child of Object.values(node.states ?? {})) visit(child);
  };
  visit(machine.root as unknown as NodeLike);
  return { format: 1, states };
}

const name = (path: string) => (path === '' ? '(the machine root)' : `"${path}"`);
const show = (t: string[][] | undefined) => (t === undefined ? 'none' : t.map((x) => (x.length ? x.join(' + ') : '(no target)')).join(' | '));
/** JSON with object keys sorted: JSONB gives keys back in its own order. */
const canonical = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(canonical).join(',')}]`
    : v !== null && typeof v === 'object'
      ? `{${Object.keys(v)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
          .join(',')}}`
      : JSON.stringify(v);
const same = (a: unknown, b: unknown) => canonical(a) === canonical(b);

/**
 * What changed from `stored` to `current`, one readable line each (empty: the same
 * structure). Objects are compared by key, so a fingerprint read back from JSONB (keys
 * reordered) compares equal to the one it was stored from.
 */
export function diffFingerprints(stored: MachineFingerprint, current: MachineFingerprint): string[] {
  const out: string[] = [];
  const before = stored.states ?? {};
  const after = current.states;
  for (const path of Object.keys(before)) if (!(path in after)) out.push(`state ${name(path)} removed`);
  for (const path of Object.keys(after)) if (!(path in before)) out.push(`state ${name(path)} added`);
  for (const [path, now] of Object.entries(after)) {
    const was = before[path];
    if (!was) continue;
    const at = `state ${name(path)}`;
    if (was.type !== now.type) out.push(`${at} is ${now.type} (was ${was.type})`);
    else if (was.initial !== now.initial) out.push(`${at} starts in "${now.initial}" (was "${was.initial}")`);
    else if (was.history !== now.history) out.push(`${at} keeps ${now.history} history (was ${was.history})`);
    diffTargets(out, `${at}: event`, was.on ?? {}, now.on);
    if (!same(was.always ?? [], now.always)) out.push(`${at}: always targets ${show(now.always)} (was ${show(was.always)})`);
    diffTargets(out, `${at}: after`, was.after ?? {}, now.after);
    const src = (list: StateShape['invoke']) => list.map((i) => `${i.src} (id ${i.id})`).join(', ') || 'nothing';
    if (!same(was.invoke ?? [], now.invoke)) out.push(`${at} invokes ${src(now.invoke)} (was ${src(was.invoke ?? [])})`);
  }
  return out;
}

function diffTargets(out: string[], at: string, was: Record<string, string[][]>, now: Record<string, string[][]>): void {
  for (const key of new Set([...Object.keys(was), ...Object.keys(now)])) {
    if (same(was[key], now[key])) continue;
    if (was[key] === undefined) out.push(`${at} "${key}" added (targets ${show(now[key])})`);
    else if (now[key] === undefined) out.push(`${at} "${key}" removed (targeted ${show(was[key])})`);
    else out.push(`${at} "${key}" targets ${show(now[key])} (was ${show(was[key])})`);
  }
}

/**
 * The leaf paths of a state string (`p.l.l1,p.r.r1` → `p.l.l1`, `p.r.r1`) that a record
 * could not be restored in with this structure: a path that is no longer a state, or that
 * now has child states (the record would sit in it without ever having entered a child).
 */
export function missingLeaves(state: string, fp: MachineFingerprint): string[] {
  return state.split(',').filter((leaf) => {
    const shape = fp.states[leaf];
    return leaf === '' || !shape || (shape.type !== 'atomic' && shape.type !== 'final');
  });
}
