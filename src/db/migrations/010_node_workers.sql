-- Each node's workers and periodics as of its last heartbeat (name, kind, status, panics,
-- last metric, schedule, tags, next run), so operators see every node's workers from any
-- runtime, the CLI and the HTTP API, not only their own.
ALTER TABLE {{schema}}.nodes ADD COLUMN workers jsonb NOT NULL DEFAULT '[]';
