// /machines/<machine>[?state=<state>]: the live statechart, the records of the selected state,
// and every state's figures as a table.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, follow, type MachineDetail, type Page, type RecordView, type ResidencyRow, type StateCount, type TransitionMessage } from '../api.js';
import { Chart, type StateFigures } from '../chart.js';
import { count, date, seconds } from '../format.js';
import { cachedLayout, type Layout } from '../layout.js';
import { navigate, paths } from '../router.js';
import { Badge, Pending, useData } from '../ui.js';

/** Every dotted prefix of every region of a state string: `a.b,a.c` → a, a.b, a.c. */
export function statesOf(state: string): Set<string> {
  const out = new Set<string>();
  for (const leaf of state.split(',')) {
    const parts = leaf.split('.');
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join('.'));
  }
  return out;
}

function figuresOf(rows: StateCount[], residency: ResidencyRow[], sla: Record<string, number>, now: number): Map<string, StateFigures> {
  const figures = new Map<string, StateFigures>();
  const oldest = new Map<string, number>();
  const fig = (key: string) => {
    let f = figures.get(key);
    if (!f) figures.set(key, (f = { count: 0, failed: 0, p50: null, p95: null, sla: null, level: null }));
    return f;
  };
  for (const row of rows) {
    for (const key of statesOf(row.state)) {
      const f = fig(key);
      f.count += row.count;
      if (row.status === 'failed') f.failed += row.count;
      if (row.status === 'active' && row.count > 0) oldest.set(key, Math.min(oldest.get(key) ?? Infinity, Date.parse(row.oldestEnteredAt)));
    }
  }
  for (const r of residency) {
    if (r.p50 === null) continue;
    Object.assign(fig(r.state), { p50: r.p50, p95: r.p95 });
  }
  for (const [key, budget] of Object.entries(sla)) {
    const f = fig(key);
    f.sla = budget;
    const age = (now - (oldest.get(key) ?? now)) / 1000;
    const worst = Math.max(f.p95 ?? 0, age);
    f.level = worst > budget ? 'breach' : worst > 0.8 * budget ? 'warn' : 'ok';
  }
  return figures;
}

/** Applies one committed transition to the counts: one record leaves `from`, enters `to`. */
function applyTransition(rows: StateCount[], t: TransitionMessage): StateCount[] {
  const next = rows.map((r) => ({ ...r }));
  if (t.from !== null) {
    const left = next.find((r) => r.state === t.from && r.status === 'active' && r.count > 0);
    if (left) left.count -= 1;
  }
  const entered = next.find((r) => r.state === t.to && r.status === t.status);
  if (entered) entered.count += 1;
  else next.push({ machine: t.machine, state: t.to, status: t.status, count: 1, oldestEnteredAt: t.at });
  return next.filter((r) => r.count > 0);
}

/**
 * The counts of one machine, live: loaded from the SQL aggregate, moved by each transition of
 * the event stream, and reloaded a second after the stream goes quiet (and at least every
 * 10 s while it is busy) so that nothing the stream cannot see (a retention prune) drifts.
 */
function useLiveCounts(machine: string) {
  const [rows, setRows] = useState<StateCount[] | undefined>(undefined);
  const [live, setLive] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let firstPending = 0;
    let inFlight = false;
    let missed = false;
    const reload = async () => {
      timer = undefined;
      firstPending = 0;
      inFlight = true;
      missed = false;
      try {
        const fresh = await api<StateCount[]>(`/machines/${encodeURIComponent(machine)}/counts`);
        if (!stopped && !missed) setRows(fresh);
        setError(undefined);
      } catch (e) {
        if (!stopped) setError(e as Error);
      } finally {
        inFlight = false;
        // Transitions that arrived while the aggregate ran may or may not be in it: read again.
        if (missed && !stopped) schedule();
      }
    };
    const schedule = () => {
      const now = Date.now();
      firstPending ||= now;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload(), Math.max(0, Math.min(1_000, firstPending + 10_000 - now)));
    };
    void reload();
    const close = follow(
      { machine },
      (t) => {
        if (inFlight) missed = true;
        setRows((r) => (r ? applyTransition(r, t) : r));
        schedule();
      },
      (open) => {
        if (stopped) return;
        setLive(open);
        // Transitions between the first read and the stream's start are in no message: read again.
        if (open) schedule();
      },
    );
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      close();
    };
  }, [machine]);
  return { rows, live, error };
}

function RecordsPanel({ machine, state }: { machine: string; state: string }) {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  useEffect(() => setCursors([undefined]), [machine, state]);
  const after = cursors.at(-1);
  const page = useData(
    () => api<Page<RecordView>>(`/machines/${encodeURIComponent(machine)}/records?${new URLSearchParams({ state, limit: '25', ...(after ? { after } : {}) })}`),
    [machine, state, after],
  );
  return (
    <section class="panel" aria-labelledby="records-title">
      <h2 id="records-title">
        Records in <code>{state}</code>
      </h2>
      <Pending loaded={page} />
      {page.data && page.data.items.length === 0 && <p class="muted">No records in this state.</p>}
      {page.data && page.data.items.length > 0 && (
        <table class="records">
          <caption class="visually-hidden">Records in {state}, by id</caption>
          <thead>
            <tr>
              <th scope="col">id</th>
              <th scope="col">state</th>
              <th scope="col">status</th>
              <th scope="col">entered</th>
              <th scope="col">attempt</th>
            </tr>
          </thead>
          <tbody>
            {page.data.items.map((r) => (
              <tr key={r.id}>
                <td>
                  <a href={paths.record(machine, r.id)}>{r.id}</a>
                </td>
                <td>
                  {/* A line may break after each region's comma. */}
                  <code>{r.state.replaceAll(',', ',\u200b')}</code>
                </td>
                <td>
                  <Badge status={r.status} />
                </td>
                <td>{date(r.enteredAt)}</td>
                <td>{r.attempt}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager" aria-label="Record pages">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Previous
        </button>
        <span>Page {cursors.length}</span>
        <button type="button" disabled={!page.data?.next} onClick={() => page.data?.next && setCursors((c) => [...c, page.data?.next ?? undefined])}>
          Next →
        </button>
      </nav>
    </section>
  );
}

function StatesTable({ layout, figures, onSelect }: { layout: Layout; figures: Map<string, StateFigures>; onSelect: (key: string) => void }) {
  return (
    <section class="panel" aria-labelledby="states-title">
      <h2 id="states-title">States</h2>
      <table class="states">
        <thead>
          <tr>
            <th scope="col">state</th>
            <th scope="col">type</th>
            <th scope="col" class="num">records</th>
            <th scope="col" class="num">failed</th>
            <th scope="col" class="num">p50</th>
            <th scope="col" class="num">p95</th>
            <th scope="col" class="num">SLA</th>
          </tr>
        </thead>
        <tbody>
          {layout.boxes.map(({ key, state }) => {
            const f = figures.get(key);
            return (
              <tr key={key} class={f?.level ? `sla-${f.level}` : ''}>
                <th scope="row">
                  <button type="button" class="link" onClick={() => onSelect(key)}>
                    {key}
                  </button>
                </th>
                <td>{state.type}</td>
                <td class="num">{count(f?.count ?? 0)}</td>
                <td class="num">{count(f?.failed ?? 0)}</td>
                <td class="num">{seconds(f?.p50)}</td>
                <td class="num">{seconds(f?.p95)}</td>
                <td class="num">{f?.sla ? seconds(f.sla) : '–'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

export function MachineView({ machine, state }: { machine: string; state: string | null }) {
  const detail = useData(() => api<MachineDetail>(`/machines/${encodeURIComponent(machine)}`), [machine]);
  const residency = useData(() => api<ResidencyRow[]>(`/machines/${encodeURIComponent(machine)}/residency`), [machine], 30_000);
  const counts = useLiveCounts(machine);
  const [layout, setLayout] = useState<Layout | undefined>(undefined);
  const [layoutError, setLayoutError] = useState<Error | undefined>(undefined);
  const rendered = useRef(false);
  useEffect(() => {
    if (!detail.data) return;
    performance.mark('drover:layout-start');
    cachedLayout(machine, detail.data.version, detail.data.graph.root).then((l) => {
      performance.measure('drover:layout', 'drover:layout-start');
      setLayout(l);
    }, setLayoutError);
  }, [machine, detail.data]);
  const figures = useMemo(
    () => figuresOf(counts.rows ?? [], residency.data ?? [], detail.data?.sla ?? {}, Date.now()),
    [counts.rows, residency.data, detail.data],
  );
  useEffect(() => {
    // For the measurements of docs/dashboard.md: the first chart drawn with its counts.
    if (layout && counts.rows && !rendered.current) {
      rendered.current = true;
      performance.mark('drover:chart');
    }
  }, [layout, counts.rows]);
  const select = (key: string) => navigate(paths.machine(machine, key === state ? null : key));
  const error = detail.error ?? layoutError ?? counts.error;
  return (
    <>
      <header class="view-header">
        <h1>
          {machine}
          {detail.data && <span class="muted"> v{detail.data.version}</span>}
        </h1>
        <p class={counts.live ? 'live on' : 'live'} aria-live="polite">
          {counts.live ? '● live' : '○ connecting…'}
        </p>
      </header>
      <Pending loaded={{ data: layout, error }} />
      {layout && (
        <>
          <p class="muted hint">Select a state (click, or Tab then Enter) to list its records.</p>
          <div class="chart-scroll" data-ready={counts.rows ? 'true' : 'false'}>
            <Chart layout={layout} figures={figures} selected={state} onSelect={select} title={`Statechart of ${machine}: records per state`} />
          </div>
          <div class="columns">
            {state ? <RecordsPanel machine={machine} state={state} /> : <section class="panel muted">No state selected.</section>}
            <StatesTable layout={layout} figures={figures} onSelect={select} />
          </div>
        </>
      )}
    </>
  );
}
