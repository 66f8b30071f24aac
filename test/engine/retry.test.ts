import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { createRuntime, durable, EventNotAcceptedError, InvalidInputError, NotFailedError, type Runtime, SnapshotRestoreError } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// What a user fixes between a failure and its retry: the code the machine calls.
const fixes = { actionBroken: true, chargeFailuresLeft: 0, chargeInputs: [] as unknown[] };

const flow = durable(
  setup({
    types: { context: {} as { steps: string[] } },
    actions: {
      risky: () => {
        if (fixes.actionBroken) throw new Error('risky is broken');
      },
    },
  }).createMachine({
    id: 'flow',
    initial: 'idle',
    context: { steps: [] },
    states: {
      idle: {
        on: {
          go: { target: 'working', actions: ['risky', assign({ steps: ({ context }) => [...context.steps, 'go'] })] },
          skip: { guard: ({ context }) => context.steps.length > 0, target: 'working' },
        },
      },
      working: { on: { finish: 'done' } },
      done: { type: 'final' },
    },
  }),
);

const payment = durable(
  setup({
    actors: {
      charge: fromPromise(async ({ input }: { input: { amount: number } }) => {
        fixes.chargeInputs.push(input);
        if (fixes.chargeFailuresLeft > 0) {
          fixes.chargeFailuresLeft -= 1;
          throw new Error('card declined');
        }
        return { ok: true };
      }),
    },
  }).createMachine({
    id: 'payment',
    initial: 'charging',
    states: {
      charging: { invoke: { id: 'charge', src: 'charge', input: () => ({ amount: 7 }), onDone: 'paid' } },
      paid: { type: 'final' },
    },
  }),
  { maxAttempts: 2, backoff: '10ms' },
);

const picky = durable(
  setup({
    types: { context: {} as { n: number }, input: {} as { n?: unknown } },
    actions: {
      refuseOdd: ({ context }) => {
        if (context.n % 2 === 1) throw new Error('odd numbers are refused on entry');
      },
    },
  }).createMachine({
    id: 'picky',
    initial: 'ready',
    context: ({ input }) => {
      if (typeof input.n !== 'number') throw new Error('n must be a number');
      return { n: input.n };
    },
    states: { ready: { entry: 'refuseOdd' } },
  }),
);

const machines = [flow, payment, picky];
type Row = [string | null, string, string, string];
const trail = async (rt: Runtime, machine: string, id: string): Promise<Row[]> =>
  (await rt.history(machine, id)).map((h) => [h.from, h.to, h.status, h.event.type]);

describe.each(BACKENDS)('failures and retry() on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  let client: Runtime;
  const warnings: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (obj: object, msg?: string) => warnings.push({ obj: obj as Record<string, unknown>, msg }) };
  const stored = async (id: string) => {
    const s = `"${backend.schema}"`;
    const [i] = await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.instances WHERE id = $1`, [id]);
    const [t] = await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.transitions WHERE instance_id = $1`, [id]);
    return (i?.n ?? 0) + (t?.n ?? 0);
  };

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines, pollInterval: 50, logger });
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines });
  });
  afterAll(async () => {
    await client.stop();
    await rt.stop();
    await backend.close();
  });

  it('a throwing action: retry applies the failed event again, and the events behind it follow', async () => {
    fixes.actionBroken = true;
    // Both events wait in the inbox before anything runs, so one step sees both.
    await client.create('flow', { id: 'f-1' });
    await client.send('flow', 'f-1', { type: 'go' });
    await client.send('flow', 'f-1', { type: 'finish' });
    await rt.start();
    const failed = await rt.waitFor('flow', 'f-1', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(failed).toMatchObject({ state: 'idle', error: { message: 'risky is broken' } });
    // One warn line says what failed, where and why. It is written just after the commit, and
    // waitFor() may read the failed row from the database before that.
    await until(() => warnings.some((w) => w.obj.id === 'f-1'), 'the failure warned');
    expect(warnings.filter((w) => w.obj.id === 'f-1').map((w) => w.obj)).toEqual([
      expect.objectContaining({ machine: 'flow', id: 'f-1', state: 'idle', event: 'go', err: 'risky is broken' }),
    ]);

    fixes.actionBroken = false;
    const retried = await rt.retry('flow', 'f-1');
    // The poller may already have delivered `finish` when retry() reads the record back.
    expect(retried).toMatchObject({ error: null, context: { steps: ['go'] } });
    expect(retried.status).not.toBe('failed');
    await rt.waitFor('flow', 'f-1', { status: 'done' }, { timeoutMs: 10_000 });
    expect(await trail(rt, 'flow', 'f-1')).toEqual([
      [null, 'idle', 'active', 'xstate.init'],
      ['idle', 'idle', 'failed', 'go'],
      ['idle', 'idle', 'active', 'drover.retry'],
      ['idle', 'working', 'active', 'go'],
      ['working', 'done', 'done', 'finish'],
    ]);
  });

  it('skipEvent drops the failed event: the record waits where it was', async () => {
    fixes.actionBroken = true;
    await rt.create('flow', { id: 'f-2' });
    await rt.send('flow', 'f-2', { type: 'go' });
    await rt.waitFor('flow', 'f-2', { status: 'failed' }, { timeoutMs: 10_000 });
    const retried = await rt.retry('flow', 'f-2', { skipEvent: true });
    expect(retried).toMatchObject({ status: 'active', state: 'idle', context: { steps: [] } });
    expect((await rt.history('flow', 'f-2')).at(-1)?.event).toEqual({ type: 'drover.retry', skipEvent: true });
    fixes.actionBroken = false;
    await rt.send('flow', 'f-2', { type: 'go' });
    await rt.waitFor('flow', 'f-2', { state: 'working' }, { timeoutMs: 10_000 });
  });

  it('a retry that fails again leaves the record failed, and can be retried again', async () => {
    fixes.actionBroken = true;
    await rt.create('flow', { id: 'f-3' });
    await rt.send('flow', 'f-3', { type: 'go' });
    await rt.waitFor('flow', 'f-3', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(await rt.retry('flow', 'f-3')).toMatchObject({ status: 'failed', state: 'idle', error: { message: 'risky is broken' } });
    fixes.actionBroken = false;
    expect(await rt.retry('flow', 'f-3')).toMatchObject({ status: 'active', state: 'working' });
    expect((await trail(rt, 'flow', 'f-3')).slice(1)).toEqual([
      ['idle', 'idle', 'failed', 'go'],
      ['idle', 'idle', 'active', 'drover.retry'],
      ['idle', 'idle', 'failed', 'go'],
      ['idle', 'idle', 'active', 'drover.retry'],
      ['idle', 'working', 'active', 'go'],
    ]);
  });

  it('a failed invocation gets a fresh attempt budget; get().attempt counts every failed attempt', async () => {
    // Two attempts fail (the budget), then one more after the retry, then it succeeds.
    fixes.chargeFailuresLeft = 3;
    fixes.chargeInputs = [];
    await rt.create('payment', { id: 'p-1' });
    const failed = await rt.waitFor('payment', 'p-1', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(failed).toMatchObject({ state: 'charging', attempt: 2, error: { message: 'card declined' } });

    // The retried invocation may already be running (and failing) when retry() reads the record back.
    expect(await rt.retry('payment', 'p-1')).toMatchObject({ status: 'active', state: 'charging' });
    const paid = await rt.waitFor('payment', 'p-1', { status: 'done' }, { timeoutMs: 10_000 });
    // One failed attempt of the fresh budget (not 3: the count started again).
    expect(paid).toMatchObject({ state: 'paid', attempt: 1 });
    expect(fixes.chargeFailuresLeft).toBe(0);
    // The retried invocation got the input XState gave it when the state was entered.
    expect(fixes.chargeInputs).toEqual([{ amount: 7 }, { amount: 7 }, { amount: 7 }, { amount: 7 }]);
    expect(await trail(rt, 'payment', 'p-1')).toEqual([
      [null, 'charging', 'active', 'xstate.init'],
      ['charging', 'charging', 'failed', 'xstate.error.actor.charge'],
      ['charging', 'charging', 'active', 'drover.retry'],
      ['charging', 'paid', 'done', 'xstate.done.actor.charge'],
    ]);
  });

  it('retry() of a record that has not failed is refused and changes nothing', async () => {
    await rt.create('flow', { id: 'f-4' });
    await expect(rt.retry('flow', 'f-4')).rejects.toBeInstanceOf(NotFailedError);
    expect(await trail(rt, 'flow', 'f-4')).toEqual([[null, 'idle', 'active', 'xstate.init']]);
    await expect(rt.retry('flow', 'f-4', { skipEvents: true } as never)).rejects.toThrow(/did you mean "skipEvent"/);
  });

  it('send() says whether the state has no transition for an event or its guards refused it', async () => {
    await rt.create('flow', { id: 'f-5' });
    await expect(rt.send('flow', 'f-5', { type: 'skip' })).rejects.toThrow(/no enabled transition for it in state "idle" \(every transition for it has a guard that refused it\)/);
    await expect(rt.send('flow', 'f-5', { type: 'finish' })).rejects.toThrow(/state "idle" has no transition for it/);
    await expect(rt.send('flow', 'f-5', { type: 'finish' })).rejects.toBeInstanceOf(EventNotAcceptedError);
  });

  it('create() whose initial transition throws rejects with InvalidInputError and stores nothing', async () => {
    const err = await rt.create('picky', { id: 'bad-1', input: { n: 'three' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).message).toMatch(/n must be a number/);
    expect(await stored('bad-1')).toBe(0);
    // An entry action that throws on the input: the same.
    await expect(rt.create('picky', { id: 'bad-2', input: { n: 3 } })).rejects.toThrow(/odd numbers are refused/);
    expect(await stored('bad-2')).toBe(0);
    expect(await rt.get('picky', 'bad-2')).toBeNull();
    expect(await rt.create('picky', { id: 'good', input: { n: 2 } })).toMatchObject({ status: 'active', context: { n: 2 } });
  });

  it('createMany() with one item whose input cannot start stores none of them, naming the item', async () => {
    const err = await rt
      .createMany('picky', [{ id: 'm-1', input: { n: 2 } }, { id: 'm-2', input: { n: 5 } }, { id: 'm-3', input: { n: 4 } }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(/^items\[1\]: /);
    for (const id of ['m-1', 'm-2', 'm-3']) expect(await stored(id)).toBe(0);
  });
});

// A machine edited in place: `review` renamed while records wait in it.
const docMachine = (reviewName: string) =>
  setup({}).createMachine({
    id: 'doc',
    initial: 'draft',
    states: {
      draft: { on: { submit: reviewName } },
      [reviewName]: { on: { approve: 'published' } },
      published: { type: 'final' },
    },
  });

describe.each(BACKENDS)('retry() of a snapshot that did not restore, after the machine is fixed, on $name', ({ make }) => {
  let backend: TestBackend;
  const open = (machine: ReturnType<typeof durable>) =>
    createRuntime({ database: backend.database, schema: backend.schema, machines: [machine], pollInterval: 50 });
  beforeAll(async () => {
    backend = await make();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('the record fails on the edited machine, and retry() on the fixed one restores it and delivers its waiting event', async () => {
    const original = durable(docMachine('review'));
    const first = await open(original);
    await first.start();
    await first.create('doc', { id: 'd-1' });
    await first.send('doc', 'd-1', { type: 'submit' });
    await first.waitFor('doc', 'd-1', { state: 'review' }, { timeoutMs: 10_000 });
    await first.stop();
    const client = await open(original);
    await client.send('doc', 'd-1', { type: 'approve' }); // waits in the inbox
    await client.stop();

    // A deploy that slipped past the fingerprint check (a database from before it).
    await backend.query(`DELETE FROM "${backend.schema}".machine_versions`);
    const edited = await open(durable(docMachine('checking')));
    await edited.start();
    const failed = await edited.waitFor('doc', 'd-1', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(failed.error?.message).toMatch(/does not restore/);
    await expect(edited.retry('doc', 'd-1')).rejects.toBeInstanceOf(SnapshotRestoreError);
    await edited.stop();

    // The fix: `review` is back. No live record is stranded by the change, so allowChange takes it.
    const fixed = await open(durable(docMachine('review'), { allowChange: true }));
    await fixed.start();
    try {
      await fixed.retry('doc', 'd-1');
      await fixed.waitFor('doc', 'd-1', { status: 'done' }, { timeoutMs: 10_000 });
      expect(await trail(fixed, 'doc', 'd-1')).toEqual([
        [null, 'draft', 'active', 'xstate.init'],
        ['draft', 'review', 'active', 'submit'],
        ['review', 'review', 'failed', 'drover.restore_failed'],
        ['review', 'review', 'active', 'drover.retry'],
        ['review', 'published', 'done', 'approve'],
      ]);
    } finally {
      await fixed.stop();
    }
  });
});
