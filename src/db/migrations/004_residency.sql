-- drover residency: SLA breaches (one per record and stay), and the indexes the watch and
-- residency() read through.

-- A breach reported for a stay: the record, the state and when it entered it. The primary key
-- makes the report once per stay, fleet wide.
CREATE TABLE {{schema}}.sla_breaches (
  machine     text        NOT NULL,
  instance_id text        NOT NULL,
  state       text        NOT NULL,
  entered_at  timestamptz NOT NULL,
  breached_at timestamptz NOT NULL,
  node        text        NOT NULL,
  PRIMARY KEY (machine, instance_id, state, entered_at)
);

-- The SLA watch: active records of a machine in a state, oldest stay first.
CREATE INDEX instances_residency ON {{schema}}.instances (machine, state text_pattern_ops, entered_at) WHERE status = 'active';
-- residency(): the transitions of a machine since a time.
CREATE INDEX transitions_at ON {{schema}}.transitions (machine, at);
