import type { AnyStateMachine } from 'xstate';
import { InvalidArgumentError, MachineDefinitionError } from '../errors.js';
import { parseDuration } from '../time.js';

/*
 * The checks durable() runs on a machine: what drover cannot run faithfully is refused here,
 * with the state and the fix, rather than misbehaving later. Read against xstate 5.33: the
 * shapes of StateNode (`after`, `entry`, `exit`, `transitions`, `always`, `invoke`) and of the
 * built-in actions (functions carrying `type`, `delay`, `src`) are XState internals.
 */

/** What of a StateNode the checks read (xstate 5.33). */
interface NodeLike {
  id: string;
  path: string[];
  /** Delayed transitions: `delay` is the `after` key, a number when the key is numeric. */
  after: Array<{ delay: unknown }>;
  entry: unknown[];
  exit: unknown[];
  transitions: Map<string, Array<{ actions: unknown[] }>>;
  always?: Array<{ actions: unknown[] }>;
  invoke: Array<{ src: unknown; id: string }>;
  states: Record<string, NodeLike>;
}

/** A built-in action as xstate 5.33 makes it: a function with these fields. */
interface BuiltinLike {
  type: string;
  delay?: unknown;
  src?: unknown;
}

/** What kind of actor logic a registered actor is. Only `promise` runs durably. */
export type LogicKind = 'promise' | 'callback' | 'observable' | 'transition' | 'machine' | 'unknown';

/**
 * Runs every durable() check on the machine, throwing the first refusal as a
 * `MachineDefinitionError`: `after` keys and delayed `raise`/`sendTo` that name no delay,
 * invoked or spawned logic that is not a promise actor, and a static `context` that is not
 * JSON-safe. An invoke or spawnChild that names no registered actor (an inline one) is an
 * `InvalidArgumentError`.
 */
export function checkDefinition(machine: AnyStateMachine): void {
  const impl = machine.implementations ?? { actors: {}, actions: {}, delays: {} };
  const delays = (impl.delays ?? {}) as Record<string, unknown>;
  const actors = (impl.actors ?? {}) as Record<string, unknown>;
  const actions = (impl.actions ?? {}) as Record<string, unknown>;
  const where = (node: NodeLike) => `machine "${machine.id}", state "${[machine.id, ...node.path].join('.')}"`;

  for (const [name, value] of Object.entries(delays)) {
    if (typeof value === 'function' || (typeof value === 'number' && Number.isFinite(value) && value >= 0)) continue;
    throw new MachineDefinitionError(
      `machine "${machine.id}": setup({ delays }) defines "${name}" as ${describe(value)}, which XState does not read as a delay (it would fire at once); define it as milliseconds${msHint(value)} or as a function that returns them`,
    );
  }

  const checkDelay = (node: NodeLike, delay: unknown, what: string) => {
    if (typeof delay === 'number') {
      if (Number.isFinite(delay) && delay >= 0) return;
      throw new MachineDefinitionError(`${where(node)}: ${what} has the delay ${delay}; use a finite number of milliseconds >= 0`);
    }
    if (typeof delay !== 'string' || Object.hasOwn(delays, delay)) return; // a function delay is computed each time
    throw new MachineDefinitionError(
      `${where(node)}: ${what} names the delay "${delay}", which is neither a number of milliseconds nor a delay defined in setup({ delays }) (XState would fire it at once); use milliseconds${msHint(delay)} or define it: setup({ delays: { ${JSON.stringify(delay)}: ms } })`,
    );
  };

  const checkSpawnable = (node: NodeLike, src: unknown, what: string) => {
    const logic = typeof src === 'string' && Object.hasOwn(actors, src) ? actors[src] : undefined;
    if (logic === undefined) {
      // An inline invoke arrives as src "xstate.invoke.<n>.<state id>", registered nowhere.
      // InvalidArgumentError, as this check has always thrown (before MachineDefinitionError).
      throw new InvalidArgumentError(
        `${where(node)}: ${what} must name an actor registered in setup({ actors }) (an inline actor cannot be found again after a restore); register it: setup({ actors: { name: fromPromise(…) } }) and use src: 'name'`,
      );
    }
    const kind = logicKind(logic);
    if (kind === 'machine') {
      // A child machine becomes a record of its own, named by its id.
      const id = (logic as { id?: unknown }).id;
      if (typeof id === 'string' && /^[A-Za-z0-9_-]+$/.test(id) && id !== '(machine)') return;
      throw new MachineDefinitionError(
        `${where(node)}: ${what} "${src}" is a child machine without an id of letters, digits, "_" or "-" (got ${JSON.stringify(id)}): its records are named by it; give it one: createMachine({ id: 'shipment', … })`,
      );
    }
    if (kind !== 'promise') throw new MachineDefinitionError(`${where(node)}: ${what} "${src}" is ${NOT_DURABLE[kind]}`);
  };

  const checkActions = (node: NodeLike, list: readonly unknown[] | undefined, where2: string) => {
    for (const raw of list ?? []) {
      const action = resolveAction(raw, actions);
      if (!action) continue;
      if (action.type === 'xstate.raise' || action.type === 'xstate.sendTo') {
        const verb = action.type === 'xstate.raise' ? 'raise' : 'sendTo';
        checkDelay(node, action.delay, `a delayed ${verb} in ${where2}`);
      } else if (action.type === 'xstate.spawnChild') {
        checkSpawnable(node, action.src, `spawnChild in ${where2}`);
      }
      // enqueueActions() builds its actions when it runs: they cannot be seen here.
    }
  };

  const visit = (node: NodeLike) => {
    for (const t of node.after ?? []) checkDelay(node, t.delay, `after key ${JSON.stringify(String(t.delay))}`);
    for (const inv of node.invoke ?? []) checkSpawnable(node, inv.src, 'invoke src');
    // After `node.after` is read, `entry`/`exit` also hold the raise/cancel pair of each after key.
    checkActions(node, node.entry, 'entry');
    checkActions(node, node.exit, 'exit');
    for (const [event, transitions] of node.transitions ?? new Map()) {
      for (const t of transitions) checkActions(node, t.actions, `the actions of "${event}"`);
    }
    for (const t of node.always ?? []) checkActions(node, t.actions, 'the actions of always');
    for (const child of Object.values(node.states ?? {})) visit(child);
  };
  visit(machine.root as unknown as NodeLike);

  const context = (machine.config as { context?: unknown }).context;
  if (typeof context !== 'function') {
    const problem = jsonProblem(context);
    if (problem) {
      throw new MachineDefinitionError(`machine "${machine.id}": ${problem} (a record's context is stored as JSON and reads back as JSON keeps it)`);
    }
  }
}

const NOT_DURABLE: Record<Exclude<LogicKind, 'promise' | 'machine'>, string> = {
  callback:
    'a callback actor (fromCallback): it would run in memory only, and a restart or another node loses it with its sendBack events; do the work in a fromPromise actor, whose result comes back to the record as an event',
  observable:
    'an observable actor (fromObservable / fromEventObservable): it would run in memory only, and a restart loses its subscription and what it emits; poll in a fromPromise actor with an after timer, or send events to the record with runtime.send()',
  transition:
    'a transition actor (fromTransition): its state would live in memory only and be lost on restart; keep that state in the machine context with assign()',
  unknown: 'not promise logic made with fromPromise(), the only invoked logic drover runs durably; wrap the work in fromPromise()',
};

/**
 * Tells the kind of an actor logic. XState 5.33 gives its logic objects no tag: every creator
 * returns a plain object with `config`, `transition`, `getInitialSnapshot`… so the kinds are
 * told apart by what they are and do: a machine is a StateMachine (`root`, `__xstatenode`);
 * only transition logic has no `start`; only observable logic keeps `_subscription` in its
 * snapshot; and only promise logic answers `xstate.promise.resolve` by finishing with the
 * data as output (callback logic throws on it outside a started actor, observable logic
 * ignores it). The probe calls no user code for XState's own creators: their initial
 * snapshots and transitions are pure.
 */
export function logicKind(logic: unknown): LogicKind {
  if ((typeof logic !== 'object' && typeof logic !== 'function') || logic === null) return 'unknown';
  const l = logic as Record<string, unknown>;
  if (l.__xstatenode === true && typeof l.root === 'object' && l.root !== null) return 'machine';
  if (typeof l.transition !== 'function' || typeof l.getInitialSnapshot !== 'function') return 'unknown';
  if (typeof l.start !== 'function') return 'transition';
  try {
    const scope = { self: {}, system: {}, defer: () => {}, emit: () => {} };
    const initial = (l.getInitialSnapshot as (scope: unknown, input: unknown) => unknown)(scope, undefined) as Record<string, unknown>;
    if (typeof initial !== 'object' || initial === null) return 'unknown';
    if ('_subscription' in initial) return 'observable';
    const token = {};
    const next = (l.transition as (s: unknown, e: unknown, scope: unknown) => Record<string, unknown> | undefined)(
      initial,
      { type: 'xstate.promise.resolve', data: token },
      scope,
    );
    return next?.status === 'done' && next.output === token ? 'promise' : 'callback';
  } catch {
    return 'callback';
  }
}

/** A named action resolved to its implementation (a built-in from setup({ actions }) counts), when it is a built-in. */
function resolveAction(raw: unknown, actions: Record<string, unknown>): BuiltinLike | undefined {
  let action = raw;
  for (let i = 0; i < 2; i++) {
    const name = typeof action === 'string' ? action : isNamed(action) ? action.type : undefined;
    if (name === undefined || !Object.hasOwn(actions, name)) break;
    action = actions[name];
  }
  if (typeof action !== 'function') return undefined;
  const type = (action as unknown as BuiltinLike).type;
  return typeof type === 'string' && type.startsWith('xstate.') ? (action as unknown as BuiltinLike) : undefined;
}

function isNamed(action: unknown): action is { type: string } {
  return typeof action === 'object' && action !== null && typeof (action as { type?: unknown }).type === 'string';
}

/** ` (N)` when the delay text reads as a drover duration (`PT2W` is not one; `P14D`, `2h` are). */
function msHint(value: unknown): string {
  if (typeof value !== 'string') return '';
  try {
    return ` (${JSON.stringify(value)} would be ${parseDuration(value)})`;
  } catch {
    return '';
  }
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'number' ? String(value) : `a ${typeof value}`;
}

/**
 * Why a value is not JSON-safe, or `null` when it is: a record's context is stored as JSON
 * and read back, so only what survives `JSON.parse(JSON.stringify(v))` unchanged may be in
 * it. The message names the path of the first offending value and the fix. Allowed: plain
 * objects (prototype `Object` or `null`), arrays, strings, finite numbers, booleans, `null`;
 * an `undefined` object field is allowed (JSON drops the key, and it reads back undefined).
 *
 * Strings and keys must also be storable in PostgreSQL `jsonb`: no NUL (`\u0000`) and no lone
 * UTF-16 surrogate. `maxDepth` bounds the nesting of objects and arrays (the root is depth 1).
 *
 * @example jsonProblem({ due: new Date() }) // 'context.due is a Date: store date.toISOString()'
 */
export function jsonProblem(value: unknown, root = 'context', options: { maxDepth?: number } = {}): string | null {
  return problemAt(value, root, new Map(), 1, options.maxDepth ?? Infinity);
}

/** How deep a record's stored values may nest: JSON.stringify overflows the stack a few thousand levels down. */
export const MAX_STORED_DEPTH = 1000;

/**
 * Why a value a step produced cannot be stored at all, or `null`: the lenient sibling of
 * {@link jsonProblem}, for data that reached a record from its machine's own code (an assign,
 * an invocation's output) rather than through the door. It finds only what would make the
 * write fail, for the whole batch: a BigInt or a cycle (JSON.stringify throws), NUL or a lone
 * surrogate in a string or key (PostgreSQL refuses it), nesting beyond
 * {@link MAX_STORED_DEPTH}. What JSON merely changes (a Date, a Map, `NaN`) is stored as
 * JSON stores it, as it always was.
 *
 * @example storageProblem({ name: 'a\u0000b' }, 'context') // 'context.name contains NUL …'
 */
export function storageProblem(value: unknown, root: string): string | null {
  const found = unstorableIn(value, new Set(), 1);
  return found === null ? null : `${root}${found.at.reverse().join('')} ${found.why}`;
}

/** The first unstorable value under `value`: why, and its path as keys from the value up (built only when found: this runs on every step). */
function unstorableIn(value: unknown, ancestors: Set<object>, depth: number): { at: string[]; why: string } | null {
  if (typeof value === 'string') {
    const problem = stringProblem(value);
    return problem ? { at: [], why: problem } : null;
  }
  if (typeof value === 'bigint') return { at: [], why: 'is a BigInt: JSON cannot store it; store value.toString() (or a number when it is small)' };
  if (typeof value !== 'object' || value === null) return null;
  if (ancestors.has(value)) return { at: [], why: 'refers back to an object that contains it (a cycle): JSON cannot store it; store an id instead of the reference' };
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return null; // a Date: JSON stores what toJSON returns
  if (depth > MAX_STORED_DEPTH) return { at: [], why: `is nested ${depth} levels deep, beyond the limit of ${MAX_STORED_DEPTH}; flatten the data` };
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const found = unstorableIn(value[i], ancestors, depth + 1);
        if (found) {
          found.at.push(`[${i}]`);
          return found;
        }
      }
      return null;
    }
    for (const key of Object.keys(value)) {
      const keyProblem = stringProblem(key);
      if (keyProblem) return { at: [`${keyPath(key)}:`], why: `the key ${keyProblem}` };
      const found = unstorableIn((value as Record<string, unknown>)[key], ancestors, depth + 1);
      if (found) {
        found.at.push(keyPath(key));
        return found;
      }
    }
    return null;
  } finally {
    ancestors.delete(value);
  }
}

/** Why a string cannot be stored in PostgreSQL (text or jsonb), or `null`. */
export function stringProblem(text: string): string | null {
  if (!MAYBE_UNSTORABLE.test(text)) return null; // one scan for the common case
  if (text.includes('\u0000')) return 'contains NUL (\\u0000), which PostgreSQL cannot store; remove it or encode the data (base64)';
  if (LONE_SURROGATE.test(text)) return 'contains a lone UTF-16 surrogate (half of a character), which PostgreSQL cannot store; fix the text or encode it';
  return null;
}

// eslint-disable-next-line no-control-regex -- NUL is what it finds
const MAYBE_UNSTORABLE = /[\u0000\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function problemAt(value: unknown, path: string, ancestors: Map<object, string>, depth: number, maxDepth: number): string | null {
  switch (typeof value) {
    case 'string': {
      const problem = stringProblem(value);
      return problem ? `${path} ${problem}` : null;
    }
    case 'boolean':
    case 'undefined': // the root (no context) or an object field; array slots are checked by the array
      return null;
    case 'number':
      return Number.isFinite(value) ? null : `${path} is ${value}: JSON stores it as null; store a finite number or null`;
    case 'bigint':
      return `${path} is a BigInt: JSON cannot store it; store value.toString() (or a number when it is small)`;
    case 'symbol':
      return `${path} is a symbol: JSON drops it; store a string`;
    case 'function':
      return `${path} is a function: JSON drops it; keep functions out of context (use actions, guards or actors)`;
  }
  if (value === null) return null;
  const obj = value as object;
  const seen = ancestors.get(obj);
  if (seen !== undefined) return `${path} refers back to ${seen} (a cycle): JSON cannot store it; store an id instead of the reference`;
  const kind = classOf(obj);
  if (kind !== 'object' && kind !== 'array') return `${path} ${kind}`;
  if (depth > maxDepth) return `${path} is nested ${depth} levels deep, beyond the limit of ${maxDepth}; flatten the data`;
  ancestors.set(obj, path);
  try {
    if (kind === 'array') {
      const array = obj as unknown[];
      for (let i = 0; i < array.length; i++) {
        const at = `${path}[${i}]`;
        if (!(i in array)) return `${at} is an empty slot (a sparse array): JSON stores it as null; store null`;
        if (array[i] === undefined) return `${at} is undefined: JSON stores it as null in an array; store null`;
        const problem = problemAt(array[i], at, ancestors, depth + 1, maxDepth);
        if (problem) return problem;
      }
      return null;
    }
    for (const key of Reflect.ownKeys(obj)) {
      if (typeof key === 'symbol') return `${path} has the symbol key ${String(key)}: JSON drops it; use a string key`;
      const descriptor = Object.getOwnPropertyDescriptor(obj, key);
      if (!descriptor?.enumerable) continue; // JSON skips it too, and it never was data
      const keyProblem = stringProblem(key);
      if (keyProblem) return `${path}${keyPath(key)}: the key ${keyProblem}`;
      // A getter runs for JSON.stringify too, but what it returns is not the object's own data.
      if (descriptor.get) return `${path}${keyPath(key)} is a getter: store a plain value`;
      const problem = problemAt((obj as Record<string, unknown>)[key], `${path}${keyPath(key)}`, ancestors, depth + 1, maxDepth);
      if (problem) return problem;
    }
    return null;
  } finally {
    ancestors.delete(obj);
  }
}

/** `object`, `array`, or the rest of a message saying what the value is and what to store. */
function classOf(obj: object): string {
  const proto = Object.getPrototypeOf(obj) as object | null;
  if (Array.isArray(obj)) return proto === Array.prototype || isNamedProto(proto, 'Array') ? 'array' : `is a ${nameOf(obj)} (a subclass of Array): store a plain array`;
  if (proto === null || proto === Object.prototype || isNamedProto(proto, 'Object')) return 'object';
  if (obj instanceof Date) return 'is a Date: store date.toISOString()';
  if (obj instanceof Map) return 'is a Map: JSON stores it as {}; store Object.fromEntries(map), or [...map] for non-string keys';
  if (obj instanceof Set) return 'is a Set: JSON stores it as {}; store [...set]';
  if (obj instanceof RegExp) return 'is a RegExp: JSON stores it as {}; store regexp.source';
  if (obj instanceof Error) return 'is an Error: JSON stores it as {}; store { name: error.name, message: error.message }';
  if (obj instanceof Promise) return 'is a Promise: await it in an invoked fromPromise actor and assign its result';
  if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) return `is a ${nameOf(obj)}: store a base64 string or an array of numbers`;
  if (obj instanceof String || obj instanceof Number || obj instanceof Boolean) return `is a boxed ${nameOf(obj)}: store the primitive value`;
  return `is a ${nameOf(obj)} instance: JSON keeps only its own fields and drops its class and methods; store a plain object`;
}

/** A prototype of another realm (a vm context): `Object.prototype` or `Array.prototype` by shape and name. */
function isNamedProto(proto: object | null, name: string): boolean {
  if (proto === null) return false;
  const next = Object.getPrototypeOf(proto) as object | null;
  const ctor = (proto as { constructor?: { name?: string } }).constructor;
  return ctor?.name === name && (name === 'Object' ? next === null : isNamedProto(next, 'Object'));
}

function nameOf(obj: object): string {
  const name = (obj as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name ? name : 'non-plain object';
}

function keyPath(key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
