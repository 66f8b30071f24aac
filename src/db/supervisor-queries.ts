import { quoteSchema } from './database.js';

/** A run record as stored. */
export interface RunRow {
  id: string;
  worker: string;
  kind: 'tick' | 'call';
  scheduled_for: Date;
  started_at: Date;
  finished_at: Date | null;
  status: 'running' | 'succeeded' | 'failed' | 'skipped';
  attempt: number;
  debug: string | null;
  error: { name: string; message: string; stack?: string } | null;
  node: string;
}

/** A node heartbeat row. */
export interface NodeRow {
  id: string;
  host: string;
  pid: number;
  started_at: Date;
  last_seen: Date;
}

const RUN_COLUMNS = 'id::text AS id, worker, kind, scheduled_for, started_at, finished_at, status, attempt, debug, error, node';

/** The supervisor's statements (control, run records, heartbeats), built once per schema. */
export function createSupervisorQueries(schema: string) {
  const s = quoteSchema(schema);
  return {
    // Control: what every node reads each loop iteration.
    controlState: `
      SELECT (SELECT coalesce(jsonb_agg(name), '[]') FROM ${s}.workers WHERE NOT enabled) AS disabled,
             (SELECT coalesce(jsonb_agg(tag), '[]') FROM ${s}.tags WHERE paused) AS paused`,
    setEnabled: `
      INSERT INTO ${s}.workers (name, enabled, updated_at) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled,
        updated_at = CASE WHEN ${s}.workers.enabled = EXCLUDED.enabled THEN ${s}.workers.updated_at ELSE EXCLUDED.updated_at END`,
    setPaused: `
      INSERT INTO ${s}.tags (tag, paused, updated_at) VALUES ($1, $2, $3)
      ON CONFLICT (tag) DO UPDATE SET paused = EXCLUDED.paused,
        updated_at = CASE WHEN ${s}.tags.paused = EXCLUDED.paused THEN ${s}.tags.updated_at ELSE EXCLUDED.updated_at END`,
    // The newest tick handled anywhere, floored by the last enable/resume: ticks before those
    // were disabled or paused on purpose, not missed.
    tickFloor: `
      SELECT greatest(
        (SELECT max(scheduled_for) FROM ${s}.runs WHERE worker = $1 AND kind = 'tick'),
        (SELECT updated_at FROM ${s}.workers WHERE name = $1 AND enabled),
        (SELECT max(updated_at) FROM ${s}.tags WHERE tag = ANY($2::text[]) AND NOT paused)) AS floor,
        EXISTS (SELECT 1 FROM ${s}.runs WHERE worker = $1 AND kind = 'tick') AS any_run`,
    // Takes a tick: the unique (worker, scheduled_for) index lets one node win. A disabled or
    // paused periodic inserts nothing. With overlap 'skip' a tick that finds an earlier run
    // still running anywhere is recorded as skipped.
    claimTick: `
      WITH busy AS (
        -- Only runs on live nodes count: a dead node's run is failed by the reaper later.
        SELECT $7::boolean OR ($6::boolean AND EXISTS (
          SELECT 1 FROM ${s}.runs r JOIN ${s}.nodes n ON n.id = r.node AND n.last_seen >= $8
          WHERE r.worker = $1 AND r.status = 'running')) AS skip)
      INSERT INTO ${s}.runs (worker, kind, scheduled_for, started_at, finished_at, status, node, debug)
      SELECT $1, 'tick', $2, $3, CASE WHEN busy.skip THEN $3::timestamptz END,
             CASE WHEN busy.skip THEN 'skipped' ELSE 'running' END, $4,
             CASE WHEN busy.skip THEN 'an earlier run was still running' END
      FROM busy
      WHERE NOT EXISTS (SELECT 1 FROM ${s}.workers WHERE name = $1 AND NOT enabled)
        AND NOT EXISTS (SELECT 1 FROM ${s}.tags WHERE tag = ANY($5::text[]) AND paused)
      ON CONFLICT (worker, scheduled_for) WHERE kind = 'tick' DO NOTHING
      RETURNING id::text AS id, status`,
    startCall: `
      INSERT INTO ${s}.runs (worker, kind, scheduled_for, started_at, status, node)
      VALUES ($1, 'call', $2, $2, 'running', $3) RETURNING id::text AS id`,
    retryRun: `UPDATE ${s}.runs SET status = 'running', attempt = attempt + 1, finished_at = NULL, error = NULL WHERE id = $1 AND node = $2`,
    finishRun: `UPDATE ${s}.runs SET status = $2, finished_at = $3, debug = $4, error = $5::jsonb WHERE id = $1`,
    deleteRun: `DELETE FROM ${s}.runs WHERE id = $1`,
    // A page of run records, newest first: after the keyset `before` ($2), skipping $4 rows.
    runs: `
      SELECT ${RUN_COLUMNS} FROM ${s}.runs
      WHERE worker = $1 AND ($2::bigint IS NULL OR ${s}.runs.id < $2::bigint)
      ORDER BY ${s}.runs.id DESC LIMIT $3 OFFSET $4`,
    // drover/testing: the finished runs recorded after a run id, oldest first; the newest id.
    runsAfter: `SELECT ${RUN_COLUMNS} FROM ${s}.runs WHERE id > $1::bigint AND status <> 'running' ORDER BY id`,
    lastRunId: `SELECT coalesce(max(id), 0)::text AS id FROM ${s}.runs`,
    // Housekeeping.
    heartbeat: `
      INSERT INTO ${s}.nodes (id, host, pid, started_at, last_seen, workers) VALUES ($1, $2, $3, $4, $5, $6::jsonb)
      ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen, workers = EXCLUDED.workers`,
    // Fleet-wide start/stop: a node applies the commands after the newest it saw at boot.
    addCommand: `INSERT INTO ${s}.worker_commands (op, name, at) VALUES ($1, $2, $3)`,
    lastCommand: `SELECT coalesce(max(id), 0)::text AS id FROM ${s}.worker_commands`,
    commandsAfter: `SELECT id::text AS id, op, name FROM ${s}.worker_commands WHERE id > $1::bigint ORDER BY id LIMIT 1000`,
    pruneCommands: `DELETE FROM ${s}.worker_commands WHERE at < $1`,
    // The fleet view: every live node's workers, the stored enable flags, each worker's newest run.
    liveWorkers: `SELECT id AS node, workers FROM ${s}.nodes WHERE last_seen >= $1 ORDER BY started_at, id`,
    workerFlags: `SELECT name, enabled FROM ${s}.workers`,
    lastRuns: `
      SELECT r.* FROM unnest($1::text[]) AS w(name)
      CROSS JOIN LATERAL (SELECT ${RUN_COLUMNS} FROM ${s}.runs WHERE worker = w.name ORDER BY id DESC LIMIT 1) r`,
    removeNode: `DELETE FROM ${s}.nodes WHERE id = $1`,
    liveNodes: `SELECT id, host, pid, started_at, last_seen FROM ${s}.nodes WHERE last_seen >= $1 ORDER BY started_at, id`,
    // A run left 'running' by a node that stopped heartbeating will never finish.
    failLostRuns: `
      UPDATE ${s}.runs r SET status = 'failed', finished_at = $2,
             error = jsonb_build_object('name', 'NodeLost', 'message', 'the node running it stopped heartbeating')
      WHERE r.status = 'running' AND r.node <> $3
        AND NOT EXISTS (SELECT 1 FROM ${s}.nodes n WHERE n.id = r.node AND n.last_seen >= $1)`,
    pruneRuns: `
      DELETE FROM ${s}.runs WHERE id IN (
        SELECT id FROM ${s}.runs WHERE started_at < $1 AND status <> 'running' ORDER BY started_at LIMIT 1000)`,
    pruneNodes: `DELETE FROM ${s}.nodes WHERE last_seen < $1`,
  };
}

export type SupervisorQueries = ReturnType<typeof createSupervisorQueries>;
