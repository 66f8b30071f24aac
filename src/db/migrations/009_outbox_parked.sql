-- A transition the relay cannot publish (NATS refuses the message itself, e.g. a record id
-- with CR/LF in its Nats-Msg-Id header) is parked instead of blocking the outbox: it stays
-- unpublished, with when and why, and the relay reads past it.
ALTER TABLE {{schema}}.transitions ADD COLUMN parked_at timestamptz;
ALTER TABLE {{schema}}.transitions ADD COLUMN publish_error jsonb;
-- The relay's outbox index now leaves parked rows out, so it never scans them again.
DROP INDEX {{schema}}.transitions_outbox;
CREATE INDEX transitions_outbox ON {{schema}}.transitions (id) WHERE published_at IS NULL AND parked_at IS NULL;
-- The parked rows, for the operator: few, and found without a scan of history.
CREATE INDEX transitions_parked ON {{schema}}.transitions (id) WHERE published_at IS NULL AND parked_at IS NOT NULL;
