import { rmSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutboxQueries } from '../../src/db/outbox-queries.js';
import { createRuntime, type Logger, type Runtime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { deleteStream, freePort, NATS_URL, OwnNatsServer, openNats, streamMessages, uniqueNats } from '../helpers/nats.js';
import { until } from '../helpers/until.js';
import { lamp } from './fixtures/lamp.js';

// The relay under faults of its own: a row NATS refuses, and a stream that is gone.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const cleanups: Array<() => Promise<void>> = [];
let nc: NatsConnection;
beforeAll(async () => {
  nc = await openNats();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await nc.close();
  await admin.end();
});

interface Line {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}
function recordingLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: Line['level']) => (obj: object, msg?: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

async function world(nats = NATS_URL) {
  const schema = uniqueSchema('relayfault');
  const natsOpts = uniqueNats();
  const { logger, lines } = recordingLogger();
  const runtimes: Runtime[] = [];
  cleanups.push(async () => {
    for (const rt of runtimes) await rt.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await deleteStream(nc, natsOpts.stream.name);
  });
  const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [lamp], nats, ...natsOpts, pollInterval: 50, relayInterval: '50ms', logger });
  runtimes.push(rt);
  const count = async (where: string) => (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".transitions WHERE ${where}`)).rows[0]?.n ?? -1;
  return {
    schema,
    ...natsOpts,
    rt,
    lines,
    /** Rows the relay still has to publish (unpublished, not parked). */
    outbox: () => count('published_at IS NULL AND parked_at IS NULL'),
    count,
  };
}

describe('a transition NATS refuses', () => {
  it('is parked with its error and logged once; the rows before and after it are published once and the outbox flows on', async () => {
    const w = await world();
    // Created before start(): one batch waits for the relay, with the bad row in its middle.
    const ids = ['a0', 'a1', 'a2', 'a3', 'a4'];
    for (const id of ids) await w.rt.create('lamp', { id, input: { lamp_id: id } });
    // An id with CR/LF (create() will refuse one; older data or a direct write may hold it)
    // cannot go in the Nats-Msg-Id header.
    const bad = 'bad\r\nid';
    await admin.query(`UPDATE "${w.schema}".transitions SET instance_id = $1 WHERE instance_id = 'a2'`, [bad]);
    expect(await w.outbox()).toBe(5);

    await w.rt.start();
    await until(async () => (await w.outbox()) === 0, 'the outbox drained past the bad row');
    const good = ids.filter((id) => id !== 'a2');
    // The rows ahead of and behind it are marked published: not re-published on every pass.
    expect(await w.count('published_at IS NOT NULL')).toBe(good.length);
    const parkedRows = await admin.query(`SELECT instance_id, seq, parked_at, publish_error, published_at FROM "${w.schema}".transitions WHERE parked_at IS NOT NULL`);
    expect(parkedRows.rows).toHaveLength(1);
    expect(parkedRows.rows[0]).toMatchObject({ instance_id: bad, seq: 1, published_at: null, publish_error: { name: 'InvalidArgumentError' } });
    expect(parkedRows.rows[0].publish_error.message).toMatch(/\\r or \\n/);

    // More commits flow, past the parked row, which is not tried again.
    for (const id of good) await w.rt.send('lamp', id, { type: 'toggle' });
    await until(async () => (await w.count('published_at IS NOT NULL')) === good.length * 2 && (await w.outbox()) === 0, 'the toggles published');
    const messages = await streamMessages<{ id: string; seq: number }>(nc, w.stream.name);
    expect(messages.map((m) => `${m.data.id}:${m.data.seq}`).sort()).toEqual(good.flatMap((id) => [`${id}:1`, `${id}:2`]).sort());

    const parkedLogs = w.lines.filter((l) => l.msg?.includes('parked'));
    expect(parkedLogs).toHaveLength(1);
    expect(parkedLogs[0]).toMatchObject({ level: 'warn', obj: { machine: 'lamp', id: bad, seq: 1 } });
    // It never went down the outage path (retried with backoff).
    expect(w.lines.filter((l) => l.msg?.includes('cannot publish') && String(l.obj.err).includes('\\r or \\n'))).toEqual([]);

    // What the operator API reads.
    const sql = createOutboxQueries(w.schema);
    const q = { query: (text: string, params?: unknown[]) => admin.query(text, params) } as never;
    expect(await sql.parkedCount(q)).toBe(1);
    expect(await sql.parked(q, { limit: 10 })).toMatchObject([{ machine: 'lamp', instance_id: bad, seq: 1, publish_error: { name: 'InvalidArgumentError' } }]);
    const seen = await w.rt.parked();
    expect(seen).toMatchObject({ count: 1, items: [{ machine: 'lamp', recordId: bad, seq: 1, state: 'off', error: { name: 'InvalidArgumentError' } }] });
    expect(seen.items[0]?.parkedAt).toBeInstanceOf(Date);
    await expect(w.rt.parked({ limit: 0 })).rejects.toThrow('limit must be an integer from 1 to 1000');
  }, 30_000);
});

describe('a missing stream', () => {
  it('deleted while a runtime runs: the relay re-creates it, says so once, and the transitions committed meanwhile reach it', async () => {
    const w = await world();
    await w.rt.start();
    const ids = Array.from({ length: 10 }, (_, i) => `l${i}`);
    for (const id of ids) await w.rt.create('lamp', { id, input: { lamp_id: id } });
    await until(async () => (await w.outbox()) === 0, 'the creations published');

    await deleteStream(nc, w.stream.name);
    for (const id of ids) await w.rt.send('lamp', id, { type: 'toggle' });
    await until(async () => (await w.count('true')) === ids.length * 2, 'the toggles committed');
    await until(async () => (await w.outbox()) === 0, 'the outbox drained into the re-created stream');

    const messages = await streamMessages<{ id: string; seq: number }>(nc, w.stream.name);
    expect(messages.map((m) => `${m.data.id}:${m.data.seq}`).sort()).toEqual(ids.map((id) => `${id}:2`).sort());
    const recreated = w.lines.filter((l) => l.msg === `drover: stream ${w.stream.name} was missing, re-created`);
    expect(recreated).toHaveLength(1);
    expect(recreated[0]).toMatchObject({ level: 'warn', obj: { stream: w.stream.name } });
    expect(w.lines.filter((l) => l.msg?.includes('jetstream is not enabled') || String(l.obj.err ?? '').includes('jetstream is not enabled'))).toEqual([]);
  }, 30_000);

  it('nats-server restarted with an empty store: after the reconnect the relay re-creates the stream and drains the outbox', async () => {
    const server = new OwnNatsServer(await freePort());
    await server.start();
    cleanups.push(() => server.dispose());
    const w = await world(server.url);
    await w.rt.start();
    const ids = Array.from({ length: 10 }, (_, i) => `l${i}`);
    for (const id of ids) await w.rt.create('lamp', { id, input: { lamp_id: id } });
    await until(async () => (await w.outbox()) === 0, 'the creations published');

    await server.stop();
    rmSync(server.storeDir, { recursive: true, force: true });
    for (const id of ids) await w.rt.send('lamp', id, { type: 'toggle' });
    await until(async () => (await w.count('true')) === ids.length * 2, 'the toggles committed');
    await server.start();
    await until(async () => (await w.outbox()) === 0, 'the outbox drained into the re-created stream', 20_000);

    const check = await openNats(server.url);
    try {
      const messages = await streamMessages<{ id: string; seq: number }>(check, w.stream.name);
      expect(messages.map((m) => `${m.data.id}:${m.data.seq}`).sort()).toEqual(ids.map((id) => `${id}:2`).sort());
    } finally {
      await check.close();
    }
    expect(w.lines.filter((l) => l.msg === `drover: stream ${w.stream.name} was missing, re-created`)).toHaveLength(1);
  }, 60_000);
});
