import { InvalidArgumentError } from '../errors.js';
import {
  type Bus,
  type BusHandlers,
  type EmittedFilter,
  emittedMatch,
  type EmittedMessage,
  statePrefixMatch,
  type TransitionFilter,
  type TransitionMessage,
  type Unsubscribe,
} from './bus.js';

type Handler = (t: TransitionMessage) => void | Promise<void>;
type EmittedHandler = (e: EmittedMessage) => void | Promise<void>;

/**
 * The in-process bus: transitions committed by this runtime reach this runtime's
 * subscribers, and its emitted events its `on()` listeners, in commit order. A handler's
 * error is logged and does not stop delivery.
 * Other nodes are woken by the database's NOTIFY, so the notices are no-ops here.
 */
export class LocalBus implements Bus {
  readonly outbox = false;
  private readonly subscribers = new Set<{ filter: TransitionFilter; handler: Handler }>();
  private readonly listeners = new Set<{ filter: EmittedFilter; handler: EmittedHandler }>();
  constructor(private readonly onError: (err: unknown) => void) {}

  async start(_handlers: BusHandlers): Promise<void> {}

  subscribe(filter: TransitionFilter, handler: Handler, durable?: string): Unsubscribe {
    if (durable !== undefined) {
      throw new InvalidArgumentError('a durable subscription needs NATS (the `nats` option); the in-process bus delivers live transitions only');
    }
    return listen(this.subscribers, { filter, handler });
  }

  publish(messages: TransitionMessage[]): void {
    if (this.subscribers.size === 0) return;
    for (const t of messages) {
      for (const { filter, handler } of this.subscribers) {
        if (filter.machine !== undefined && filter.machine !== t.machine) continue;
        if (!statePrefixMatch(filter.to, t.to) || !statePrefixMatch(filter.from, t.from)) continue;
        this.call(handler, t);
      }
    }
  }

  onEmitted(filter: EmittedFilter, handler: EmittedHandler): Unsubscribe {
    return listen(this.listeners, { filter, handler });
  }

  publishEmitted(events: EmittedMessage[]): void {
    if (this.listeners.size === 0) return;
    for (const e of events) {
      for (const { filter, handler } of this.listeners) {
        if (emittedMatch(filter, e)) this.call(handler, e);
      }
    }
  }

  /** Calls a handler; what it throws or rejects with is logged, never passed on. */
  private call<T>(handler: (m: T) => void | Promise<void>, message: T): void {
    try {
      const result = handler(message);
      if (result && typeof result.then === 'function') result.then(undefined, this.onError);
    } catch (err) {
      this.onError(err);
    }
  }

  announceWork(): void {}
  announceControl(): void {}
  async publishBreach(): Promise<void> {}
  async close(): Promise<void> {
    this.subscribers.clear();
    this.listeners.clear();
  }
}

/** Adds `entry` to `set` until the returned function is called; ready at once (nothing to set up in process). */
function listen<T>(set: Set<T>, entry: T): Unsubscribe {
  set.add(entry);
  const off = () => {
    set.delete(entry);
  };
  return Object.assign(off, { ready: Promise.resolve() });
}
