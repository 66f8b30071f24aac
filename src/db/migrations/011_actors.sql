-- drover as an actor system: child records, messages between records, emitted events.

-- A child record's parent (the record whose invoke or spawn made it) and its key there (the
-- invoke or spawn id): what its final output or failure is sent back to, and what
-- list({ parent }) and a parent's cancel find.
ALTER TABLE {{schema}}.instances ADD COLUMN parent_machine text;
ALTER TABLE {{schema}}.instances ADD COLUMN parent_id text;
ALTER TABLE {{schema}}.instances ADD COLUMN parent_key text;
-- A parent's child records by key: { "<key>": { "machine": …, "id": …, "n": <spawns of the key>, "live": bool } }.
ALTER TABLE {{schema}}.instances ADD COLUMN children jsonb NOT NULL DEFAULT '{}';
CREATE INDEX instances_parent ON {{schema}}.instances (parent_machine, parent_id, machine, id) WHERE parent_id IS NOT NULL;

-- What a record did besides changing state, in the same transaction as its step: a message
-- sent to another record (kind 'sent', with the receiver's 'received' row), a child record
-- started ('spawned'), an event emitted ('emitted'). Also the outbox of emitted events:
-- published_at is NULL only for 'emitted' rows waiting for the NATS relay.
CREATE TABLE {{schema}}.effects (
  id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  machine        text        NOT NULL,
  instance_id    text        NOT NULL,
  version        integer     NOT NULL,
  -- The record's transition seq when it happened (its last history row at that point).
  seq            integer     NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('sent', 'received', 'spawned', 'emitted')),
  -- The other record: the receiver of 'sent', the sender of 'received', the child of 'spawned'.
  peer_machine   text,
  peer_id        text,
  event          jsonb       NOT NULL,
  state          text        NOT NULL,
  ids            jsonb       NOT NULL DEFAULT '{}',
  at             timestamptz NOT NULL,
  published_at   timestamptz,
  parked_at      timestamptz,
  publish_error  jsonb
);
CREATE INDEX effects_instance ON {{schema}}.effects (machine, instance_id, id);
CREATE INDEX effects_outbox ON {{schema}}.effects (id) WHERE published_at IS NULL AND parked_at IS NULL;
