// /machines/<machine>/records/<id>: a record's history as a timeline, its context, its parent
// and child records (records as actors), and the actions send event / cancel / retry, each
// confirmed in a dialog.
import { useEffect } from 'preact/hooks';
import { api, follow, type HistoryEntry, type Page, type RecordView as Rec } from '../api.js';
import { date, seconds } from '../format.js';
import { paths } from '../router.js';
import { Badge, ConfirmButton, ErrorBox, Loading, Pending, useData } from '../ui.js';

const KIND_TEXT: Record<NonNullable<HistoryEntry['kind']>, string> = { sent: 'sent', received: 'received', spawned: 'started child', emitted: 'emitted' };

function RecordLink({ machine, id }: { machine: string; id: string }) {
  return (
    <a href={paths.record(machine, id)}>
      {machine} <code>{id}</code>
    </a>
  );
}

/** What a record did between two changes of state: an event sent, received or emitted, a child record started. */
function Effect({ h }: { h: HistoryEntry & { kind: NonNullable<HistoryEntry['kind']> } }) {
  const peer = h.peer && <RecordLink machine={h.peer.machine} id={h.peer.id} />;
  return (
    <li class={`step step-effect effect-${h.kind}`} data-kind={h.kind}>
      <div class="when">
        <time dateTime={h.at}>{date(h.at)}</time>
      </div>
      <div class="what">
        <p class="event">
          {KIND_TEXT[h.kind]}{' '}
          {h.kind === 'spawned' ? (
            <>{peer}</>
          ) : (
            <>
              <code class="type">{h.event.type}</code>
              {peer && (
                <>
                  {h.kind === 'received' ? ' from ' : ' to '}
                  {peer}
                </>
              )}
            </>
          )}
        </p>
      </div>
      <div class="stay" />
    </li>
  );
}

function Timeline({ history, record }: { history: HistoryEntry[]; record: Rec }) {
  const now = Date.now();
  return (
    <ol class="timeline" aria-label="History, oldest first">
      {history.map((h, i) => {
        if (h.kind) return <Effect key={i} h={h as HistoryEntry & { kind: NonNullable<HistoryEntry['kind']> }} />;
        // A stay lasts until the next change of state; entries with a kind happen within it.
        const next = history.slice(i + 1).find((e) => !e.kind);
        const finished = !next && record.status !== 'active';
        const stay = next ? (Date.parse(next.at) - Date.parse(h.at)) / 1000 : finished ? null : (now - Date.parse(h.at)) / 1000;
        return (
          <li key={i} class={`step step-${h.status}${h.error ? ' step-error' : ''}`} data-to={h.to}>
            <div class="when">
              <time dateTime={h.at}>{date(h.at)}</time>
            </div>
            <div class="what">
              <p>
                {h.from === null ? <span class="muted">created</span> : <code>{h.from}</code>} → <code class="to">{h.to}</code> <Badge status={h.status} />
              </p>
              <p class="event">
                on <code>{h.event.type}</code>
              </p>
              {h.error && (
                <p class="error">
                  {h.error.name ? `${h.error.name}: ` : ''}
                  {h.error.message}
                </p>
              )}
            </div>
            <div class="stay">{stay === null ? 'final' : `${next ? '' : 'for '}${seconds(stay)}${next ? ' in state' : ' so far'}`}</div>
          </li>
        );
      })}
    </ol>
  );
}

/** The child records of a record, of each machine its history shows it started. */
function Children({ machine, id, history }: { machine: string; id: string; history: HistoryEntry[] }) {
  const machines = [...new Set(history.flatMap((h) => (h.kind === 'spawned' && h.peer ? [h.peer.machine] : [])))].sort();
  const key = machines.join(',');
  const children = useData(
    async () => {
      const parent = `parentMachine=${encodeURIComponent(machine)}&parentId=${encodeURIComponent(id)}&limit=1000`;
      const pages = await Promise.all(machines.map((m) => api<Page<Rec>>(`/machines/${encodeURIComponent(m)}/records?${parent}`)));
      return pages.flatMap((p) => p.items);
    },
    // Again when the parent's history grows: a child started, or one finished and told it.
    [machine, id, key, history.length],
  );
  if (machines.length === 0) return null;
  return (
    <section class="panel" aria-labelledby="children-title">
      <h2 id="children-title">Child records</h2>
      <Pending loaded={children} />
      {children.data && (
        <ul class="children" aria-label="Child records">
          {children.data.map((c) => (
            <li key={`${c.machine}:${c.id}`}>
              <RecordLink machine={c.machine} id={c.id} /> {c.parent && <span class="muted">({c.parent.key})</span>} <code>{c.state}</code> <Badge status={c.status} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function RecordPage({ machine, id }: { machine: string; id: string }) {
  const base = `/machines/${encodeURIComponent(machine)}/records/${encodeURIComponent(id)}`;
  const record = useData(() => api<Rec>(base), [base]);
  const history = useData(() => api<HistoryEntry[]>(`${base}/history`), [base]);
  const reload = () => {
    record.reload();
    history.reload();
  };
  // The record moves on while it is on screen: its own transitions reload it.
  useEffect(() => follow({ machine }, (t) => t.id === id && reload()), [machine, id]);
  const r = record.data;
  return (
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/">Machines</a> / <a href={paths.machine(machine)}>{machine}</a>
        {r && (
          <>
            {' '}
            / <a href={paths.machine(machine, r.state.split(',')[0] ?? r.state)}>{r.state}</a>
          </>
        )}
      </nav>
      <header class="view-header">
        <h1>
          Record <code>{id}</code>
        </h1>
        {r && <Badge status={r.status} />}
      </header>
      <Pending loaded={record} />
      {r && (
        <>
          <dl class="facts">
            <div>
              <dt>state</dt>
              <dd>
                <code>{r.state}</code>
              </dd>
            </div>
            <div>
              <dt>version</dt>
              <dd>{r.version}</dd>
            </div>
            <div>
              <dt>entered</dt>
              <dd>{date(r.enteredAt)}</dd>
            </div>
            <div>
              <dt>wakes</dt>
              <dd>{date(r.wakeAt)}</dd>
            </div>
            <div>
              <dt>attempt</dt>
              <dd>{r.attempt}</dd>
            </div>
            {r.parent && (
              <div>
                <dt>parent</dt>
                <dd class="parent">
                  <RecordLink machine={r.parent.machine} id={r.parent.id} /> <span class="muted">as {r.parent.key}</span>
                </dd>
              </div>
            )}
          </dl>
          {r.error && (
            <p class="error" role="status">
              {r.error.name ? `${r.error.name}: ` : ''}
              {r.error.message}
            </p>
          )}
          <div class="actions" role="group" aria-label="Actions">
            <ConfirmButton
              label="Send event"
              title={`Send an event to ${id}`}
              disabled={r.status !== 'active'}
              onConfirm={async (form) => {
                const data = new FormData(form);
                const extra = String(data.get('payload') ?? '').trim();
                const payload = extra ? (JSON.parse(extra) as Record<string, unknown>) : {};
                await api(`${base}/events`, { ...payload, type: String(data.get('type') ?? '') });
                reload();
              }}
            >
              <label>
                Event type <input name="type" required autoComplete="off" />
              </label>
              <label>
                Other fields (JSON object, optional) <textarea name="payload" rows={4} placeholder='{"owner": "ana"}' />
              </label>
            </ConfirmButton>
            <ConfirmButton
              label="Cancel record"
              title={`Cancel ${id}? It stops where it is, for good.`}
              danger
              disabled={r.status !== 'active'}
              onConfirm={async (form) => {
                const reason = String(new FormData(form).get('reason') ?? '').trim();
                await api(`${base}/cancel`, reason ? { reason } : {});
                reload();
              }}
            >
              <label>
                Reason (optional) <input name="reason" autoComplete="off" />
              </label>
            </ConfirmButton>
            <ConfirmButton
              label="Retry"
              title={`Retry ${id} from its failed step?`}
              disabled={r.status !== 'failed'}
              onConfirm={async (form) => {
                await api(`${base}/retry`, { skipEvent: new FormData(form).get('skipEvent') === 'on' });
                reload();
              }}
            >
              <label class="check">
                <input type="checkbox" name="skipEvent" /> Skip the event that failed
              </label>
            </ConfirmButton>
          </div>
          <div class="columns">
            <section class="panel" aria-labelledby="history-title">
              <h2 id="history-title">History</h2>
              {history.error && <ErrorBox error={history.error} />}
              {history.data ? <Timeline history={history.data} record={r} /> : <Loading />}
            </section>
            {history.data && <Children machine={machine} id={id} history={history.data} />}
            <section class="panel" aria-labelledby="context-title">
              <h2 id="context-title">Context</h2>
              <pre class="json" tabIndex={0} aria-label="Context as JSON">
                {JSON.stringify(r.context, null, 2)}
              </pre>
            </section>
          </div>
        </>
      )}
    </>
  );
}
