-- The fleet view and fleet-wide worker commands.

-- Each node's workers and periodics as of its last heartbeat (name, kind, status, panics,
-- last metric, schedule, tags, next run), so operators see every node's workers from any
-- runtime, the CLI and the HTTP API, not only their own.
ALTER TABLE {{schema}}.nodes ADD COLUMN workers jsonb NOT NULL DEFAULT '[]';

-- Start/stop requests for a worker on the nodes live now. Not kept past a node's restart
-- (that is what enable/disable is for): each node applies the commands newer than the
-- newest it saw when it booted.
CREATE TABLE {{schema}}.worker_commands (
  id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  op   text        NOT NULL CHECK (op IN ('start', 'stop')),
  name text        NOT NULL,
  at   timestamptz NOT NULL
);
CREATE INDEX worker_commands_at ON {{schema}}.worker_commands (at);
