import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { createRuntime, durable, type Runtime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';

// Real PostgreSQL only: these tests break connections and race two nodes on one schema.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
admin.on('error', () => {});
afterAll(() => admin.end());

const withAppName = (name: string) => `${DATABASE_URL}${DATABASE_URL.includes('?') ? '&' : '?'}application_name=${name}`;

describe('connection loss', () => {
  const schema = uniqueSchema('infra');
  const appName = `drover_${schema}`;
  const stepper = durable(
    setup({}).createMachine({
      id: 'stepper',
      initial: 's0',
      states: { s0: { on: { next: 's1' } }, s1: { on: { next: 's2' } }, s2: { on: { next: 's3' } }, s3: { type: 'final' } },
    }),
  );
  let rt: Runtime;
  beforeAll(async () => {
    rt = await createRuntime({ database: withAppName(appName), schema, machines: [stepper], pollInterval: 50 });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it('keeps stepping after every connection of the runtime is killed mid-run', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `r${i}`);
    for (const id of ids) await rt.create('stepper', { id });
    for (const id of ids) await rt.send('stepper', id, { type: 'next' });
    // Kill every backend of the runtime (pool, LISTEN connection) while work is in flight.
    const killed = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
    expect(killed.rowCount).toBeGreaterThan(0);
    for (const id of ids) {
      await rt.send('stepper', id, { type: 'next' });
      await rt.send('stepper', id, { type: 'next' });
    }
    for (const id of ids) await rt.waitFor('stepper', id, { status: 'done' }, { timeoutMs: 20_000 });
    const rows = await admin.query(
      `SELECT instance_id, array_agg(to_state ORDER BY seq) AS path, array_agg(seq ORDER BY seq) AS seqs
       FROM "${schema}".transitions GROUP BY instance_id`,
    );
    expect(rows.rowCount).toBe(ids.length);
    for (const row of rows.rows) {
      expect(row.path).toEqual(['s0', 's1', 's2', 's3']);
      expect(row.seqs).toEqual([1, 2, 3, 4]);
    }
  });
});

describe('heartbeats', () => {
  const schema = uniqueSchema('hb');
  let calls = 0;
  const slow = durable(
    setup({
      actors: {
        slow: fromPromise(async () => {
          calls += 1;
          await new Promise((resolve) => setTimeout(resolve, 1500));
          return 'ok';
        }),
      },
    }).createMachine({
      id: 'slow',
      initial: 'working',
      states: { working: { invoke: { src: 'slow', onDone: 'finished' } }, finished: { type: 'final' } },
    }),
  );
  const runtimes: Runtime[] = [];
  afterAll(async () => {
    for (const rt of runtimes) await rt.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it('a promise that outlives its lease keeps it by heartbeat: another node never runs it too', async () => {
    for (const node of ['a', 'b']) {
      const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [slow], pollInterval: 25, lease: '300ms', node });
      runtimes.push(rt);
      await rt.start();
    }
    const [a] = runtimes as [Runtime];
    await Promise.all(['x1', 'x2', 'x3'].map((id) => a.create('slow', { id })));
    for (const id of ['x1', 'x2', 'x3']) await a.waitFor('slow', id, { status: 'done' }, { timeoutMs: 10_000 });
    expect(calls).toBe(3); // 1.5 s each against a 300 ms lease: without heartbeats the other node re-runs them
    const done = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".transitions WHERE to_state = 'finished'`);
    expect(done.rows[0].n).toBe(3);
  });
});

describe('invocation results folded at once', () => {
  const schema = uniqueSchema('fuse');
  let runs = 0;
  const stay = durable(
    setup({
      types: { context: {} as { results: number[] } },
      actors: {
        once: fromPromise(async () => {
          runs += 1;
          return runs;
        }),
      },
    }).createMachine({
      id: 'stay',
      initial: 'working',
      context: { results: [] },
      states: {
        // onDone without a target: XState does not stop the child, the state stays.
        working: {
          invoke: { id: 'once', src: 'once', onDone: { actions: assign({ results: ({ context, event }) => [...context.results, event.output] }) } },
          on: { finish: 'finished' },
        },
        finished: { type: 'final' },
      },
    }),
  );
  let rt: Runtime;
  afterAll(async () => {
    await rt?.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it('an onDone that stays in the state still retires the invocation: it never runs again', async () => {
    rt = await createRuntime({ database: DATABASE_URL, schema, machines: [stay], pollInterval: 25, lease: '200ms' });
    await rt.start();
    await rt.create('stay', { id: 's1' });
    await rt.waitFor('stay', 's1', (r) => (r.context.results as number[]).length === 1, { timeoutMs: 5000 });
    // Several leases long: a leftover invocation row would be claimed and run again.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(runs).toBe(1);
    const left = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".invocations`);
    expect(left.rows[0].n).toBe(0);
    await rt.send('stay', 's1', { type: 'finish' });
    const done = await rt.waitFor('stay', 's1', { status: 'done' }, { timeoutMs: 5000 });
    expect(done.context.results).toEqual([1]);
  });
});
