-- drover over NATS: the transitions table is also the outbox that the relay publishes.

-- Every context field whose name ends in `_id`, as published with the transition.
ALTER TABLE {{schema}}.transitions ADD COLUMN ids jsonb NOT NULL DEFAULT '{}';
-- W3C trace context of the request that caused the transition, when there was one.
ALTER TABLE {{schema}}.transitions ADD COLUMN traceparent text;
-- History written before the outbox existed is not published after an upgrade.
UPDATE {{schema}}.transitions SET published_at = at WHERE published_at IS NULL;
-- The relay reads the outbox in commit order through this index: only unpublished rows are in it.
CREATE INDEX transitions_outbox ON {{schema}}.transitions (id) WHERE published_at IS NULL;
