import type { EventObject } from 'xstate';
import type { RecordStatus, TransitionRow } from '../record/step.js';

/** A committed transition as subscribers see it. */
export interface TransitionMessage {
  id: string;
  machine: string;
  version: number;
  from: string | null;
  to: string;
  status: RecordStatus;
  event: EventObject;
  at: Date;
  seq: number;
  /** Every context field whose name ends in `_id`, at this transition. */
  ids: Record<string, unknown>;
  /** W3C trace context of the request behind it, when known (NATS messages carry it). */
  traceparent?: string | null;
}

/** The messages for a record's committed transitions. */
export function transitionMessages(id: string, machine: string, version: number, transitions: TransitionRow[]): TransitionMessage[] {
  return transitions.map((t) => ({
    id,
    machine,
    version,
    from: t.from,
    to: t.to,
    status: t.status,
    event: t.event,
    at: new Date(t.at),
    seq: t.seq,
    ids: t.ids ?? {},
  }));
}

/** Which transitions a subscriber wants; every field is optional. */
export interface TransitionFilter {
  machine?: string;
  /** Target state: exact, or a parent (`b` matches `b.x`). */
  to?: string;
  from?: string;
}

type Handler = (t: TransitionMessage) => void | Promise<void>;

/** Whether a state string matches a filter: itself, a child (`b` → `b.x`), or a parallel leaf. */
export const statePrefixMatch = (want: string | undefined, got: string | null) =>
  want === undefined || got?.split(',').some((leaf) => leaf === want || leaf.startsWith(`${want}.`));

/**
 * The in-process bus: transitions committed by this runtime reach this runtime's
 * subscribers, in commit order. A handler's error is logged and does not stop delivery.
 */
export class LocalBus {
  private readonly subscribers = new Set<{ filter: TransitionFilter; handler: Handler }>();
  constructor(private readonly onError: (err: unknown) => void) {}

  subscribe(filter: TransitionFilter, handler: Handler): () => void {
    const entry = { filter, handler };
    this.subscribers.add(entry);
    return () => {
      this.subscribers.delete(entry);
    };
  }

  publish(messages: TransitionMessage[]): void {
    if (this.subscribers.size === 0) return;
    for (const t of messages) {
      for (const { filter, handler } of this.subscribers) {
        if (filter.machine !== undefined && filter.machine !== t.machine) continue;
        if (!statePrefixMatch(filter.to, t.to) || !statePrefixMatch(filter.from, t.from)) continue;
        try {
          const result = handler(t);
          if (result && typeof result.then === 'function') result.then(undefined, this.onError);
        } catch (err) {
          this.onError(err);
        }
      }
    }
  }
}
