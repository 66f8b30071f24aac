import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { fromPromise, setup } from 'xstate';
import { createRuntime, DatabaseUnavailableError, durable, type Logger, type Runtime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { CuttableProxy } from '../helpers/proxy.js';
import { gate, until } from '../helpers/until.js';

// Real PostgreSQL only: the database goes away behind a proxy, a pool has one connection,
// another session holds a record locked.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 3 });
admin.on('error', () => {});
const schemas: string[] = [];
let rt: Runtime | undefined;
afterEach(async () => {
  await rt?.stop();
  rt = undefined;
});
afterAll(async () => {
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});
const freshSchema = () => {
  const schema = uniqueSchema('faults');
  schemas.push(schema);
  return schema;
};

type Line = { level: keyof Logger; msg: string; fields: Record<string, unknown> };
function recordingLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: keyof Logger) =>
    (fields: object, msg?: string): void => {
      lines.push({ level, msg: msg ?? '', fields: fields as Record<string, unknown> });
    };
  return { lines, logger: { debug: () => {}, info: at('info'), warn: at('warn'), error: at('error') } };
}

const stepper = durable(
  setup({}).createMachine({
    id: 'stepper',
    initial: 's0',
    states: { s0: { on: { next: 's1' } }, s1: { on: { next: 's2' } }, s2: { type: 'final' } },
  }),
);

/** Each record's work waits for the test to let it go (or not, when nobody holds a gate for it). */
const gates = new Map<string, { promise: Promise<void> }>();
const started = new Set<string>();
const job = durable(
  setup({
    types: { input: {} as { key: string }, context: {} as { key: string } },
    actors: {
      work: fromPromise(async ({ input }: { input: { key: string } }) => {
        started.add(input.key);
        await gates.get(input.key)?.promise;
        return { ok: true };
      }),
    },
  }).createMachine({
    id: 'job',
    initial: 'working',
    context: ({ input }) => ({ key: input.key }),
    states: {
      working: { invoke: { src: 'work', input: ({ context }) => ({ key: context.key }), onDone: 'done' } },
      done: { type: 'final' },
    },
  }),
);

describe('the database goes away', () => {
  it('calls fail with DatabaseUnavailableError (the driver error as cause); each component says so once, and once when it is back; work resumes', async () => {
    const proxy = await CuttableProxy.start({ host: '127.0.0.1', port: Number(new URL(DATABASE_URL).port || 5432) });
    const { logger, lines } = recordingLogger();
    const schema = freshSchema();
    rt = await createRuntime({ database: proxy.url(DATABASE_URL), schema, machines: [stepper], pollInterval: 20, heartbeatInterval: '50ms', logger });
    await rt.start();
    await rt.create('stepper', { id: 'before' });
    await rt.send('stepper', 'before', { type: 'next' });
    await rt.waitFor('stepper', 'before', { state: 's1' });

    proxy.cut();
    const err = await rt.get('stepper', 'before').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect((err as DatabaseUnavailableError).code).toBe('DATABASE_UNAVAILABLE');
    expect((err as Error).cause).toBeInstanceOf(Error);
    await expect(rt.create('stepper', { id: 'during' })).rejects.toBeInstanceOf(DatabaseUnavailableError);
    // Many reconnects while it is away (poller, heartbeat, LISTEN, the calls above)...
    const refusedAt = proxy.refused;
    await until(() => proxy.refused >= refusedAt + 8, 'components keep trying while the database is away', 20_000);
    proxy.restore();

    await rt.create('stepper', { id: 'after' });
    await rt.send('stepper', 'after', { type: 'next' });
    await rt.send('stepper', 'before', { type: 'next' });
    await rt.waitFor('stepper', 'after', { state: 's1' });
    await rt.waitFor('stepper', 'before', { status: 'done' });
    // ...and yet each component that noticed said it once, and once that it is back.
    const down = lines.filter((l) => l.msg.includes('database unavailable'));
    const back = lines.filter((l) => l.msg.includes('database available again'));
    const who = (l: Line) => JSON.stringify(Object.fromEntries(Object.entries(l.fields).filter(([k]) => k !== 'err' && k !== 'downMs')));
    expect(down.length).toBeGreaterThan(0);
    expect(new Set(down.map(who)).size).toBe(down.length);
    expect(down.every((l) => l.level === 'warn')).toBe(true);
    await until(() => new Set(lines.filter((l) => l.msg.includes('database available again')).map(who)).size >= new Set(down.map(who)).size, 'every component back');
    expect(back.every((l) => l.level === 'info' && typeof l.fields.downMs === 'number')).toBe(true);
    expect(new Set(back.map(who)).size).toBe(back.length);
    expect(down.map(who)).toContain(JSON.stringify({ queue: 'stepper' }));
    // Nothing at error level for an outage: it is the infrastructure, not a bug.
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    await proxy.close();
  });

  it('createRuntime() with the database away fails with DatabaseUnavailableError', async () => {
    const proxy = await CuttableProxy.start({ host: '127.0.0.1', port: Number(new URL(DATABASE_URL).port || 5432) });
    proxy.cut();
    await expect(createRuntime({ database: proxy.url(DATABASE_URL), schema: freshSchema(), machines: [stepper] })).rejects.toBeInstanceOf(
      DatabaseUnavailableError,
    );
    await proxy.close();
  });
});

describe('a pool of one connection', () => {
  it('runs records: LISTEN has a connection of its own, outside the pool', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    try {
      rt = await createRuntime({ database: pool, schema: freshSchema(), machines: [stepper, job] });
      await rt.start();
      await rt.create('stepper', { id: 'a' });
      await rt.send('stepper', 'a', { type: 'next' });
      await rt.send('stepper', 'a', { type: 'next' });
      await rt.create('job', { id: 'j', input: { key: 'one-pool' } });
      await rt.waitFor('stepper', 'a', { status: 'done' }, { timeoutMs: 10_000 });
      await rt.waitFor('job', 'j', { status: 'done' }, { timeoutMs: 10_000 });
      expect(pool.totalCount).toBe(1);
      await rt.stop();
      rt = undefined;
    } finally {
      await pool.end();
    }
  });
});

describe('another session holds a record locked', () => {
  it('the other records go on; the held one finishes once the lock is gone, each step once', async () => {
    const schema = freshSchema();
    const { logger, lines } = recordingLogger();
    rt = await createRuntime({ database: DATABASE_URL, schema, machines: [job], pollInterval: 20, logger });
    await rt.start();
    const held = gate();
    gates.set('held', held);
    await rt.create('job', { id: 'held', input: { key: 'held' } });
    await until(() => started.has('held'), 'the held record runs its work');

    const session = new pg.Client({ connectionString: DATABASE_URL });
    await session.connect();
    await session.query('BEGIN');
    await session.query(`SELECT id FROM "${schema}".instances WHERE id = 'held' FOR UPDATE`);
    // Its result comes while the row is locked: neither its step nor the write of its result may wait for the lock.
    held.open();
    const others = Array.from({ length: 30 }, (_, i) => `other-${i}`);
    try {
      for (const id of others) await rt.create('job', { id, input: { key: id } });
      for (const id of others) await rt.waitFor('job', id, { status: 'done' }, { timeoutMs: 10_000 });
      expect((await rt.get('job', 'held'))?.state).toBe('working');
    } finally {
      await session.query('COMMIT');
      await session.end();
    }
    await rt.waitFor('job', 'held', { status: 'done' }, { timeoutMs: 10_000 });
    expect((await rt.history('job', 'held')).map((h) => h.to)).toEqual(['working', 'done']);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });
});
