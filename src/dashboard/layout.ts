// The statechart's layout: the machine graph of GET /api/machines/:machine as an ELK graph
// (layered, left to right; compound states hold their children, a parallel state its regions,
// each transition a labelled edge), laid out by elkjs and flattened to absolute coordinates.
import ELK, { type ElkExtendedEdge, type ElkNode } from 'elkjs/lib/elk-api.js';
import type { GraphState } from './api.js';

export interface Box {
  state: GraphState;
  /** The state's path as records name it (`working.code`); '' for the root. */
  key: string;
  x: number;
  y: number;
  width: number;
  height: number;
  depth: number;
  /** A region of a parallel state. */
  region: boolean;
}

export interface Edge {
  id: string;
  label: string;
  delayed: boolean;
  points: { x: number; y: number }[];
  labelAt: { x: number; y: number; width: number; height: number } | null;
}

export interface Initial {
  x: number;
  y: number;
}

export interface Layout {
  width: number;
  height: number;
  boxes: Box[];
  edges: Edge[];
  initials: Initial[];
}

/** Pixel widths at the chart's font sizes (an estimate: text is measured by nothing here). */
const textWidth = (text: string, size: number) => Math.ceil(text.length * size * 0.6);
export const STATE_HEIGHT = 66;
const HEADER = 30;
const INITIAL = 10;

const keyOf = (s: GraphState) => s.path.join('.');

/** Milliseconds as the shortest exact unit: 3600000 → `1h`, 1500 → `1500ms`. */
function delayText(delay: string | number): string {
  if (typeof delay === 'string') return delay;
  for (const [unit, ms] of [['d', 86_400_000], ['h', 3_600_000], ['min', 60_000], ['s', 1000]] as const) if (delay >= ms && delay % ms === 0) return `${delay / ms}${unit}`;
  return `${delay}ms`;
}

/** An edge's label: the event (`after 1h` for a delay) and the guard in brackets. */
export function edgeLabel(t: { event: string; guard?: string; delay?: string | number }): string {
  // XState's internal event names, as a statechart spells them.
  const internal = /^xstate\.(done|error)\.(actor|state)\./.exec(t.event);
  const event = t.delay !== undefined ? `after ${delayText(t.delay)}` : internal ? (internal[1] === 'done' ? 'onDone' : 'onError') : t.event;
  return t.guard ? `${event} [${t.guard}]` : event;
}

/** Room for the clock drawn before a delayed transition's label. */
export const CLOCK = 14;

/** Ids of the edges of `after` transitions (drawn dashed, with a clock). */
const delayed = new Set<string>();

function toElk(state: GraphState, edges: ElkExtendedEdge[], parallelChild: boolean): ElkNode {
  const label = state.path.at(-1) ?? state.id;
  const node: ElkNode = { id: state.id, layoutOptions: {} };
  state.transitions.forEach((t, i) => {
    t.targets.forEach((target, j) => {
      const text = edgeLabel(t);
      const id = `${state.id}#${i}.${j}`;
      if (t.delay !== undefined) delayed.add(id);
      edges.push({
        id,
        sources: [state.id],
        targets: [target],
        labels: [{ text, width: textWidth(text, 11) + 8 + (t.delay === undefined ? 0 : CLOCK), height: 16 }],
      });
    });
  });
  if (state.states.length === 0) {
    const invokes = state.invokes.length ? `invokes ${state.invokes.join(', ')}` : '';
    node.width = Math.max(120, textWidth(label, 13) + 24, textWidth(invokes, 11) + 16, 150);
    node.height = STATE_HEIGHT + (invokes ? 14 : 0);
    return node;
  }
  const children = state.states.map((c) => toElk(c, edges, state.type === 'parallel'));
  const invokes = state.invokes.length ? `invokes ${state.invokes.join(', ')}` : '';
  if (state.initial) {
    const dot = `${state.id}#initial`;
    children.unshift({ id: dot, width: INITIAL, height: INITIAL });
    edges.push({ id: `${dot}>`, sources: [dot], targets: [state.initial] });
  }
  node.children = children;
  const top = HEADER + (state.invokes.length ? 14 : 0);
  node.layoutOptions = {
    'elk.padding': `[top=${top},left=12,bottom=12,right=12]`,
    'elk.nodeSize.constraints': 'MINIMUM_SIZE',
    'elk.nodeSize.minimum': `(${Math.max(160, textWidth(label, 13) + 140, textWidth(invokes, 11) + 24)}, 60)`,
  };
  // A parallel state's regions: stacked, each across the whole state, divided by dashes.
  if (state.type === 'parallel') node.layoutOptions['elk.spacing.nodeNode'] = '8';
  if (parallelChild) node.layoutOptions['elk.padding'] = `[top=${top - 6},left=10,bottom=10,right=10]`;
  return node;
}

// In a Web Worker (served beside the bundle): a big machine's layout takes a second or more,
// and the page stays responsive meanwhile.
const elk = new ELK({ workerUrl: '/assets/elk-worker.js' });

/** Lays the machine out; the root itself is not drawn, its children are the top-level states. */
export async function layoutMachine(root: GraphState): Promise<Layout> {
  const edges: ElkExtendedEdge[] = [];
  const top = toElk(root, edges, false);
  const graph: ElkNode = {
    id: '#root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.spacing.nodeNodeBetweenLayers': '60',
      'elk.spacing.nodeNode': '28',
      'elk.spacing.edgeLabel': '4',
      'elk.edgeLabels.inline': 'false',
      'elk.padding': '[top=12,left=12,bottom=12,right=12]',
    },
    children: top.children ?? [],
    edges: [],
  };
  // Edges between drawn shapes only: the root is not drawn (a transition of the machine itself,
  // or one that re-enters it, has no box to start or end at).
  const drawn = new Set<string>();
  const collect = (n: ElkNode) => (n.children ?? []).forEach((c) => (drawn.add(c.id), collect(c)));
  collect(graph);
  graph.edges = edges.filter((e) => drawn.has(e.sources[0] as string) && drawn.has(e.targets[0] as string));
  const out = await elk.layout(graph);
  const boxes: Box[] = [];
  const initials: Initial[] = [];
  const offset = new Map<string, { x: number; y: number }>([['#root', { x: 0, y: 0 }]]);
  const states = new Map<string, GraphState>();
  const index = (s: GraphState) => {
    states.set(s.id, s);
    s.states.forEach(index);
  };
  index(root);
  const walk = (n: ElkNode, ox: number, oy: number, depth: number, parent: GraphState | undefined) => {
    for (const c of n.children ?? []) {
      const x = ox + (c.x ?? 0);
      const y = oy + (c.y ?? 0);
      offset.set(c.id, { x, y });
      const state = states.get(c.id);
      if (state) {
        boxes.push({ state, key: keyOf(state), x, y, width: c.width ?? 0, height: c.height ?? 0, depth, region: parent?.type === 'parallel' });
        walk(c, x, y, depth + 1, state);
      } else initials.push({ x: x + INITIAL / 2, y: y + INITIAL / 2 });
    }
  };
  walk(out, 0, 0, 0, root);
  const laidEdges: Edge[] = [];
  for (const e of (out.edges ?? []) as (ElkExtendedEdge & { container?: string })[]) {
    const o = offset.get(e.container ?? '#root') ?? { x: 0, y: 0 };
    const section = e.sections?.[0];
    if (!section) continue;
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => ({ x: p.x + o.x, y: p.y + o.y }));
    const l = e.labels?.[0];
    laidEdges.push({
      id: e.id,
      label: l?.text ?? '',
      delayed: delayed.has(e.id),
      points,
      labelAt: l ? { x: (l.x ?? 0) + o.x, y: (l.y ?? 0) + o.y, width: l.width ?? 0, height: l.height ?? 0 } : null,
    });
  }
  return { width: out.width ?? 0, height: out.height ?? 0, boxes, edges: laidEdges, initials };
}

/** A short hash of a string (FNV-1a), to key a cached layout by the graph it was made from. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

/**
 * {@link layoutMachine}, kept in sessionStorage by machine, version and graph: reloading or
 * coming back to a statechart in this tab skips the layout, the slow part of a first render.
 */
export async function cachedLayout(machine: string, version: number, root: GraphState): Promise<Layout> {
  const key = `drover.layout.${machine}.${version}.${hash(JSON.stringify(root))}`;
  const stored = sessionStorage.getItem(key);
  if (stored) return JSON.parse(stored) as Layout;
  const layout = await layoutMachine(root);
  try {
    sessionStorage.setItem(key, JSON.stringify(layout));
  } catch {
    // Storage full or off: the layout is only a cache.
  }
  return layout;
}
