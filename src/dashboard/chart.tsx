// The statechart as SVG: state boxes (nested for compound states, dashed regions for parallel
// ones), transitions as labelled arrows (delayed ones dashed, with a clock), invoked actors
// named on their state; on each state its records now and residency p50/p95, coloured by its SLA.
import { count, seconds } from './format.js';
import { CLOCK, STATE_HEIGHT, type Box, type Layout } from './layout.js';

/** What the chart shows on one state. */
export interface StateFigures {
  count: number;
  failed: number;
  p50: number | null;
  p95: number | null;
  /** The SLA budget in seconds, if the state has one. */
  sla: number | null;
  /** Residency against the SLA: p95 or the oldest record over budget is a breach, over 80% a warning. */
  level: 'ok' | 'warn' | 'breach' | null;
}

const NONE: StateFigures = { count: 0, failed: 0, p50: null, p95: null, sla: null, level: null };

function points(p: { x: number; y: number }[]): string {
  return p.map((q, i) => `${i === 0 ? 'M' : 'L'}${q.x.toFixed(1)},${q.y.toFixed(1)}`).join(' ');
}

function StateBox(props: { box: Box; figures: StateFigures; selected: boolean; onSelect: (key: string) => void }) {
  const { box, figures, selected } = props;
  const { state } = box;
  const leaf = state.states.length === 0;
  const name = state.path.at(-1) ?? state.id;
  const classes = [
    'state',
    `state-${state.type}`,
    box.region ? 'state-region' : '',
    selected ? 'selected' : '',
    figures.level ? `sla-${figures.level}` : '',
    figures.count > 0 ? 'occupied' : '',
  ].join(' ');
  const residency = figures.p50 === null ? (figures.sla === null ? '' : `SLA ${seconds(figures.sla)}`) : `p50 ${seconds(figures.p50)} · p95 ${seconds(figures.p95)}`;
  const label = `${box.key}: ${figures.count} record${figures.count === 1 ? '' : 's'}${figures.failed ? `, ${figures.failed} failed` : ''}${
    residency ? `, ${residency}` : ''
  }${figures.level === 'breach' ? ', over its SLA' : ''}`;
  const select = () => props.onSelect(box.key);
  return (
    <g
      class={classes}
      transform={`translate(${box.x},${box.y})`}
      role="button"
      // Lower case: Preact sets SVG props as attributes, and SVG attribute names are case-sensitive.
      tabindex={0}
      aria-label={label}
      aria-pressed={selected}
      data-state={box.key}
      data-count={figures.count}
      onClick={select}
      onKeyDown={(e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          select();
        }
      }}
    >
      <title>{label}</title>
      <rect class="frame" width={box.width} height={box.height} rx={leaf ? 10 : 12} />
      {state.type === 'final' && <rect class="inner" x={4} y={4} width={box.width - 8} height={box.height - 8} rx={7} />}
      <text class="name" x={12} y={20}>
        {name}
      </text>
      {leaf ? (
        <>
          <text class="count" x={12} y={44}>
            {count(figures.count)}
            {figures.failed > 0 && <tspan class="failed"> · {count(figures.failed)} failed</tspan>}
          </text>
          <text class="residency" x={12} y={60}>
            {residency}
          </text>
          {state.invokes.length > 0 && (
            <text class="invoke" x={12} y={STATE_HEIGHT + 8}>
              invokes {state.invokes.join(', ')}
            </text>
          )}
        </>
      ) : (
        <>
          <text class="count" x={box.width - 12} y={20} text-anchor="end">
            {count(figures.count)}
            {residency && <tspan class="residency"> · {residency}</tspan>}
          </text>
          {state.invokes.length > 0 && (
            <text class="invoke" x={12} y={36}>
              invokes {state.invokes.join(', ')}
            </text>
          )}
        </>
      )}
    </g>
  );
}

/** The chart of a laid-out machine; `figures` by state key, `onSelect` with a state key. */
export function Chart(props: { layout: Layout; figures: Map<string, StateFigures>; selected: string | null; onSelect: (key: string) => void; title: string }) {
  const { layout } = props;
  return (
    // Shrinks to the page's width down to 60 %, then scrolls: a big machine stays legible.
    <svg
      class="chart"
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      width={layout.width}
      height={layout.height}
      style={{ minWidth: `${Math.round(layout.width * 0.6)}px` }}
      role="group"
      aria-label={props.title}
    >
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
        </marker>
      </defs>
      {layout.boxes.map((box) => (
        <StateBox key={box.state.id} box={box} figures={props.figures.get(box.key) ?? NONE} selected={props.selected === box.key} onSelect={props.onSelect} />
      ))}
      {layout.initials.map((i, n) => (
        <circle key={`i${n}`} class="initial" cx={i.x} cy={i.y} r={5} />
      ))}
      <g class="edges" aria-hidden="true">
        {layout.edges.map((e) => (
          <g key={e.id} class={e.delayed ? 'edge delayed' : 'edge'}>
            <path d={points(e.points)} marker-end="url(#arrow)" />
            {e.labelAt && e.label && (
              <>
                <rect class="edge-label-bg" x={e.labelAt.x} y={e.labelAt.y} width={e.labelAt.width} height={e.labelAt.height} rx={3} />
                {e.delayed && (
                  <g class="clock" transform={`translate(${e.labelAt.x + 9},${e.labelAt.y + 8})`}>
                    <circle r={5} />
                    <path d="M0,-3 L0,0 L2.5,1.5" />
                  </g>
                )}
                <text class="edge-label" x={e.labelAt.x + 4 + (e.delayed ? CLOCK : 0)} y={e.labelAt.y + 12}>
                  {e.label}
                </text>
              </>
            )}
          </g>
        ))}
      </g>
    </svg>
  );
}
