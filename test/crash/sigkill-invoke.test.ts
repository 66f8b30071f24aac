import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../../src/index.js';
import { postgresBackend, type TestBackend } from '../helpers/backends.js';
import { hooks, next, slowjob, stepper } from './fixtures/machines.js';
import { workerPool } from './helpers.js';

// A node is SIGKILLed while its invoked promises run. Their leases run out, another node
// runs them again (at-least-once), and each record still finishes exactly once.

describe('SIGKILL during an invoked promise (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();
  const runtimes: Runtime[] = [];

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob] });
  });
  afterAll(async () => {
    await workers.killAll();
    for (const rt of runtimes) await rt.stop();
    await client?.stop();
    await backend?.close();
  });

  it('the invocations of a killed node run again on another node, and each record completes once', async () => {
    const s = `"${backend.schema}"`;
    const ids = Array.from({ length: 10 }, (_, i) => `inv${i}`);
    const a = workers.start({ schema: backend.schema, node: 'inv-a', concurrency: 20 });
    await a.ready();
    for (const id of ids) await client.create('slowjob', { id, input: { id, ms: 2000 } });
    await a.until('every invocation started', (w) => new Set(w.words('invoke-start').map(([id]) => id)).size === ids.length);
    await a.kill();
    expect(a.words('invoke-done')).toEqual([]);

    const leases = await backend.query<{ instance_id: string; locked_by: string; locked_until: Date; attempt: number }>(
      `SELECT instance_id, locked_by, locked_until, attempt FROM ${s}.invocations ORDER BY instance_id`,
    );
    expect(leases.map((l) => [l.instance_id, l.locked_by])).toEqual([...ids].sort().map((id) => [id, 'inv-a']));
    const leaseEnd = Math.min(...leases.map((l) => l.locked_until.getTime()));

    const started = new Map<string, number[]>();
    hooks.onInvoke = (id, phase) => {
      if (phase === 'start') started.set(id, [...(started.get(id) ?? []), Date.now()]);
    };
    const b = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      node: 'inv-b',
      machines: [stepper, slowjob],
      lease: '1s',
      pollInterval: 20,
      concurrency: 20,
    });
    runtimes.push(b);
    await b.start();
    for (const id of ids) await b.waitFor('slowjob', id, { status: 'done' }, { timeoutMs: 15_000 });

    // B ran each promise once more, and not before A's lease on it ran out.
    expect([...started.keys()].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(started.get(id)).toHaveLength(1);
    for (const [id, [at]] of started) expect(at, id).toBeGreaterThanOrEqual(leaseEnd);

    const history = await backend.query<{ id: string; seqs: number[]; path: string[] }>(
      `SELECT instance_id AS id, array_agg(seq ORDER BY seq) AS seqs, array_agg(to_state ORDER BY seq) AS path
       FROM ${s}.transitions WHERE machine = 'slowjob' GROUP BY instance_id ORDER BY instance_id`,
    );
    expect(history).toEqual([...ids].sort().map((id) => ({ id, seqs: [1, 2], path: ['working', 'finished'] })));
    for (const id of ids) expect((await b.get('slowjob', id))?.context).toMatchObject({ result: `ok:${id}` });
    expect(await backend.query(`SELECT * FROM ${s}.invocations`)).toEqual([]);
    expect(await backend.query(`SELECT * FROM ${s}.events`)).toEqual([]);
  });
});

describe('leases left behind by a dead node (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  let live: Runtime;
  const started: string[] = [];
  const worked: string[] = [];

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob] });
    hooks.onInvoke = (id, phase) => {
      if (phase === 'start') started.push(id);
    };
    hooks.onWork = (id, n) => worked.push(`${id}:${n}`);
  });
  afterAll(async () => {
    await live?.stop();
    await client?.stop();
    await backend?.close();
  });

  async function startLive(): Promise<Runtime> {
    live = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      node: 'live',
      machines: [stepper, slowjob],
      lease: '1s',
      pollInterval: 20,
    });
    await live.start();
    return live;
  }

  it('an invocation locked by a dead node with an expired lease is claimed and run; a live lease is respected', async () => {
    const s = `"${backend.schema}"`;
    await client.create('slowjob', { id: 'orphan', input: { id: 'orphan', ms: 50 } });
    await client.create('slowjob', { id: 'leased', input: { id: 'leased', ms: 50 } });
    await client.create('stepper', { id: 'stuck', input: { id: 'stuck' } });
    await client.create('stepper', { id: 'busy', input: { id: 'busy' } });
    for (const id of ['stuck', 'busy']) for (const n of [1, 2, 3]) await client.send('stepper', id, next(n));
    // As a node that died mid-run leaves them: an invocation and a record claimed by it, their
    // leases over; another node's invocation and record with leases still running.
    await backend.query(
      `UPDATE ${s}.invocations SET locked_by = 'dead-node', locked_until = now() - interval '5 seconds', attempt = 1 WHERE instance_id = 'orphan'`,
    );
    await backend.query(
      `UPDATE ${s}.invocations SET locked_by = 'other-node', locked_until = now() + interval '1 hour', attempt = 1 WHERE instance_id = 'leased'`,
    );
    await backend.query(
      `UPDATE ${s}.instances SET locked_by = 'dead-node', locked_until = now() - interval '5 seconds' WHERE id = 'stuck'`,
    );
    await backend.query(`UPDATE ${s}.instances SET locked_by = 'other-node', locked_until = now() + interval '1 hour' WHERE id = 'busy'`);

    const rt = await startLive();
    await rt.waitFor('slowjob', 'orphan', { state: 'finished' }, { timeoutMs: 10_000 });
    await rt.waitFor('stepper', 'stuck', { state: 'done' }, { timeoutMs: 10_000 });
    expect(started).toEqual(['orphan']);
    expect(worked).toEqual(['stuck:1', 'stuck:2', 'stuck:3']);
    expect((await rt.history('slowjob', 'orphan')).map((h) => h.to)).toEqual(['working', 'finished']);
    expect((await rt.get('slowjob', 'orphan'))?.context).toMatchObject({ result: 'ok:orphan' });
    expect((await rt.history('stepper', 'stuck')).map((h) => h.to)).toEqual(['a', 'b', 'c', 'done']);

    // The same claims that took the expired ones saw these and left them alone.
    const leased = await backend.query<{ locked_by: string; attempt: number }>(
      `SELECT locked_by, attempt FROM ${s}.invocations WHERE instance_id = 'leased'`,
    );
    expect(leased).toEqual([{ locked_by: 'other-node', attempt: 1 }]);
    expect((await rt.get('slowjob', 'leased'))?.state).toBe('working');
    expect((await rt.get('stepper', 'busy'))?.state).toBe('a');

    // Once those leases run out too, the live node takes them over.
    await backend.query(`UPDATE ${s}.invocations SET locked_until = now() - interval '1 second' WHERE instance_id = 'leased'`);
    await backend.query(`UPDATE ${s}.instances SET locked_until = now() - interval '1 second' WHERE id = 'busy'`);
    await rt.waitFor('slowjob', 'leased', { state: 'finished' }, { timeoutMs: 10_000 });
    await rt.waitFor('stepper', 'busy', { state: 'done' }, { timeoutMs: 10_000 });
    expect(started).toEqual(['orphan', 'leased']);
    expect((await rt.history('stepper', 'busy')).map((h) => h.to)).toEqual(['a', 'b', 'c', 'done']);
    expect(await backend.query(`SELECT * FROM ${s}.invocations`)).toEqual([]);
  });
});
