import { quoteSchema } from '../db/database.js';
import type { OutboxRow } from '../db/outbox-queries.js';

/** A committed transition as the event stream reads it: the outbox row's fields (`tid` is the SSE event id), with its error instead of NATS headers. */
export type StreamRow = Omit<OutboxRow, 'ids' | 'traceparent'> & { error: { name: string; message: string } | null };

/** The SQL of the event stream (`GET /api/events`), schema quoted once. */
export function createEventQueries(schema: string) {
  const s = quoteSchema(schema);
  return {
    /** Where a stream without `Last-Event-ID` starts: after the newest transition. */
    end: `SELECT coalesce(max(id), 0)::text AS id FROM ${s}.transitions`,
    /**
     * The ids after the cursor, whatever their machine (a primary-key range scan), with the
     * snapshot they were read in: a missing id below a visible one belongs to a transaction
     * still running then (or rolled back), which `xmax` bounds.
     */
    visibleIds: `
      SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
             pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
             coalesce((SELECT array_agg(id::text ORDER BY id)
                         FROM (SELECT id FROM ${s}.transitions WHERE id > $1::bigint ORDER BY id LIMIT $2) t), '{}') AS ids`,
    /** The matching transitions in (cursor, horizon]: `$3` the machine, `$4`/`$5` the state and its LIKE-escaped form. */
    rows: `
      SELECT id::text AS tid, machine, instance_id, version, seq, from_state, to_state, status, event, error, at
        FROM ${s}.transitions
       WHERE id > $1::bigint AND id <= $2::bigint
         AND ($3::text IS NULL OR machine = $3)
         AND ($4::text IS NULL OR to_state = $4 OR to_state LIKE $5 || '.%' OR to_state LIKE $5 || ',%'
              OR to_state LIKE '%,' || $5 OR to_state LIKE '%,' || $5 || '.%' OR to_state LIKE '%,' || $5 || ',%')
       ORDER BY id
       LIMIT $6`,
  };
}

export type EventQueries = ReturnType<typeof createEventQueries>;
