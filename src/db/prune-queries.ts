import { type Database, type Queryable, quoteSchema } from './database.js';
import { createPartitionsLocked, dropPartition, keptHistorySql, type PartitionedHistory, readPartitioning } from './partitions.js';

/** What one prune statement deleted. */
export interface PruneCounts {
  records: number;
  transitions: number;
}

/**
 * The retention statements, built once per schema. Each deletes at most `limit` rows and
 * takes its rows with `FOR UPDATE SKIP LOCKED`, so every node can run them at once without
 * waiting on each other, and a record being retried or stepped is left for the next round.
 */
export function createPruneQueries(schema: string) {
  const s = quoteSchema(schema);
  // A finished record with everything that hangs off it, in one statement (one snapshot, so
  // nothing is left half-deleted). A record with a transition or an emitted event still in
  // the outbox is kept until the relay has published it.
  const finishedRecordsSql = `
    WITH doomed AS (
      SELECT i.machine, i.id FROM ${s}.instances i
      WHERE i.status = $1 AND i.updated_at < $2
        AND NOT EXISTS (SELECT 1 FROM ${s}.transitions t
                        WHERE t.machine = i.machine AND t.instance_id = i.id AND t.published_at IS NULL)
        AND NOT EXISTS (SELECT 1 FROM ${s}.effects f
                        WHERE f.machine = i.machine AND f.instance_id = i.id AND f.published_at IS NULL)
      ORDER BY i.updated_at
      LIMIT $3
      FOR UPDATE SKIP LOCKED),
    tr AS (DELETE FROM ${s}.transitions t USING doomed d WHERE t.machine = d.machine AND t.instance_id = d.id RETURNING 1),
    ev AS (DELETE FROM ${s}.events e USING doomed d WHERE e.machine = d.machine AND e.instance_id = d.id),
    inv AS (DELETE FROM ${s}.invocations v USING doomed d WHERE v.machine = d.machine AND v.instance_id = d.id),
    sla AS (DELETE FROM ${s}.sla_breaches b USING doomed d WHERE b.machine = d.machine AND b.instance_id = d.id),
    fx AS (DELETE FROM ${s}.effects f USING doomed d WHERE f.machine = d.machine AND f.instance_id = d.id),
    del AS (DELETE FROM ${s}.instances i USING doomed d WHERE i.machine = d.machine AND i.id = d.id RETURNING 1)
    SELECT (SELECT count(*) FROM del)::int AS records, (SELECT count(*) FROM tr)::int AS transitions`;
  // History rows older than the cutoff, of any record, except its creation entry and its
  // latest entry (how it got where it is: a failed record keeps its failure); never an
  // unpublished outbox row.
  const oldHistorySql = `
    WITH doomed AS (
      SELECT t.id FROM ${s}.transitions t
      WHERE t.at < $1 AND t.from_state IS NOT NULL AND t.published_at IS NOT NULL
        AND EXISTS (SELECT 1 FROM ${s}.transitions n
                    WHERE n.machine = t.machine AND n.instance_id = t.instance_id AND n.seq > t.seq)
      ORDER BY t.at
      LIMIT $2
      FOR UPDATE SKIP LOCKED)
    DELETE FROM ${s}.transitions t USING doomed d WHERE t.id = d.id`;
  const keptSql = keptHistorySql(schema);
  // One key per schema: the node that holds it does this round's partition work, the others skip it.
  const partitionLock = `drover:${schema}:history-partitions`;

  return {
    /** Deletes up to `limit` records of `status` last changed before `before`, with their history, inbox, invocations, SLA breaches and effects. */
    async finishedRecords(db: Queryable, args: { status: 'done' | 'failed' | 'cancelled'; before: Date; limit: number }): Promise<PruneCounts> {
      const res = await db.query<PruneCounts>(finishedRecordsSql, [args.status, args.before, args.limit]);
      return res.rows[0] ?? { records: 0, transitions: 0 };
    },
    /** Deletes up to `limit` published history rows older than `before` (each record's first and latest entries kept); resolves to how many. */
    async oldHistory(db: Queryable, args: { before: Date; limit: number }): Promise<number> {
      return (await db.query(oldHistorySql, [args.before, args.limit])).rowCount;
    },
    /** The history table's partitioning (one catalog read): `null` for a plain table. */
    partitioning(db: Queryable): Promise<PartitionedHistory | null> {
      return readPartitioning(db, schema);
    },
    /** Creates the partitions from now to a few intervals ahead that do not exist yet; resolves to their names. */
    partitionsAhead(db: Database, state: PartitionedHistory, now: Date): Promise<string[]> {
      return createPartitionsLocked(db, schema, state, now, partitionLock);
    },
    /** Drops one whole partition, its kept rows moved to the default partition; resolves to the rows that went, `'locked'` when another node is at it, `'gone'` when it is dropped already. */
    dropPartition(db: Database, name: string): Promise<number | 'locked' | 'gone'> {
      return dropPartition(db, schema, name, partitionLock);
    },
    /** Deletes up to `limit` old history rows of the default partition (those kept from dropped partitions) that are no longer a record's latest entry. */
    async keptHistory(db: Queryable, args: { before: Date; limit: number }): Promise<number> {
      return (await db.query(keptSql, [args.before, args.limit])).rowCount;
    },
  };
}

/** The retention statements of one schema. */
export type PruneQueries = ReturnType<typeof createPruneQueries>;
