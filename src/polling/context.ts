import type { LocalBus, TransitionMessage } from '../bus/local.js';
import type { Database } from '../db/database.js';
import type { Queries } from '../db/queries.js';
import type { Logger } from '../log.js';
import type { Telemetry } from '../otel/telemetry.js';
import type { MachineRegistry } from '../record/registry.js';
import type { Clock } from '../time.js';

/** What the pollers and the invoker share, resolved once by the runtime. */
export interface EngineContext {
  db: Database;
  queries: Queries;
  registry: MachineRegistry;
  clock: Clock;
  logger: Logger;
  /** This runtime's node id: what `locked_by` holds. */
  node: string;
  leaseMs: number;
  batchSize: number;
  concurrency: number;
  pollIntervalMs: number;
  bus: LocalBus;
  telemetry: Telemetry;
  /** Called after every commit that changed records: wakes local waiters. */
  changed(messages: TransitionMessage[]): void;
  /** Wakes the local poller of a queue. */
  wake(queue: string): void;
}

/** A sleep that `wake()` cuts short. */
export class Wakeable {
  private wakeUp: (() => void) | undefined;
  private woken = false;

  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }
}
