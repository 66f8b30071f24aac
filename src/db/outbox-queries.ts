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

/** An emitted event waiting in the outbox (an `effects` row of kind `emitted`, `published_at IS NULL`). */
export interface EmitOutboxRow {
  /** The row's bigint id, as text. */
  eid: string;
  machine: string;
  instance_id: string;
  version: number;
  seq: number;
  event: EventObject;
  state: string;
  ids: Record<string, unknown> | null;
  at: Date;
}

/** Why the relay could not publish a transition, as stored in `transitions.publish_error`. */
export interface PublishError {
  /** The error's class name, e.g. `InvalidArgumentError`. */
  name: string;
  message: string;
}

/** A transition the relay parked (`parked_at` set, never published): NATS refused the message itself. */
export interface ParkedRow {
  /** The row's bigint id, as text. */
  tid: string;
  machine: string;
  instance_id: string;
  seq: number;
  to_state: string;
  at: Date;
  parked_at: Date;
  publish_error: PublishError;
}

/** The outbox relay's statements, built once per schema. Each runs on the relay's transaction. */
export function createOutboxQueries(schema: string) {
  const s = quoteSchema(schema);
  const unpublishedSql = `
    SELECT id::text AS tid, machine, instance_id, version, seq, from_state, to_state, status, event, at, ids, traceparent
    FROM ${s}.transitions WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1`;
  const markPublishedSql = `UPDATE ${s}.transitions SET published_at = $2 WHERE id = ANY($1::bigint[])`;
  const parkSql = `UPDATE ${s}.transitions SET parked_at = $2, publish_error = $3 WHERE id = $1 AND published_at IS NULL`;
  const parkedSql = `
    SELECT id::text AS tid, machine, instance_id, seq, to_state, at, parked_at, publish_error
    FROM ${s}.transitions WHERE published_at IS NULL AND parked_at IS NOT NULL ORDER BY id LIMIT $1`;
  const parkedCountSql = `SELECT count(*)::int AS n FROM ${s}.transitions WHERE published_at IS NULL AND parked_at IS NOT NULL`;
  // Only 'emitted' rows are ever unpublished (served by the partial index effects_outbox).
  const unpublishedEmitsSql = `
    SELECT id::text AS eid, machine, instance_id, version, seq, event, state, ids, at
    FROM ${s}.effects WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1`;
  const markEmitsPublishedSql = `UPDATE ${s}.effects SET published_at = $2 WHERE id = ANY($1::bigint[])`;
  const parkEmitSql = `UPDATE ${s}.effects SET parked_at = $2, publish_error = $3 WHERE id = $1 AND published_at IS NULL`;

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

    /** Up to `limit` unpublished transitions that are not parked, oldest commit first. */
    async unpublished(tx: Queryable, args: { limit: number }): Promise<OutboxRow[]> {
      return (await tx.query<OutboxRow>(unpublishedSql, [args.limit])).rows;
    },

    /** Marks the rows `ids` (from {@link OutboxRow.tid}) published at `at`; resolves to how many it marked. */
    async markPublished(tx: Queryable, args: { ids: string[]; at: Date }): Promise<number> {
      return (await tx.query(markPublishedSql, [args.ids, args.at])).rowCount;
    },

    /** Parks the row `id`: the relay reads past it from now on; `error` says why it could not be published. */
    async park(tx: Queryable, args: { id: string; at: Date; error: PublishError }): Promise<void> {
      await tx.query(parkSql, [args.id, args.at, JSON.stringify(args.error)]);
    },

    /**
     * Up to `limit` parked transitions, oldest first: what the operator API and `drover status`
     * show. Runs on any connection (served by the partial index `transitions_parked`).
     */
    async parked(q: Queryable, args: { limit: number }): Promise<ParkedRow[]> {
      return (await q.query<ParkedRow>(parkedSql, [args.limit])).rows;
    },

    /** How many transitions are parked. */
    async parkedCount(q: Queryable): Promise<number> {
      return (await q.query<{ n: number }>(parkedCountSql)).rows[0]?.n ?? 0;
    },

    /** Up to `limit` unpublished emitted events that are not parked, oldest first. */
    async unpublishedEmits(tx: Queryable, args: { limit: number }): Promise<EmitOutboxRow[]> {
      return (await tx.query<EmitOutboxRow>(unpublishedEmitsSql, [args.limit])).rows;
    },

    /** Marks the emitted events `ids` (from {@link EmitOutboxRow.eid}) published at `at`; resolves to how many it marked. */
    async markEmitsPublished(tx: Queryable, args: { ids: string[]; at: Date }): Promise<number> {
      return (await tx.query(markEmitsPublishedSql, [args.ids, args.at])).rowCount;
    },

    /** Parks the emitted event `id`: the relay reads past it from now on. */
    async parkEmit(tx: Queryable, args: { id: string; at: Date; error: PublishError }): Promise<void> {
      await tx.query(parkEmitSql, [args.id, args.at, JSON.stringify(args.error)]);
    },
  };
}

export type OutboxQueries = ReturnType<typeof createOutboxQueries>;
