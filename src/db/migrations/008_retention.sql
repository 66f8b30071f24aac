-- drover retention: the indexes that keep pruning finished records and old history cheap.

-- Finished records oldest first, per status: the record prune reads only what it deletes.
-- Active records are not in it, so it costs the claim path nothing.
CREATE INDEX instances_finished ON {{schema}}.instances (status, updated_at) WHERE status <> 'active';
-- History older than a cutoff, of any record. The history prune keeps creation entries
-- (from_state NULL), so they are not in the index.
CREATE INDEX transitions_prunable ON {{schema}}.transitions (at) WHERE from_state IS NOT NULL;
