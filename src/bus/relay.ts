import type { Database } from '../db/database.js';
import { backoffMs } from '../db/database.js';
import { createOutboxQueries, type EmitOutboxRow, type OutboxRow, type ParkedRow, type PublishError } from '../db/outbox-queries.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { done, type HandlerResult, none } from '../supervisor/results.js';
import type { Clock } from '../time.js';
import type { NatsBus, PublishResult } from './nats.js';

/** What one relay pass did. */
export interface RelayPass {
  /** Rows read from the outbox: the larger of the transitions and the emitted events read (each at most the batch size). */
  read: number;
  /** Rows published and marked: transitions and emitted events. */
  published: number;
  /** Rows parked: NATS refused the message itself. */
  parked: number;
  /** The stream was missing and this pass re-created it; the rows it could not publish wait for the next pass. */
  recreated: boolean;
  /** Why some rows were neither published nor parked (NATS away, a timeout); they stay in the outbox. */
  failure?: unknown;
}

/** The error as stored in `transitions.publish_error`. */
function publishError(err: unknown): PublishError {
  return { name: err instanceof Error ? err.name : 'Error', message: errorMessage(err) };
}

/**
 * The outbox relay: publishes committed transition rows, then emitted events (`effects` rows
 * of kind `emitted`), to JetStream in id order, then marks them published, all inside one
 * transaction that holds an advisory lock, so one relay in the fleet publishes at a time and
 * each record's transitions (and emitted events) go out in commit order. A crash
 * between publish and mark re-publishes the batch; the stream drops the duplicates by
 * `Nats-Msg-Id`. NATS down: the publish fails, the rows acked before are marked, the rest waits.
 * A row NATS refuses outright is parked with its error, so it never holds up the others; a
 * missing stream is re-created.
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

  /** One pass, or null when another node's relay holds the lock. Rejects only when nothing could be done (NATS disconnected, the database away). */
  async function relayOnce(): Promise<RelayPass | null> {
    if (!deps.bus.connected) throw new Error('NATS is disconnected');
    return deps.db.transaction(async (tx) => {
      if (!(await sql.tryLock(tx, { key: lockKey }))) return null;
      // A mark lost in a crash only re-publishes, which the stream drops: no need to wait for the WAL flush.
      if (deps.db.kind === 'pg') await sql.commitWithoutFlush(tx);
      const rows = await sql.unpublished(tx, { limit: batch });
      const emits = await sql.unpublishedEmits(tx, { limit: batch });
      const pass: RelayPass = { read: Math.max(rows.length, emits.length), published: 0, parked: 0, recreated: false };
      if (rows.length === 0 && emits.length === 0) return pass;
      const now = new Date(deps.clock.now());
      let streamMissing = false;
      /** Parks what NATS refused, keeps the first failure; resolves to the ids acked. */
      const settle = async (
        results: PublishResult[],
        park: (i: number, error: unknown) => Promise<void>,
        key: (i: number) => string,
      ): Promise<string[]> => {
        const acked: string[] = [];
        for (const [i, result] of results.entries()) {
          if (result.ok) {
            acked.push(key(i));
          } else if (result.refused) {
            // Publishing it again would fail again and hold the outbox forever: park it, once.
            await park(i, result.error);
            pass.parked += 1;
          } else {
            pass.failure ??= result.error;
            streamMissing ||= result.streamMissing;
          }
        }
        return acked;
      };
      if (rows.length > 0) {
        const results = await deps.bus.publishTransitions(
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
        const acked = await settle(
          results,
          async (i, error) => {
            const row = rows[i] as OutboxRow;
            await sql.park(tx, { id: row.tid, at: now, error: publishError(error) });
            deps.logger.warn(
              { machine: row.machine, id: row.instance_id, seq: row.seq, err: errorMessage(error) },
              'drover: transition cannot be published; parked, the rest of the outbox goes on',
            );
          },
          (i) => (rows[i] as OutboxRow).tid,
        );
        // Acks already received stay recorded even when later rows failed: they are not re-published.
        if (acked.length > 0) pass.published += await sql.markPublished(tx, { ids: acked, at: now });
      }
      if (emits.length > 0) {
        const results = await deps.bus.publishEmits(
          emits.map((r) => ({
            // The effect id is unique in the schema; the schema in it keeps two schemas on one stream apart.
            msgId: `emit:${deps.schema}:${r.eid}`,
            message: {
              id: r.instance_id,
              machine: r.machine,
              version: r.version,
              event: r.event,
              state: r.state,
              seq: r.seq,
              ids: r.ids ?? {},
              at: r.at,
              effectId: r.eid,
            },
          })),
        );
        const acked = await settle(
          results,
          async (i, error) => {
            const row = emits[i] as EmitOutboxRow;
            await sql.parkEmit(tx, { id: row.eid, at: now, error: publishError(error) });
            deps.logger.warn(
              { machine: row.machine, id: row.instance_id, type: row.event.type, err: errorMessage(error) },
              'drover: emitted event cannot be published; parked, the rest of the outbox goes on',
            );
          },
          (i) => (emits[i] as EmitOutboxRow).eid,
        );
        if (acked.length > 0) pass.published += await sql.markEmitsPublished(tx, { ids: acked, at: now });
      }
      if (streamMissing) {
        try {
          pass.recreated = await deps.bus.restoreStream();
          if (pass.recreated) delete pass.failure;
        } catch (err) {
          pass.failure = err; // JetStream really away: the marks above still commit
        }
      }
      return pass;
    });
  }

  return {
    relayOnce,
    /** The relay as a supervised worker: woken by commits, else it looks every `idleMs`. */
    async handler(): Promise<HandlerResult> {
      const wait = retryAt - deps.clock.now();
      if (failures > 0 && wait > 0) return none(wait);
      let pass: RelayPass | null;
      try {
        pass = await relayOnce();
        if (pass?.failure !== undefined) throw pass.failure;
      } catch (err) {
        // NATS or the database is away: what was not acked is not marked; back off and try again.
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
      if (pass === null) return none(Math.min(100, deps.idleMs)); // another node relays; look again soon
      return pass.read === batch || pass.recreated ? done() : none(deps.idleMs);
    },
    /** Parked transitions (oldest first, up to `limit`) and how many there are in all, for the operator. */
    async parked(limit = 100): Promise<{ count: number; rows: ParkedRow[] }> {
      const [count, rows] = [await sql.parkedCount(deps.db), await sql.parked(deps.db, { limit })];
      return { count, rows };
    },
  };
}
