// /workers: every worker and periodic of every live node (GET /api/workers), its toggles,
// pause/resume by tag, and its run history a page at a time.
import { useState } from 'preact/hooks';
import { api, type FleetWorker, type Page, type RunRecord } from '../api.js';
import { date } from '../format.js';
import { Badge, ErrorBox, Loading, Pending, useData } from '../ui.js';

function metric(m: Record<string, unknown> | null): string {
  if (!m) return '–';
  return Object.entries(m)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}

function Runs({ name }: { name: string }) {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const before = cursors.at(-1);
  const runs = useData(() => api<Page<RunRecord>>(`/workers/${encodeURIComponent(name)}/runs?${new URLSearchParams({ limit: '10', ...(before ? { before } : {}) })}`), [name, before]);
  return (
    <div class="runs">
      <Pending loaded={runs} />
      {runs.data && runs.data.items.length === 0 && <p class="muted">No run recorded.</p>}
      {runs.data && runs.data.items.length > 0 && (
        <table>
          <caption>Runs of {name}, newest first</caption>
          <thead>
            <tr>
              <th scope="col">id</th>
              <th scope="col">kind</th>
              <th scope="col">scheduled</th>
              <th scope="col">started</th>
              <th scope="col">finished</th>
              <th scope="col">status</th>
              <th scope="col" class="num">attempt</th>
              <th scope="col">result</th>
              <th scope="col">node</th>
            </tr>
          </thead>
          <tbody>
            {runs.data.items.map((r) => (
              <tr key={r.id}>
                <td>{r.id}</td>
                <td>{r.kind}</td>
                <td>{date(r.scheduledFor)}</td>
                <td>{date(r.startedAt)}</td>
                <td>{date(r.finishedAt)}</td>
                <td>
                  <Badge status={r.status} />
                </td>
                <td class="num">{r.attempt}</td>
                <td>{r.error?.message ?? r.debug ?? ''}</td>
                <td>
                  <code>{r.node}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager" aria-label={`Run pages of ${name}`}>
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Newer
        </button>
        <span>Page {cursors.length}</span>
        <button type="button" disabled={!runs.data?.next} onClick={() => runs.data?.next && setCursors((c) => [...c, runs.data?.next ?? undefined])}>
          Older →
        </button>
      </nav>
    </div>
  );
}

export function WorkersView() {
  const fleet = useData(() => api<FleetWorker[]>('/workers'), [], 3_000);
  const [open, setOpen] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const act = async (what: string, path: string) => {
    setBusy(what);
    setError(null);
    try {
      await api(path, {});
      fleet.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(null);
    }
  };
  const tags = [...new Set((fleet.data ?? []).flatMap((w) => w.tags))].sort();
  return (
    <>
      <header class="view-header">
        <h1>Workers and schedules</h1>
      </header>
      {(error ?? fleet.error) && <ErrorBox error={(error ?? fleet.error) as Error} />}
      {!fleet.data && !fleet.error && <Loading />}
      {tags.length > 0 && (
        <section class="panel tags" aria-labelledby="tags-title">
          <h2 id="tags-title">Tags</h2>
          <ul>
            {tags.map((t) => (
              <li key={t}>
                <code>{t}</code>{' '}
                <button type="button" disabled={busy !== null} onClick={() => act(`pause ${t}`, `/tags/${encodeURIComponent(t)}/pause`)}>
                  Pause
                </button>{' '}
                <button type="button" disabled={busy !== null} onClick={() => act(`resume ${t}`, `/tags/${encodeURIComponent(t)}/resume`)}>
                  Resume
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
      {fleet.data && fleet.data.length === 0 && <p class="muted">No worker or periodic on any live node.</p>}
      {fleet.data && fleet.data.length > 0 && (
        <table class="workers">
          <caption class="visually-hidden">Workers and periodics on every live node</caption>
          <thead>
            <tr>
              <th scope="col">name</th>
              <th scope="col">kind</th>
              <th scope="col">status</th>
              <th scope="col">schedule</th>
              <th scope="col">next run</th>
              <th scope="col">nodes and last metric</th>
              <th scope="col">last run</th>
              <th scope="col">actions</th>
            </tr>
          </thead>
          <tbody>
            {fleet.data.map((w) => {
              const path = `/workers/${encodeURIComponent(w.name)}`;
              return [
                <tr key={w.name} data-worker={w.name}>
                  <th scope="row">
                    {w.name}
                    {w.tags.length > 0 && <div class="muted small">{w.tags.map((t) => `#${t}`).join(' ')}</div>}
                  </th>
                  <td>{w.kind}</td>
                  <td>
                    <Badge status={w.status} />
                    {!w.enabled && w.status !== 'disabled' && <span class="muted small"> (disabled)</span>}
                  </td>
                  <td>{w.schedule ?? '–'}</td>
                  <td>{date(w.nextRun)}</td>
                  <td>
                    <ul class="plain">
                      {w.nodes.map((n) => (
                        <li key={n.node}>
                          <code>{n.node}</code> {n.status}
                          {n.panics > 0 && <span class="failed"> · {n.panics} panics</span>}
                          <div class="muted small">{metric(n.lastMetric)}</div>
                        </li>
                      ))}
                    </ul>
                  </td>
                  <td>{w.lastRun ? <Badge status={w.lastRun.status} /> : '–'}</td>
                  <td class="buttons">
                    <button
                      type="button"
                      aria-pressed={w.enabled}
                      disabled={busy !== null}
                      onClick={() => act(`toggle ${w.name}`, `${path}/${w.enabled ? 'disable' : 'enable'}`)}
                      aria-label={`${w.enabled ? 'Disable' : 'Enable'} ${w.name}`}
                    >
                      {w.enabled ? 'Disable' : 'Enable'}
                    </button>
                    <button type="button" disabled={busy !== null} onClick={() => act(`start ${w.name}`, `${path}/start`)} aria-label={`Start ${w.name}`}>
                      Start
                    </button>
                    <button type="button" disabled={busy !== null} onClick={() => act(`stop ${w.name}`, `${path}/stop`)} aria-label={`Stop ${w.name}`}>
                      Stop
                    </button>
                    <button
                      type="button"
                      aria-expanded={open === w.name}
                      aria-controls={`runs-${w.name}`}
                      onClick={() => setOpen(open === w.name ? null : w.name)}
                      aria-label={`Runs of ${w.name}`}
                    >
                      Runs
                    </button>
                  </td>
                </tr>,
                open === w.name && (
                  <tr key={`${w.name}-runs`} id={`runs-${w.name}`}>
                    <td colSpan={8}>
                      <Runs name={w.name} />
                    </td>
                  </tr>
                ),
              ];
            })}
          </tbody>
        </table>
      )}
    </>
  );
}
