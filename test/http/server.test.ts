import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { z } from 'zod';
import { createRuntime, done, durable, type HttpServer, InvalidArgumentError, none, type Runtime } from '../../src/index.js';
import { pgliteBackend, postgresBackend, type TestBackend } from '../helpers/backends.js';
import { gate, until } from '../helpers/until.js';
import { POLL_MS } from '../../src/http/events.js';

// The HTTP API through real requests against a runtime on PostgreSQL.

const ticket = durable(
  setup({
    types: { context: {} as { ticket_id: string }, input: {} as { ticket_id: string } },
    guards: { hasOwner: ({ event }) => typeof (event as { owner?: unknown }).owner === 'string' },
  }).createMachine({
    id: 'ticket',
    initial: 'open',
    context: ({ input }) => ({ ticket_id: input.ticket_id }),
    states: {
      open: { on: { assign: { target: 'working', guard: 'hasOwner' }, close: 'closed' }, after: { 3_600_000: 'stale' } },
      working: {
        type: 'parallel',
        on: { close: 'closed' },
        states: {
          code: { initial: 'writing', states: { writing: { on: { push: 'review' } }, review: {} } },
          docs: { initial: 'todo', states: { todo: { on: { write: 'written' } }, written: {} } },
        },
      },
      stale: { on: { close: 'closed' } },
      closed: { type: 'final' },
    },
  }),
  { input: z.object({ ticket_id: z.string() }) },
);

let backend: TestBackend;
let rt: Runtime;
let server: HttpServer;
let recorded = 0;

beforeAll(async () => {
  backend = await postgresBackend();
  rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [ticket], controlInterval: 50, heartbeatInterval: 100 });
  rt.supervisor.add('recorder', () => (++recorded <= 7 ? done() : none('1h')), { record: true });
  rt.periodic('nightly-report', { cron: '0 3 * * *' }, async () => 'sent', { tags: ['reports'] });
  await rt.start();
  server = await rt.serve({ port: 0 });
});

afterAll(async () => {
  await rt?.stop();
  await backend?.close();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

const newTicket = (id: string) => call('POST', '/api/machines/ticket/records', { id, input: { ticket_id: id } });

describe('HTTP API: machines and records', () => {
  it('lists machines with versions and counts, and serves the graph of one', async () => {
    await newTicket('m-1');
    const list = await call('GET', '/api/machines');
    expect(list.status).toBe(200);
    expect(list.body).toEqual([
      { name: 'ticket', version: 1, versions: [1], queue: 'ticket', counts: expect.objectContaining({ active: expect.any(Number), done: 0 }) },
    ]);
    expect(list.body[0].counts.active).toBeGreaterThanOrEqual(1);
    const one = await call('GET', '/api/machines/ticket');
    expect(one.status).toBe(200);
    const states = one.body.graph.root.states as Array<{ id: string; type: string; states: unknown[]; transitions: Array<{ event: string; guard?: string; delay?: number }> }>;
    expect(states.map((s) => [s.id, s.type])).toEqual([
      ['ticket.open', 'atomic'],
      ['ticket.working', 'parallel'],
      ['ticket.stale', 'atomic'],
      ['ticket.closed', 'final'],
    ]);
    expect(states[0]?.transitions).toContainEqual(expect.objectContaining({ event: 'assign', guard: 'hasOwner' }));
    expect(states[0]?.transitions).toContainEqual(expect.objectContaining({ delay: 3_600_000 }));
    expect(states[1]?.states).toHaveLength(2);
    expect((await call('GET', '/api/machines/ticket?version=7')).body.error.code).toBe('UNKNOWN_VERSION');
  });

  it('creates, gets, sends and shows history; counts and residency', async () => {
    const created = await newTicket('r-1');
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: 'r-1', machine: 'ticket', state: 'open', status: 'active', context: { ticket_id: 'r-1' }, error: null });
    expect(new Date(created.body.enteredAt).toISOString()).toBe(created.body.enteredAt);
    const sent = await call('POST', '/api/machines/ticket/records/r-1/events', { type: 'assign', owner: 'ada' });
    expect(sent.status).toBe(202);
    await rt.waitFor('ticket', 'r-1', { state: 'working' });
    const got = await call('GET', '/api/machines/ticket/records/r-1');
    expect(got.body).toMatchObject({ state: 'working.code.writing,working.docs.todo', value: { working: { code: 'writing', docs: 'todo' } } });
    const history = await call('GET', '/api/machines/ticket/records/r-1/history');
    expect(history.body.map((h: { from: string | null; to: string }) => [h.from, h.to])).toEqual([
      [null, 'open'],
      ['open', 'working.code.writing,working.docs.todo'],
    ]);
    expect(history.body[1].event).toEqual({ type: 'assign', owner: 'ada' });
    const counts = await call('GET', '/api/machines/ticket/counts');
    expect(counts.body).toContainEqual(expect.objectContaining({ machine: 'ticket', state: 'working.code.writing,working.docs.todo', status: 'active', count: 1 }));
    const residency = await call('GET', `/api/machines/ticket/residency?since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`);
    expect(residency.status).toBe(200);
    expect(residency.body).toContainEqual(expect.objectContaining({ state: 'open', stays: expect.any(Number) }));
    expect((await call('POST', '/api/machines/ticket/records/r-1/cancel', { reason: 'dup' })).body).toEqual({ cancelled: true });
    expect((await call('POST', '/api/machines/ticket/records/r-1/cancel')).body).toEqual({ cancelled: false });
  });

  it('pages records with next → after, filtered by state and status', async () => {
    for (const id of ['p-1', 'p-2', 'p-3', 'p-4', 'p-5']) expect((await newTicket(id)).status).toBe(201);
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const q: string = `/api/machines/ticket/records?state=open&status=active&limit=2${after ? `&after=${after}` : ''}`;
      const page = await call('GET', q);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((r: { id: string }) => r.id));
      after = page.body.next;
    } while (after);
    const expected = (await backend.query<{ id: string }>(`SELECT id FROM "${backend.schema}".instances WHERE state = 'open' AND status = 'active' ORDER BY id`)).map((r) => r.id);
    expect(seen).toEqual(expected);
    expect(seen).toEqual(expect.arrayContaining(['p-1', 'p-2', 'p-3', 'p-4', 'p-5']));
  });

  it('answers bad requests with 400 and field paths', async () => {
    const badBody = await call('POST', '/api/machines/ticket/records', { id: '', priority: 'high', extra: 1 });
    expect(badBody.status).toBe(400);
    expect(badBody.body.error.code).toBe('INVALID_REQUEST');
    expect(badBody.body.error.issues.map((i: { path: string }) => i.path).sort()).toEqual(['/body/extra', '/body/id', '/body/priority']);
    const badQuery = await call('GET', '/api/machines/ticket/records?limit=0&status=sleeping');
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error.issues.map((i: { path: string }) => i.path).sort()).toEqual(['/query/limit', '/query/status']);
    const noType = await call('POST', '/api/machines/ticket/records/p-1/events', { owner: 'ada' });
    expect(noType.status).toBe(400);
    expect(noType.body.error.issues).toEqual([{ path: '/body/type', message: expect.any(String) }]);
    const badInput = await call('POST', '/api/machines/ticket/records', { input: { ticket_id: 5 } });
    expect(badInput.status).toBe(400);
    expect(badInput.body.error).toMatchObject({ code: 'INVALID_INPUT', issues: [{ path: '/body/input/ticket_id', message: expect.any(String) }] });
    const badJson = await fetch(`${server.url}/api/machines/ticket/records`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    expect(badJson.status).toBe(400);
    expect((await badJson.json()).error.code).toBe('BAD_REQUEST');
  });

  it('answers 404 for unknown machines, records and routes', async () => {
    const machine = await call('GET', '/api/machines/tikcet/records');
    expect(machine.status).toBe(404);
    expect(machine.body.error).toMatchObject({ code: 'UNKNOWN_MACHINE', message: expect.stringContaining('known: ticket') });
    expect((await call('GET', '/api/machines/ticket/records/nope')).body.error.code).toBe('RECORD_NOT_FOUND');
    expect((await call('GET', '/api/machines/ticket/records/nope')).status).toBe(404);
    expect((await call('GET', '/api/machines/ticket/records/nope/history')).status).toBe(404);
    expect((await call('POST', '/api/machines/ticket/records/nope/events', { type: 'close' })).status).toBe(404);
    expect((await call('POST', '/api/workers/ghost/start', { scope: 'node' })).body.error.code).toBe('WORKER_NOT_FOUND');
    expect((await call('POST', '/api/workers/ghost/start', { scope: 'everywhere' })).status).toBe(400);
    expect((await call('GET', '/api/nothing')).status).toBe(404);
    const nowhere = await fetch(`${server.url}/nowhere`);
    expect(nowhere.status).toBe(404);
    expect((await nowhere.json()).error.code).toBe('NOT_FOUND');
  });

  it('answers 409 for a duplicate id, a retry of a record that has not failed, and an event the state refuses', async () => {
    await newTicket('d-1');
    const dup = await newTicket('d-1');
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('DUPLICATE_RECORD');
    const retry = await call('POST', '/api/machines/ticket/records/d-1/retry', {});
    expect(retry.status).toBe(409);
    expect(retry.body.error.code).toBe('NOT_FAILED');
    await call('POST', '/api/machines/ticket/records/d-1/events', { type: 'close' });
    await rt.waitFor('ticket', 'd-1', { status: 'done' });
    const late = await call('POST', '/api/machines/ticket/records/d-1/events', { type: 'close' });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('EVENT_NOT_ACCEPTED');
  });
});

describe('HTTP API: workers, periodics, nodes', () => {
  it('lists workers and periodics; disable and enable reach the fleet and the workers table', async () => {
    const list = await call('GET', '/api/workers');
    expect(list.status).toBe(200);
    const byName = new Map(list.body.map((w: { name: string }) => [w.name, w]));
    expect(byName.get('recorder')).toMatchObject({ kind: 'worker', enabled: true, nodes: [expect.objectContaining({ node: rt.node })] });
    expect(byName.get('nightly-report')).toMatchObject({ kind: 'periodic', schedule: expect.stringContaining('0 3 * * *'), tags: ['reports'] });
    expect(new Date((byName.get('nightly-report') as { nextRun: string }).nextRun).getUTCHours()).toBe(3);

    expect((await call('POST', '/api/workers/nightly-report/disable')).body).toEqual({ name: 'nightly-report', enabled: false });
    const flags = await backend.query<{ enabled: boolean }>(`SELECT enabled FROM "${backend.schema}".workers WHERE name = 'nightly-report'`);
    expect(flags).toEqual([{ enabled: false }]);
    expect((await rt.supervisor.fleet()).find((w) => w.name === 'nightly-report')?.enabled).toBe(false);
    await call('POST', '/api/workers/nightly-report/enable');
    expect((await rt.supervisor.fleet()).find((w) => w.name === 'nightly-report')?.enabled).toBe(true);

    expect((await call('POST', '/api/tags/reports/pause')).body).toEqual({ tag: 'reports', paused: true });
    await until(() => rt.supervisor.isPaused('reports'), 'tag paused');
    await call('POST', '/api/tags/reports/resume');
    await until(() => !rt.supervisor.isPaused('reports'), 'tag resumed');
  });

  it('stops and starts a worker of this node, and pages its runs by keyset and offset', async () => {
    await until(() => recorded > 7, 'seven recorded calls');
    // Fleet wide (the default): through the command table, applied within a control interval.
    expect((await call('POST', '/api/workers/recorder/stop')).body).toEqual({ name: 'recorder', scope: 'fleet' });
    await until(() => rt.supervisor.status('recorder') === 'stopped', 'stopped on every node');
    expect((await call('POST', '/api/workers/recorder/start')).body).toEqual({ name: 'recorder', scope: 'fleet' });
    await until(() => rt.supervisor.status('recorder') === 'running', 'started on every node');
    // This node only.
    expect((await call('POST', '/api/workers/recorder/stop', { scope: 'node' })).body).toEqual({ name: 'recorder', scope: 'node', status: 'stopped' });
    expect((await call('POST', '/api/workers/recorder/start', { scope: 'node' })).body).toEqual({ name: 'recorder', scope: 'node', status: 'running' });
    // Stopped again, so no run is being recorded while the pages are read.
    await call('POST', '/api/workers/recorder/stop', { scope: 'node' });
    const all = (await rt.supervisor.runs('recorder', { limit: 100 })).items.map((r) => r.id);
    expect(all.length).toBeGreaterThanOrEqual(7);
    const seen: string[] = [];
    let before: string | null = null;
    do {
      const page = await call('GET', `/api/workers/recorder/runs?limit=3${before ? `&before=${before}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.items.map((r: { id: string }) => r.id));
      before = page.body.next;
    } while (before);
    expect(seen).toEqual(all);
    const offset = await call('GET', '/api/workers/recorder/runs?limit=2&offset=2');
    expect(offset.body.items.map((r: { id: string }) => r.id)).toEqual(all.slice(2, 4));
    expect(offset.body.items[0]).toMatchObject({ worker: 'recorder', kind: 'call', status: 'succeeded', node: rt.node });
    expect((await call('GET', '/api/workers/recorder/runs?before=x')).status).toBe(400);
  });

  it('lists nodes and parked transitions', async () => {
    await until(async () => (await rt.nodes()).length > 0, 'a heartbeat');
    const nodes = await call('GET', '/api/nodes');
    expect(nodes.body).toContainEqual(expect.objectContaining({ id: rt.node, pid: process.pid }));
    expect((await call('GET', '/api/parked')).body).toEqual({ count: 0, items: [] });
  });

  it('serves an OpenAPI 3 document of every route', async () => {
    const doc = await call('GET', '/api/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    const paths = Object.keys(doc.body.paths);
    for (const p of [
      '/api/machines',
      '/api/machines/{machine}',
      '/api/machines/{machine}/records',
      '/api/machines/{machine}/records/{id}',
      '/api/machines/{machine}/records/{id}/history',
      '/api/machines/{machine}/records/{id}/events',
      '/api/machines/{machine}/records/{id}/cancel',
      '/api/machines/{machine}/records/{id}/retry',
      '/api/machines/{machine}/residency',
      '/api/machines/{machine}/counts',
      '/api/workers',
      '/api/workers/{name}/runs',
      '/api/workers/{name}/disable',
      '/api/workers/{name}/start',
      '/api/tags/{tag}/pause',
      '/api/nodes',
      '/api/events',
    ]) {
      expect(paths).toContain(p);
    }
    expect(doc.body.paths['/api/machines/{machine}/records'].post.requestBody).toBeDefined();
    expect(Object.keys(doc.body.components.schemas).sort()).toEqual(['HttpError', 'Record']);
    expect(doc.body.paths['/api/machines/{machine}/records/{id}'].get.responses['200'].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/Record',
    });
  });
});

describe('HTTP API: security', () => {
  it('refuses a non-loopback bind without a token, and unknown options', async () => {
    await expect(rt.serve({ host: '0.0.0.0', port: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(rt.serve({ port: 0, tokn: 'x' } as never)).rejects.toThrow(/did you mean "token"/);
  });

  it('with a token: 401 without it or with a wrong one, 200 with the right one', async () => {
    const open = await rt.serve({ host: '0.0.0.0', port: 0, token: 's3cret' });
    try {
      const url = `http://127.0.0.1:${open.port}/api/machines`;
      const none = await fetch(url);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect((await none.json()).error.code).toBe('UNAUTHORIZED');
      expect((await fetch(url, { headers: { authorization: 'Bearer s3cre' } })).status).toBe(401);
      expect((await fetch(url, { headers: { authorization: 'Basic s3cret' } })).status).toBe(401);
      expect((await fetch(url, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    } finally {
      await open.close();
    }
  });

  it('sends CORS headers only when configured, for the configured origins', async () => {
    const plain = await fetch(`${server.url}/api/nodes`, { headers: { origin: 'https://ops.example.com' } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    const cors = await rt.serve({ port: 0, cors: { origin: ['https://ops.example.com'] } });
    try {
      const allowed = await fetch(`${cors.url}/api/nodes`, { headers: { origin: 'https://ops.example.com' } });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://ops.example.com');
      const other = await fetch(`${cors.url}/api/nodes`, { headers: { origin: 'https://evil.example.com' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await fetch(`${cors.url}/api/machines/ticket/records`, {
        method: 'OPTIONS',
        headers: { origin: 'https://ops.example.com', 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization');
    } finally {
      await cors.close();
    }
  });
});

interface SseEvent {
  id: string;
  event: string;
  data: { id: string; machine: string; from: string | null; to: string };
}

/** Opens the event stream and parses what arrives into `events`. */
async function openEvents(path: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(`${server.url}${path}`, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) return;
        buffer += decoder.decode(value, { stream: true });
        for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, i);
          buffer = buffer.slice(i + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line);
            const at = line.indexOf(': ');
            if (at > 0) fields[line.slice(0, at)] = line.slice(at + 2);
          }
          if (fields.data !== undefined) events.push({ id: fields.id as string, event: fields.event as string, data: JSON.parse(fields.data) });
        }
      }
    } catch {
      // aborted by the test
    }
  })();
  return { res, events, comments, close: () => abort.abort(), ended };
}

describe('HTTP API: Server-Sent Events', () => {
  it('streams committed transitions with ids, and resumes after Last-Event-ID with exactly the missed ones', async () => {
    const first = await openEvents('/api/events?machine=ticket');
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get('content-type')).toContain('text/event-stream');
    for (const id of ['s-1', 's-2', 's-3']) await newTicket(id);
    await until(() => first.events.length >= 3, 'three events');
    expect(first.events.map((e) => [e.event, e.data.id, e.data.to])).toEqual([
      ['transition', 's-1', 'open'],
      ['transition', 's-2', 'open'],
      ['transition', 's-3', 'open'],
    ]);
    first.close();
    await first.ended;
    const last = (first.events[2] as SseEvent).id;

    // Missed while disconnected: two records and a step (its order among them is the commit's).
    await newTicket('s-4');
    await call('POST', '/api/machines/ticket/records/s-1/events', { type: 'assign', owner: 'ada' });
    await newTicket('s-5');
    await rt.waitFor('ticket', 's-1', { state: 'working' });
    const missedRows = await backend.query<{ id: string; instance_id: string }>(
      `SELECT id::text AS id, instance_id FROM "${backend.schema}".transitions WHERE id > $1 AND machine = 'ticket' ORDER BY id`,
      [last],
    );
    const missed = missedRows.map((r) => r.id);
    expect(missedRows.map((r) => r.instance_id).sort()).toEqual(['s-1', 's-4', 's-5']);

    const second = await openEvents('/api/events?machine=ticket', { 'last-event-id': last });
    await until(() => second.events.length >= 3, 'the missed events');
    await newTicket('s-6');
    await until(() => second.events.length >= 4, 'a live event after the replay');
    expect(second.events.map((e) => e.id).slice(0, 3)).toEqual(missed);
    expect(second.events.map((e) => e.data.id)).toEqual([...missedRows.map((r) => r.instance_id), 's-6']);
    expect(new Set(second.events.map((e) => e.id)).size).toBe(second.events.length);
    second.close();
    await second.ended;

    // The query form of Last-Event-ID, with a state filter that matches a parallel leaf.
    const third = await openEvents(`/api/events?machine=ticket&state=working.docs&lastEventId=${last}`);
    await until(() => third.events.length >= 1, 'the filtered replay');
    expect(third.events.map((e) => [e.data.id, e.data.to])).toEqual([['s-1', 'working.code.writing,working.docs.todo']]);
    third.close();
  });

  it('holds a transition back while a transaction that drew a lower id is still open, then sends both in id order', async () => {
    const stream = await openEvents('/api/events?machine=ticket');
    const inTx = gate();
    const created = gate();
    const committed = backend.inTransaction(async (tx) => {
      await rt.create('ticket', { id: 'g-slow', input: { ticket_id: 'g-slow' }, tx });
      created.open();
      await inTx.promise;
    }, 'commit');
    await created.promise;
    await newTicket('g-fast');
    // Give the stream a few polls with g-fast committed and g-slow not: it must not send g-fast
    // past the open id (a cursor that did would never send g-slow).
    const polled = Date.now() + 4 * POLL_MS;
    await until(() => Date.now() > polled, 'a few polls');
    expect(stream.events.map((e) => e.data.id)).toEqual([]);
    inTx.open();
    await committed;
    await until(() => stream.events.length >= 2, 'both events');
    expect(stream.events.map((e) => e.data.id)).toEqual(['g-slow', 'g-fast']);
    stream.close();
  });

  it('starts at the current end without Last-Event-ID, and refuses an unknown machine', async () => {
    const stream = await openEvents('/api/events');
    expect(stream.comments).toEqual([]);
    await newTicket('e-1');
    await until(() => stream.events.some((e) => e.data.id === 'e-1'), 'the new event');
    expect(stream.events.map((e) => e.data.id)).toEqual(['e-1']);
    stream.close();
    expect((await call('GET', '/api/events?machine=nope')).status).toBe(404);
  });

  it('streams and resumes on PGlite too', async () => {
    const lite = await pgliteBackend();
    const own = await createRuntime({ database: lite.database, schema: lite.schema, machines: [ticket] });
    const srv = await own.serve({ port: 0 });
    try {
      await own.create('ticket', { id: 'l-1', input: { ticket_id: 'l-1' } });
      await own.create('ticket', { id: 'l-2', input: { ticket_id: 'l-2' } });
      const res = await fetch(`${srv.url}/api/events?lastEventId=1`);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      while (!text.includes('"l-2"')) text += new TextDecoder().decode((await reader.read()).value);
      expect(text).toContain('id: 2\n');
      expect(text).not.toContain('"l-1"');
      await reader.cancel();
    } finally {
      await own.stop();
      await lite.close();
    }
  });

  it('runtime.stop() ends open streams and closes the server', async () => {
    const own = await createRuntime({ database: backend.database, schema: backend.schema, machines: [ticket] });
    const srv = await own.serve({ port: 0 });
    const res = await fetch(`${srv.url}/api/events`);
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // retry:
    await own.stop();
    await expect((async () => { for (;;) if ((await reader.read()).done) return 'ended'; })()).resolves.toBe('ended');
    await expect(fetch(`${srv.url}/api/machines`)).rejects.toThrow();
  });
});
