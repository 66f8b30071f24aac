import { InvalidArgumentError } from '../errors.js';
import type { DurableMachine } from '../record/durable.js';
import { jsonProblem } from '../record/check.js';
import { guardName } from './graph.js';

/*
 * exportMachine() writes a durable machine back out as the `createMachine({...})` config the
 * Stately editor imports: structure in full, implementations (guards, actions, actors,
 * delays) by name only. It reads the resolved StateNodes of xstate 5.33 (targets as nodes,
 * `after`, `always`, invoke ids) and, where the resolved form is polluted, the raw
 * `node.config`: once `node.after` has been read, `node.entry`/`node.exit` also hold the
 * raise/cancel pair XState adds for each `after` key, which the config does not.
 */

/** Options of {@link exportMachine}. */
export interface ExportOptions {
  /** The name of the exported constant, a JavaScript identifier. Default `'machine'`. */
  exportName?: string;
}

/** What of a StateNode the export reads (xstate 5.33). */
interface NodeLike {
  id: string;
  key: string;
  path: string[];
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  parent?: NodeLike;
  history: 'shallow' | 'deep' | false;
  initial?: { target?: readonly NodeLike[]; actions?: readonly unknown[] };
  states: Record<string, NodeLike>;
  invoke: readonly InvokeLike[];
  transitions: Map<string, readonly TransitionLike[]>;
  after: readonly (TransitionLike & { delay: string | number })[];
  always?: readonly TransitionLike[];
  tags: readonly string[];
  description?: string;
  config: {
    id?: string;
    on?: Record<string, unknown>;
    entry?: unknown;
    exit?: unknown;
    meta?: unknown;
    output?: unknown;
    target?: unknown;
    context?: unknown;
  };
}

interface InvokeLike {
  id: string;
  src: unknown;
  systemId?: unknown;
  input?: unknown;
}

interface TransitionLike {
  target?: readonly NodeLike[];
  guard?: unknown;
  actions: readonly unknown[];
  reenter?: boolean;
  description?: unknown;
  meta?: unknown;
}

/** A JSON-like value the printer writes. */
type Value = string | number | boolean | null | Value[] | { [key: string]: Value | undefined };
type Obj = { [key: string]: Value | undefined };

/**
 * A durable machine as TypeScript source for the Stately editor:
 * `import { createMachine } from 'xstate';` and `export const machine = createMachine({...});`.
 *
 * The config holds the machine's structure: `id`, `initial`, state `type`s (`parallel`,
 * `final`, `history` with `history: 'deep'`), nested `states`, `on`, `after`, `always`,
 * `onDone`, `invoke` (with `id` when not XState's default, `src`, `onDone`/`onError`),
 * `entry`/`exit`, `tags`, `description`, and `meta` when it is JSON. Guards, actions, actors
 * and delays appear by name only: a named one by its name (`{ type, params }` when its params
 * are JSON), an inline function by its function name or `'inline'`, a built-in action by its
 * XState type (`'xstate.assign'`), a built-in guard spelled out (`'and(a, not(b))'`).
 * `context` is the machine's static context when that is a plain JSON object, else `{}`.
 * Targets are relative (`'sibling'`, `'sibling.child'`, `'.child'`) where that resolves to
 * the same state, else `'#<state id>'`.
 *
 * @example
 * import { exportMachine } from './graph/export.js';
 * writeFileSync('order.machine.ts', exportMachine(order));
 */
export function exportMachine(def: DurableMachine, options: ExportOptions = {}): string {
  const exportName = options.exportName ?? 'machine';
  if (!IDENTIFIER.test(exportName) || RESERVED.has(exportName)) {
    throw new InvalidArgumentError(`exportMachine(): exportName must be a JavaScript identifier such as "machine" (got ${JSON.stringify(exportName)})`);
  }
  const root = def.machine.root as unknown as NodeLike;
  const context = (def.machine.config as { context?: unknown }).context;
  const config = stateConfig(root, isPlainJson(context) ? (context as Value) : {});
  return `import { createMachine } from 'xstate';\n\nexport const ${exportName} = createMachine(${print(config, '', WIDTH - 23 - exportName.length)});\n`;
}

const WIDTH = 100;

/** The root, `states` maps and the states holding them take one line per key, however short. */
const blocks = new WeakSet<object>();

function stateConfig(node: NodeLike, context?: Value): Obj {
  const c: Obj = {};
  const children = Object.values(node.states);
  if (!node.parent || children.length > 0) blocks.add(c);
  if (!node.parent) c.id = node.id;
  else if (node.config.id !== undefined) c.id = node.id;
  if (node.type === 'parallel' || node.type === 'final' || node.type === 'history') c.type = node.type;
  if (node.type === 'history') {
    if (node.history === 'deep') c.history = 'deep';
    // The default target is a path from the parent, the same in the copy as in the original.
    const target = node.config.target;
    if (typeof target === 'string' || (Array.isArray(target) && target.every((t) => typeof t === 'string'))) c.target = target;
  }
  const initial = node.type === 'compound' ? node.initial?.target?.[0] : undefined;
  if (initial) {
    const actions = refs(node.initial?.actions ?? [], actionRef);
    c.initial = actions === undefined ? initial.key : { target: initial.key, actions };
  }
  if (context !== undefined) c.context = context;
  if (node.description !== undefined) c.description = node.description;
  if (node.tags.length > 0) c.tags = [...node.tags];
  if (isJson(node.config.meta)) c.meta = node.config.meta as Value;
  c.entry = refs(toArray(node.config.entry), actionRef);
  c.exit = refs(toArray(node.config.exit), actionRef);
  const invokes = node.invoke.map((inv, i) => invokeConfig(node, inv, i));
  c.invoke = invokes.length === 1 ? invokes[0] : invokes.length > 1 ? invokes : undefined;
  const on: Obj = {};
  for (const event of Object.keys(node.config.on ?? {})) on[event] = transitions(node, node.transitions.get(event) ?? []);
  if (Object.keys(on).length > 0) c.on = on;
  const after = new Map<string | number, TransitionLike[]>();
  for (const t of node.after) after.set(t.delay, [...(after.get(t.delay) ?? []), t]);
  if (after.size > 0) c.after = Object.fromEntries([...after].map(([delay, list]) => [String(delay), transitions(node, list)]));
  if (node.always?.length) c.always = transitions(node, node.always);
  const done = node.transitions.get(`xstate.done.state.${node.id}`);
  if (done) c.onDone = transitions(node, done);
  if ((node.type === 'final' || !node.parent) && isJson(node.config.output)) c.output = node.config.output as Value;
  if (children.length > 0) {
    const states: Obj = {};
    blocks.add(states);
    for (const child of children) states[child.key] = stateConfig(child);
    c.states = states;
  }
  return c;
}

function invokeConfig(node: NodeLike, inv: InvokeLike, index: number): Obj {
  const c: Obj = {};
  // XState names an invoke without an id `<index>.<state id>`; the copy gets the same one.
  if (inv.id !== `${index}.${node.id}`) c.id = inv.id;
  c.src = typeof inv.src === 'string' ? inv.src : 'inline';
  if (typeof inv.systemId === 'string') c.systemId = inv.systemId;
  if (isJson(inv.input)) c.input = inv.input as Value;
  for (const [key, prefix] of [['onDone', 'xstate.done.actor.'], ['onError', 'xstate.error.actor.'], ['onSnapshot', 'xstate.snapshot.']] as const) {
    const list = node.transitions.get(`${prefix}${inv.id}`);
    if (list) c[key] = transitions(node, list);
  }
  return c;
}

function transitions(node: NodeLike, list: readonly TransitionLike[]): Value {
  const out = list.map((t) => transitionConfig(node, t));
  return out.length === 1 ? out[0]! : out;
}

function transitionConfig(node: NodeLike, t: TransitionLike): Value {
  const c: Obj = {};
  const targets = (t.target ?? []).map((target) => targetRef(node, target));
  if (targets.length > 0) c.target = targets.length === 1 ? targets[0] : targets;
  c.guard = t.guard === undefined ? undefined : reference(t.guard, guardName(t.guard) ?? 'inline');
  c.actions = refs(t.actions, actionRef);
  if (t.reenter) c.reenter = true;
  if (typeof t.description === 'string') c.description = t.description;
  if (isJson(t.meta)) c.meta = t.meta as Value;
  const keys = Object.keys(c).filter((k) => c[k] !== undefined);
  return keys.length === 1 && typeof c.target === 'string' ? c.target : c;
}

/**
 * How `target` is written in a transition of `source` so that XState 5.33 resolves it to the
 * same node: a path from the source's parent (`'sibling'`, `'sibling.child'`), `'.child'` for
 * a descendant, else the state id. Relative paths are split on `.` (a `\` escapes the next
 * character) and a segment starting with `#` is read as an id, so keys that are empty or start
 * with `#` fall back to the id form.
 */
function targetRef(source: NodeLike, target: NodeLike): string {
  const byId = idRef(target);
  const from = source.parent ?? source;
  if (target === from || !within(target, from)) return byId;
  const keys = target.path.slice(from.path.length);
  if (!keys.every(plainKey)) return byId;
  // `.child` resolves as `<source key>.child` from the parent, the key unescaped.
  const ownKey = source.parent === undefined || (plainKey(source.key) && escapeSegment(source.key) === source.key);
  if (ownKey && target !== source && within(target, source)) {
    return `.${target.path.slice(source.path.length).map(escapeSegment).join('.')}`;
  }
  return source.parent ? keys.map(escapeSegment).join('.') : byId;
}

/**
 * `#<id>` of the nearest state at or above `target` named by an id (one given in the config,
 * or the root's), then the path down: `#order.charging` rather than the escaped
 * `#order\.charging` (an id is split on `.` before it is looked up).
 */
function idRef(target: NodeLike): string {
  let anchor = target;
  while (anchor.parent && anchor.config.id === undefined) anchor = anchor.parent;
  const keys = target.path.slice(anchor.path.length);
  if (!keys.every(plainKey)) return `#${escapeSegment(target.id)}`;
  return [`#${escapeSegment(anchor.id)}`, ...keys.map(escapeSegment)].join('.');
}

function within(node: NodeLike, ancestor: NodeLike): boolean {
  return ancestor.path.length <= node.path.length && ancestor.path.every((key, i) => node.path[i] === key);
}

function plainKey(key: string): boolean {
  return key.length > 0 && !key.startsWith('#');
}

function escapeSegment(text: string): string {
  return text.replace(/[\\.]/g, '\\$&');
}

/** Actions by name: a built-in (a function carrying `type`) by its XState type. */
function actionRef(action: unknown): Value {
  if (typeof action === 'function') {
    const type = (action as { type?: unknown }).type;
    return typeof type === 'string' ? type : action.name || 'inline';
  }
  return reference(action, 'inline');
}

/** A string name as is; `{ type, params }` as `{ type, params }` when params are JSON, else its type. */
function reference(ref: unknown, fallback: string): Value {
  if (typeof ref === 'string') return ref;
  if (typeof ref === 'object' && ref !== null && typeof (ref as { type?: unknown }).type === 'string') {
    const { type, params } = ref as { type: string; params?: unknown };
    return params !== undefined && isJson(params) ? { type, params: params as Value } : type;
  }
  return fallback;
}

function refs(list: readonly unknown[], ref: (item: unknown) => Value): Value | undefined {
  if (list.length === 0) return undefined;
  return list.length === 1 ? ref(list[0]) : list.map(ref);
}

function toArray(value: unknown): unknown[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function isJson(value: unknown): boolean {
  return value !== undefined && typeof value !== 'function' && jsonProblem(value) === null;
}

function isPlainJson(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && isJson(value);
}

// --- printing: 2-space indentation, a value on one line when it fits -------------------------

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const INDEX = /^(0|[1-9][0-9]{0,14})$/;
const RESERVED = new Set(
  ('break case catch class const continue debugger default delete do else enum export extends false finally for ' +
    'function if import in instanceof let new null return static super switch this throw true try typeof var void ' +
    'while with yield await implements interface package private protected public').split(' '),
);

function print(value: Value, indent: string, room: number): string {
  const flat = flatten(value);
  const block = typeof value === 'object' && value !== null && blocks.has(value);
  if (!block && flat.length <= room) return flat;
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    const items = value.map((v) => `${inner}${print(v, inner, WIDTH - inner.length - 1)},\n`);
    return `[\n${items.join('')}${indent}]`;
  }
  if (typeof value !== 'object' || value === null) return flat;
  const lines = entries(value).map(([k, v]) => {
    const head = `${inner}${key(k)}: `;
    return `${head}${print(v, inner, WIDTH - head.length - 1)},\n`;
  });
  return lines.length === 0 ? '{}' : `{\n${lines.join('')}${indent}}`;
}

function flatten(value: Value): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'boolean' || value === null) return String(value);
  if (Array.isArray(value)) return `[${value.map(flatten).join(', ')}]`;
  const list = entries(value).map(([k, v]) => `${key(k)}: ${flatten(v)}`);
  return list.length === 0 ? '{}' : `{ ${list.join(', ')} }`;
}

function entries(value: Obj): [string, Value][] {
  return Object.entries(value).filter((e): e is [string, Value] => e[1] !== undefined);
}

/** An object key: bare when an identifier or an array index, `['__proto__']` computed (a literal key would set the prototype), else quoted. */
function key(k: string): string {
  if (k === '__proto__') return `['__proto__']`;
  return IDENTIFIER.test(k) || INDEX.test(k) ? k : quote(k);
}

/** A single-quoted string literal: quotes, backslashes, line terminators, control characters and lone surrogates escaped. */
function quote(text: string): string {
  let out = "'";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ch = text[i]!;
    if (ch === "'" || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f || c === 0x2028 || c === 0x2029) out += unicode(c);
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += ch + text[i + 1]!;
        i++;
      } else out += unicode(c);
    } else if (c >= 0xdc00 && c <= 0xdfff) out += unicode(c);
    else out += ch;
  }
  return `${out}'`;
}

function unicode(code: number): string {
  return `\\u${code.toString(16).padStart(4, '0')}`;
}
