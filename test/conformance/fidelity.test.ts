import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, createActor, type EventObject, raise, setup } from 'xstate';
import { createRuntime, durable, type RecordView, type Runtime, stateString, WaitTimeoutError } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { drained } from './machines.js';

// The fidelity bar: drover (a restore before every step) equals plain in-memory XState on
// the same machine and events, state value and context, JSON-normalised.

type FidEvent =
  | { type: 'start' }
  | { type: 'ignite' }
  | { type: 'inc'; by: number }
  | { type: 'faster' }
  | { type: 'slower' }
  | { type: 'boost' }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'finish' };

const fidMachine = setup({
  types: { context: {} as { count: number; boosts: number; log: string[] }, events: {} as FidEvent },
  guards: {
    warm: ({ context }) => context.count > 0,
    capped: ({ context }) => context.count >= 10,
    enough: ({ context }) => context.count >= 5,
  },
}).createMachine({
  id: 'fid',
  initial: 'idle',
  context: { count: 0, boosts: 0, log: [] },
  states: {
    idle: { on: { start: { target: 'active', actions: assign({ log: ({ context }) => [...context.log, 'start'] }) } } },
    active: {
      type: 'parallel',
      on: { pause: 'paused', finish: { target: 'finished', guard: 'enough' } },
      states: {
        engine: {
          initial: 'off',
          states: {
            off: {
              on: {
                ignite: [
                  { guard: 'warm', target: 'on' },
                  { actions: assign({ log: ({ context }) => [...context.log, 'ignite-refused'] }) },
                ],
              },
            },
            on: {
              initial: 'slow',
              states: {
                slow: { on: { faster: 'fast' } },
                fast: { entry: raise({ type: 'boost' }), on: { slower: 'slow' } },
              },
            },
            hist: { type: 'history', history: 'deep' },
          },
        },
        counter: {
          initial: 'counting',
          states: {
            counting: {
              always: { guard: 'capped', target: 'capped' },
              on: {
                inc: { actions: assign({ count: ({ context, event }) => context.count + event.by }) },
                boost: {
                  actions: assign({ boosts: ({ context }) => context.boosts + 1, log: ({ context }) => [...context.log, 'boost'] }),
                },
              },
            },
            capped: { entry: assign({ log: ({ context }) => [...context.log, 'capped'] }) },
          },
        },
      },
    },
    paused: { on: { resume: '#fid.active.engine.hist' } },
    finished: { type: 'final' },
  },
});

const fid = durable(fidMachine);

const EVENTS: FidEvent[] = [
  { type: 'start' },
  { type: 'ignite' }, // refused by the guard: the fallback branch only logs
  { type: 'inc', by: 2 },
  { type: 'ignite' },
  { type: 'faster' }, // entry raise → boost handled by the other region
  { type: 'inc', by: 3 },
  { type: 'pause' },
  { type: 'resume' }, // deep history back to engine.on.fast (raises boost again)
  { type: 'slower' },
  { type: 'inc', by: 6 }, // always → counter.capped
  { type: 'finish' },
];

const norm = (value: unknown, context: unknown) => JSON.parse(JSON.stringify({ value, context }));

describe.each(BACKENDS)('fidelity with in-memory XState on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [fid], pollInterval: 50 });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  /** Waits until the record equals `expected`; on timeout, fails with a diff of the last state. */
  async function expectReaches(id: string, expected: unknown, step: string) {
    // jsonb does not keep key order: compare structurally.
    const same = (r: RecordView) => isDeepStrictEqual(norm(r.value, r.context), expected);
    try {
      await rt.waitFor('fid', id, same, { timeoutMs: 5000 });
    } catch (err) {
      if (!(err instanceof WaitTimeoutError)) throw err;
      const r = await rt.get('fid', id);
      expect(norm(r?.value, r?.context), `after ${step}`).toEqual(expected);
    }
  }

  it('the script is valid: every event is taken by the in-memory actor', () => {
    const actor = createActor(fidMachine).start();
    for (const e of EVENTS) {
      expect(actor.getSnapshot().can(e), `in-memory actor cannot take ${e.type}`).toBe(true);
      actor.send(e);
    }
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().context).toEqual({ count: 11, boosts: 2, log: ['start', 'ignite-refused', 'boost', 'boost', 'capped'] });
  });

  it('one event at a time: equal after every event', async () => {
    const actor = createActor(fidMachine).start();
    const created = await rt.create('fid', { id: 'one-by-one' });
    expect(norm(created.value, created.context)).toEqual(norm(actor.getSnapshot().value, actor.getSnapshot().context));
    const expectedStates = [stateString(actor.getSnapshot().value)];
    for (const [i, e] of EVENTS.entries()) {
      actor.send(e);
      const snap = actor.getSnapshot();
      const state = stateString(snap.value);
      if (state !== expectedStates.at(-1)) expectedStates.push(state);
      await rt.send('fid', 'one-by-one', e);
      await expectReaches('one-by-one', norm(snap.value, snap.context), `event ${i} (${e.type})`);
    }
    const final = await rt.waitFor('fid', 'one-by-one', { status: 'done' }, { timeoutMs: 5000 });
    expect(norm(final.value, final.context)).toEqual(norm(actor.getSnapshot().value, actor.getSnapshot().context));
    expect((await rt.history('fid', 'one-by-one')).map((h) => h.to)).toEqual(expectedStates);
  });

  it('all events back to back: equal at the end', async () => {
    const actor = createActor(fidMachine).start();
    await rt.create('fid', { id: 'burst' });
    for (const e of EVENTS) {
      actor.send(e);
      await rt.send('fid', 'burst', e as EventObject);
    }
    await drained(backend, 'fid', 'burst');
    const got = await rt.get('fid', 'burst');
    expect(got?.status).toBe('done');
    expect(norm(got?.value, got?.context)).toEqual(norm(actor.getSnapshot().value, actor.getSnapshot().context));
  });
});
