import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../../src/index.js';
import { postgresBackend, type TestBackend } from '../helpers/backends.js';
import { next, relay, STEPPER_PATH, slowjob, stepper } from './fixtures/machines.js';
import { commitsOf, eachLimit, stepperProblems, storedTransitions, waitUntil, workerPool } from './helpers.js';

// Two nodes in two processes poll one queue of one schema at once. Each step must be
// committed by exactly one of them.

describe('two nodes on one database (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob, relay] });
  });
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
  });

  it('500 records, 3 events each, two nodes: every step committed once, by one node', async () => {
    const ids = Array.from({ length: 500 }, (_, i) => `c${String(i).padStart(3, '0')}`);
    const a = workers.start({ schema: backend.schema, node: 'node-a', batch: 10 });
    const b = workers.start({ schema: backend.schema, node: 'node-b', batch: 10 });
    await Promise.all([a.ready(), b.ready()]);
    // Events are sent while both nodes work, record by record, so steps interleave.
    await eachLimit(ids, 10, async (id) => {
      await client.create('stepper', { id, input: { id } });
      for (const n of [1, 2, 3]) await client.send('stepper', id, next(n));
    });
    const expected = ids.length * (STEPPER_PATH.length - 1);
    // The nodes print each transition they commit; every one must turn up.
    const commits = () => a.words('commit').length + b.words('commit').length;
    await waitUntil('every transition committed', async () => commits() >= expected, 30_000);

    expect(await stepperProblems(backend, backend.schema, ids, STEPPER_PATH)).toEqual([]);
    const stored = await storedTransitions(backend, backend.schema, 'stepper');
    expect(stored.size).toBe(ids.length * STEPPER_PATH.length);
    const { commits: committed, duplicates } = commitsOf([a, b], 'stepper');
    expect(duplicates).toEqual([]);
    expect(committed.size).toBe(expected);
    expect([...committed].filter(([key, to]) => stored.get(key) !== to)).toEqual([]);
    // Both nodes took part.
    expect(a.words('commit').length).toBeGreaterThan(0);
    expect(b.words('commit').length).toBeGreaterThan(0);
  });
});

describe('a node whose lease ran out mid-step (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();
  const dir = mkdtempSync(join(tmpdir(), 'drover-crash-'));
  afterEach(() => workers.killAll());

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob, relay] });
  });
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('cannot commit the step another node took over and committed', async () => {
    const s = `"${backend.schema}"`;
    const release = join(dir, 'release');
    // A blocks inside the step of "victim" (the whole process, heartbeats too) until released.
    const a = workers.start({ schema: backend.schema, node: 'slow-a', holdId: 'victim', holdFile: release });
    await a.ready();
    await client.create('stepper', { id: 'victim', input: { id: 'victim' } });
    await client.send('stepper', 'victim', next(1));
    await a.line('hold');
    const [claim] = await backend.query<{ locked_by: string }>(`SELECT locked_by FROM ${s}.instances WHERE id = 'victim'`);
    expect(claim?.locked_by).toBe('slow-a');

    // B takes the record once A's 1 s lease is over, and commits the same step.
    const b = workers.start({ schema: backend.schema, node: 'fast-b' });
    await b.until('B committed a → b', (w) => w.lines.includes('commit stepper victim 2 b active'));
    writeFileSync(release, '');
    await a.line('released');
    // A finishes its step and tries to write it: the row moved on, so nothing of it may land.
    await a.until('A discarded its step', (w) => w.words('log').some((l) => l.join(' ').includes('step discarded')));
    expect(a.words('commit')).toEqual([]);

    for (const n of [2, 3]) await client.send('stepper', 'victim', next(n));
    await waitUntil('victim done', async () => (await client.get('stepper', 'victim'))?.status === 'done');
    expect(await stepperProblems(backend, backend.schema, ['victim'], STEPPER_PATH)).toEqual([]);
    const { commits, duplicates } = commitsOf([a, b], 'stepper');
    expect(duplicates).toEqual([]);
    expect([...commits.keys()].every((k) => k.startsWith('victim:'))).toBe(true);
  });
  it('a frozen node that comes back after its invocation was taken over: the invocation ran twice, the record finished once', async () => {
    const s = `"${backend.schema}"`;
    const release = join(dir, 'release-2');
    const a = workers.start({ schema: backend.schema, node: 'frozen-a', holdId: 'freezer', holdFile: release });
    await a.ready();
    await client.create('slowjob', { id: 'z1', input: { id: 'z1', ms: 2000 } });
    await a.line('invoke-start');
    // A step of A blocks the whole process: no heartbeat renews the invocation's lease.
    await client.create('stepper', { id: 'freezer', input: { id: 'freezer' } });
    await client.send('stepper', 'freezer', next(1));
    await a.line('hold');

    const b = workers.start({ schema: backend.schema, node: 'thaw-b' });
    await b.until('B finished z1', (w) => w.lines.includes('commit slowjob z1 2 finished done'));
    expect(b.words('invoke-start')).toEqual([['z1']]);
    writeFileSync(release, '');
    // A wakes up: its own run of z1 ends too, late. A graceful stop flushes whatever it has.
    await a.line('invoke-done');
    a.terminate();
    expect((await a.exited).code).toBe(0);

    const history = await backend.query<{ seq: number; to_state: string }>(
      `SELECT seq, to_state FROM ${s}.transitions WHERE instance_id = 'z1' ORDER BY seq`,
    );
    expect(history).toEqual([
      { seq: 1, to_state: 'working' },
      { seq: 2, to_state: 'finished' },
    ]);
    expect((await client.get('slowjob', 'z1'))?.context).toMatchObject({ result: 'ok:z1' });
    expect(await backend.query(`SELECT * FROM ${s}.events WHERE instance_id = 'z1'`)).toEqual([]);
    expect(await backend.query(`SELECT * FROM ${s}.invocations`)).toEqual([]);
    expect(a.words('commit').filter(([m]) => m === 'slowjob')).toEqual([]);
  });
});

describe('events sent in order to records another node is stepping (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob, relay] });
  });
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
  });

  it('send() accepts each event that the state reached by the earlier ones takes', async () => {
    // relay: a -go1-> b -go2-> c -go3-> done. Each send is awaited before the next, so each
    // event is valid for the state the earlier ones lead to, whenever the node steps them.
    const nodes = [1, 2].map((i) => workers.start({ schema: backend.schema, node: `stepping-${i}`, batch: 10 }));
    await Promise.all(nodes.map((w) => w.ready()));
    const ids = Array.from({ length: 200 }, (_, i) => `e${String(i).padStart(3, '0')}`);
    const rejected: string[] = [];
    await eachLimit(ids, 10, async (id) => {
      await client.create('relay', { id });
      for (const type of ['go1', 'go2', 'go3'] as const) {
        try {
          await client.send('relay', id, { type });
        } catch (err) {
          rejected.push(`${id} ${type}: ${(err as Error).message}`);
        }
      }
    });
    // Whatever was accepted is stepped: wait for empty inboxes and no claim in hand.
    const s = `"${backend.schema}"`;
    await waitUntil('every inbox empty', async () => {
      const [row] = await backend.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM ${s}.events) + (SELECT count(*) FROM ${s}.instances WHERE locked_by IS NOT NULL) AS n`,
      );
      return Number(row?.n) === 0;
    });
    expect({ rejected: rejected.length, first: rejected.slice(0, 3) }).toEqual({ rejected: 0, first: [] });
    const paths = await backend.query<{ id: string; path: string[] }>(
      `SELECT instance_id AS id, array_agg(to_state ORDER BY seq) AS path FROM "${backend.schema}".transitions
       WHERE machine = 'relay' GROUP BY instance_id`,
    );
    expect(paths.filter((p) => p.path.join() !== 'a,b,c,done')).toEqual([]);
  });
});

describe('a step that takes longer than the lease, two nodes (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob, relay] });
  });
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
  });

  it('is committed by one of them (at-least-once), not taken back and forth forever', async () => {
    // Every custom action busy-waits 500 ms against a 300 ms lease: whichever node claims the
    // step, the other (idle, polling) may take the record over before it is done.
    const nodes = [1, 2].map((i) => workers.start({ schema: backend.schema, node: `long-${i}`, lease: '300ms', busyMs: 500 }));
    await Promise.all(nodes.map((w) => w.ready()));
    await client.create('stepper', { id: 'long', input: { id: 'long' } });
    await client.send('stepper', 'long', next(1));
    const committed = (w: (typeof nodes)[number]) => w.lines.includes('commit stepper long 2 b active');
    await waitUntil('one node committed the step', async () => nodes.some(committed), 6_000, 20).catch((err: Error) => {
      const runs = nodes.map((w) => w.words('work').length);
      const discarded = nodes.map((w) => w.words('log').filter((l) => l.join(' ').includes('step discarded')).length);
      throw new Error(`${err.message} (step run ${JSON.stringify(runs)} times per node, discarded ${JSON.stringify(discarded)})`);
    });
    const { duplicates } = commitsOf(nodes, 'stepper');
    expect(duplicates).toEqual([]);
    const history = await backend.query<{ to_state: string }>(
      `SELECT to_state FROM "${backend.schema}".transitions WHERE instance_id = 'long' ORDER BY seq`,
    );
    expect(history.map((h) => h.to_state)).toEqual(['a', 'b']);
  });
});
