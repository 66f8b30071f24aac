import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, raise, setup } from 'xstate';
import { createRuntime, durable, type Runtime } from '../../src/index.js';
import { storageProblem } from '../../src/record/check.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// One bad record among healthy ones: it fails alone, with its error, and the rest of its batch commits.

/** Fetches data from "outside": the poison id's data carries a NUL, which PostgreSQL cannot store. */
const ingest = durable(
  setup({
    types: { context: {} as { key: string; data: unknown }, input: {} as { key: string } },
    actors: {
      fetchData: fromPromise(async ({ input }: { input: { id: string } }) => ({ name: input.id === 'poison' ? 'bad\u0000name' : `name of ${input.id}` })),
    },
  }).createMachine({
    id: 'ingest',
    initial: 'fetching',
    context: ({ input }) => ({ key: input.key, data: null }),
    states: {
      fetching: {
        invoke: {
          src: 'fetchData',
          input: ({ context }) => ({ id: context.key }),
          onDone: { target: 'stored', actions: assign({ data: ({ event }) => event.output }) },
        },
      },
      stored: { type: 'final' },
    },
  }),
);

/** Values an assign or an action produces that JSON or PostgreSQL cannot store. */
const calc = durable(
  setup({
    types: { context: {} as { total: unknown; peer: unknown }, events: {} as { type: 'go'; how: string } | { type: 'later' } },
  }).createMachine({
    id: 'calc',
    initial: 'idle',
    context: { total: 0, peer: null },
    states: {
      idle: {
        on: {
          go: [
            { guard: ({ event }) => event.how === 'bigint', target: 'done', actions: assign({ total: () => BigInt(7) }) },
            {
              guard: ({ event }) => event.how === 'cycle',
              target: 'done',
              actions: assign({
                peer: () => {
                  const node: Record<string, unknown> = {};
                  node.self = node;
                  return node;
                },
              }),
            },
            { guard: ({ event }) => event.how === 'delayed', target: 'waiting', actions: raise({ type: 'later', n: BigInt(1) } as never, { delay: 10 }) },
            { target: 'done', actions: assign({ total: 1 }) },
          ],
        },
      },
      waiting: { on: { later: 'done' } },
      done: { type: 'final' },
    },
  }),
);

/** A record whose write the database refuses: the test adds a CHECK constraint on the stored context. */
const words = durable(
  setup({ types: { context: {} as { word: string }, events: {} as { type: 'set'; word: string } } }).createMachine({
    id: 'words',
    initial: 'idle',
    context: { word: '' },
    states: {
      idle: { on: { set: { target: 'done', actions: assign({ word: ({ event }) => event.word }) } } },
      done: { type: 'final' },
    },
  }),
);

const machines = [ingest, calc, words];

describe('storageProblem', () => {
  it('finds only what cannot be stored, with its path', () => {
    expect(storageProblem({ a: [1, { b: 'x\u0000y' }] }, 'context')).toMatch(/^context\.a\[1\]\.b contains NUL/);
    expect(storageProblem({ n: 1n }, 'context')).toMatch(/^context\.n is a BigInt/);
    expect(storageProblem({ ['k\uD800']: 1 }, 'output')).toMatch(/^output\["k.+"\]: the key contains a lone UTF-16 surrogate/);
    const cycle: Record<string, unknown> = {};
    cycle.me = { back: cycle };
    expect(storageProblem(cycle, 'context')).toMatch(/^context\.me\.back refers back/);
    let deep: unknown = 1;
    for (let i = 0; i < 1001; i++) deep = [deep];
    expect(storageProblem(deep, 'context')).toMatch(/beyond the limit of 1000/);
    // What JSON stores differently but can store is left as it always was.
    expect(storageProblem({ at: new Date(0), m: new Map(), n: Number.NaN, u: undefined, s: '\uD83D\uDE00' }, 'context')).toBeNull();
  });
});

describe.each(BACKENDS)('one bad record fails alone on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const warnings: Array<Record<string, unknown>> = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (obj: object) => warnings.push(obj as Record<string, unknown>) };
  const s = () => `"${backend.schema}"`;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines, logger });
  });
  afterAll(async () => {
    await rt.stop();
    await backend.close();
  });

  it('an invocation output with NUL among 200 healthy records: they finish, the culprit fails with its path', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `ok-${i}`);
    await rt.createMany('ingest', [...ids.slice(0, 100), 'poison', ...ids.slice(100)].map((id) => ({ id, input: { key: id } })));
    await rt.start();
    const failed = await rt.waitFor('ingest', 'poison', { status: 'failed' }, { timeoutMs: 20_000 });
    expect(failed.state).toBe('fetching');
    expect(failed.error?.message).toMatch(/returned an output that cannot be stored: output\.name contains NUL/);
    await until(async () => (await rt.list('ingest', { status: 'done', limit: 500 })).items.length === 200, '200 healthy records done', 20_000);
    expect(warnings.some((w) => w.machine === 'ingest' && w.id === 'poison')).toBe(true);
  });

  it('with two nodes, the neighbours of a bad record are not held: every healthy one finishes', async () => {
    const other = await createRuntime({ database: backend.database, schema: backend.schema, machines, logger });
    try {
      await other.start();
      const ids = Array.from({ length: 100 }, (_, i) => `two-${i}`);
      // The fetch fails only for the id "poison", so this culprit carries the key instead.
      await rt.createMany('ingest', [...ids.map((id) => ({ id, input: { key: id } })), { id: 'two-poison', input: { key: 'poison' } }]);
      await rt.waitFor('ingest', 'two-poison', { status: 'failed' }, { timeoutMs: 20_000 });
      for (const id of ids) await rt.waitFor('ingest', id, { status: 'done' }, { timeoutMs: 20_000 });
    } finally {
      await other.stop();
    }
  });

  it.each([
    ['bigint', /the step's new context cannot be stored: context\.total is a BigInt/],
    ['cycle', /the step's new context cannot be stored: context\.peer\.self refers back/],
    ['delayed', /the step's event cannot be stored: event\.n is a BigInt/],
  ])('an action that produces a %s: the record fails on that event, kept as before it, and retry(skipEvent) recovers it', async (how, message) => {
    const ids = Array.from({ length: 30 }, (_, i) => `${how}-${i}`);
    await rt.createMany('calc', ids.map((id) => ({ id })));
    await Promise.all(ids.map((id, i) => rt.send('calc', id, { type: 'go', how: i === 11 ? how : 'fine' })));
    const culprit = ids[11] as string;
    const failed = await rt.waitFor('calc', culprit, { status: 'failed' }, { timeoutMs: 20_000 });
    expect(failed).toMatchObject({ state: 'idle', context: { total: 0, peer: null } });
    expect(failed.error?.message).toMatch(message);
    for (const id of ids) if (id !== culprit) await rt.waitFor('calc', id, { status: 'done' }, { timeoutMs: 20_000 });
    expect(warnings.some((w) => w.machine === 'calc' && w.id === culprit && w.event === 'go')).toBe(true);
    const retried = await rt.retry('calc', culprit, { skipEvent: true });
    expect(retried).toMatchObject({ status: 'active', state: 'idle', error: null });
  });

  it('a write the database refuses: the batch is split, the others commit, the culprit keeps its row and inbox until retry()', async () => {
    await backend.query(`ALTER TABLE ${s()}.instances ADD CONSTRAINT no_forbidden CHECK (snapshot->'context'->>'word' IS DISTINCT FROM 'forbidden')`);
    const ids = Array.from({ length: 120 }, (_, i) => `w-${i}`);
    const culprit = 'w-77';
    await rt.stop();
    const client = await createRuntime({ database: backend.database, schema: backend.schema, machines });
    await client.createMany('words', ids.map((id) => ({ id })));
    // All events wait before a node runs, so the culprit shares a batch with healthy records.
    for (const id of ids) await client.send('words', id, { type: 'set', word: id === culprit ? 'forbidden' : 'fine' });
    await client.stop();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines, logger });
    await rt.start();
    const failed = await rt.waitFor('words', culprit, { status: 'failed' }, { timeoutMs: 20_000 });
    expect(failed).toMatchObject({ state: 'idle', context: { word: '' } });
    expect(failed.error?.message).toMatch(/the database refused to store the record's step: .*no_forbidden/);
    for (const id of ids) if (id !== culprit) await rt.waitFor('words', id, { status: 'done' }, { timeoutMs: 20_000 });
    const history = await rt.history('words', culprit);
    expect(history.map((h) => [h.to, h.status, h.event.type])).toEqual([
      ['idle', 'active', 'xstate.init'],
      ['idle', 'failed', 'drover.store_failed'],
    ]);
    const [inbox] = await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s()}.events WHERE instance_id = $1`, [culprit]);
    expect(inbox?.n).toBe(1);
    expect(warnings.some((w) => w.machine === 'words' && w.id === culprit && w.event === 'drover.store_failed')).toBe(true);

    // The operator lifts the constraint; retry() resumes the record from its kept row and inbox.
    await backend.query(`ALTER TABLE ${s()}.instances DROP CONSTRAINT no_forbidden`);
    await rt.retry('words', culprit);
    const done = await rt.waitFor('words', culprit, { status: 'done' }, { timeoutMs: 20_000 });
    expect(done.context).toEqual({ word: 'forbidden' });
  });
});
