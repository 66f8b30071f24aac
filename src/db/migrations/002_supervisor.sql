-- drover supervisor: fleet-wide worker control, periodic run records, node heartbeats.

-- Enable/disable per worker or periodic, honoured by every node. No row: enabled.
CREATE TABLE {{schema}}.workers (
  name       text        PRIMARY KEY,
  enabled    boolean     NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Pause/resume by tag (an organisation, a tenant). A resumed tag keeps its row so catch-up
-- knows the ticks before `updated_at` were paused, not missed.
CREATE TABLE {{schema}}.tags (
  tag        text        PRIMARY KEY,
  paused     boolean     NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Run records: one per periodic tick (unique, which makes a tick fleet-unique) and one per
-- handler call of a worker that opts in.
CREATE TABLE {{schema}}.runs (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  worker        text        NOT NULL,
  kind          text        NOT NULL CHECK (kind IN ('tick', 'call')),
  scheduled_for timestamptz NOT NULL,
  started_at    timestamptz NOT NULL,
  finished_at   timestamptz,
  status        text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
  attempt       integer     NOT NULL DEFAULT 1,
  debug         text,
  error         jsonb,
  node          text        NOT NULL
);
CREATE UNIQUE INDEX runs_tick ON {{schema}}.runs (worker, scheduled_for) WHERE kind = 'tick';
CREATE INDEX runs_worker ON {{schema}}.runs (worker, id DESC);
CREATE INDEX runs_started ON {{schema}}.runs (started_at);
CREATE INDEX runs_running ON {{schema}}.runs (worker) WHERE status = 'running';

-- Node heartbeats: every runtime that runs a supervisor.
CREATE TABLE {{schema}}.nodes (
  id         text        PRIMARY KEY,
  host       text        NOT NULL,
  pid        integer     NOT NULL,
  started_at timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL
);
