import type { MachineFingerprint } from '../record/fingerprint.js';
import type { Queryable } from './database.js';
import { quoteSchema } from './database.js';

/** A stored (machine, version) and its structure. */
export interface StoredVersion {
  machine: string;
  version: number;
  fingerprint: MachineFingerprint;
}

/** A live record as `migrate()` reads it. */
export interface MigratingRow {
  id: string;
  state: string;
  snapshot: { context?: unknown } & Record<string, unknown>;
  timers: Array<{ id: string; at: number; event: { type: string } }>;
  entered_at: Date;
  seq: number;
  row_version: number;
  locked_until: Date | null;
}

/** A moved record's new columns, as {@link createVersionQueries} `moveRecords` writes them. */
export interface MovedRecord {
  id: string;
  row_version: number;
  state: string;
  snapshot: unknown;
  timers: unknown;
  wake_at: Date | null;
  seq: number;
}

/**
 * The statements of machine versions: the stored structure of each registered version
 * (checked at start), and the moves of live records from one version to another.
 * `channel` is the NOTIFY channel of the schema's other writes; `outbox` as in `createQueries`.
 */
export function createVersionQueries(schema: string, options: { outbox?: boolean; channel?: string } = {}) {
  const s = quoteSchema(schema);
  const published = (at: string) => (options.outbox ? 'NULL::timestamptz' : at);
  const channel = options.channel ?? `drover_${schema}`;
  const json = (v: unknown) => JSON.stringify(v);

  const sql = {
    // Runtimes starting together check and store versions one at a time.
    lock: 'SELECT pg_advisory_xact_lock(hashtext($1))',
    storedVersions: `SELECT machine, version, fingerprint FROM ${s}.machine_versions WHERE machine = ANY($1::text[])`,
    insertVersion: `
      INSERT INTO ${s}.machine_versions (machine, version, fingerprint, registered_at, updated_at)
      VALUES ($1, $2, $3::jsonb, $4, $4) ON CONFLICT DO NOTHING`,
    updateVersion: `UPDATE ${s}.machine_versions SET fingerprint = $3::jsonb, updated_at = $4 WHERE machine = $1 AND version = $2`,
    // Served by instances_status (machine, status, id).
    liveStates: `
      SELECT state, count(*)::int AS count FROM ${s}.instances
      WHERE machine = $1 AND version = $2 AND status = 'active'
      GROUP BY state ORDER BY state`,
    liveIdsIn: `
      SELECT id FROM ${s}.instances
      WHERE machine = $1 AND version = $2 AND status = 'active' AND state = ANY($3::text[])
      ORDER BY id LIMIT $4`,
    liveIds: `SELECT id FROM ${s}.instances WHERE machine = $1 AND version = $2 AND status = 'active' ORDER BY id LIMIT $3`,
    // A keyset page of live records of a version.
    liveRecords: `
      SELECT id, state, snapshot, timers, entered_at, seq, row_version, locked_until FROM ${s}.instances
      WHERE machine = $1 AND version = $2 AND status = 'active' AND id > $3
      ORDER BY id LIMIT $4`,
    // One batch of moves in one statement. Each record is guarded by its row version and
    // skipped while leased to a node (a step in flight), so a concurrent step and a move never
    // both commit. Invocations of the states left go; those of the states landed in start
    // (left for a claim, like a step's spawns without room). Inbox events keep the record due.
    moveRecords: `
      WITH u AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb) AS u(id text, row_version int, state text, snapshot jsonb, timers jsonb,
          wake_at timestamptz, seq int)),
      upd AS (
        UPDATE ${s}.instances i SET
          version = $4, state = u.state, snapshot = u.snapshot, entered_at = $5, timers = u.timers, seq = u.seq,
          attempt = 0, error = NULL,
          wake_at = CASE WHEN EXISTS (SELECT 1 FROM ${s}.events e WHERE e.machine = i.machine AND e.instance_id = i.id)
                         THEN $5::timestamptz ELSE u.wake_at END,
          locked_by = NULL, locked_until = NULL, row_version = i.row_version + 1, updated_at = $5
        FROM u
        WHERE i.machine = $2 AND i.id = u.id AND i.version = $3 AND i.status = 'active' AND i.row_version = u.row_version
          AND (i.locked_until IS NULL OR i.locked_until < $5)
        RETURNING i.id, i.queue, i.priority),
      tr AS (
        INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, error, at, ids,
                                     traceparent, published_at)
        SELECT $2, t.id, $4, t.seq, t.from_state, t.to_state, 'active', t.event, NULL, $5, t.ids, NULL, ${published('$5::timestamptz')}
        FROM jsonb_to_recordset($6::jsonb) AS t(id text, seq int, from_state text, to_state text, event jsonb, ids jsonb)
        JOIN upd ON upd.id = t.id),
      stopped AS (
        DELETE FROM ${s}.invocations v USING upd
        WHERE v.machine = $2 AND v.instance_id = upd.id
          -- A restarted invocation is updated below, not deleted and inserted in one statement.
          AND (v.instance_id, v.invoke_id) NOT IN (
            SELECT x.id, x.invoke_id FROM jsonb_to_recordset($7::jsonb) AS x(id text, invoke_id text))),
      spawned AS (
        INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, input, priority,
                                     attempt, locked_by, locked_until, created_at)
        SELECT $2, x.id, x.invoke_id, x.token, $4, upd.queue, x.src, x.input, upd.priority, 0, NULL, $5, $5
        FROM jsonb_to_recordset($7::jsonb) AS x(id text, invoke_id text, token text, src text, input jsonb)
        JOIN upd ON upd.id = x.id
        ON CONFLICT (machine, instance_id, invoke_id) DO UPDATE SET token = EXCLUDED.token, version = EXCLUDED.version,
          src = EXCLUDED.src, input = EXCLUDED.input, attempt = 0, locked_by = NULL, locked_until = EXCLUDED.locked_until,
          last_error = NULL),
      n AS (SELECT pg_notify('${channel}', q.queue || '|' || $8 || '|') FROM (SELECT DISTINCT queue FROM upd) q)
      SELECT upd.id, upd.queue, (SELECT count(*) FROM n)::int AS notified FROM upd`,
  };

  return {
    sql,
    /** Takes the schema's lock of version checks until the transaction ends. */
    async lock(q: Queryable) {
      await q.query(sql.lock, [`drover.versions.${schema}`]);
    },
    async storedVersions(q: Queryable, a: { machines: string[] }) {
      return (await q.query<StoredVersion>(sql.storedVersions, [a.machines])).rows;
    },
    async insertVersion(q: Queryable, a: { machine: string; version: number; fingerprint: MachineFingerprint; now: Date }) {
      await q.query(sql.insertVersion, [a.machine, a.version, json(a.fingerprint), a.now]);
    },
    async updateVersion(q: Queryable, a: { machine: string; version: number; fingerprint: MachineFingerprint; now: Date }) {
      await q.query(sql.updateVersion, [a.machine, a.version, json(a.fingerprint), a.now]);
    },
    /** The states of a version's live records, with how many are in each. */
    async liveStates(q: Queryable, a: { machine: string; version: number }) {
      return (await q.query<{ state: string; count: number }>(sql.liveStates, [a.machine, a.version])).rows;
    },
    /** The first `limit` ids (in id order) of a version's live records in `states` (all states when omitted). */
    async liveIds(q: Queryable, a: { machine: string; version: number; states?: string[]; limit: number }) {
      const res =
        a.states === undefined
          ? await q.query<{ id: string }>(sql.liveIds, [a.machine, a.version, a.limit])
          : await q.query<{ id: string }>(sql.liveIdsIn, [a.machine, a.version, a.states, a.limit]);
      return res.rows.map((r) => r.id);
    },
    /** A page of a version's live records, in id order after `after`. */
    async liveRecords(q: Queryable, a: { machine: string; version: number; after: string; limit: number }) {
      return (await q.query<MigratingRow>(sql.liveRecords, [a.machine, a.version, a.after, a.limit])).rows;
    },
    /** Moves records from version `from` to `to` in one statement; returns those that moved (the others changed meanwhile or are leased). */
    async moveRecords(
      q: Queryable,
      a: {
        machine: string;
        from: number;
        to: number;
        now: Date;
        records: MovedRecord[];
        transitions: Array<{ id: string; seq: number; from_state: string; to_state: string; event: unknown; ids: unknown }>;
        spawns: Array<{ id: string; invoke_id: string; token: string; src: string; input: unknown }>;
        node: string;
      },
    ) {
      const res = await q.query<{ id: string; queue: string }>(sql.moveRecords, [
        json(a.records),
        a.machine,
        a.from,
        a.to,
        a.now,
        json(a.transitions),
        json(a.spawns),
        a.node,
      ]);
      return res.rows;
    },
  };
}

export type VersionQueries = ReturnType<typeof createVersionQueries>;
