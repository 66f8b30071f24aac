import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, type InspectionEvent, sendParent, setup } from 'xstate';
import { createRuntime, durable, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// Records in the Stately inspector: every committed step reported as a live actor's would be.

const order = durable(
  setup({
    types: { context: {} as { paid: number }, events: {} as { type: 'pay' } | { type: 'ship' } },
    actors: { charge: fromPromise(async ({ input }: { input: { amount: number } }) => ({ charged: input.amount })) },
  }).createMachine({
    id: 'order',
    initial: 'open',
    context: { paid: 0 },
    states: {
      open: { on: { pay: 'charging' } },
      charging: {
        invoke: {
          id: 'charge',
          src: 'charge',
          input: () => ({ amount: 12 }),
          onDone: { target: 'paid', actions: assign({ paid: ({ event }) => event.output.charged }) },
        },
      },
      paid: { on: { ship: 'shipped' } },
      shipped: { type: 'final' },
    },
  }),
);

// A parent record that invokes a child machine: the child is a record of its own.
const parcel = setup({}).createMachine({
  id: 'parcel',
  initial: 'packing',
  states: { packing: { entry: sendParent({ type: 'packing' }), on: { pack: 'packed' } }, packed: { type: 'final' } },
  output: { weight: 2 },
});
const dispatch = durable(
  setup({ types: { context: {} as { now: boolean } }, actors: { parcel } }).createMachine({
    id: 'dispatch',
    // With `now`, the child starts in the record's first step (the engine's create path); else on `go`, in a later step.
    context: ({ input }) => ({ now: (input as { now?: boolean } | undefined)?.now === true }),
    initial: 'waiting',
    states: {
      waiting: { always: { guard: ({ context }) => context.now, target: 'shipping' }, on: { go: 'shipping' } },
      shipping: { invoke: { id: 'box', src: 'parcel', onDone: 'sent' }, on: { packing: {} } },
      sent: { type: 'final' },
    },
  }),
);

interface Seen {
  type: string;
  session: string;
  parent?: string;
  event?: string;
  source?: string;
  value?: unknown;
}

describe.each(BACKENDS)('records in the inspector on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const raw: InspectionEvent[] = [];
  const converted: StatelyInspectionEvent[] = [];
  // The Stately inspector's own converter, with an adapter that keeps what it would send.
  const stately = createInspector({ send: (event) => converted.push(event) });

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      machines: [order, dispatch],
      inspect: (event) => {
        raw.push(event);
        stately.inspect.next?.(event);
      },
    });
    await rt.start();
  });
  afterAll(async () => {
    await rt.stop();
    await backend.close();
  });

  it("reports a record's steps in order, under its session id, with its invocation as a child", async () => {
    await rt.create('order', { id: 'o-1' });
    await rt.send('order', 'o-1', { type: 'pay' });
    await rt.waitFor('order', 'o-1', { state: 'paid' }, { timeoutMs: 10_000 });
    await rt.send('order', 'o-1', { type: 'ship' });
    await rt.waitFor('order', 'o-1', { status: 'done' }, { timeoutMs: 10_000 });

    const seen: Seen[] = raw
      .filter((e) => e.actorRef.sessionId.startsWith('order:o-1'))
      .map((e) => {
        const ref = e.actorRef as unknown as { sessionId: string; _parent?: { sessionId: string } };
        const s: Seen = { type: e.type, session: ref.sessionId };
        if (ref._parent) s.parent = ref._parent.sessionId;
        if (e.type === '@xstate.event') {
          s.event = e.event.type;
          if (e.sourceRef) s.source = e.sourceRef.sessionId;
        }
        if (e.type === '@xstate.snapshot') s.value = (e.snapshot as unknown as { value: unknown }).value;
        return s;
      });
    expect(seen).toEqual([
      { type: '@xstate.actor', session: 'order:o-1' },
      { type: '@xstate.event', session: 'order:o-1', event: 'xstate.init' },
      { type: '@xstate.snapshot', session: 'order:o-1', value: 'open' },
      { type: '@xstate.event', session: 'order:o-1', event: 'pay' },
      { type: '@xstate.snapshot', session: 'order:o-1', value: 'charging' },
      { type: '@xstate.actor', session: 'order:o-1/charge', parent: 'order:o-1' },
      { type: '@xstate.event', session: 'order:o-1', event: 'xstate.done.actor.charge', source: 'order:o-1/charge' },
      { type: '@xstate.snapshot', session: 'order:o-1', value: 'paid' },
      { type: '@xstate.event', session: 'order:o-1', event: 'ship' },
      { type: '@xstate.snapshot', session: 'order:o-1', value: 'shipped' },
    ]);
  });

  it.each([
    { d: 'd-1', how: 'started by the first step' },
    { d: 'd-2', how: 'started by a later step' },
  ])("shows a child record ($how) as a child of its parent record's actor, in its parent's tree", async ({ d }) => {
    await rt.create('dispatch', { id: d, input: { now: d === 'd-1' } });
    if (d === 'd-2') await rt.send('dispatch', d, { type: 'go' });
    await rt.waitFor('dispatch', d, { state: 'shipping' }, { timeoutMs: 10_000 });
    await rt.send('parcel', `${d}.box`, { type: 'pack' });
    await rt.waitFor('dispatch', d, { status: 'done' }, { timeoutMs: 10_000 });
    // The last registration counts: a new record's child records are reported before it, as roots, then again under it.
    const actor = raw.filter((e) => e.type === '@xstate.actor' && e.actorRef.sessionId === `parcel:${d}.box`).at(-1);
    expect(actor).toBeDefined();
    expect((actor?.actorRef as unknown as { _parent?: { sessionId: string } })._parent?.sessionId).toBe(`dispatch:${d}`);
    expect(actor?.rootId).toBe(`dispatch:${d}`);
    // Its own steps are in the parent's tree; the parent's done event names it as the source.
    const childEvents = raw.filter((e) => e.type === '@xstate.event' && e.actorRef.sessionId === `parcel:${d}.box`);
    expect(childEvents.map((e) => (e.type === '@xstate.event' ? e.event.type : ''))).toEqual(['xstate.init', 'pack']);
    expect(childEvents.at(-1)?.rootId).toBe(`dispatch:${d}`);
    const done = raw.find((e) => e.type === '@xstate.event' && e.actorRef.sessionId === `dispatch:${d}` && e.event.type === 'xstate.done.actor.box');
    expect(done?.type === '@xstate.event' ? done.sourceRef?.sessionId : undefined).toBe(`parcel:${d}.box`);
    await until(() => converted.some((e) => e.type === '@xstate.actor' && e.sessionId === `parcel:${d}.box` && e.parentId), 'the inspector sent the child record');
    expect(converted.filter((e) => e.type === '@xstate.actor' && e.sessionId === `parcel:${d}.box`).at(-1)).toMatchObject({
      name: `${d}.box`,
      parentId: `dispatch:${d}`,
      rootId: `dispatch:${d}`,
    });
  });

  it("converts through @statelyai/inspect as a live actor's events do: the machine definition, the parent, the snapshots", async () => {
    const snapshotsOf = (session: string) =>
      converted.flatMap((e) => (e.type === '@xstate.snapshot' && e.sessionId === session ? [e.snapshot as unknown as { value: unknown; context: unknown }] : []));
    await until(() => snapshotsOf('order:o-1').some((s) => s.value === 'shipped'), 'the inspector sent the last snapshot');
    const actor = converted.find((e) => e.type === '@xstate.actor' && e.sessionId === 'order:o-1');
    // Named by the record's id (a live root actor is named by its machine id).
    expect(actor).toMatchObject({ name: 'o-1', rootId: 'order:o-1' });
    expect(JSON.parse((actor as { definition: string }).definition)).toMatchObject({ id: 'order', initial: 'open', states: { charging: {}, shipped: { type: 'final' } } });
    const child = converted.find((e) => e.type === '@xstate.actor' && e.sessionId === 'order:o-1/charge');
    expect(child).toMatchObject({ parentId: 'order:o-1', rootId: 'order:o-1' });
    expect(snapshotsOf('order:o-1').map((s) => s.value)).toEqual(['open', 'charging', 'paid', 'shipped']);
    expect(snapshotsOf('order:o-1')[2]?.context).toEqual({ paid: 12 });
  });
});
