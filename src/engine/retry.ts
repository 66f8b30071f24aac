import type { StoredFailure } from '../db/queries.js';
import { NotFailedError, RecordNotFoundError, SnapshotRestoreError } from '../errors.js';
import type { DurableMachine } from '../record/durable.js';
import { restoreSnapshot, stateString } from '../record/state.js';
import { deliverableFor } from './actors.js';
import { type RecordState, retryStep, type StepItem, type Timer } from '../record/step.js';
import type { EngineContext } from './context.js';
import { type PendingStep, reviveEvent } from './records.js';

/** Options of `retry()`. */
export interface RetryOptions {
  /** Drop the event whose step failed instead of applying it again. Default false. */
  skipEvent?: boolean;
}

/** An invocation failure's invocation id: the failed event is its error and the record had it as a child. */
function failedInvocation(event: { type: string }, snapshot: { children?: Record<string, unknown> }): string | undefined {
  const prefix = 'xstate.error.actor.';
  if (!event.type.startsWith(prefix)) return undefined;
  const id = event.type.slice(prefix.length);
  return snapshot.children && id in snapshot.children ? id : undefined;
}

/**
 * The step that takes a failed record back: read it, restore the record as it was before the
 * failed step, and fold the failed event again (or drop it). A failed invocation is started
 * again with a fresh attempt budget instead (dropped with `skipEvent`). A snapshot that did
 * not restore is restored with the machine as it is now. Returns the step for the queue's
 * writer to persist, guarded by the row version the record was read at.
 */
export async function prepareRetry(ctx: EngineContext, machine: string, id: string, options: RetryOptions): Promise<{ def: DurableMachine; step: PendingStep }> {
  const row = await ctx.queries.failedInstance(ctx.db, { machine, id });
  if (!row) throw new RecordNotFoundError(machine, id);
  if (row.status !== 'failed') throw new NotFailedError(machine, id, row.status);
  const def = ctx.registry.get(machine, row.version);
  const failure: StoredFailure = row.failure ?? { kind: 'restore' };
  const now = ctx.clock.now();
  // A step failure goes back to the record before the failed event; a restore failure keeps the row as stored.
  const before =
    failure.kind === 'step'
      ? { snapshot: failure.snapshot, enteredAt: failure.entered_at, timers: failure.timers }
      : { snapshot: row.snapshot, enteredAt: row.entered_at.getTime(), timers: row.timers };
  let record: RecordState;
  try {
    const snapshot = restoreSnapshot(def.machine, before.snapshot);
    const state = stateString(snapshot.value, def.machine);
    record = { snapshot, state, status: 'active', enteredAt: before.enteredAt, timers: before.timers as Timer[], seq: row.seq };
  } catch (err) {
    throw new SnapshotRestoreError(machine, id, err);
  }
  const skipEvent = options.skipEvent === true;
  const invocation = failure.kind === 'step' ? failedInvocation(failure.event, record.snapshot as { children?: Record<string, unknown> }) : undefined;
  const items: StepItem[] =
    failure.kind === 'step' && !skipEvent && invocation === undefined
      ? [{ kind: 'event', eventId: '', event: reviveEvent(failure.event), at: now }]
      : [];
  const event = { type: 'drover.retry', ...(skipEvent ? { skipEvent: true } : {}) };
  const fold = (missing?: ReadonlySet<string>) => {
    const out = retryStep(def, record, row.state, event, items, now, { deliverable: deliverableFor(row.links, missing) });
    out.consumedEventIds = []; // the failed event is applied from the failure, not the inbox
    if (invocation !== undefined && !skipEvent && out.status === 'active') {
      // The child as XState made it when the state was entered: its logic and input.
      const child = (record.snapshot.children as Record<string, { src?: unknown; getSnapshot?: () => { input?: unknown } }>)[invocation];
      const src = typeof child?.src === 'string' ? child.src : undefined;
      if (src !== undefined) out.spawns.set(invocation, { id: invocation, src, input: child?.getSnapshot?.().input });
    }
    return out;
  };
  const out = fold();
  return {
    def,
    step: {
      machine,
      id,
      version: row.version,
      def,
      rowVersion: row.row_version,
      links: row.links,
      refold: fold,
      // Events that waited behind the failed one make the record due at once.
      eventSeq: row.pending ? '-1' : row.event_seq,
      children: [],
      out,
      reserved: new Map(),
      failedAttempt: 0,
      enteredBefore: record.enteredAt,
    },
  };
}
