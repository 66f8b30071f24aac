import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { createMachine, setup } from 'xstate';
import { z } from 'zod';
import {
  createRuntime,
  defineJob,
  durable,
  InvalidArgumentError,
  InvalidInputError,
  type Page,
  type RecordOf,
  type RecordView,
  type Runtime,
  UnknownMachineError,
} from '../../src/index.js';
import { order, type OrderContext } from '../../machines/order.js';

// The runtime is typed by its machines. Each `@ts-expect-error` below is a typo the compiler
// must refuse (`npm run lint` type-checks this file: an expected error that does not happen
// fails it); the same calls run here too, so the runtime refuses them as well.

const shipment = durable(
  setup({
    types: {
      context: {} as { shipment_id: string; parcels: number },
      input: {} as { shipment_id: string },
      events: {} as { type: 'pack'; parcels: number } | { type: 'send' },
    },
  }).createMachine({
    id: 'shipment',
    initial: 'open',
    context: ({ input }) => ({ shipment_id: input.shipment_id, parcels: 0 }),
    states: {
      open: { on: { pack: { target: 'packing.boxed', actions: ({ event }) => void event.parcels } } },
      packing: { initial: 'boxed', states: { boxed: { on: { send: '#shipment.sent' } }, labelled: {} } },
      sent: { type: 'final' },
    },
  }),
);

const cleanup = defineJob('cleanup', async (args: { days: number }) => ({ purged: args.days * 2 }));

/** With a validator, create() takes the validator's input type (before defaults and transforms): `total` is optional. */
const invoice = durable(
  setup({ types: { context: {} as { total: number }, input: {} as { total: number } } }).createMachine({
    id: 'invoice',
    initial: 'open',
    context: ({ input }) => ({ total: input.total }),
    states: { open: {} },
  }),
  { input: z.object({ total: z.number().default(0) }) },
);

/** A machine without types keeps the loose API. */
const plain = durable(createMachine({ id: 'plain', initial: 'a', states: { a: { on: { go: 'b' } }, b: {} } }));

describe('a runtime typed by its machines', () => {
  let rt: Runtime<typeof order | typeof shipment | typeof cleanup | typeof invoice>;
  beforeAll(async () => {
    rt = await createRuntime({ machines: [order, shipment, cleanup, invoice] });
    await rt.start();
  });
  afterAll(async () => {
    await rt.stop();
  });

  it('checks machine names', async () => {
    // @ts-expect-error a machine the runtime does not have
    await expect(rt.create('ordr', { input: { order_id: 'o', amount: 1 } })).rejects.toBeInstanceOf(UnknownMachineError);
    // @ts-expect-error a misspelt machine name
    await expect(rt.get('shipmnt', 'x')).rejects.toBeInstanceOf(UnknownMachineError);
    // @ts-expect-error counts() of an unknown machine
    await expect(rt.counts({ machine: 'nope' })).rejects.toBeInstanceOf(UnknownMachineError);
    expectTypeOf(order.name).toEqualTypeOf<'order'>();
    expectTypeOf(cleanup.name).toEqualTypeOf<'cleanup'>();
  });

  it('types input from the machine, or from its validator', async () => {
    const o = await rt.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 20 } });
    expectTypeOf(o.context).toEqualTypeOf<OrderContext>();
    expect(o.context.order_id).toBe('o-1');
    // @ts-expect-error orderId is not order_id, and amount is a number
    const bad = await rt.create('order', { input: { orderId: 42, amount: '20' } });
    // Without a validator only the compiler catches it: the record starts from the wrong input.
    expect(bad.context.order_id).toBeUndefined();
    const i = await rt.create('invoice', { input: {} });
    expectTypeOf(i.context).toEqualTypeOf<{ total: number }>();
    expect(i.context.total).toBe(0);
    // @ts-expect-error the validator takes a number
    await expect(rt.create('invoice', { input: { total: 'twelve' } })).rejects.toBeInstanceOf(InvalidInputError);
    expectTypeOf(rt.createMany<'shipment'>).parameter(1).toEqualTypeOf<readonly import('../../src/index.js').CreateManyItem<{ shipment_id: string }>[]>();
  });

  it('types events, states and values', async () => {
    await rt.create('shipment', { id: 's-1', input: { shipment_id: 's-1' } });
    // @ts-expect-error a misspelt event type
    await expect(rt.send('shipment', 's-1', { type: 'pakc', parcels: 1 })).rejects.toThrow();
    // @ts-expect-error an event without its payload
    await rt.send('shipment', 's-1', { type: 'pack' }).catch(() => null);
    await rt.send('shipment', 's-1', { type: 'pack', parcels: 2 });
    const packed = await rt.waitFor('shipment', 's-1', { state: 'packing' });
    expectTypeOf(packed.value).toEqualTypeOf<'open' | 'sent' | { packing: 'boxed' | 'labelled' }>();
    expectTypeOf(packed.state).toEqualTypeOf<'open' | 'sent' | 'packing.boxed' | 'packing.labelled'>();
    expect(packed.state).toBe('packing.boxed');
    await rt.waitFor('shipment', 's-1', { state: { packing: 'boxed' } }, { timeoutMs: 1000 });
    // @ts-expect-error a state the machine does not have
    await expect(rt.waitFor('shipment', 's-1', { state: 'shippd' }, { timeoutMs: 50 })).rejects.toThrow();
    const page = await rt.list('shipment', { state: 'packing.boxed' });
    expectTypeOf(page).toEqualTypeOf<Page<RecordOf<typeof shipment>>>();
    expect(page.items.map((r) => r.context.shipment_id)).toEqual(['s-1']);
    // @ts-expect-error `list({ state })` takes the machine's states
    await expect(rt.list('shipment', { state: 'nope' })).resolves.toEqual({ items: [], next: null });
    const got = await rt.get('shipment', 's-1');
    expectTypeOf(got).toEqualTypeOf<RecordOf<typeof shipment> | null>();
    await rt.waitFor('shipment', 's-1', (r) => {
      expectTypeOf(r.context.parcels).toEqualTypeOf<number>();
      return r.context.parcels === 0;
    });
  });

  it('types defineJob args', async () => {
    const job = await rt.create('cleanup', { input: { days: 30 } });
    expectTypeOf(job.context).toEqualTypeOf<{ args: { days: number } }>();
    // @ts-expect-error days is a number
    await rt.create('cleanup', { input: { days: '30' } }).catch(() => null);
    // @ts-expect-error the job takes days, not weeks
    await rt.create('cleanup', { input: { weeks: 4 } }).catch(() => null);
  });

  it('is still a Runtime, for code that takes any runtime', async () => {
    const names = async (r: Runtime) => (await r.counts()).map((c) => c.machine);
    expect(await names(rt)).toContain('shipment');
  });
});

describe('a runtime of untyped machines', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await createRuntime({ machines: [plain] as const });
    await rt.start();
  });
  afterAll(async () => {
    await rt.stop();
  });

  it('keeps the loose types: any name, any event, Record context', async () => {
    const r = await rt.create('plain', { id: 'p-1' });
    expectTypeOf(r).toEqualTypeOf<RecordView>();
    await rt.send('plain', 'p-1', { type: 'go', any: 'field' });
    const b = await rt.waitFor('plain', 'p-1', { state: 'b' });
    expect(b.state).toBe('b');
    const name: string = 'pl' + 'ain';
    expect((await rt.get(name, 'p-1'))?.state).toBe('b');
    await expect(rt.list('plain', { state: 7 as unknown as string })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('a typed machine among untyped ones keeps its types; other names are loose', async () => {
    const mixed = await createRuntime({ machines: [plain, shipment] });
    try {
      const s = await mixed.create('shipment', { input: { shipment_id: 'm-1' } });
      expectTypeOf(s.context).toEqualTypeOf<{ shipment_id: string; parcels: number }>();
      const p = await mixed.create('plain');
      expectTypeOf(p.context).toEqualTypeOf<Record<string, unknown>>();
    } finally {
      await mixed.stop();
    }
  });
});
