import { assign, fromPromise, setup } from 'xstate';
import { type CheckOptions, durable } from '../src/index.js';

/** What an order record holds. Context is stored as JSON. */
export interface OrderContext {
  order_id: string;
  amount: number;
  /** How long to wait for payment before the order expires (a durable timer). */
  paymentWindowMs: number;
  receipt: string | null;
}

/** Stands in for a payment provider: slow, and it declines large amounts. */
const charge = fromPromise<{ receipt: string }, OrderContext>(async ({ input, signal }) => {
  await new Promise((resolve) => setTimeout(resolve, 200));
  if (signal.aborted) throw new Error('charge aborted');
  if (input.amount > 1000) throw new Error(`card declined for ${input.amount}`);
  return { receipt: `rcpt-${input.order_id}` };
});

/**
 * An order: waits for payment (or expires after its payment window), charges the card in an
 * invoked promise, and ends shipped, expired, cancelled or payment_failed.
 */
export const order = durable(
  setup({
    types: {
      context: {} as OrderContext,
      input: {} as { order_id: string; amount: number; paymentWindowMs?: number },
      events: {} as { type: 'payment.confirmed' } | { type: 'cancel' },
    },
    actors: { charge },
    // Named delays may read context; XState resolves them to milliseconds.
    delays: { paymentWindow: ({ context }) => context.paymentWindowMs },
  }).createMachine({
    id: 'order',
    initial: 'awaiting_payment',
    context: ({ input }) => ({
      order_id: input.order_id,
      amount: input.amount,
      paymentWindowMs: input.paymentWindowMs ?? 24 * 60 * 60 * 1000,
      receipt: null,
    }),
    states: {
      awaiting_payment: {
        on: { 'payment.confirmed': 'charging', cancel: 'cancelled' },
        after: { paymentWindow: 'expired' },
      },
      charging: {
        invoke: {
          src: 'charge',
          input: ({ context }) => context,
          onDone: { target: 'shipped', actions: assign({ receipt: ({ event }) => event.output.receipt }) },
          onError: 'payment_failed',
        },
      },
      shipped: { type: 'final' },
      expired: { type: 'final' },
      cancelled: { type: 'final' },
      payment_failed: { type: 'final' },
    },
  }),
  { version: 1, queue: 'orders', residency: { awaiting_payment: { sla: '1h' } } },
);

/**
 * What `drover check` runs the order with (docs/machines.md, "Checking a machine survives
 * persistence"): an input to start from, and what the invoked `charge` resolves with (the
 * check never runs invoked actors; it delivers their result).
 */
export const checkOptions = {
  order: { input: { order_id: 'o-1', amount: 10 }, outputs: { charge: { receipt: 'rcpt-o-1' } } },
} satisfies Record<string, CheckOptions>;
