import type { Database } from '../db/database.js';
import type { PruneQueries } from '../db/prune-queries.js';

/** Retention as resolved: milliseconds, or `null` for kept forever. */
export interface Retention {
  /** Done and cancelled records, by the time they finished. */
  finishedMs: number | null;
  /** Failed records (kept for `retry()`); `null` by default. */
  failedMs: number | null;
  /** History rows of any record, its creation entry and latest entry excepted. */
  historyMs: number | null;
}

/** What a prune deleted: whole records (with their history), and history rows in all. */
export interface PruneResult {
  /** Finished records deleted, with their history, inbox, invocations, SLA breaches and effects (sent, received, spawned, emitted). */
  records: number;
  /** History rows deleted: those of the records above and old ones of records kept (with a partitioned history, those of dropped partitions too). */
  transitions: number;
  /** With a partitioned history only: the whole partitions dropped ({@link partitionHistory}). */
  partitions?: number;
}

/** Rows per statement: small enough that no statement holds locks or bloats WAL for long. */
export const PRUNE_BATCH = 1000;

/**
 * Prunes what retention no longer keeps, in batches of `batch` rows per statement, each its
 * own transaction, looping until a batch comes back short. Safe on every node at once: the
 * statements skip rows another node holds. An aborted `signal` (the runtime stopping) ends it
 * after the batch in hand; the rest waits for the next run.
 *
 * With a partitioned history ({@link partitionHistory}) old history goes by whole partitions
 * instead: a partition whose range ends before the cutoff is dropped, what the rule keeps
 * moved to the default partition first, and the partitions of the next intervals are made.
 */
export async function prune(deps: {
  db: Database;
  sql: PruneQueries;
  now: number;
  retention: Retention;
  batch?: number;
  signal?: AbortSignal;
}): Promise<PruneResult> {
  const { db, sql, now, retention, signal } = deps;
  const limit = deps.batch ?? PRUNE_BATCH;
  const total: PruneResult = { records: 0, transitions: 0 };
  const rounds: ['done' | 'failed' | 'cancelled', number | null][] = [
    ['done', retention.finishedMs],
    ['cancelled', retention.finishedMs],
    ['failed', retention.failedMs],
  ];
  for (const [status, ms] of rounds) {
    if (ms === null) continue;
    const before = new Date(now - ms);
    for (;;) {
      const n = await sql.finishedRecords(db, { status, before, limit });
      total.records += n.records;
      total.transitions += n.transitions;
      if (n.records < limit || signal?.aborted) break;
      await yieldToLoop();
    }
  }
  const partitioned = await sql.partitioning(db);
  if (partitioned) {
    // A partitioned history: old rows go with their whole partition (one DROP, no DELETE of
    // rows), once the partition's range ends before the cutoff; new partitions are made ahead.
    total.partitions = 0;
    await sql.partitionsAhead(db, partitioned, new Date(now));
    if (retention.historyMs === null) return total;
    const before = new Date(now - retention.historyMs);
    for (const p of partitioned.partitions) {
      if (p.to.getTime() > before.getTime() || signal?.aborted) break;
      const n = await sql.dropPartition(db, p.name);
      if (n === 'locked') break;
      if (n === 'gone') continue;
      total.partitions += 1;
      total.transitions += n;
      await yieldToLoop();
    }
  }
  if (retention.historyMs !== null) {
    const before = new Date(now - retention.historyMs);
    const oldHistory = partitioned ? sql.keptHistory : sql.oldHistory;
    for (;;) {
      const n = await oldHistory(db, { before, limit });
      total.transitions += n;
      if (n < limit || signal?.aborted) break;
      await yieldToLoop();
    }
  }
  return total;
}

/** Lets the poller and the API run between batches (PGlite serialises every statement). */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
