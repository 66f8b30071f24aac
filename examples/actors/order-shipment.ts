import { assign, emit, fromPromise, sendParent, setup } from 'xstate';
import { type CheckOptions, durable } from '../../src/index.js';

/**
 * Records as actors (docs/actors.md): a `fulfilment` record invokes a `shipment` machine,
 * which becomes a child record of its own (`shipment`, id `<order id>.ship`). The shipment
 * books a courier (a fromPromise step), reports progress to its parent with `sendParent`,
 * waits for the pickup (`after` timer or a `picked_up` event) and finishes with its tracking
 * number as output. The fulfilment takes that output in `onDone` and emits `order.receipt`,
 * which `runtime.on('fulfilment', 'order.receipt', …)` hears once its step has committed.
 * Not in examples/machines/ yet: `drover check` does not follow child machines (docs/actors.md);
 * `examples/shipments.ts` runs them.
 */
const shipmentMachine = setup({
  types: {
    input: {} as { order_id: string },
    context: {} as { order_id: string; courier?: string },
    events: {} as { type: 'picked_up' },
    output: {} as { tracking: string; courier: string },
  },
  actors: {
    book: fromPromise(async ({ input }: { input: { order_id: string } }) => ({ courier: `courier-for-${input.order_id}` })),
  },
  delays: { pickupWindow: 1000 },
}).createMachine({
  id: 'shipment',
  initial: 'booking',
  context: ({ input }) => ({ order_id: input.order_id }),
  states: {
    booking: {
      invoke: {
        id: 'book',
        src: 'book',
        input: ({ context }) => ({ order_id: context.order_id }),
        onDone: {
          target: 'awaiting_pickup',
          actions: [
            assign({ courier: ({ event }) => event.output.courier }),
            sendParent(({ event }) => ({ type: 'shipment.booked', courier: event.output.courier })),
          ],
        },
      },
    },
    awaiting_pickup: {
      // The courier calls in with `picked_up`; without it the pickup counts as done after the window.
      after: { pickupWindow: 'in_transit' },
      on: { picked_up: 'in_transit' },
    },
    in_transit: {
      entry: sendParent({ type: 'shipment.picked_up' }),
      always: 'delivered',
    },
    delivered: { type: 'final' },
  },
  output: ({ context }) => ({ tracking: `T-${context.order_id}`, courier: context.courier ?? 'unknown' }),
});

/**
 * The child machine registered on its own (examples/shipments.ts passes both). Without this, a
 * runtime given only `fulfilment` registers it anyway, as `durable(shipmentMachine)` with the
 * defaults; register it yourself to give it options (a queue, retries, a version).
 */
export const shipment = durable(shipmentMachine);

/** The parent: `paid` invokes the shipment; its output comes back as `xstate.done.actor.ship`. */
export const fulfilment = durable(
  setup({
    types: {
      input: {} as { order_id: string },
      context: {} as { order_id: string; courier?: string; picked_up: boolean; tracking?: string },
      events: {} as { type: 'pay' } | { type: 'shipment.booked'; courier: string } | { type: 'shipment.picked_up' } | { type: 'cancel' },
      emitted: {} as { type: 'order.receipt'; order_id: string; tracking: string },
    },
    actors: { shipment: shipmentMachine },
  }).createMachine({
    id: 'fulfilment',
    initial: 'awaiting_payment',
    context: ({ input }) => ({ order_id: input.order_id, picked_up: false }),
    states: {
      awaiting_payment: { on: { pay: 'shipping', cancel: 'cancelled' } },
      shipping: {
        invoke: {
          id: 'ship',
          src: 'shipment',
          input: ({ context }) => ({ order_id: context.order_id }),
          onDone: {
            target: 'completed',
            actions: [
              assign({ tracking: ({ event }) => event.output.tracking }),
              emit(({ context, event }) => ({ type: 'order.receipt' as const, order_id: context.order_id, tracking: event.output.tracking })),
            ],
          },
          onError: 'shipping_failed',
        },
        on: {
          'shipment.booked': { actions: assign({ courier: ({ event }) => event.courier }) },
          'shipment.picked_up': { actions: assign({ picked_up: true }) },
          // Leaving `shipping` stops the invoke: the shipment record is cancelled with it.
          cancel: 'cancelled',
        },
      },
      completed: { type: 'final' },
      shipping_failed: { type: 'final' },
      cancelled: { type: 'final' },
    },
  }),
);

/** What `drover check examples/actors` would start each machine from, and the outputs it delivers. */
export const checkOptions = {
  fulfilment: { input: { order_id: 'o-1' }, outputs: { ship: { tracking: 'T-o-1', courier: 'courier-for-o-1' } } },
  shipment: { input: { order_id: 'o-1' }, outputs: { book: { courier: 'courier-for-o-1' } } },
} satisfies Record<string, CheckOptions>;
