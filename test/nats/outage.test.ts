import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { deleteStream, freePort, NATS_URL, OwnNatsServer, openNats, streamMessages, uniqueNats } from '../helpers/nats.js';
import { until } from '../helpers/until.js';
import { lamp } from './fixtures/lamp.js';

// The outbox under failure: NATS down mid-run, and a node killed between publish and mark.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schemas: string[] = [];
let nc: NatsConnection;
beforeAll(async () => {
  nc = await openNats();
});
afterAll(async () => {
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await nc.close();
  await admin.end();
});

const outbox = async (schema: string) =>
  (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".transitions WHERE published_at IS NULL`)).rows[0]?.n ?? -1;

/** Each record's published seqs in stream order: exactly once each and in order means [1..n]. */
function perRecord(messages: Array<{ data: { id: string; seq: number } }>): Map<string, number[]> {
  const by = new Map<string, number[]>();
  for (const m of messages) by.set(m.data.id, [...(by.get(m.data.id) ?? []), m.data.seq]);
  return by;
}

describe('NATS down mid-run', () => {
  it('steps keep committing, the outbox grows, and after NATS returns it drains in order with no duplicate', async () => {
    const server = new OwnNatsServer(await freePort());
    await server.start();
    const schema = uniqueSchema('outage');
    schemas.push(schema);
    const { natsPrefix, stream } = uniqueNats();
    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [lamp], nats: server.url, natsPrefix, stream, pollInterval: 50 });
    try {
      await rt.start();
      const ids = Array.from({ length: 20 }, (_, i) => `l${i}`);
      for (const id of ids) await rt.create('lamp', { id, input: { lamp_id: id } });
      for (const id of ids) await rt.send('lamp', id, { type: 'toggle' });
      const committed = async () => (await admin.query(`SELECT count(*)::int AS n FROM "${schema}".transitions`)).rows[0].n;
      // Every toggle committed (a step still in the inbox would commit after the stop) and published.
      await until(async () => (await committed()) === ids.length * 2 && (await outbox(schema)) === 0, 'published while NATS is up');

      await server.stop();
      for (let round = 0; round < 3; round++) {
        for (const id of ids) await rt.send('lamp', id, { type: 'toggle' });
      }
      for (const id of ids) await rt.waitFor('lamp', id, (r) => r.state === 'off' && r.enteredAt.getTime() > 0, { timeoutMs: 10_000 });
      await until(async () => (await committed()) === ids.length * 5, 'every step committed');
      expect(await outbox(schema)).toBe(ids.length * 3); // nothing published while NATS was down

      await server.start();
      await until(async () => (await outbox(schema)) === 0, 'outbox drained after NATS returned', 30_000);
      const check = await openNats(server.url);
      try {
        const messages = await streamMessages<{ id: string; seq: number }>(check, stream.name);
        expect(messages).toHaveLength(ids.length * 5);
        for (const id of ids) expect(perRecord(messages).get(id)).toEqual([1, 2, 3, 4, 5]);
      } finally {
        await check.close();
      }
    } finally {
      await rt.stop();
      await server.dispose();
    }
  }, 90_000);
});

describe('a node killed by SIGKILL between commit and publish, or between publish and mark', () => {
  it.each([
    ['before', 0],
    ['after', 12],
  ] as const)('held %s publishing: the next relay publishes the rows (again); nothing lost, nothing twice in the stream', async (hold, inStream) => {
    const schema = uniqueSchema('relaykill');
    schemas.push(schema);
    const { natsPrefix, stream } = uniqueNats();
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/relay-node.ts', import.meta.url))], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: { ...process.env, DATABASE_URL, NATS_URL, DROVER_SCHEMA: schema, NATS_PREFIX: natsPrefix, NATS_STREAM: stream.name, COUNT: '12', HOLD: hold },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    const stderr: string[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    try {
      await until(() => lines.some((l) => l.startsWith('held')), `the relay holds after publishing (stderr: ${stderr.join('\n')})`, 30_000);
      expect(lines.find((l) => l.startsWith('held'))).toBe('held 12');
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      // Committed (and, held after publishing, in the stream), but never marked published.
      expect(await streamMessages(nc, stream.name).then((m) => m.length, () => 0)).toBe(inStream);
      expect(await outbox(schema)).toBe(12);

      const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [lamp], nats: NATS_URL, natsPrefix, stream, pollInterval: 50 });
      try {
        await rt.start();
        await until(async () => (await outbox(schema)) === 0, 'the next relay marked them');
        for (let i = 0; i < 12; i++) await rt.send('lamp', `l${i}`, { type: 'toggle' });
        await until(async () => (await outbox(schema)) === 0 && (await streamMessages(nc, stream.name)).length >= 24, 'the toggles published');
        const messages = await streamMessages<{ id: string; seq: number }>(nc, stream.name);
        expect(messages).toHaveLength(24);
        for (let i = 0; i < 12; i++) expect(perRecord(messages).get(`l${i}`)).toEqual([1, 2]);
      } finally {
        await rt.stop();
      }
    } finally {
      child.kill('SIGKILL');
      await deleteStream(nc, stream.name);
    }
  }, 60_000);
});
