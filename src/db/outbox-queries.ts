import type { EventObject } from 'xstate';
import type { RecordStatus } from '../record/step.js';
import { type Queryable, quoteSchema } from './database.js';

/** A transition row waiting in the outbox (`published_at IS NULL`), as the relay reads it. */
export interface OutboxRow {
  /** The row's bigint id, as text. */
  tid: string;
  machine: string;
  instance_id: string;
  version: number;
  seq: number;
  from_state: string | null;
  to_state: string;
  status: RecordStatus;
  event: EventObject;
  at: Date;
  ids: Record<string, unknown> | null;
  traceparent: string | null;
}

/** The outbox relay's statements, built once per schema. Each runs on the relay's transaction. */
export function createOutboxQueries(schema: string) {
  const s = quoteSchema(schema);
  const unpublishedSql = `
    SELECT id::text AS tid, machine, instance_id, version, seq, from_state, to_state, status, event, at, ids, traceparent
    FROM ${s}.transitions WHERE published_at IS NULL ORDER BY id LIMIT $1`;
  const markPublishedSql = `UPDATE ${s}.transitions SET published_at = $2 WHERE id = ANY($1::bigint[])`;

  return {
    /** Takes the transaction-scoped advisory lock `key`; false when another transaction holds it. */
    async tryLock(tx: Queryable, args: { key: string }): Promise<boolean> {
      const res = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked', [args.key]);
      return res.rows[0]?.locked === true;
    },

    /** This transaction commits without waiting for the WAL flush (PostgreSQL only, not PGlite). */
    async commitWithoutFlush(tx: Queryable): Promise<void> {
      await tx.query('SET LOCAL synchronous_commit = off');
    },

    /** Up to `limit` unpublished transitions, oldest commit first. */
    async unpublished(tx: Queryable, args: { limit: number }): Promise<OutboxRow[]> {
      return (await tx.query<OutboxRow>(unpublishedSql, [args.limit])).rows;
    },

    /** Marks the rows `ids` (from {@link OutboxRow.tid}) published at `at`; resolves to how many it marked. */
    async markPublished(tx: Queryable, args: { ids: string[]; at: Date }): Promise<number> {
      return (await tx.query(markPublishedSql, [args.ids, args.at])).rowCount;
    },
  };
}

export type OutboxQueries = ReturnType<typeof createOutboxQueries>;
