import type { EventObject } from 'xstate';
import type { EventRow, RecordLinks } from '../db/queries.js';
import type { DurableMachine } from '../record/durable.js';
import { restoreSnapshot } from '../record/state.js';
import type { RecordState, RecordStatus, StepItem, StepOutcome, Timer } from '../record/step.js';

// The records a poller steps: what a step is applied to, what it produced, and how due
// timers and inbox events become the items of a step.

/** What a step is applied to: a record at a known row version. */
export interface StepTarget {
  machine: string;
  id: string;
  version: number;
  def: DurableMachine;
  rowVersion: number;
  eventSeq: string;
  /** Its parent and child records (null or absent: neither). */
  links?: RecordLinks | null;
}

/** A folded step waiting to be persisted. */
export interface PendingStep extends StepTarget {
  /** Invocations the record had before the step (stopped here if it finishes). */
  children: string[];
  out: StepOutcome;
  /** Invocation slots reserved for its spawns, by invocation id. */
  reserved: Map<string, boolean>;
  /** Failed attempts of the record's invocation, when the step folds its final error (what `get().attempt` shows). */
  failedAttempt?: number | null;
  /** Folds the step again with `sendToRecord` targets found missing (record keys): the record fails on the event that sent to one. */
  refold?: (missing: ReadonlySet<string>) => StepOutcome;
  /** Called when the step did not commit. */
  onDiscard?: () => void;
  /** When the record entered the state it was in before the step (a `drover.state` span starts there). */
  enteredBefore: number;
}

/** A stored record's columns, enough to step it. */
export interface RawRecord {
  snapshot: unknown;
  state: string;
  status: string;
  entered_at: Date;
  timers: unknown;
  seq: number;
}

/** A record this node knows at a row version while one of its invocations runs here. */
export interface CachedRecord extends StepTarget {
  record?: RecordState;
  raw?: RawRecord;
}

export const recordKey = (machine: string, id: string) => `${machine}\u0000${id}`;

export function toRecordState(def: DurableMachine, raw: RawRecord): RecordState {
  return {
    snapshot: restoreSnapshot(def.machine, raw.snapshot),
    state: raw.state,
    status: raw.status as RecordStatus,
    enteredAt: raw.entered_at.getTime(),
    timers: raw.timers as Timer[],
    seq: raw.seq,
  };
}

/**
 * Due timers and inbox events merged by time. Events keep their inbox (id) order whatever
 * their timestamps say, so events sent in order are delivered in order.
 */
export function dueItems(timers: Timer[], events: EventRow[], now: number): StepItem[] {
  const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at);
  const items: StepItem[] = [];
  let i = 0;
  for (const e of events) {
    const at = e.created_at.getTime();
    while (i < due.length && (due[i] as Timer).at <= at) items.push({ kind: 'timer', timer: due[i++] as Timer });
    items.push({ kind: 'event', eventId: e.id, event: reviveEvent(e.event), at, ...(e.traceparent ? { traceparent: e.traceparent } : {}) });
  }
  while (i < due.length) items.push({ kind: 'timer', timer: due[i++] as Timer });
  return items;
}

/** Error events were stored as `{ name, message }`; machines expect an Error. */
export function reviveEvent(event: EventRow['event']): EventObject {
  if (event.type.startsWith('xstate.error.actor.') && event.error && typeof event.error === 'object') {
    const stored = event.error as { name?: string; message?: string };
    const error = new Error(stored.message ?? 'invocation failed');
    if (stored.name) error.name = stored.name;
    return { ...event, error } as EventObject;
  }
  return event as EventObject;
}
