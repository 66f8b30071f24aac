import type { EventObject } from 'xstate';
import type { Queryable } from './database.js';
import { quoteSchema } from './database.js';
import type { ChildLink } from './queries.js';

// What records as actors write beside a step, in the step's transaction: child records
// created, events sent to other records' inboxes, effects rows (history and the emit outbox),
// child records cancelled with their descendants.

/** A child record to create, with its first transitions and invocations. */
export interface NewChildRow {
  machine: string;
  id: string;
  version: number;
  queue: string;
  state: string;
  snapshot: unknown;
  status: string;
  entered_at: Date;
  wake_at: Date | null;
  timers: unknown;
  error: unknown;
  seq: number;
  event_seq: number;
  parent_machine: string;
  parent_id: string;
  parent_key: string;
  children: Record<string, ChildLink>;
  transitions: unknown[];
  spawns: Array<{ invoke_id: string; token: string; src: string; input: unknown; locked_until: Date }>;
}

/** An event for a record's inbox; `n` orders them. */
export interface InboxRow {
  n: number;
  machine: string;
  instance_id: string;
  event: EventObject | Record<string, unknown>;
  /** The sender, for the receiver's 'received' effects row (null: none is written). */
  peer_machine: string | null;
  peer_id: string | null;
}

/** An effects row written as is. */
export interface EffectRow {
  machine: string;
  instance_id: string;
  version: number;
  seq: number;
  kind: 'sent' | 'received' | 'spawned' | 'emitted';
  peer_machine: string | null;
  peer_id: string | null;
  event: unknown;
  state: string;
  ids: Record<string, unknown>;
  at: Date;
}

/** A record cancelled because its parent stopped it or finished. */
export interface CancelledRow {
  machine: string;
  id: string;
  version: number;
  seq: number;
  state: string;
  queue: string;
  entered_at: Date;
  ids: Record<string, unknown>;
}

export function createActorQueries(schema: string, options: { outbox?: boolean } = {}) {
  const s = quoteSchema(schema);
  const channel = `drover_${schema}`;
  const published = (at: string) => (options.outbox ? 'NULL::timestamptz' : at);
  const contextIds = (i: string) =>
    `(SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(CASE WHEN jsonb_typeof(${i}snapshot->'context') = 'object' THEN ${i}snapshot->'context' ELSE '{}' END) WHERE key LIKE '%\\_id')`;

  const deliver = `
    WITH c AS (
      SELECT * FROM jsonb_to_recordset($1::jsonb) AS c(machine text, id text, version int, queue text, state text, snapshot jsonb,
        status text, entered_at timestamptz, wake_at timestamptz, timers jsonb, error jsonb, seq int, event_seq bigint,
        parent_machine text, parent_id text, parent_key text, children jsonb, transitions jsonb, spawns jsonb)),
    ins AS (
      INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers, error, seq,
                                 event_seq, parent_machine, parent_id, parent_key, children, created_at, updated_at)
      SELECT machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers, error, seq, event_seq,
             parent_machine, parent_id, parent_key, children, $5::timestamptz, $5::timestamptz
      FROM c
      RETURNING machine, id, queue),
    ctr AS (
      INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids,
                                   traceparent, published_at)
      SELECT c.machine, c.id, c.version, t.seq, t.from_state, t.to_state, t.status, t.event, t.error, t.at, t.ids, t.traceparent,
             ${published('t.at')}
      FROM c, jsonb_to_recordset(c.transitions) AS t(seq int, from_state text, to_state text, status text, event jsonb,
           error jsonb, at timestamptz, ids jsonb, traceparent text)),
    cinv AS (
      INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, input, priority, locked_until, created_at)
      SELECT c.machine, c.id, x.invoke_id, x.token, c.version, c.queue, x.src, x.input, 0, x.locked_until, $5::timestamptz
      FROM c, jsonb_to_recordset(c.spawns) AS x(invoke_id text, token text, src text, input jsonb, locked_until timestamptz)),
    m AS (
      SELECT * FROM jsonb_to_recordset($2::jsonb) AS m(n int, machine text, instance_id text, event jsonb, peer_machine text, peer_id text)),
    -- Existing receivers: only active ones take events (a finished record's inbox is never read).
    tgt AS (
      UPDATE ${s}.instances i SET event_seq = i.event_seq + k.n,
             wake_at = CASE WHEN i.wake_at IS NULL OR i.wake_at > $5::timestamptz THEN $5::timestamptz ELSE i.wake_at END
      FROM (SELECT machine, instance_id, count(*)::int AS n FROM m GROUP BY machine, instance_id) k
      WHERE i.machine = k.machine AND i.id = k.instance_id AND i.status = 'active'
      RETURNING i.machine, i.id, i.queue, i.version, i.seq, i.state, ${contextIds('i.')} AS ids),
    ev AS (
      INSERT INTO ${s}.events (machine, instance_id, event, created_at)
      SELECT x.machine, x.instance_id, x.event, $5::timestamptz FROM (
        SELECT m.n, m.machine, m.instance_id, m.event FROM m JOIN tgt ON tgt.machine = m.machine AND tgt.id = m.instance_id
        UNION ALL
        SELECT e.n, e.machine, e.instance_id, e.event FROM jsonb_to_recordset($3::jsonb) AS e(n int, machine text, instance_id text, event jsonb)
      ) x ORDER BY x.n),
    rcv AS (
      INSERT INTO ${s}.effects (machine, instance_id, version, seq, kind, peer_machine, peer_id, event, state, ids, at, published_at)
      SELECT tgt.machine, tgt.id, tgt.version, tgt.seq, 'received', m.peer_machine, m.peer_id, m.event, tgt.state, tgt.ids,
             $5::timestamptz, $5::timestamptz
      FROM m JOIN tgt ON tgt.machine = m.machine AND tgt.id = m.instance_id
      WHERE m.peer_id IS NOT NULL
      ORDER BY m.n),
    fx AS (
      INSERT INTO ${s}.effects (machine, instance_id, version, seq, kind, peer_machine, peer_id, event, state, ids, at, published_at)
      SELECT f.machine, f.instance_id, f.version, f.seq, f.kind, f.peer_machine, f.peer_id, f.event, f.state, f.ids, f.at,
             CASE WHEN f.kind = 'emitted' THEN ${published('f.at')} ELSE f.at END
      FROM jsonb_to_recordset($4::jsonb) AS f(machine text, instance_id text, version int, seq int, kind text,
           peer_machine text, peer_id text, event jsonb, state text, ids jsonb, at timestamptz, o int)
      ORDER BY f.o
      RETURNING id::text AS id, kind),
    q AS (SELECT DISTINCT queue FROM (SELECT queue FROM tgt UNION ALL SELECT queue FROM ins) x),
    n AS (SELECT pg_notify('${channel}', queue || '|' || $6 || '|') FROM q)
    SELECT (SELECT coalesce(jsonb_agg(queue), '[]') FROM q) AS queues,
           (SELECT count(*) FROM n)::int AS notified,
           (SELECT coalesce(jsonb_agg(id ORDER BY id::bigint), '[]') FROM fx WHERE kind = 'emitted') AS emitted,
           (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('machine', m.machine, 'id', m.instance_id)), '[]') FROM m
            WHERE NOT EXISTS (SELECT 1 FROM tgt WHERE tgt.machine = m.machine AND tgt.id = m.instance_id)) AS undelivered`;

  // Child records whose parent stopped them or finished, with every descendant: cancelled as
  // cancel() does (history row, invocations and inbox dropped).
  const cancelChildren = `
    WITH RECURSIVE d AS (
      SELECT r.machine, r.id FROM jsonb_to_recordset($1::jsonb) AS r(machine text, id text)
      UNION
      SELECT i.machine, i.id FROM ${s}.instances i JOIN d ON i.parent_machine = d.machine AND i.parent_id = d.id
      WHERE i.parent_id IS NOT NULL),
    upd AS (
      UPDATE ${s}.instances i SET status = 'cancelled', wake_at = NULL, timers = '[]', locked_by = NULL, locked_until = NULL,
             error = $3::jsonb, seq = i.seq + 1, row_version = i.row_version + 1, updated_at = $2::timestamptz
      FROM d WHERE i.machine = d.machine AND i.id = d.id AND i.status = 'active'
      RETURNING i.machine, i.id, i.version, i.seq, i.state, i.queue, i.entered_at, ${contextIds('i.')} AS ids),
    tr AS (
      INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids, published_at)
      SELECT machine, id, version, seq, state, state, 'cancelled', $4::jsonb, $3::jsonb, $2::timestamptz, ids, ${published('$2::timestamptz')}
      FROM upd),
    inv AS (DELETE FROM ${s}.invocations v USING upd WHERE v.machine = upd.machine AND v.instance_id = upd.id),
    ev AS (DELETE FROM ${s}.events e USING upd WHERE e.machine = upd.machine AND e.instance_id = upd.id)
    SELECT machine, id, version, seq, state, queue, entered_at, ids FROM upd`;

  return {
    /** Creates child records, delivers inbox events and writes effects rows; returns the queues with new work. */
    async deliver(
      q: Queryable,
      a: { children: NewChildRow[]; messages: InboxRow[]; newEvents: InboxRow[]; effects: EffectRow[]; now: Date; node: string },
    ): Promise<{ queues: string[]; emitted: string[]; undelivered: Array<{ machine: string; id: string }> }> {
      const row = (
        await q.query<{ queues: string[]; emitted: string[]; undelivered: Array<{ machine: string; id: string }> }>(deliver, [
          JSON.stringify(a.children),
          JSON.stringify(a.messages),
          JSON.stringify(a.newEvents),
          JSON.stringify(a.effects.map((e, o) => ({ ...e, o }))),
          a.now,
          a.node,
        ])
      ).rows[0];
      return row ?? { queues: [], emitted: [], undelivered: [] };
    },
    /** Cancels child records and their descendants (active ones); returns what it cancelled. */
    async cancelChildren(q: Queryable, a: { roots: Array<{ machine: string; id: string }>; now: Date; reason: string }): Promise<CancelledRow[]> {
      const error = { name: 'Cancelled', message: a.reason };
      const event = { type: 'drover.cancel', reason: a.reason };
      return (await q.query<CancelledRow>(cancelChildren, [JSON.stringify(a.roots), a.now, JSON.stringify(error), JSON.stringify(event)])).rows;
    },
    /** Stores new records' child records (a step stores its own with the step). */
    async setChildren(q: Queryable, rows: Array<{ machine: string; id: string; children: Record<string, ChildLink> }>): Promise<void> {
      await q.query(
        `UPDATE ${s}.instances i SET children = c.children
         FROM jsonb_to_recordset($1::jsonb) AS c(machine text, id text, children jsonb) WHERE i.machine = c.machine AND i.id = c.id`,
        [JSON.stringify(rows)],
      );
    },
    /** The records of `targets` that exist. */
    async existing(q: Queryable, targets: Array<{ machine: string; id: string }>): Promise<Array<{ machine: string; id: string }>> {
      return (
        await q.query<{ machine: string; id: string }>(
          `SELECT i.machine, i.id FROM ${s}.instances i JOIN jsonb_to_recordset($1::jsonb) AS k(machine text, id text) ON i.machine = k.machine AND i.id = k.id`,
          [JSON.stringify(targets)],
        )
      ).rows;
    },
  };
}

export type ActorQueries = ReturnType<typeof createActorQueries>;
