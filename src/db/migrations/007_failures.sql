-- What retry() needs of a failed record: the event whose step failed and the record as it
-- was before it (snapshot, state, entered_at, timers), or the kind of failure that has none.
ALTER TABLE {{schema}}.instances ADD COLUMN failure jsonb;

-- One-off repairs of stored data, done once per machine version (e.g. canonical state strings).
CREATE TABLE {{schema}}.repairs (
  name     text        NOT NULL,
  machine  text        NOT NULL,
  version  integer     NOT NULL,
  done_at  timestamptz NOT NULL,
  PRIMARY KEY (name, machine, version)
);
