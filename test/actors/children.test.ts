import { afterEach, describe, expect, it } from 'vitest';
import { type AnyActorRef, assign, createMachine, sendParent, sendTo, setup } from 'xstate';
import { durable, sendToRecord, UndeliverableMessageError } from '../../src/index.js';
import { createTestRuntime, type TestRuntime } from '../../src/testing/index.js';

// Child records on the embedded backend through drover/testing: the engine's half of records as actors.

const shipment = setup({
  types: { input: {} as { order_id: string }, context: {} as { order_id: string; pinged: number } },
}).createMachine({
  id: 'shipment',
  context: ({ input }) => ({ order_id: input.order_id, pinged: 0 }),
  initial: 'packing',
  states: {
    packing: {
      entry: sendParent({ type: 'child.started' }),
      on: {
        ping: { actions: [assign({ pinged: ({ context }) => context.pinged + 1 }), sendParent({ type: 'pong' })] },
        pack: 'shipped',
      },
    },
    shipped: { type: 'final' },
  },
  output: ({ context }) => ({ tracking: `T-${context.order_id}`, pinged: context.pinged }),
});

const order = setup({
  types: { context: {} as { order_id: string; started: number; pongs: number; tracking?: string } },
  actors: { shipment },
}).createMachine({
  id: 'order',
  context: ({ input }) => ({ order_id: (input as { order_id: string }).order_id, started: 0, pongs: 0 }),
  initial: 'shipping',
  states: {
    shipping: {
      invoke: {
        id: 'ship',
        src: 'shipment',
        input: ({ context }) => ({ order_id: context.order_id }),
        onDone: { target: 'done', actions: assign({ tracking: ({ event }) => (event.output as { tracking: string }).tracking }) },
      },
      on: {
        'child.started': { actions: assign({ started: ({ context }) => context.started + 1 }) },
        pong: { actions: assign({ pongs: ({ context }) => context.pongs + 1 }) },
        ping: { actions: sendTo('ship', { type: 'ping' }) },
        abandon: 'abandoned',
      },
    },
    done: { type: 'final' },
    abandoned: { type: 'final' },
  },
});

const pinger = setup({}).createMachine({
  id: 'pinger',
  context: ({ input }) => ({ target: (input as { target: string }).target }),
  initial: 'idle',
  states: {
    idle: { on: { go: { target: 'sent', actions: sendToRecord('order', ({ context }) => context.target, { type: 'ping' }) } } },
    sent: {},
  },
});

let t: TestRuntime | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

describe('child records', () => {
  it('invokes a child machine as a record of its own, messages it both ways, and takes its output onDone', async () => {
    t = await createTestRuntime({ machines: [durable(order), durable(pinger)] });
    await t.create('order', { id: 'o1', input: { order_id: 'o1' } });
    await t.drain();
    const child = await t.get('shipment', 'o1.ship');
    expect(child?.state).toBe('packing');
    expect((await t.get('order', 'o1'))?.context).toMatchObject({ started: 1, pongs: 0 });

    await t.send('order', 'o1', { type: 'ping' });
    await t.drain();
    expect((await t.get('shipment', 'o1.ship'))?.context).toMatchObject({ pinged: 1 });
    expect((await t.get('order', 'o1'))?.context).toMatchObject({ pongs: 1 });

    await t.create('pinger', { id: 'p1', input: { target: 'o1' } });
    await t.send('pinger', 'p1', { type: 'go' });
    await t.drain();
    expect((await t.get('shipment', 'o1.ship'))?.context).toMatchObject({ pinged: 2 });

    await t.send('shipment', 'o1.ship', { type: 'pack' });
    await t.drain();
    const done = await t.get('order', 'o1');
    expect(done?.status).toBe('done');
    expect(done?.context).toMatchObject({ tracking: 'T-o1', pongs: 2 });
  });

  it('shows the link on both sides: get().parent, list({ parent }), history entries of the sender and the receiver', async () => {
    t = await createTestRuntime({ machines: [durable(order)] });
    await t.create('order', { id: 'o3', input: { order_id: 'o3' } });
    await t.send('order', 'o3', { type: 'ping' });
    await t.drain();
    expect((await t.get('shipment', 'o3.ship'))?.parent).toEqual({ machine: 'order', id: 'o3', key: 'ship' });
    expect((await t.get('order', 'o3'))?.parent).toBeUndefined();
    const page = await t.list('shipment', { parent: { machine: 'order', id: 'o3' } });
    expect(page.items.map((r) => r.id)).toEqual(['o3.ship']);
    expect((await t.list('shipment', { parent: { machine: 'order', id: 'nobody' } })).items).toEqual([]);

    const parent = await t.history('order', 'o3');
    const effects = parent.filter((h) => h.kind).map((h) => [h.kind, h.event.type, h.peer?.id]);
    expect(effects).toEqual([
      ['spawned', 'drover.spawn', 'o3.ship'],
      ['received', 'child.started', 'o3.ship'],
      ['sent', 'ping', 'o3.ship'],
      ['received', 'pong', 'o3.ship'],
    ]);
    const child = await t.history('shipment', 'o3.ship');
    expect(child.filter((h) => h.kind).map((h) => [h.kind, h.event.type, h.peer?.id])).toEqual([
      ['sent', 'child.started', 'o3'],
      ['received', 'ping', 'o3'],
      ['sent', 'pong', 'o3'],
    ]);
    expect(child[0]).toMatchObject({ from: null, to: 'packing' });
  });

  it('cancels the child records with their parent, and fails the parent\'s invoke when a child is cancelled', async () => {
    t = await createTestRuntime({ machines: [durable(order)] });
    await t.create('order', { id: 'o4', input: { order_id: 'o4' } });
    await t.create('order', { id: 'o5', input: { order_id: 'o5' } });
    await t.drain();
    await t.cancel('order', 'o4');
    expect((await t.get('shipment', 'o4.ship'))?.status).toBe('cancelled');
    await t.cancel('shipment', 'o5.ship');
    await t.drain();
    // The invoke has no onError: XState fails the parent with the child's error.
    const o5 = await t.get('order', 'o5');
    expect(o5?.status).toBe('failed');
    expect(o5?.error).toMatchObject({ name: 'Cancelled' });
  });

  it('cancels the child record when the parent leaves the invoking state', async () => {
    t = await createTestRuntime({ machines: [durable(order)] });
    await t.create('order', { id: 'o2', input: { order_id: 'o2' } });
    await t.drain();
    await t.send('order', 'o2', { type: 'abandon' });
    await t.drain();
    expect((await t.get('order', 'o2'))?.state).toBe('abandoned');
    expect((await t.get('shipment', 'o2.ship'))?.status).toBe('cancelled');
  });

  it('fails the sender of sendToRecord to a record that does not exist', async () => {
    t = await createTestRuntime({ machines: [durable(order), durable(pinger)] });
    await t.create('pinger', { id: 'p2', input: { target: 'nobody' } });
    await t.send('pinger', 'p2', { type: 'go' });
    await t.drain();
    const p = await t.get('pinger', 'p2');
    expect(p?.status).toBe('failed');
    expect(p?.error).toMatchObject({ name: UndeliverableMessageError.name });
  });

  it('keeps a spawned child ref in context across restores and sends to it through the ref', async () => {
    const counter = setup({}).createMachine({
      id: 'counter',
      context: { n: 0 },
      on: { inc: { actions: [assign({ n: ({ context }) => context.n + 1 }), sendParent(({ context }) => ({ type: 'count', n: context.n }))] } },
    });
    const owner = setup({
      types: { context: {} as { ref?: AnyActorRef; last: number } },
      actors: { counter },
    }).createMachine({
      id: 'owner',
      context: { last: 0 },
      on: {
        start: { actions: assign({ ref: ({ spawn }) => spawn('counter', { id: 'k' }) }) },
        bump: { actions: sendTo(({ context }) => context.ref as AnyActorRef, { type: 'inc' }) },
        count: { actions: assign({ last: ({ event }) => (event as unknown as { n: number }).n }) },
      },
    });
    t = await createTestRuntime({ machines: [durable(owner)] });
    await t.create('owner', { id: 'w1' });
    await t.send('owner', 'w1', { type: 'start' });
    await t.drain();
    // Each step restores the record from its stored row: the ref comes back from the snapshot's children.
    await t.send('owner', 'w1', { type: 'bump' });
    await t.drain();
    await t.send('owner', 'w1', { type: 'bump' });
    await t.drain();
    expect((await t.get('counter', 'w1.k'))?.context).toEqual({ n: 2 });
    expect((await t.get('owner', 'w1'))?.context).toMatchObject({ last: 2 });
  });

  it('fails a root record that calls sendParent', async () => {
    const orphan = createMachine({ id: 'orphan', initial: 'a', states: { a: { on: { go: { actions: sendParent({ type: 'x' }) } } } } });
    t = await createTestRuntime({ machines: [durable(orphan)] });
    await t.create('orphan', { id: 'r1' });
    await t.send('orphan', 'r1', { type: 'go' });
    await t.drain();
    expect((await t.get('orphan', 'r1'))?.error).toMatchObject({ name: UndeliverableMessageError.name });
  });
});
