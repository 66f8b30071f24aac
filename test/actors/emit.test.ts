import { RetentionPolicy, StorageType, jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emit, setup } from 'xstate';
import { createRuntime, durable, type EmittedMessage, InvalidArgumentError, type Logger, type Runtime, type RuntimeOptions, UnknownMachineError } from '../../src/index.js';
import { BACKENDS, DATABASE_URL, type TestBackend, uniqueSchema } from '../helpers/backends.js';
import { deleteStream, NATS_URL, openNats, streamMessages, uniqueNats } from '../helpers/nats.js';
import { until } from '../helpers/until.js';

// Emitted events (XState's emit()) reach runtime.on(): from the commit hook on the in-process
// bus, and through the outbox relay and the stream with NATS.

const order = setup({
  types: {
    input: {} as { order_id: string; total: number },
    context: {} as { order_id: string; total: number },
    events: {} as { type: 'pay' } | { type: 'ship' },
    emitted: {} as { type: 'order.receipt'; total: number } | { type: 'order.shipped' },
  },
}).createMachine({
  id: 'order',
  context: ({ input }) => ({ order_id: input.order_id, total: input.total }),
  initial: 'open',
  states: {
    open: { on: { pay: { target: 'paid', actions: emit(({ context }) => ({ type: 'order.receipt' as const, total: context.total })) } } },
    paid: { on: { ship: { target: 'shipped', actions: emit({ type: 'order.shipped' as const }) } } },
    shipped: { type: 'final' },
  },
});
const machines = [durable(order)];

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string | undefined;
}
function recordingLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

describe.each(BACKENDS)('on() with the in-process bus on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime<(typeof machines)[number]>;
  let lines: Line[];
  beforeAll(async () => {
    backend = await make();
    const log = recordingLogger();
    lines = log.lines;
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines, pollInterval: 50, logger: log.logger });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('delivers an emitted event once, with the record id, its state and its *_id fields, after the step committed', async () => {
    const got: EmittedMessage<{ type: 'order.receipt'; total: number }>[] = [];
    const states: Array<string | undefined> = [];
    const off = rt.on('order', 'order.receipt', async (e) => {
      got.push(e);
      // Delivered after the commit: the record is already where the emitting step left it.
      states.push((await rt.get('order', e.id))?.state);
    });
    await off.ready;
    await rt.create('order', { id: 'a1', input: { order_id: 'a1', total: 42 } });
    await rt.send('order', 'a1', { type: 'pay' });
    await rt.waitFor('order', 'a1', { state: 'paid' });
    await until(() => states.length === 1, 'the receipt');
    await rt.send('order', 'a1', { type: 'ship' }); // emits order.shipped: not this listener's type
    await rt.waitFor('order', 'a1', { status: 'done' });
    off();

    expect(got).toHaveLength(1);
    const e = got[0] as EmittedMessage<{ type: 'order.receipt'; total: number }>;
    expect(e).toMatchObject({ id: 'a1', machine: 'order', version: 1, state: 'paid', ids: { order_id: 'a1' }, event: { type: 'order.receipt', total: 42 } });
    expect(e.event.total).toBe(42); // typed by setup({ types: { emitted } })
    expect(e.at).toBeInstanceOf(Date);
    expect(e.effectId).toMatch(/^\d+$/);
    expect(states).toEqual(['paid']);
    // The row it came from: born published, there being no outbox.
    const rows = await backend.query<{ id: string; seq: number; published_at: Date | null }>(
      `SELECT id::text AS id, seq, published_at FROM "${backend.schema}".effects WHERE instance_id = 'a1' AND kind = 'emitted' ORDER BY id`,
    );
    expect(rows[0]).toMatchObject({ id: e.effectId, seq: e.seq });
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.published_at !== null)).toBe(true);
  });

  it("'*' takes every type in commit order; unsubscribing stops delivery; a throwing handler stops no one", async () => {
    const all: string[] = [];
    const after: string[] = [];
    const thrower = rt.on('order', '*', () => {
      throw new Error('listener bug');
    });
    const off = rt.on('order', '*', (e) => {
      all.push(`${e.id}:${e.event.type}`);
    });
    const rejecter = rt.on('order', 'order.receipt', async () => {
      throw new Error('async listener bug');
    });
    const last = rt.on('order', '*', (e) => {
      after.push(`${e.id}:${e.event.type}`);
    });
    await rt.create('order', { id: 'b1', input: { order_id: 'b1', total: 1 } });
    await rt.send('order', 'b1', { type: 'pay' });
    await rt.send('order', 'b1', { type: 'ship' });
    await rt.waitFor('order', 'b1', { status: 'done' });
    await until(() => after.length === 2, 'both events');
    expect(all).toEqual(['b1:order.receipt', 'b1:order.shipped']);
    expect(after).toEqual(all);
    await until(() => lines.filter((l) => l.msg === 'drover: subscriber failed').length === 3, 'the three failures logged');
    expect(lines.filter((l) => l.msg === 'drover: subscriber failed').map((l) => l.obj.err).sort()).toEqual(['async listener bug', 'listener bug', 'listener bug']);

    off();
    thrower();
    rejecter();
    await rt.create('order', { id: 'b2', input: { order_id: 'b2', total: 2 } });
    await rt.send('order', 'b2', { type: 'pay' });
    await until(() => after.length === 3, 'the one listener left');
    expect(all).toHaveLength(2);
    last();
  });

  it('takes bad arguments as typed errors', () => {
    const loose = rt as unknown as Runtime;
    expect(() => loose.on('nope', '*', () => {})).toThrow(UnknownMachineError);
    expect(() => loose.on('order', '', () => {})).toThrow(InvalidArgumentError);
    expect(() => loose.on('order', 7 as never, () => {})).toThrow(InvalidArgumentError);
    expect(() => loose.on('order', 'x'.repeat(257), () => {})).toThrow(/at most 256/);
    expect(() => loose.on('order', 'order.receipt', 'mail' as never)).toThrow(/handler must be a function/);
    // @ts-expect-error: not an event this machine emits
    expect(() => rt.on('order', 'order.lost', () => {})()).not.toThrow();
  });
});

describe('on() with NATS', () => {
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  const cleanups: Array<() => Promise<void>> = [];
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await openNats();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await nc.close();
    await admin.end();
  });

  async function world() {
    const schema = uniqueSchema('emit');
    const natsOpts = uniqueNats();
    const log = recordingLogger();
    const runtimes: Runtime[] = [];
    cleanups.push(async () => {
      for (const r of runtimes) await r.stop();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await deleteStream(nc, natsOpts.stream.name);
    });
    const make = async (extra: Partial<RuntimeOptions> = {}) => {
      const r = await createRuntime({
        database: DATABASE_URL,
        schema,
        machines,
        nats: NATS_URL,
        ...natsOpts,
        pollInterval: 50,
        relayInterval: '50ms',
        logger: log.logger,
        ...extra,
      });
      runtimes.push(r as Runtime);
      return r;
    };
    const emitRows = async () =>
      (await admin.query<{ id: string; published_at: Date | null }>(`SELECT id::text AS id, published_at FROM "${schema}".effects WHERE kind = 'emitted' ORDER BY id`)).rows;
    const emitMessages = async () => (await streamMessages<EmittedMessage>(nc, natsOpts.stream.name)).filter((m) => m.subject.startsWith(`${natsOpts.natsPrefix}.emit.`));
    return { schema, ...natsOpts, lines: log.lines, make, emitRows, emitMessages };
  }

  it('a client runtime on the same schema gets what a worker node emits, once, from the stream', async () => {
    const w = await world();
    const client = await w.make(); // never started: it only listens
    const got: EmittedMessage[] = [];
    const all: string[] = [];
    await client.on('order', 'order.receipt', (e) => {
      got.push(e);
    }).ready;
    await client.on('order', '*', (e) => {
      all.push(e.event.type);
    }).ready;
    const worker = await w.make();
    await worker.start();
    await worker.create('order', { id: 'n1', input: { order_id: 'n1', total: 9 } });
    await worker.send('order', 'n1', { type: 'pay' });
    await until(() => got.length === 1, 'the receipt on the client');
    expect(got[0]).toMatchObject({ id: 'n1', machine: 'order', state: 'paid', ids: { order_id: 'n1' }, event: { type: 'order.receipt', total: 9 } });
    expect(got[0]?.at).toBeInstanceOf(Date);

    // The relay published the outbox row on the subject of its type (the dot escaped), marked it, and named it for dedup.
    await until(async () => (await w.emitRows()).every((r) => r.published_at !== null), 'the row marked published');
    const [row] = await w.emitRows();
    const messages = await w.emitMessages();
    expect(messages.map((m) => [m.subject, m.msgId])).toEqual([[`${w.natsPrefix}.emit.order.order_receipt`, `emit:${w.schema}:${row?.id}`]]);
    expect(messages[0]?.data).toMatchObject({ id: 'n1', effectId: row?.id, seq: got[0]?.seq, event: { type: 'order.receipt', total: 9 } });

    await worker.send('order', 'n1', { type: 'ship' });
    await until(() => all.length === 2, 'both types on the * listener');
    expect(all).toEqual(['order.receipt', 'order.shipped']);
    expect(got).toHaveLength(1);
  }, 30_000);

  it('a row published again (its mark lost, as in a crash) is dropped by the stream: the listener sees it once', async () => {
    const w = await world();
    const rt = await w.make();
    const got: string[] = [];
    await rt.on('order', '*', (e) => {
      got.push(`${e.id}:${e.event.type}`);
    }).ready;
    await rt.start();
    await rt.create('order', { id: 'd1', input: { order_id: 'd1', total: 3 } });
    await rt.send('order', 'd1', { type: 'pay' });
    await until(async () => (await w.emitRows()).length === 1 && (await w.emitRows()).every((r) => r.published_at !== null), 'published once');
    await until(() => got.length === 1, 'delivered once');

    await admin.query(`UPDATE "${w.schema}".effects SET published_at = NULL WHERE kind = 'emitted'`);
    await until(async () => (await w.emitRows()).every((r) => r.published_at !== null), 'the relay published it again and marked it');
    // A later event goes out after the re-published one: once it is in, the duplicate would have been before it.
    await rt.send('order', 'd1', { type: 'ship' });
    await until(() => got.length >= 2, 'the next event');
    expect(got).toEqual(['d1:order.receipt', 'd1:order.shipped']);
    expect((await w.emitMessages()).map((m) => m.data.event.type)).toEqual(['order.receipt', 'order.shipped']);
  }, 30_000);

  it('a throwing listener is logged and stops neither the others nor the next events', async () => {
    const w = await world();
    const rt = await w.make();
    const got: string[] = [];
    await rt.on('order', 'order.receipt', () => {
      throw new Error('listener bug');
    }).ready;
    await rt.on('order', 'order.receipt', (e) => {
      got.push(e.id);
    }).ready;
    await rt.start();
    for (const id of ['t1', 't2']) {
      await rt.create('order', { id, input: { order_id: id, total: 1 } });
      await rt.send('order', id, { type: 'pay' });
    }
    await until(() => got.length === 2, 'both receipts');
    expect(got.sort()).toEqual(['t1', 't2']);
    await until(() => w.lines.filter((l) => l.msg === 'drover: emitted event listener failed').length === 2, 'both failures logged');
    expect(w.lines.find((l) => l.msg === 'drover: emitted event listener failed')?.obj).toMatchObject({ err: 'listener bug', machine: 'order', type: 'order.receipt' });
  }, 30_000);

  it('a stream made before emitted events had a subject gets theirs on start, and unsubscribing stops delivery', async () => {
    const w = await world();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: w.stream.name,
      subjects: [`${w.natsPrefix}.transition.>`, `${w.natsPrefix}.sla.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      duplicate_window: nanos(120_000),
    });
    const rt = await w.make();
    await rt.start();
    expect((await jsm.streams.info(w.stream.name)).config.subjects).toContain(`${w.natsPrefix}.emit.>`);

    const got: string[] = [];
    const off = rt.on('order', 'order.receipt', (e) => {
      got.push(e.id);
    });
    await off.ready;
    await rt.create('order', { id: 'u1', input: { order_id: 'u1', total: 1 } });
    await rt.send('order', 'u1', { type: 'pay' });
    await until(() => got.length === 1, 'the first receipt');
    off();
    const watch: string[] = [];
    await rt.on('order', 'order.receipt', (e) => {
      watch.push(e.id);
    }).ready;
    await rt.create('order', { id: 'u2', input: { order_id: 'u2', total: 1 } });
    await rt.send('order', 'u2', { type: 'pay' });
    // A listener set up after off() gets the second receipt: by then the first would have it too.
    await until(() => watch.length === 1, 'the second receipt on another listener');
    expect(got).toEqual(['u1']);
  }, 30_000);

  it('prune deletes the effects of the records it deletes, and keeps a record whose emitted event is still in the outbox', async () => {
    const w = await world();
    const rt = await w.make();
    await rt.start();
    for (const id of ['p1', 'p2']) {
      await rt.create('order', { id, input: { order_id: id, total: 1 } });
      await rt.send('order', id, { type: 'pay' });
      await rt.send('order', id, { type: 'ship' });
      await rt.waitFor('order', id, { status: 'done' });
    }
    await until(async () => (await w.emitRows()).length === 4 && (await w.emitRows()).every((r) => r.published_at !== null), 'all four published');
    await rt.stop();
    // p2's receipt waits in the outbox again (no relay runs now); both finished two hours ago.
    await admin.query(`UPDATE "${w.schema}".effects SET published_at = NULL WHERE instance_id = 'p2' AND event->>'type' = 'order.receipt'`);
    await admin.query(`UPDATE "${w.schema}".instances SET updated_at = now() - interval '2 hours'`);
    const pruner = await w.make({ retention: { finished: '1h' } });
    expect(await pruner.prune()).toMatchObject({ records: 1 });
    const left = await admin.query<{ instance_id: string; n: number }>(
      `SELECT instance_id, count(*)::int AS n FROM "${w.schema}".effects GROUP BY instance_id ORDER BY instance_id`,
    );
    expect(left.rows).toEqual([{ instance_id: 'p2', n: 2 }]);
    expect(await pruner.get('order', 'p1')).toBeNull();
    expect(await pruner.get('order', 'p2')).not.toBeNull();
  }, 30_000);
});
