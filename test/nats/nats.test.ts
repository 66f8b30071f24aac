import type { NatsConnection } from '@nats-io/transport-node';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { createRuntime, durable, InvalidArgumentError, none, type Runtime, type TransitionMessage } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { deleteStream, NATS_URL, openNats, streamMessages, uniqueNats } from '../helpers/nats.js';
import { until } from '../helpers/until.js';

// drover over a real nats-server with JetStream and a real PostgreSQL.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
let nc: NatsConnection;
const cleanups: Array<() => Promise<void>> = [];
beforeAll(async () => {
  nc = await openNats();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await nc.close();
  await admin.end();
});

// A parcel: nested states (a.b tokens), a context-only step, and *_id fields in context.
const parcel = durable(
  setup({
    types: {
      context: {} as { parcel_id: string; customer_id: string; scans: number; note?: string },
      input: {} as { parcel_id: string; customer_id: string },
    },
  }).createMachine({
    id: 'parcel',
    initial: 'registered',
    context: ({ input }) => ({ parcel_id: input.parcel_id, customer_id: input.customer_id, scans: 0 }),
    states: {
      registered: { on: { ship: 'transit.sorting' } },
      transit: {
        initial: 'sorting',
        states: { sorting: { on: { sorted: 'onTruck' } }, onTruck: { on: { deliver: '#parcel.delivered' } } },
        // A scan changes only the context: no transition, nothing published.
        on: { scan: { actions: assign({ scans: ({ context }) => context.scans + 1 }) } },
      },
      delivered: { type: 'final' },
    },
  }),
);

async function world(extra: Record<string, unknown> = {}) {
  const schema = uniqueSchema('nats');
  const natsOpts = uniqueNats();
  cleanups.push(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await deleteStream(nc, natsOpts.stream.name);
  });
  const runtimes: Runtime[] = [];
  const make = async (options: Record<string, unknown> = {}) => {
    const rt = await createRuntime({
      database: DATABASE_URL,
      schema,
      machines: [parcel],
      nats: NATS_URL,
      ...natsOpts,
      pollInterval: 50,
      controlInterval: '1h',
      ...extra,
      ...options,
    });
    runtimes.push(rt);
    return rt;
  };
  cleanups.push(async () => {
    for (const rt of runtimes) await rt.stop();
  });
  return { schema, ...natsOpts, make };
}

describe('publishing transitions through the outbox', () => {
  it('every transition of N records is in the stream exactly once, in order per record, with ids; context-only steps publish nothing', async () => {
    const w = await world();
    const rt = await w.make();
    await rt.start();
    const ids = Array.from({ length: 30 }, (_, i) => `p${i}`);
    await Promise.all(ids.map((id) => rt.create('parcel', { id, input: { parcel_id: id, customer_id: `c-${id}` } })));
    for (const type of ['ship', 'scan', 'sorted', 'scan', 'deliver']) {
      await Promise.all(ids.map((id) => rt.send('parcel', id, { type })));
    }
    for (const id of ids) await rt.waitFor('parcel', id, { status: 'done' }, { timeoutMs: 15_000 });
    await until(async () => (await admin.query(`SELECT count(*)::int AS n FROM "${w.schema}".transitions WHERE published_at IS NULL`)).rows[0].n === 0, 'outbox drained');
    const messages = await streamMessages<TransitionMessage & { ids: Record<string, string> }>(nc, w.stream.name);
    expect(messages).toHaveLength(ids.length * 4); // created, ship, sorted, deliver; scans change only context
    for (const id of ids) {
      const mine = messages.filter((m) => m.data.id === id);
      expect(mine.map((m) => m.data.seq)).toEqual([1, 2, 3, 4]);
      expect(mine.map((m) => m.data.to)).toEqual(['registered', 'transit.sorting', 'transit.onTruck', 'delivered']);
      expect(mine.map((m) => m.subject)).toEqual([
        `${w.natsPrefix}.transition.parcel.registered`,
        `${w.natsPrefix}.transition.parcel.transit_sorting`,
        `${w.natsPrefix}.transition.parcel.transit_onTruck`,
        `${w.natsPrefix}.transition.parcel.delivered`,
      ]);
      expect(mine.map((m) => m.msgId)).toEqual([1, 2, 3, 4].map((seq) => `parcel:${id}:${seq}`));
      expect(mine[1]?.data).toMatchObject({ machine: 'parcel', version: 1, from: 'registered', event: { type: 'ship' } });
      for (const m of mine) expect(m.data.ids).toEqual({ parcel_id: id, customer_id: `c-${id}` });
    }
  });

  it('a subscriber gets transitions through JetStream; a durable one resumes after a restart where it stopped', async () => {
    const w = await world();
    const rt = await w.make();
    await rt.start();
    const live: string[] = [];
    const unsubscribeLive = rt.subscribe({ machine: 'parcel', to: 'transit' }, (t) => {
      live.push(`${t.id}:${t.to}`);
    });
    const firstRun: string[] = [];
    const unsubscribe = rt.subscribe({ machine: 'parcel' }, (t) => {
      firstRun.push(`${t.id}:${t.seq}`);
    }, { durable: 'audit' });
    await Promise.all([unsubscribe.ready, unsubscribeLive.ready]);
    await rt.create('parcel', { id: 'd1', input: { parcel_id: 'd1', customer_id: 'c' } });
    await rt.send('parcel', 'd1', { type: 'ship' });
    await until(() => firstRun.length === 2 && live.length === 1, 'first two transitions');
    expect(live).toEqual(['d1:transit.sorting']); // `to: 'transit'` matches its child states
    unsubscribe();
    unsubscribeLive();
    await rt.send('parcel', 'd1', { type: 'sorted' });
    await rt.send('parcel', 'd1', { type: 'deliver' });
    await rt.waitFor('parcel', 'd1', { status: 'done' });
    // A new runtime (a restarted subscriber) with the same durable name resumes at seq 3.
    const again = await w.make();
    const secondRun: string[] = [];
    await again.subscribe({ machine: 'parcel' }, (t) => {
      secondRun.push(`${t.id}:${t.seq}`);
    }, { durable: 'audit' }).ready;
    await until(() => secondRun.length === 2, 'the two missed transitions', 10_000);
    expect(firstRun).toEqual(['d1:1', 'd1:2']);
    expect(secondRun).toEqual(['d1:3', 'd1:4']);
    expect(() => rt.subscribe({}, () => {}, { durable: 'no spaces' })).toThrow(InvalidArgumentError);
  });
});

describe('events and control in', () => {
  it('<prefix>.send.<machine> stores the event before it replies; bad requests get an error reply and change nothing', async () => {
    const w = await world();
    const rt = await w.make();
    await rt.start();
    await rt.create('parcel', { id: 'r1', input: { parcel_id: 'r1', customer_id: 'c' } });
    const ask = async (machine: string, body: string) =>
      (await nc.request(`${w.natsPrefix}.send.${machine}`, body, { timeout: 5000 })).json<{ ok: boolean; error?: { code: string; message: string } }>();
    expect(await ask('parcel', JSON.stringify({ id: 'r1', event: { type: 'ship' } }))).toEqual({ ok: true });
    // The reply came after the event was stored: it is in the inbox or already stepped.
    const stored = await admin.query(
      `SELECT (SELECT count(*)::int FROM "${w.schema}".events WHERE instance_id = 'r1') + (SELECT count(*)::int FROM "${w.schema}".transitions WHERE instance_id = 'r1' AND event->>'type' = 'ship') AS n`,
    );
    expect(stored.rows[0].n).toBeGreaterThanOrEqual(1);
    await rt.waitFor('parcel', 'r1', { state: 'transit' });
    const before = await admin.query(`SELECT row_version FROM "${w.schema}".instances WHERE id = 'r1'`);
    expect(await ask('parcel', '{not json')).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await ask('parcel', JSON.stringify({ event: { type: 'sorted' } }))).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await ask('nope', JSON.stringify({ id: 'r1', event: { type: 'sorted' } }))).toMatchObject({ ok: false, error: { code: 'UNKNOWN_MACHINE' } });
    expect(await ask('parcel', JSON.stringify({ id: 'ghost', event: { type: 'sorted' } }))).toMatchObject({ ok: false, error: { code: 'RECORD_NOT_FOUND' } });
    expect(await ask('parcel', JSON.stringify({ id: 'r1', event: { type: 'ship' } }))).toMatchObject({ ok: false, error: { code: 'EVENT_NOT_ACCEPTED' } });
    expect(await ask('parcel', JSON.stringify({ id: 'r1', event: 'sorted' }))).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    const after = await admin.query(`SELECT row_version FROM "${w.schema}".instances WHERE id = 'r1'`);
    expect(after.rows).toEqual(before.rows);
    expect((await admin.query(`SELECT count(*)::int AS n FROM "${w.schema}".events`)).rows[0].n).toBe(0);
  });

  it('<prefix>.create.<machine> creates a record before it replies; input that cannot start gets INVALID_INPUT and stores nothing', async () => {
    const w = await world();
    const rt = await w.make();
    await rt.start();
    const ask = async (machine: string, body: unknown) =>
      (await nc.request(`${w.natsPrefix}.create.${machine}`, JSON.stringify(body), { timeout: 5000 })).json<{
        ok: boolean;
        record?: { id: string; state: string; status: string };
        error?: { code: string; message: string; issues?: unknown[] };
      }>();
    expect(await ask('parcel', { id: 'n1', input: { parcel_id: 'n1', customer_id: 'c' } })).toEqual({
      ok: true,
      record: { id: 'n1', state: 'registered', status: 'active' },
    });
    expect(await rt.get('parcel', 'n1')).toMatchObject({ context: { parcel_id: 'n1', customer_id: 'c', scans: 0 } });
    // The context factory reads input.parcel_id: no input, no record.
    const bad = await ask('parcel', { id: 'n2' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID_INPUT' } });
    expect(bad.error?.issues).toHaveLength(1);
    expect(await rt.get('parcel', 'n2')).toBeNull();
    expect(await ask('parcel', { id: 'n1', input: { parcel_id: 'n1', customer_id: 'c' } })).toMatchObject({ ok: false, error: { code: 'DUPLICATE_RECORD' } });
    expect(await ask('parcel', { ids: 'n3' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/did you mean "id"/) } });
    expect(await ask('parcel', ['n3'])).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect((await admin.query(`SELECT count(*)::int AS n FROM "${w.schema}".instances`)).rows[0].n).toBe(1);
  });

  it('control messages reach a second runtime at once (its control interval is an hour)', async () => {
    const w = await world();
    const a = await w.make({ node: 'ctl-a' });
    const b = await w.make({ node: 'ctl-b' });
    let callsB = 0;
    a.supervisor.add('sweeper', () => none(20));
    b.supervisor.add('sweeper', () => {
      callsB += 1;
      return none(20);
    });
    await Promise.all([a.start(), b.start()]);
    await until(() => callsB > 0, 'b runs');
    await a.supervisor.disable('sweeper');
    await until(() => b.supervisor.status('sweeper') === 'disabled', 'b disabled by the control message', 5000);
    await a.supervisor.enable('sweeper');
    await until(() => b.supervisor.status('sweeper') === 'running', 'b enabled again', 5000);
    await a.supervisor.pause('org:x');
    await until(() => b.supervisor.isPaused('org:x'), 'b sees the pause', 5000);
  });

  it('send() publishes <prefix>.wake.<queue> for the pollers of other nodes; a create() with nothing due does not', async () => {
    const w = await world();
    const rt = await w.make();
    const sub = nc.subscribe(`${w.natsPrefix}.wake.*`);
    const seen: string[] = [];
    const reading = (async () => {
      for await (const m of sub) {
        const body = m.json<{ node: string; queue: string; at: number | null }>();
        seen.push(`${m.subject}:${body.node}:${body.queue}:${body.at}`);
        break;
      }
    })();
    await nc.flush(); // the subscription is in place on the server
    // The parcel waits for an event: its creation leaves no work for any poller.
    await rt.create('parcel', { id: 'w1', input: { parcel_id: 'w1', customer_id: 'c' } });
    await rt.send('parcel', 'w1', { type: 'ship' });
    await reading;
    // Messages of one connection arrive in order: had create() published one, it would be first.
    expect(seen).toEqual([`${w.natsPrefix}.wake.parcel:${rt.node}:parcel:null`]);
  });

  it('a subscriber that comes before any node has started (no stream yet) still gets the transitions', async () => {
    const w = await world();
    const client = await w.make();
    const got: string[] = [];
    await client.subscribe({ machine: 'parcel' }, (t) => {
      got.push(`${t.id}:${t.to}`);
    }).ready;
    const worker = await w.make();
    await worker.start();
    await worker.create('parcel', { id: 'early', input: { parcel_id: 'early', customer_id: 'c' } });
    await until(() => got.length === 1, 'the creation transition');
    expect(got).toEqual(['early:registered']);
  });

  it('accepts a connection the application already holds, and leaves it open on stop()', async () => {
    const w = await world();
    const own = await openNats();
    const rt = await w.make({ nats: own });
    await rt.start();
    await rt.create('parcel', { id: 'o1', input: { parcel_id: 'o1', customer_id: 'c' } });
    await until(async () => (await streamMessages(nc, w.stream.name)).length === 1, 'published');
    await rt.stop();
    expect(own.isClosed()).toBe(false);
    await own.close();
  });
});

describe('on the embedded PGlite', () => {
  it('publishes through the same outbox', async () => {
    const { PGlite } = await import('@electric-sql/pglite');
    const db = await PGlite.create();
    const natsOpts = uniqueNats();
    const rt = await createRuntime({ database: db, machines: [parcel], nats: NATS_URL, ...natsOpts, pollInterval: 50 });
    try {
      await rt.start();
      await rt.create('parcel', { id: 'g1', input: { parcel_id: 'g1', customer_id: 'c' } });
      await rt.send('parcel', 'g1', { type: 'ship' });
      await until(async () => (await streamMessages(nc, natsOpts.stream.name)).length === 2, 'two transitions published', 10_000);
      const messages = await streamMessages<{ id: string; seq: number; ids: unknown }>(nc, natsOpts.stream.name);
      expect(messages.map((m) => m.msgId)).toEqual(['parcel:g1:1', 'parcel:g1:2']);
    } finally {
      await rt.stop();
      await db.close();
      await deleteStream(nc, natsOpts.stream.name);
    }
  });
});

describe('trace context and SLA breaches on NATS', () => {
  const waiting = durable(
    setup({}).createMachine({ id: 'slow', initial: 'waiting', states: { waiting: { on: { go: 'gone' } }, gone: { type: 'final' } } }),
    { residency: { waiting: { sla: '200ms' } } },
  );

  it('a transition caused by a send() inside a trace carries its traceparent in the payload and the headers', async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const w = await world();
      const rt = await w.make();
      await rt.start();
      await rt.create('parcel', { id: 't1', input: { parcel_id: 't1', customer_id: 'c' } });
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const spanId = 'b7ad6b7169203331';
      const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: 1 });
      await context.with(ctx, () => rt.send('parcel', 't1', { type: 'ship' }));
      await until(async () => (await streamMessages(nc, w.stream.name)).length === 2, 'two transitions');
      const messages = await streamMessages<{ seq: number; traceparent: string | null }>(nc, w.stream.name);
      expect(messages.map((m) => m.data.traceparent)).toEqual([null, `00-${traceId}-${spanId}-01`]);
    } finally {
      context.disable();
    }
  });

  it('an SLA breach is published once on <prefix>.sla.<machine>.<state>', async () => {
    const schema = uniqueSchema('natssla');
    const natsOpts = uniqueNats();
    cleanups.push(async () => {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await deleteStream(nc, natsOpts.stream.name);
    });
    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [waiting], nats: NATS_URL, ...natsOpts, slaInterval: 50 });
    cleanups.push(() => rt.stop());
    await rt.start();
    await rt.create('slow', { id: 'late' });
    const sla = async () => (await streamMessages<{ id: string; state: string; slaMs: number }>(nc, natsOpts.stream.name)).filter((m) => m.subject.includes('.sla.'));
    await until(async () => (await sla()).length === 1, 'a breach message', 10_000);
    const countPasses = async () => (await admin.query(`SELECT count(*)::int AS n FROM "${schema}".sla_breaches`)).rows[0].n;
    expect(await countPasses()).toBe(1);
    await new Promise((r) => setTimeout(r, 300)); // six more passes of the watch
    const messages = await sla();
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ subject: `${natsOpts.natsPrefix}.sla.slow.waiting`, data: { id: 'late', state: 'waiting', slaMs: 200 } });
  });
});
