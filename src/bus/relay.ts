import type { Database } from '../db/database.js';
import { backoffMs } from '../db/database.js';
import { createOutboxQueries } from '../db/outbox-queries.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { done, type HandlerResult, none } from '../supervisor/results.js';
import type { Clock } from '../time.js';
import type { NatsBus } from './nats.js';

/**
 * The outbox relay: publishes committed transition rows to JetStream in id order, then marks
 * them published, all inside one transaction that holds an advisory lock, so one relay in the
 * fleet publishes at a time and each record's transitions go out in commit order. A crash
 * between publish and mark re-publishes the batch; the stream drops the duplicates by
 * `Nats-Msg-Id`. NATS down: the publish fails, nothing is marked, the outbox waits.
 */
export function createRelay(deps: {
  db: Database;
  schema: string;
  bus: NatsBus;
  clock: Clock;
  logger: Logger;
  batchSize?: number;
  idleMs: number;
}) {
  let failures = 0;
  let retryAt = 0; // while failing, commits do not cut the backoff short
  const sql = createOutboxQueries(deps.schema);
  const batch = deps.batchSize ?? 256;
  const lockKey = `drover.relay.${deps.schema}`;

  /** One pass; returns how many rows it published, or null when another node's relay holds the lock. */
  async function relayOnce(): Promise<number | null> {
    if (!deps.bus.connected) throw new Error('NATS is disconnected');
    return deps.db.transaction(async (tx) => {
      if (!(await sql.tryLock(tx, { key: lockKey }))) return null;
      // A mark lost in a crash only re-publishes, which the stream drops: no need to wait for the WAL flush.
      if (deps.db.kind === 'pg') await sql.commitWithoutFlush(tx);
      const rows = await sql.unpublished(tx, { limit: batch });
      if (rows.length === 0) return 0;
      await deps.bus.publishTransitions(
        rows.map((r) => ({
          id: r.instance_id,
          machine: r.machine,
          version: r.version,
          from: r.from_state,
          to: r.to_state,
          status: r.status,
          event: r.event,
          at: r.at,
          seq: r.seq,
          ids: r.ids ?? {},
          traceparent: r.traceparent,
        })),
      );
      await sql.markPublished(tx, { ids: rows.map((r) => r.tid), at: new Date(deps.clock.now()) });
      return rows.length;
    });
  }

  return {
    relayOnce,
    /** The relay as a supervised worker: woken by commits, else it looks every `idleMs`. */
    async handler(): Promise<HandlerResult> {
      const wait = retryAt - deps.clock.now();
      if (failures > 0 && wait > 0) return none(wait);
      let n: number | null;
      try {
        n = await relayOnce();
      } catch (err) {
        // NATS or the database is away: nothing was marked; back off and try again.
        failures += 1;
        if (failures === 1 || failures % 20 === 0) {
          deps.logger.warn({ err: errorMessage(err), failures }, 'drover: outbox relay cannot publish; transitions wait in the outbox');
        }
        const delay = backoffMs(failures, 100, 5000);
        retryAt = deps.clock.now() + delay;
        return none(delay);
      }
      if (failures > 0) deps.logger.info({ failures }, 'drover: outbox relay publishing again');
      failures = 0;
      if (n === null) return none(Math.min(100, deps.idleMs)); // another node relays; look again soon
      return n === batch ? done() : none(deps.idleMs);
    },
  };
}
