import type { EmittedMessage, TransitionMessage } from '../bus/bus.js';
import type { Database } from '../db/database.js';
import type { Queries } from '../db/queries.js';
import type { Logger } from '../log.js';
import type { RecordInspector } from '../inspect/records.js';
import type { Telemetry } from '../otel/telemetry.js';
import type { MachineRegistry } from '../record/registry.js';
import type { Clock } from '../time.js';

/** What the engine is built from, resolved once by the runtime. */
export interface EngineDeps {
  db: Database;
  queries: Queries;
  registry: MachineRegistry;
  clock: Required<Clock>;
  logger: Logger;
  /** This runtime's node id: what `locked_by` holds. */
  node: string;
  leaseMs: number;
  batchSize: number;
  concurrency: number;
  pollIntervalMs: number;
  /** How long `drain()` waits for running invocations. */
  shutdownGraceMs: number;
  telemetry: Telemetry;
  /** Shows every committed step to an XState inspection observer (the runtime option `inspect`). */
  inspector?: RecordInspector;
  /** The largest serialised event or input, in bytes (the runtime option `maxPayload`). Default 1 MiB. */
  maxPayload?: number;
  /**
   * Tells the other nodes that `queue` has work, due at `at` (null: now), after a write of
   * this node outside a caller's transaction (a caller's commit NOTIFYs every node itself).
   */
  announceWork(queue: string, at: number | null): void;
}

/** What the pollers and the invoker share: the engine's deps and its commit hook. */
export interface EngineContext extends EngineDeps {
  /** Every commit of this node that changed records goes through here: the bus, the relay, the waiters. */
  commits: Commits;
  /** A commit gave records of these queues work now (child records, messages): their pollers here look, other nodes are told. */
  wakeQueues?: (queues: string[]) => void;
}

/** The engine's one commit hook: whoever needs to know about committed transitions listens here. */
export class Commits {
  private readonly listeners = new Set<(messages: TransitionMessage[]) => void>();

  /** Calls `listener` after every commit of this node, with its transitions. Returns an unsubscribe. */
  onCommitted(listener: (messages: TransitionMessage[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(messages: TransitionMessage[]): void {
    for (const listener of [...this.listeners]) listener(messages);
  }

  private readonly emittedListeners = new Set<(events: EmittedMessage[]) => void>();

  /** Calls `listener` after every commit of this node whose steps emitted events (`emit()`), with them in order. */
  onEmitted(listener: (events: EmittedMessage[]) => void): () => void {
    this.emittedListeners.add(listener);
    return () => this.emittedListeners.delete(listener);
  }

  emitted(events: EmittedMessage[]): void {
    if (events.length === 0) return;
    for (const listener of [...this.emittedListeners]) listener(events);
  }
}
