-- drover machine versions: the structure of every registered (machine, version), stored the
-- first time a runtime registers it and compared on every start, so a version changed under
-- live records is refused instead of stranding them.

CREATE TABLE {{schema}}.machine_versions (
  machine       text        NOT NULL,
  version       integer     NOT NULL,
  -- State paths and types, transition targets per event, `after` keys and invoke sources
  -- (src/record/fingerprint.ts).
  fingerprint   jsonb       NOT NULL,
  registered_at timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  PRIMARY KEY (machine, version)
);
