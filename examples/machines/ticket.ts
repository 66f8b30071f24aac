import { setup } from 'xstate';
import { type CheckOptions, durable } from '../../src/index.js';

/**
 * A support ticket of `examples/residency.ts`: open → triaged → in_progress → resolved, with a
 * 400 ms residency budget in `triaged` (the SLA watch counts breaches). In a machines folder of
 * its own so `drover check examples/machines` checks it in CI.
 */
export const ticket = durable(
  setup({ types: { context: {} as { ticket_id: string }, input: {} as { ticket_id: string } } }).createMachine({
    id: 'ticket',
    initial: 'open',
    context: ({ input }) => ({ ticket_id: input.ticket_id }),
    states: {
      open: { on: { triage: 'triaged' } },
      triaged: { on: { start: 'in_progress' } },
      in_progress: { on: { resolve: 'resolved' } },
      resolved: { type: 'final' },
    },
  }),
  { residency: { triaged: { sla: '400ms' } } },
);

/** What `drover check` starts a ticket from. */
export const checkOptions = { ticket: { input: { ticket_id: 't-1' } } } satisfies Record<string, CheckOptions>;
