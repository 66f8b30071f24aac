// The HTTP API as the dashboard sees it: the JSON shapes of docs/http.md, fetch with the
// bearer token, and the event stream.

import type { GraphState } from '../graph/graph.js';
import type { RecordStatus } from '../record/step.js';

// What is plain JSON on the wire is the server's own type, as it is.
export type { GraphState, GraphTransition } from '../graph/graph.js';
export type { Page } from '../page.js';
export type Status = RecordStatus;

export interface MachineSummary {
  name: string;
  version: number;
  versions: number[];
  queue: string;
  counts: Record<Status, number>;
}

export interface MachineDetail {
  name: string;
  version: number;
  versions: number[];
  queue: string;
  /** SLA budgets in seconds, by state path. */
  sla: Record<string, number>;
  graph: { name: string; version: number; root: GraphState };
}

export interface StateCount {
  machine: string;
  state: string;
  status: Status;
  count: number;
  oldestEnteredAt: string;
}

export interface ResidencyRow {
  state: string;
  count: number;
  stays: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

export interface ErrorInfo {
  name?: string;
  message?: string;
  stack?: string;
}

export interface RecordView {
  id: string;
  machine: string;
  version: number;
  state: string;
  value: unknown;
  context: Record<string, unknown>;
  status: Status;
  enteredAt: string;
  wakeAt: string | null;
  attempt: number;
  error: ErrorInfo | null;
  /** For a child record: its parent record and its key there (the invoke or spawn id). */
  parent?: { machine: string; id: string; key: string };
}

export interface HistoryEntry {
  from: string | null;
  to: string;
  event: { type: string; [key: string]: unknown };
  at: string;
  status: Status;
  error?: ErrorInfo | null;
  /** Absent for a change of state: what the record sent, received, spawned or emitted between two changes. */
  kind?: 'sent' | 'received' | 'spawned' | 'emitted';
  /** The other record of a sent, received or spawned entry. */
  peer?: { machine: string; id: string };
}

export interface RunRecord {
  id: string;
  worker: string;
  kind: 'tick' | 'call';
  scheduledFor: string;
  startedAt: string;
  finishedAt: string | null;
  status: 'running' | 'succeeded' | 'failed' | 'skipped';
  attempt: number;
  debug: string | null;
  error: ErrorInfo | null;
  node: string;
}

export interface FleetWorker {
  name: string;
  kind: 'worker' | 'periodic';
  enabled: boolean;
  status: 'running' | 'stopped' | 'crashed' | 'disabled';
  schedule: string | null;
  tags: string[];
  nextRun: string | null;
  nodes: { node: string; status: string; panics: number; lastMetric: Record<string, unknown> | null }[];
  lastRun: RunRecord | null;
}

export interface NodeInfo {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  lastSeen: string;
}

/** A transition of the event stream (`event: transition`). */
export interface TransitionMessage {
  id: string;
  machine: string;
  version: number;
  seq: number;
  from: string | null;
  to: string;
  status: Status;
  event: { type: string };
  at: string;
}

/** An error answer of the API: `{ error: { code, message } }`, with the HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = 'drover.token';
/** Must match TOKEN_COOKIE of src/http/dashboard.ts. */
const TOKEN_COOKIE = 'drover_token';

/**
 * Takes `?token=` from the page's URL once: kept in sessionStorage (this tab, until it closes)
 * and removed from the address bar and history, so it is not shared with a copied link.
 */
export function adoptTokenFromUrl(): void {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  setToken(token);
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
}

export function setToken(token: string): void {
  if (token === '') sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

/** Listeners told when the API answers 401 (the page then asks for the token). */
export const unauthorized = new Set<() => void>();

/** Calls the API: `GET` without a body, `POST` with a JSON one. Rejects with {@link ApiError}. */
export async function api<T>(path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api${path}`, { method: body === undefined ? 'GET' : 'POST', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  const json = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    if (res.status === 401) for (const f of unauthorized) f();
    const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, err?.code ?? 'HTTP', err?.message ?? `${res.status} ${res.statusText}`);
  }
  return json as T;
}

/**
 * Follows `/api/events` (filtered by `query`). EventSource cannot set the Authorization
 * header: the token goes in a cookie scoped to the stream's path, `SameSite=Strict`, which
 * the server accepts on that route alone. Returns a function that closes the stream.
 */
export function follow(query: Record<string, string>, onTransition: (t: TransitionMessage) => void, onState?: (open: boolean) => void): () => void {
  const t = token();
  if (t) document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(t)}; path=/api/events; SameSite=Strict`;
  let source: EventSource | undefined;
  let closed = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const open = () => {
    source = new EventSource(`/api/events?${new URLSearchParams(query)}`);
    source.addEventListener('open', () => onState?.(true));
    source.addEventListener('transition', (e) => onTransition(JSON.parse((e as MessageEvent<string>).data) as TransitionMessage));
    source.addEventListener('error', () => {
      onState?.(false);
      // The browser reconnects by itself unless the answer was not a stream (a 401, a 404):
      // then it gives up, and so we open a new one later.
      if (source?.readyState === EventSource.CLOSED && !closed) retry = setTimeout(open, 5_000);
    });
  };
  open();
  return () => {
    closed = true;
    if (retry) clearTimeout(retry);
    source?.close();
  };
}
