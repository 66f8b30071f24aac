import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, DuplicateRecordError, durable, InvalidArgumentError, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

const ticket = durable(
  setup({ types: { context: {} as { n: number }, input: {} as { n: number } } }).createMachine({
    id: 'ticket',
    initial: 'open',
    context: ({ input }) => ({ n: input.n }),
    states: { open: { on: { close: 'closed' }, after: { 60_000: 'expired' } }, closed: { type: 'final' }, expired: { type: 'final' } },
  }),
);

describe.each(BACKENDS)('createMany on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const count = async () =>
    (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${backend.schema}".instances WHERE machine = 'ticket'`))[0]?.n ?? 0;
  const transitions = async () =>
    (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${backend.schema}".transitions WHERE machine = 'ticket'`))[0]?.n;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [ticket] });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('creates every record with its first transition and timer, in the order given, across chunks', async () => {
    const items = Array.from({ length: 2500 }, (_, i) => ({ id: `t${i}`, input: { n: i }, priority: i % 3 }));
    const created = await rt.createMany('ticket', items);
    expect(created.map((r) => r.id)).toEqual(items.map((i) => i.id));
    expect(created[7]).toMatchObject({ machine: 'ticket', state: 'open', status: 'active', context: { n: 7 } });
    expect(created[7]?.wakeAt?.getTime()).toBe(created[7]!.enteredAt.getTime() + 60_000);
    expect(await count()).toBe(2500);
    expect(await transitions()).toBe(2500);
    const stored = await rt.get('ticket', 't2499');
    expect(stored).toMatchObject({ state: 'open', context: { n: 2499 }, wakeAt: created[2499]?.wakeAt });
    expect((await rt.history('ticket', 't1'))[0]).toMatchObject({ from: null, to: 'open' });
    // The records are live: an event sent to one is stepped.
    await rt.send('ticket', 't1', { type: 'close' });
    expect((await rt.waitFor('ticket', 't1', { status: 'done' })).state).toBe('closed');
  });

  it('a duplicate id fails the whole call with DuplicateRecordError and stores nothing', async () => {
    const before = await count();
    const items = [{ id: 'fresh-1', input: { n: 1 } }, { id: 't5', input: { n: 5 } }, { id: 'fresh-2', input: { n: 2 } }];
    const err = await rt.createMany('ticket', items).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DuplicateRecordError);
    expect((err as Error).message).toContain('"t5"');
    expect(await count()).toBe(before);
    expect(await rt.get('ticket', 'fresh-1')).toBeNull();
    // A duplicate across chunks rolls back the chunks already written too.
    const many = Array.from({ length: 1500 }, (_, i) => ({ id: `x${i}`, input: { n: i } }));
    many[1400] = { id: 't9', input: { n: 9 } };
    await expect(rt.createMany('ticket', many)).rejects.toBeInstanceOf(DuplicateRecordError);
    expect(await count()).toBe(before);
  });

  it('duplicates within the items, a taken unique key, or bad input fail before anything is written', async () => {
    const before = await count();
    await expect(rt.createMany('ticket', [{ id: 'same', input: { n: 1 } }, { id: 'same', input: { n: 2 } }])).rejects.toBeInstanceOf(
      DuplicateRecordError,
    );
    await rt.create('ticket', { id: 'keyed', input: { n: 1 }, uniqueKey: 'k-1' });
    const keyErr = await rt.createMany('ticket', [{ id: 'keyed-2', input: { n: 1 }, uniqueKey: 'k-1' }]).catch((e: unknown) => e);
    expect(keyErr).toBeInstanceOf(DuplicateRecordError);
    expect((keyErr as Error).message).toContain('uniqueKey');
    const bad = await rt.createMany('ticket', [{ id: 'ok', input: { n: 1 } }, { id: 'bad', input: { n: 2 }, priority: 1.5 }]).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    expect((bad as Error).message).toContain('items[1]');
    await expect(rt.createMany('ticket', 'nope' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await rt.createMany('ticket', [])).toEqual([]);
    expect(await count()).toBe(before + 1); // only `keyed`
  });

  it("in a caller's transaction: a rollback stores nothing, a commit stores all, a failed call leaves it usable", async () => {
    const before = await count();
    await backend.inTransaction(async (tx) => {
      await rt.createMany('ticket', [{ id: 'rb-1', input: { n: 1 } }, { id: 'rb-2', input: { n: 2 } }], { tx });
    }, 'rollback');
    expect(await count()).toBe(before);
    expect(await rt.get('ticket', 'rb-1')).toBeNull();

    await backend.inTransaction(async (tx) => {
      await expect(rt.createMany('ticket', [{ id: 'c-0', input: { n: 0 } }, { id: 't3', input: { n: 3 } }], { tx })).rejects.toBeInstanceOf(
        DuplicateRecordError,
      );
      // The transaction is still usable after the failed call.
      await rt.createMany('ticket', [{ id: 'c-1', input: { n: 1 } }, { id: 'c-2', input: { n: 2 } }], { tx });
    }, 'commit');
    expect(await count()).toBe(before + 2);
    expect(await rt.get('ticket', 'c-0')).toBeNull();
    expect((await rt.get('ticket', 'c-2'))?.context).toEqual({ n: 2 });
  });
});
