import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { createRuntime, type DurableMachine, durable, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { withRuntime } from './machines.js';

// Two versions of one machine side by side: records keep the version they started on.

const v1 = durable(
  setup({ types: { context: {} as { trail: string[] } } }).createMachine({
    id: 'flow',
    initial: 'draft',
    context: { trail: ['v1'] },
    states: {
      draft: { on: { submit: { target: 'review', actions: assign({ trail: ({ context }) => [...context.trail, 'submit@v1'] }) } } },
      review: { on: { approve: 'published' }, after: { 400: 'draft' } },
      published: { type: 'final' },
    },
  }),
  { version: 1 },
);

const v2 = durable(
  setup({ types: { context: {} as { trail: string[] } } }).createMachine({
    id: 'flow',
    initial: 'drafting',
    context: { trail: ['v2'] },
    states: {
      drafting: {
        initial: 'text',
        states: {
          text: {
            on: { submit: { target: '#flow.checks', actions: assign({ trail: ({ context }) => [...context.trail, 'submit@v2'] }) } },
          },
        },
      },
      checks: { on: { approve: 'live' } },
      live: { type: 'final' },
    },
  }),
  { version: 2 },
);

describe.each(BACKENDS)('machine versions side by side on $name', ({ make }) => {
  let backend: TestBackend;
  let both: Runtime;
  const open = (machines: readonly DurableMachine[]) =>
    createRuntime({ database: backend.database, schema: backend.schema, machines, pollInterval: 50 });

  beforeAll(async () => {
    backend = await make();
    // Records created while only version 1 existed.
    await withRuntime(
      () => open([v1]),
      async (old) => {
        await old.start();
        for (const id of ['old-1', 'old-2', 'old-3'])
          expect(await old.create('flow', { id })).toMatchObject({ version: 1, state: 'draft' });
        await old.send('flow', 'old-3', { type: 'submit' });
        await old.waitFor('flow', 'old-3', { state: 'review' }, { timeoutMs: 10_000 });
      },
    );
    both = await open([v1, v2]);
    await both.start();
  });
  afterAll(async () => {
    await both?.stop();
    await backend?.close();
  });

  it('records created on version 1 keep stepping on version 1', async () => {
    await both.send('flow', 'old-1', { type: 'submit' });
    const r = await both.waitFor('flow', 'old-1', { state: 'review' }, { timeoutMs: 10_000 });
    expect(r.version).toBe(1);
    expect(r.context.trail).toEqual(['v1', 'submit@v1']);
    await both.send('flow', 'old-1', { type: 'approve' });
    const done = await both.waitFor('flow', 'old-1', { status: 'done' }, { timeoutMs: 10_000 });
    expect(done).toMatchObject({ version: 1, state: 'published' });
    expect((await both.history('flow', 'old-1')).map((h) => h.to)).toEqual(['draft', 'review', 'published']);
  });

  it("a version-1 record's pending timer fires on version 1 under the new runtime", async () => {
    const r = await both.waitFor('flow', 'old-3', { state: 'draft' }, { timeoutMs: 10_000 });
    expect(r.version).toBe(1);
    expect((await both.history('flow', 'old-3')).map((h) => h.event.type)).toEqual([
      'xstate.init',
      'submit',
      'xstate.after.400.flow.review',
    ]);
  });

  it('a version-1 record takes events in its own graph while new records start on version 2', async () => {
    // v1 has `draft`, v2 has `drafting.text`: each record steps on its own graph.
    const fresh = await both.create('flow', { id: 'new-1' });
    expect(fresh).toMatchObject({ version: 2, state: 'drafting.text', context: { trail: ['v2'] } });
    await both.send('flow', 'old-2', { type: 'submit' });
    expect((await both.waitFor('flow', 'old-2', { state: 'review' }, { timeoutMs: 10_000 })).version).toBe(1);
  });

  it('new records use version 2', async () => {
    await both.create('flow', { id: 'new-2' });
    await both.send('flow', 'new-2', { type: 'submit' });
    const r = await both.waitFor('flow', 'new-2', { state: 'checks' }, { timeoutMs: 10_000 });
    expect(r).toMatchObject({ version: 2, context: { trail: ['v2', 'submit@v2'] } });
    await both.send('flow', 'new-2', { type: 'approve' });
    expect(await both.waitFor('flow', 'new-2', { status: 'done' }, { timeoutMs: 10_000 })).toMatchObject({ version: 2, state: 'live' });
    const versions = (await both.list('flow', { limit: 100 })).items.map((i) => [i.id, i.version]);
    expect(versions).toEqual([
      ['new-1', 2],
      ['new-2', 2],
      ['old-1', 1],
      ['old-2', 1],
      ['old-3', 1],
    ]);
  });
});
