import type { TransitionRow } from '../record/step.js';
import type { Queryable } from './database.js';
import { quoteSchema } from './database.js';
import { createActorQueries } from './actor-queries.js';

/** A stored record row, as the claim and `get()` read it. */
export interface InstanceRow {
  machine: string;
  id: string;
  version: number;
  queue: string;
  state: string;
  snapshot: { value?: unknown; context?: unknown } & Record<string, unknown>;
  status: string;
  entered_at: Date;
  wake_at: Date | null;
  timers: Array<{ id: string; at: number; event: { type: string } }>;
  attempt: number;
  error: unknown;
  seq: number;
  event_seq: string;
  row_version: number;
  /** The record's parent and child records; null when it has neither. */
  links: RecordLinks | null;
}

/** A child record as its parent's `children` column keeps it, by key. */
export interface ChildLink {
  machine: string;
  id: string;
  /** How many records this key has started (a key invoked again gets a new record). */
  n: number;
  /** Whether it is still the parent's child (not stopped). */
  live: boolean;
}

/** A record's place among records: its parent (when it is a child record) and its child records by key. */
export interface RecordLinks {
  parent: { machine: string; id: string; key: string } | null;
  children: Record<string, ChildLink>;
}

/** A due or running invocation. */
export interface InvocationRow {
  machine: string;
  instance_id: string;
  invoke_id: string;
  token: string;
  version: number;
  src: string;
  input: unknown;
  attempt: number;
}

/** A claimed invocation with its record's columns, as they were at the claim. */
export interface ClaimedInvocation extends InvocationRow {
  i_row_version: number | null;
  i_event_seq: string;
  i_snapshot: unknown;
  i_state: string;
  i_status: string;
  i_entered_at: Date;
  i_timers: unknown;
  i_seq: number;
  i_links: RecordLinks | null;
  /** Whether the record had inbox events waiting at the claim. */
  i_pending: boolean;
}

/** An inbox event. */
export interface EventRow {
  id: string;
  machine: string;
  instance_id: string;
  event: { type: string } & Record<string, unknown>;
  created_at: Date;
  traceparent: string | null;
}

/** A transition as the `transitions` table's columns (the JSON the batch statements read). */
export function transitionColumns(t: TransitionRow) {
  return {
    seq: t.seq,
    from_state: t.from,
    to_state: t.to,
    status: t.status,
    event: t.event,
    error: t.error ?? null,
    at: new Date(t.at),
    ids: t.ids ?? {},
    traceparent: t.traceparent ?? null,
  };
}

/**
 * How long a batch write waits for a row lock before it goes on without that row: a claimed
 * batch, whose left-out record waits for its lease to run out; a fused batch or invocation
 * results, whose left-out record loses nothing (the result goes through the inbox, or is
 * written again shortly).
 */
export const LOCK_TIMEOUT_MS = { claimed: 500, fused: 50, results: 50 } as const;

/** A record's parent and children as one value (null for most records: no JSON is built for them). */
const links = (i: string) => `CASE WHEN ${i}parent_id IS NULL AND ${i}children = '{}'::jsonb THEN NULL ELSE jsonb_build_object('parent',
  CASE WHEN ${i}parent_id IS NULL THEN NULL ELSE jsonb_build_object('machine', ${i}parent_machine, 'id', ${i}parent_id, 'key', ${i}parent_key) END,
  'children', ${i}children) END`;

const INSTANCE_COLUMNS = `machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers, attempt, error, seq, event_seq::text AS event_seq, row_version, ${links('')} AS links`;

/**
 * Every statement drover runs, built once per schema. The loop's statements (claims,
 * persist, completions) are single round trips that take a whole batch as one JSON array.
 */
export function createQueries(schema: string, options: { outbox?: boolean } = {}) {
  const s = quoteSchema(schema);
  // With a relay (NATS) new transition rows wait in the outbox; without one they are born published.
  const published = (at: string) => (options.outbox ? 'NULL::timestamptz' : at);
  const CONTEXT_IDS = `(SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(CASE WHEN jsonb_typeof(snapshot->'context') = 'object' THEN snapshot->'context' ELSE '{}' END) WHERE key LIKE '%\\_id')`;
  const channel = `drover_${schema}`;
  const json = (v: unknown) => JSON.stringify(v, errorReplacer);

  /**
   * The batch persist. A row another session holds locked (a `SELECT … FOR UPDATE` left idle in
   * a transaction) must not hold the batch, and with it the node, for as long as that session
   * lives: the write waits at most `$7` ms for a row lock (see {@link LOCK_TIMEOUT_MS}; set for
   * this statement only), then fails with 55P03; the `skipLocked` form written then leaves out the
   * rows still locked, so the rest of the batch commits.
   */
  function persistStepsSql(skipLocked: boolean): string {
    return `
      WITH u AS (
        SELECT u.* FROM jsonb_to_recordset($1::jsonb) AS u(machine text, id text, row_version int, state text, status text,
          snapshot jsonb, entered_at timestamptz, wake_at timestamptz, timers jsonb, error jsonb, seq int, event_seq bigint,
          failure jsonb, attempt int, children jsonb)${
            skipLocked
              ? `
        JOIN (SELECT i.machine, i.id FROM ${s}.instances i JOIN jsonb_to_recordset($1::jsonb) AS k(machine text, id text)
              ON i.machine = k.machine AND i.id = k.id FOR UPDATE OF i SKIP LOCKED) AS free ON free.machine = u.machine AND free.id = u.id`
              : `,
          (SELECT set_config('lock_timeout', $7::text, true)) AS lock_timeout`
          }),
      upd AS (
        UPDATE ${s}.instances i SET
          snapshot = u.snapshot, state = u.state, status = u.status, entered_at = u.entered_at, timers = u.timers,
          -- A retried record (failed before) leaves its old error behind.
          error = CASE WHEN i.status = 'failed' THEN u.error ELSE COALESCE(u.error, i.error) END,
          seq = u.seq, failure = CASE WHEN u.status = 'failed' THEN u.failure END, attempt = COALESCE(u.attempt, i.attempt),
          children = COALESCE(u.children, i.children),
          wake_at = CASE WHEN u.status <> 'active' THEN NULL WHEN i.event_seq > u.event_seq THEN $2::timestamptz ELSE u.wake_at END,
          locked_by = NULL, locked_until = NULL, row_version = i.row_version + 1, updated_at = $2::timestamptz
        FROM u
        -- The row version alone decides: the first node to finish a step commits it, even if its
        -- lease ran out meanwhile; any other claimer's write then fails this check. Requiring
        -- locked_by too would let two nodes steal a slow step from each other forever.
        WHERE i.machine = u.machine AND i.id = u.id AND i.row_version = u.row_version
        RETURNING i.machine, i.id, i.status, i.queue, i.priority, i.version, i.event_seq),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids,
                                     traceparent, published_at)
        SELECT t.machine, t.instance_id, upd.version, t.seq, t.from_state, t.to_state, t.status, t.event, t.error, t.at, t.ids,
               t.traceparent, ${published('t.at')}
        FROM jsonb_to_recordset($3::jsonb) AS t(machine text, instance_id text, seq int, from_state text, to_state text,
             status text, event jsonb, error jsonb, at timestamptz, ids jsonb, traceparent text)
        JOIN upd ON upd.machine = t.machine AND upd.id = t.instance_id),
      consumed AS (
        DELETE FROM ${s}.events e USING jsonb_to_recordset($4::jsonb) AS c(machine text, instance_id text, id bigint), upd
        WHERE e.id = c.id AND upd.machine = c.machine AND upd.id = c.instance_id),
      stopped AS (
        DELETE FROM ${s}.invocations v USING upd
        WHERE v.machine = upd.machine AND v.instance_id = upd.id
          -- Uncorrelated, so the stop list is read once (a hashed subplan), not once per row.
          AND (upd.status <> 'active' OR (v.machine, v.instance_id, v.invoke_id) IN (
            SELECT x.machine, x.instance_id, x.invoke_id
            FROM jsonb_to_recordset($5::jsonb) AS x(machine text, instance_id text, invoke_id text)))),
      spawned AS (
        INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, input, priority,
                                     attempt, locked_by, locked_until, created_at)
        SELECT v.machine, v.instance_id, v.invoke_id, v.token, upd.version, upd.queue, v.src, v.input, upd.priority,
               v.attempt, v.locked_by, v.locked_until, $2::timestamptz
        FROM jsonb_to_recordset($6::jsonb) AS v(machine text, instance_id text, invoke_id text, token text, src text,
             input jsonb, attempt int, locked_by text, locked_until timestamptz)
        JOIN upd ON upd.machine = v.machine AND upd.id = v.instance_id AND upd.status = 'active'
        ON CONFLICT (machine, instance_id, invoke_id) DO UPDATE SET token = EXCLUDED.token, src = EXCLUDED.src,
          input = EXCLUDED.input, attempt = EXCLUDED.attempt, locked_by = EXCLUDED.locked_by,
          locked_until = EXCLUDED.locked_until, last_error = NULL)
      SELECT machine, id, event_seq::text AS event_seq FROM upd`;
  }

  /**
   * Stores invocation results in their records' inboxes. Like the batch persist it waits at most
   * `$3` ms ({@link LOCK_TIMEOUT_MS}) for a record's row lock (a record another session holds
   * locked must not hold up the results of all the others, nor the other nodes' writes to rows
   * this statement has locked while it waits), then fails with 55P03. The `skipLocked` form
   * leaves out the results of records locked at that moment and returns their `n` as `held`.
   */
  function completeInvocationsSql(skipLocked: boolean): string {
    const input = `jsonb_to_recordset($1::jsonb) AS c(machine text, instance_id text, invoke_id text, token text, event jsonb, n int,
          failed_attempt int)`;
    const head = skipLocked
      ? `c0 AS (SELECT * FROM ${input}),
      free AS (
        SELECT i.machine, i.id FROM ${s}.instances i JOIN c0 ON i.machine = c0.machine AND i.id = c0.instance_id
        FOR UPDATE OF i SKIP LOCKED),
      held AS (
        SELECT c0.n FROM c0 JOIN ${s}.instances i ON i.machine = c0.machine AND i.id = c0.instance_id
        WHERE NOT EXISTS (SELECT 1 FROM free WHERE free.machine = c0.machine AND free.id = c0.instance_id)),
      c AS (SELECT * FROM c0 WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.n = c0.n))`
      : `c AS (SELECT c.* FROM ${input}, (SELECT set_config('lock_timeout', $3::text, true)) AS lock_timeout)`;
    return `
      WITH ${head},
      del AS (
        DELETE FROM ${s}.invocations v USING c
        WHERE v.machine = c.machine AND v.instance_id = c.instance_id AND v.invoke_id = c.invoke_id AND v.token = c.token
        RETURNING v.machine, v.instance_id, v.invoke_id),
      ev AS (
        INSERT INTO ${s}.events (machine, instance_id, event, created_at)
        SELECT c.machine, c.instance_id, c.event, $2::timestamptz
        FROM c JOIN del ON del.machine = c.machine AND del.instance_id = c.instance_id AND del.invoke_id = c.invoke_id
        ORDER BY c.n),
      up AS (
        UPDATE ${s}.instances i SET event_seq = i.event_seq + 1, attempt = COALESCE(d.failed_attempt, i.attempt),
               wake_at = CASE WHEN i.wake_at IS NULL OR i.wake_at > $2::timestamptz THEN $2::timestamptz ELSE i.wake_at END
        FROM (SELECT del.machine, del.instance_id, max(c.failed_attempt) AS failed_attempt
              FROM del JOIN c ON c.machine = del.machine AND c.instance_id = del.instance_id AND c.invoke_id = del.invoke_id
              GROUP BY del.machine, del.instance_id) d
        WHERE i.machine = d.machine AND i.id = d.instance_id AND i.status = 'active'
        RETURNING i.queue)
      SELECT (SELECT coalesce(jsonb_agg(DISTINCT queue), '[]') FROM up) AS queues,
             ${skipLocked ? `(SELECT coalesce(jsonb_agg(n), '[]') FROM held)` : `'[]'::jsonb`} AS held`;
  }


  const sql = {
    createInstance: `
      WITH ins AS (
        INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers,
                                   priority, unique_key, error, seq, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::jsonb, $11, $12, $13::jsonb, $14, $8, $8)
        ON CONFLICT DO NOTHING
        RETURNING machine, id),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids,
                                     traceparent, published_at)
        SELECT ins.machine, ins.id, $3, t.seq, t.from_state, t.to_state, t.status, t.event, t.error, t.at, t.ids, t.traceparent,
               ${published('t.at')}
        FROM ins, jsonb_to_recordset($15::jsonb) AS t(seq int, from_state text, to_state text, status text, event jsonb, error jsonb,
             at timestamptz, ids jsonb, traceparent text)),
      inv AS (
        INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, input, priority, locked_until, created_at)
        SELECT ins.machine, ins.id, v.invoke_id, v.token, $3, $4, v.src, v.input, $11, v.locked_until, $8
        FROM ins, jsonb_to_recordset($16::jsonb) AS v(invoke_id text, token text, src text, input jsonb, locked_until timestamptz)),
      n AS (SELECT pg_notify('${channel}', $4 || '|' || $17 || '|' || $18) FROM ins)
      SELECT (SELECT count(*) FROM ins)::int AS created, (SELECT count(*) FROM n)::int AS notified`,
    // createMany: one statement per chunk, without ON CONFLICT, so a duplicate fails the whole
    // statement (unique_violation) and stores nothing of it.
    createInstances: `
      WITH v AS (
        SELECT * FROM jsonb_to_recordset($5::jsonb) AS v(id text, state text, snapshot jsonb, status text, wake_at timestamptz,
          timers jsonb, priority int, unique_key text, error jsonb, seq int, transitions jsonb, spawns jsonb)),
      ins AS (
        INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers,
                                   priority, unique_key, error, seq, created_at, updated_at)
        SELECT $1, v.id, $2, $3, v.state, v.snapshot, v.status, $4, v.wake_at, v.timers, v.priority, v.unique_key, v.error, v.seq, $4, $4
        FROM v
        RETURNING id),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids,
                                     traceparent, published_at)
        SELECT $1, v.id, $2, t.seq, t.from_state, t.to_state, t.status, t.event, t.error, t.at, t.ids, t.traceparent,
               ${published('t.at')}
        FROM v, jsonb_to_recordset(v.transitions) AS t(seq int, from_state text, to_state text, status text, event jsonb,
             error jsonb, at timestamptz, ids jsonb, traceparent text)),
      inv AS (
        INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, input, priority, locked_until, created_at)
        SELECT $1, v.id, x.invoke_id, x.token, $2, $3, x.src, x.input, v.priority, x.locked_until, $4
        FROM v, jsonb_to_recordset(v.spawns) AS x(invoke_id text, token text, src text, input jsonb, locked_until timestamptz)),
      n AS (SELECT pg_notify('${channel}', $3 || '|' || $6 || '|' || $7))
      SELECT (SELECT count(*) FROM ins)::int AS created, (SELECT count(*) FROM n)::int AS notified`,
    // state matches like snapshot.matches(): itself, a child (`b` → `b.x`), or a parallel leaf.
    listInstances: `
      SELECT ${INSTANCE_COLUMNS} FROM ${s}.instances
      WHERE machine = $1
        AND ($2::text IS NULL OR state = $2 OR state LIKE $3 || '.%' OR state LIKE $3 || ',%'
             OR state LIKE '%,' || $3 OR state LIKE '%,' || $3 || '.%' OR state LIKE '%,' || $3 || ',%')
        AND ($4::text IS NULL OR status = $4)
        AND ($5::text IS NULL OR id > $5)
        AND ($7::text IS NULL OR (parent_machine = $7 AND parent_id = $8))
      ORDER BY id
      LIMIT $6`,
    instanceExists: `SELECT 1 FROM ${s}.instances WHERE machine = $1 AND id = $2`,
    getInstance: `SELECT ${INSTANCE_COLUMNS} FROM ${s}.instances WHERE machine = $1 AND id = $2`,
    getFailure: `
      SELECT ${INSTANCE_COLUMNS}, failure,
             EXISTS (SELECT 1 FROM ${s}.events e WHERE e.machine = i.machine AND e.instance_id = i.id) AS pending
      FROM ${s}.instances i WHERE machine = $1 AND id = $2`,
    notify: `SELECT pg_notify('${channel}', $1)`,
    // One statement, so the state and the inbox are read from one snapshot: a step committing
    // between two reads would pair an old state with an inbox it already emptied.
    getInstanceForSend: `
      SELECT i.status, i.version, i.state, i.snapshot,
             EXISTS (SELECT 1 FROM ${s}.events e WHERE e.machine = i.machine AND e.instance_id = i.id) AS pending
      FROM ${s}.instances i WHERE i.machine = $1 AND i.id = $2`,
    sendEvent: `
      WITH u AS (
        UPDATE ${s}.instances SET event_seq = event_seq + 1,
               wake_at = CASE WHEN wake_at IS NULL OR wake_at > $5 THEN $5 ELSE wake_at END
        WHERE machine = $1 AND id = $2 AND status = 'active'
        RETURNING machine, id, queue),
      e AS (
        INSERT INTO ${s}.events (machine, instance_id, event, traceparent, created_at)
        SELECT machine, id, $3::jsonb, $4, $5 FROM u RETURNING id)
      SELECT (SELECT id::text FROM e) AS event_id, (SELECT pg_notify('${channel}', queue || '|' || $6 || '|') FROM u) AS notified`,
    claimInstances: `
      WITH due AS (
        SELECT machine, id FROM ${s}.instances
        -- A queue has one poller per node and it claims only between batches, so rows still
        -- leased to this node are left over from a batch that failed (a lost connection): take
        -- them back now instead of waiting out the lease.
        -- Not while a batch of this node is in flight ($6 false): those rows are leased to it too.
        WHERE queue = $1 AND status = 'active' AND wake_at <= $2
          AND (locked_until IS NULL OR locked_until < $2 OR ($6::boolean AND locked_by = $4))
        ORDER BY wake_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED)
      UPDATE ${s}.instances i SET locked_by = $4, locked_until = $5
      FROM due WHERE i.machine = due.machine AND i.id = due.id
      RETURNING i.machine, i.id, i.version, i.queue, i.state, i.snapshot, i.status, i.entered_at, i.wake_at, i.timers,
                i.attempt, i.error, i.seq, i.event_seq::text AS event_seq, i.row_version, ${links('i.')} AS links`,
    // The idle poll: when the queue next has work, in one round trip. instances_due serves the
    // first; the second reads invocations_due's range of the queue (index only). An index on
    // (queue, locked_until) would serve it better, but the planner then sorts every due
    // invocation for the claim through it (measured: 2 ms -> 12 ms per claim with 5,000 due).
    nextDue: `
      SELECT (SELECT min(wake_at) FROM ${s}.instances
              WHERE queue = $1 AND status = 'active' AND wake_at IS NOT NULL AND (locked_until IS NULL OR locked_until < $2)) AS instance_at,
             -- A running invocation's lease end counts too: that is when another node's crash is found.
             (SELECT min(locked_until) FROM ${s}.invocations WHERE queue = $1) AS invocation_at`,
    loadEvents: `
      SELECT e.id::text AS id, e.machine, e.instance_id, e.event, e.created_at, e.traceparent
      FROM ${s}.events e
      JOIN jsonb_to_recordset($1::jsonb) AS k(machine text, id text) ON e.machine = k.machine AND e.instance_id = k.id
      ORDER BY e.id`,
    persistSteps: persistStepsSql(false),
    persistStepsSkipLocked: persistStepsSql(true),
    releaseInstance: `
      UPDATE ${s}.instances SET locked_by = NULL, locked_until = NULL, wake_at = $4
      WHERE machine = $1 AND id = $2 AND locked_by = $3`,
    failInstance: `
      WITH upd AS (
        UPDATE ${s}.instances SET status = 'failed', error = $4::jsonb, wake_at = NULL, locked_by = NULL, locked_until = NULL,
               failure = $8::jsonb, seq = seq + 1, row_version = row_version + 1, updated_at = $5
        WHERE machine = $1 AND id = $2 AND locked_by = $3 AND row_version = $6
        RETURNING machine, id, version, seq, state, snapshot),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids, published_at)
        SELECT machine, id, version, seq, state, state, 'failed', $7::jsonb, $4::jsonb, $5, ${CONTEXT_IDS}, ${published('$5::timestamptz')} FROM upd)
      SELECT count(*)::int AS n FROM upd`,
    claimInvocations: `
      WITH due AS (
        SELECT machine, instance_id, invoke_id FROM ${s}.invocations
        WHERE queue = $1 AND locked_until <= $2
        ORDER BY priority DESC, locked_until
        LIMIT $3
        FOR UPDATE SKIP LOCKED)
      UPDATE ${s}.invocations v SET locked_by = $4, locked_until = $5, attempt = v.attempt + 1
      FROM due LEFT JOIN ${s}.instances i ON i.machine = due.machine AND i.id = due.instance_id
      WHERE v.machine = due.machine AND v.instance_id = due.instance_id AND v.invoke_id = due.invoke_id
      RETURNING v.machine, v.instance_id, v.invoke_id, v.token, v.version, v.src, v.input, v.attempt,
                i.row_version AS i_row_version, i.event_seq::text AS i_event_seq, i.snapshot AS i_snapshot,
                i.state AS i_state, i.status AS i_status, i.entered_at AS i_entered_at, i.timers AS i_timers, i.seq AS i_seq,
                ${links('i.')} AS i_links,
                EXISTS (SELECT 1 FROM ${s}.events e WHERE e.machine = v.machine AND e.instance_id = v.instance_id) AS i_pending`,
    heartbeatInvocations: `
      UPDATE ${s}.invocations v SET locked_until = $1
      FROM jsonb_to_recordset($2::jsonb) AS k(machine text, instance_id text, invoke_id text, token text)
      WHERE v.machine = k.machine AND v.instance_id = k.instance_id AND v.invoke_id = k.invoke_id AND v.token = k.token
        AND v.locked_by = $3
      RETURNING v.machine, v.instance_id, v.invoke_id`,
    completeInvocations: completeInvocationsSql(false),
    completeInvocationsSkipLocked: completeInvocationsSql(true),
    retryInvocation: `
      WITH v AS (
        UPDATE ${s}.invocations SET locked_by = NULL, locked_until = $5, last_error = $6::jsonb
        WHERE machine = $1 AND instance_id = $2 AND invoke_id = $3 AND token = $4
        RETURNING machine, instance_id, attempt)
      UPDATE ${s}.instances i SET attempt = v.attempt, error = $6::jsonb FROM v
      WHERE i.machine = v.machine AND i.id = v.instance_id`,
    cancelInstance: `
      WITH upd AS (
        UPDATE ${s}.instances SET status = 'cancelled', wake_at = NULL, timers = '[]', locked_by = NULL, locked_until = NULL,
               error = $3::jsonb, seq = seq + 1, row_version = row_version + 1, updated_at = $4
        WHERE machine = $1 AND id = $2 AND status = 'active'
        RETURNING machine, id, version, seq, state, snapshot),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids, published_at)
        SELECT machine, id, version, seq, state, state, 'cancelled', $5::jsonb, $3::jsonb, $4, ${CONTEXT_IDS}, ${published('$4::timestamptz')}
        FROM upd),
      inv AS (DELETE FROM ${s}.invocations v USING upd WHERE v.machine = upd.machine AND v.instance_id = upd.id),
      ev AS (DELETE FROM ${s}.events e USING upd WHERE e.machine = upd.machine AND e.instance_id = upd.id)
      SELECT count(*)::int AS n FROM upd`,
    releaseInvocations: `
      UPDATE ${s}.invocations SET locked_by = NULL, locked_until = $2 WHERE locked_by = $1`,
    // Transitions, and the effects rows between them: an effect of seq n happened after the
    // transition n and before n + 1; it shows the status of transition n.
    history: `
      SELECT from_state, to_state, status, event, error, at, seq, NULL::text AS kind, NULL::text AS peer_machine,
             NULL::text AS peer_id, 0::bigint AS ord
      FROM ${s}.transitions WHERE machine = $1 AND instance_id = $2
      UNION ALL
      SELECT f.state, f.state,
             coalesce((SELECT t.status FROM ${s}.transitions t WHERE t.machine = f.machine AND t.instance_id = f.instance_id
                       AND t.seq <= f.seq ORDER BY t.seq DESC LIMIT 1), 'active'),
             f.event, NULL, f.at, f.seq, f.kind, f.peer_machine, f.peer_id, f.id
      FROM ${s}.effects f WHERE f.machine = $1 AND f.instance_id = $2
      ORDER BY seq, ord`,
  };

  return {
    /** What records as actors write beside a step (child records, messages, effects). */
    actors: createActorQueries(schema, options),
    channel,
    /** The schema, validated and quoted. */
    schema: s,
    sql,
    json,
    /** Inserts one record with its first transitions and invocations; false when its id or unique key is taken. */
    async createInstance(q: Queryable, a: NewInstance & { machine: string; version: number; queue: string; now: Date; notify: Notify }) {
      const res = await q.query<{ created: number }>(sql.createInstance, [
        a.machine,
        a.id,
        a.version,
        a.queue,
        a.state,
        json(a.snapshot),
        a.status,
        a.now,
        a.wake_at,
        json(a.timers),
        a.priority,
        a.unique_key,
        a.error === null ? null : json(a.error),
        a.seq,
        json(a.transitions),
        json(a.spawns),
        a.notify.node,
        a.notify.at === null ? '' : String(a.notify.at),
      ]);
      return res.rows[0]?.created === 1;
    },
    /** Inserts records of one machine in one statement: all of them, or (a duplicate) none. Returns how many. */
    async createInstances(
      q: Queryable,
      a: { machine: string; version: number; queue: string; now: Date; items: NewInstance[]; notify: Notify },
    ) {
      const res = await q.query<{ created: number }>(sql.createInstances, [
        a.machine,
        a.version,
        a.queue,
        a.now,
        json(a.items),
        a.notify.node,
        a.notify.at === null ? '' : String(a.notify.at),
      ]);
      return res.rows[0]?.created ?? 0;
    },
    async claimInstances(q: Queryable, a: { queue: string; now: Date; limit: number; node: string; leaseUntil: Date; retakeOwn: boolean }) {
      return (await q.query<InstanceRow>(sql.claimInstances, [a.queue, a.now, a.limit, a.node, a.leaseUntil, a.retakeOwn])).rows;
    },
    /** When a queue next has due records and invocations (null: nothing is waiting). */
    async nextDue(q: Queryable, a: { queue: string; now: Date }) {
      const row = (await q.query<{ instance_at: Date | null; invocation_at: Date | null }>(sql.nextDue, [a.queue, a.now])).rows[0];
      return { instanceAt: row?.instance_at?.getTime() ?? null, invocationAt: row?.invocation_at?.getTime() ?? null };
    },
    async loadEvents(q: Queryable, a: { records: Array<{ machine: string; id: string }> }) {
      return (await q.query<EventRow>(sql.loadEvents, [json(a.records)])).rows;
    },
    async claimInvocations(q: Queryable, a: { queue: string; now: Date; limit: number; node: string; leaseUntil: Date }) {
      return (await q.query<ClaimedInvocation>(sql.claimInvocations, [a.queue, a.now, a.limit, a.node, a.leaseUntil])).rows;
    },
    /**
     * Persists a batch of steps in one statement, each guarded by its row version. Returns the
     * records that committed, with the inbox counter each had when its write landed. Fails with
     * SQLSTATE 55P03 when a row stays locked by another session; `skipLocked` then leaves such
     * rows out (they are not among those returned).
     */
    async persistSteps(
      q: Queryable,
      a: {
        now: Date;
        instances: PersistedInstance[];
        transitions: unknown[];
        consumed: unknown[];
        stops: unknown[];
        spawns: unknown[];
        /** Leave out rows locked elsewhere; otherwise wait for a row lock at most `lockTimeoutMs`. */
        skipLocked?: boolean;
        lockTimeoutMs: number;
      },
    ) {
      const params = [json(a.instances), a.now, json(a.transitions), json(a.consumed), json(a.stops), json(a.spawns)];
      const res = await q.query<{ machine: string; id: string; event_seq: string }>(
        a.skipLocked ? sql.persistStepsSkipLocked : sql.persistSteps,
        a.skipLocked ? params : [...params, String(a.lockTimeoutMs)],
      );
      return res.rows;
    },
    /** A record's status, version, state and snapshot, and whether events wait in its inbox, read at once. */
    async instanceForSend(q: Queryable, a: { machine: string; id: string }) {
      return (
        await q.query<Pick<InstanceRow, 'status' | 'version' | 'state' | 'snapshot'> & { pending: boolean }>(sql.getInstanceForSend, [a.machine, a.id])
      ).rows[0];
    },
    /** Stores an event in an active record's inbox and makes the record due; false when it is not active. */
    async sendEvent(q: Queryable, a: { machine: string; id: string; event: unknown; traceparent: string | null; now: Date; notifyNode: string }) {
      const res = await q.query<{ event_id: string | null }>(sql.sendEvent, [a.machine, a.id, json(a.event), a.traceparent, a.now, a.notifyNode]);
      return Boolean(res.rows[0]?.event_id);
    },
    /** Renews the leases of invocations this node holds; returns the ones still there (gone: stopped elsewhere). */
    async heartbeatInvocations(
      q: Queryable,
      a: { node: string; leaseUntil: Date; invocations: Array<{ machine: string; instance_id: string; invoke_id: string; token: string }> },
    ) {
      return (
        await q.query<{ machine: string; instance_id: string; invoke_id: string }>(sql.heartbeatInvocations, [a.leaseUntil, json(a.invocations), a.node])
      ).rows;
    },
    /** Puts a failed attempt back for another at `at`, with its error. */
    async retryInvocation(q: Queryable, a: { machine: string; instance_id: string; invoke_id: string; token: string; at: Date; error: unknown }) {
      await q.query(sql.retryInvocation, [a.machine, a.instance_id, a.invoke_id, a.token, a.at, json(a.error)]);
    },
    /** A record with its `failure` column, for `retry()`. */
    async failedInstance(q: Queryable, a: { machine: string; id: string }) {
      return (await q.query<InstanceRow & { failure: StoredFailure | null; pending: boolean }>(sql.getFailure, [a.machine, a.id])).rows[0];
    },
    /** Tells every node's listener that `queue` has work now (`node` skips its own). */
    async notifyWork(q: Queryable, a: { queue: string; node: string }) {
      await q.query(sql.notify, [`${a.queue}|${a.node}|`]);
    },
    /**
     * Stores invocation results (`n` numbers each one); returns the queues whose records got
     * one and, with `skipLocked`, the `n` of the results left out because their record was
     * locked at that moment. Without it a record locked for too long fails the call with 55P03.
     */
    async completeInvocations(q: Queryable, a: { now: Date; completions: Array<{ n: number }>; skipLocked?: boolean }) {
      const res = await q.query<{ queues: string[]; held: number[] }>(
        a.skipLocked ? sql.completeInvocationsSkipLocked : sql.completeInvocations,
        a.skipLocked ? [json(a.completions), a.now] : [json(a.completions), a.now, String(LOCK_TIMEOUT_MS.results)],
      );
      const row = res.rows[0];
      return { queues: row?.queues ?? [], held: row?.held ?? [] };
    },
  };
}

/** Who is told of new work: `node` is skipped by its own listener (it woke itself); `at` is when the work is due (null: now). */
export interface Notify {
  node: string;
  at: number | null;
}

/** A new record's columns, as create() and createMany() insert them. */
export interface NewInstance {
  id: string;
  state: string;
  snapshot: unknown;
  status: string;
  wake_at: Date | null;
  timers: unknown;
  priority: number;
  unique_key: string | null;
  error: unknown;
  seq: number;
  transitions: unknown[];
  spawns: unknown[];
}

/** A stepped record's columns, as persistSteps writes them. */
export interface PersistedInstance {
  machine: string;
  id: string;
  row_version: number;
  state: string;
  status: string;
  snapshot: unknown;
  entered_at: Date;
  wake_at: Date | null;
  timers: unknown;
  error: unknown;
  seq: number;
  event_seq: string;
  /** What the step failed on, when it failed the record (for `retry()`). */
  failure: StoredFailure | null;
  /** Failed attempts of the record's invocation, when the step learned it (null: unchanged). */
  attempt: number | null;
  /** Its child records by key, when the step changed them (null: unchanged). */
  children?: Record<string, ChildLink> | null;
}

/**
 * A failed record's `failure` column: the failed step's event and the record before it
 * (kind `step`), a snapshot that did not restore (kind `restore`), or a step the database
 * refused to store (kind `store`). In the last two the record's row is kept as it was.
 */
export type StoredFailure =
  | { kind: 'step'; event: { type: string } & Record<string, unknown>; snapshot: unknown; state: string; entered_at: number; timers: unknown }
  | { kind: 'restore' }
  | { kind: 'store' };

export type Queries = ReturnType<typeof createQueries>;

/** JSON.stringify drops an Error's fields; store name and message instead. */
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}
