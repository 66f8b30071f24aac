import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallerTransaction, createRuntime, RecordNotFoundError, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { add, drained, dump, lifecycle, row } from './machines.js';

describe.each(BACKENDS)('caller transactions ({ tx }) on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const s = () => `"${backend.schema}"`;
  const stored = async (id: string) => ({
    instances: await backend.query(`SELECT id FROM ${s()}.instances WHERE id = $1`, [id]),
    events: await backend.query(`SELECT id FROM ${s()}.events WHERE instance_id = $1`, [id]),
    transitions: await backend.query(`SELECT seq FROM ${s()}.transitions WHERE instance_id = $1`, [id]),
  });

  /** The helper's transaction handle, typed as what `{ tx }` takes. */
  const inTx = (fn: (tx: CallerTransaction) => Promise<void>, outcome: 'commit' | 'rollback') =>
    backend.inTransaction((tx) => fn(tx as CallerTransaction), outcome);

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [lifecycle], pollInterval: 50 });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('create inside a committed transaction: the record is there and runs', async () => {
    await inTx(async (tx) => {
      const created = await rt.create('lc', { id: 'tx-c1', input: { label: 'tx' }, tx });
      expect(created).toMatchObject({ id: 'tx-c1', state: 'idle', status: 'active' });
      await tx.query(`SELECT 1`); // the caller's own work in the same transaction
    }, 'commit');
    expect(await rt.get('lc', 'tx-c1')).toMatchObject({ state: 'idle', context: { label: 'tx' } });
    expect((await rt.history('lc', 'tx-c1')).map((h) => [h.from, h.to])).toEqual([[null, 'idle']]);
    await rt.send('lc', 'tx-c1', { type: 'go' });
    await rt.waitFor('lc', 'tx-c1', { state: 'b.x' }, { timeoutMs: 10_000 });
  });

  it('create inside a rolled-back transaction: no instance row, no event row, no history', async () => {
    await inTx(async (tx) => {
      await rt.create('lc', { id: 'tx-c2', tx });
    }, 'rollback');
    expect(await stored('tx-c2')).toEqual({ instances: [], events: [], transitions: [] });
    expect(await rt.get('lc', 'tx-c2')).toBeNull();
    await expect(rt.history('lc', 'tx-c2')).rejects.toBeInstanceOf(RecordNotFoundError);
    // The id is free again.
    await rt.create('lc', { id: 'tx-c2' });
    expect((await rt.get('lc', 'tx-c2'))?.state).toBe('idle');
  });

  it('create and send in one committed transaction: both take effect', async () => {
    await inTx(async (tx) => {
      await rt.create('lc', { id: 'tx-c3', tx });
      await rt.send('lc', 'tx-c3', add(7), { tx });
      await rt.send('lc', 'tx-c3', { type: 'go' }, { tx });
    }, 'commit');
    const got = await rt.waitFor('lc', 'tx-c3', { state: 'b.x' }, { timeoutMs: 10_000 });
    expect(got.context.items).toEqual([7]);
  });

  it('create and send in one rolled-back transaction: nothing stored', async () => {
    const before = await dump(backend);
    await inTx(async (tx) => {
      await rt.create('lc', { id: 'tx-c4', tx });
      await rt.send('lc', 'tx-c4', add(1), { tx });
    }, 'rollback');
    expect(await stored('tx-c4')).toEqual({ instances: [], events: [], transitions: [] });
    const after = await dump(backend);
    expect(after.instances.map((r) => r.id)).toEqual(before.instances.map((r) => r.id));
    expect(after.transitions.length).toBe(before.transitions.length);
  });

  it('send inside a committed transaction: the event is delivered', async () => {
    await rt.create('lc', { id: 'tx-s1' });
    await inTx(async (tx) => {
      await rt.send('lc', 'tx-s1', add(42), { tx });
    }, 'commit');
    const got = await rt.waitFor('lc', 'tx-s1', (r) => (r.context.items as number[]).length > 0, { timeoutMs: 10_000 });
    expect(got.context.items).toEqual([42]);
  });

  it('send inside a rolled-back transaction: no event row, the record is untouched', async () => {
    await rt.create('lc', { id: 'tx-s2' });
    await drained(backend, 'lc', 'tx-s2');
    const before = await row(backend, 'lc', 'tx-s2');
    const historyBefore = await rt.history('lc', 'tx-s2');
    await inTx(async (tx) => {
      await rt.send('lc', 'tx-s2', { type: 'go' }, { tx });
      await rt.send('lc', 'tx-s2', add(1), { tx });
    }, 'rollback');
    expect((await stored('tx-s2')).events).toEqual([]);
    // Give a poller every chance to pick up a ghost event before checking.
    await rt.send('lc', 'tx-s2', add(2));
    const got = await rt.waitFor('lc', 'tx-s2', (r) => (r.context.items as number[]).length > 0, { timeoutMs: 10_000 });
    expect(got.state).toBe('idle');
    expect(got.context.items).toEqual([2]);
    expect(await rt.history('lc', 'tx-s2')).toEqual(historyBefore);
    expect((await row(backend, 'lc', 'tx-s2'))?.created_at).toEqual(before?.created_at);
  });
});
