import { quoteSchema } from './database.js';

/** The residency statements: state gauges, the SLA watch and `residency()`. */
export function createResidencyQueries(schema: string) {
  const s = quoteSchema(schema);
  return {
    stateCounts: `
      SELECT machine, state, count(*)::int AS count, min(entered_at) AS oldest
      FROM ${s}.instances WHERE status = 'active' GROUP BY machine, state`,
    // Records past the SLA of a state (itself or a child state), not yet reported for this stay;
    // the primary key of sla_breaches lets one node report each.
    slaBreaches: `
      INSERT INTO ${s}.sla_breaches (machine, instance_id, state, entered_at, breached_at, node)
      SELECT i.machine, i.id, $2, i.entered_at, $4, $5 FROM ${s}.instances i
      WHERE i.machine = $1 AND i.status = 'active' AND (i.state = $2 OR i.state LIKE $3 || '.%') AND i.entered_at <= $6
        AND NOT EXISTS (SELECT 1 FROM ${s}.sla_breaches b
                        WHERE b.machine = i.machine AND b.instance_id = i.id AND b.state = $2 AND b.entered_at = i.entered_at)
      ORDER BY i.entered_at LIMIT 500
      ON CONFLICT DO NOTHING
      RETURNING instance_id, entered_at, (SELECT version FROM ${s}.instances WHERE machine = $1 AND id = instance_id) AS version`,
    // Breaches of stays that have ended: the record moved on, so the row has done its job.
    pruneBreaches: `
      DELETE FROM ${s}.sla_breaches b WHERE NOT EXISTS (
        SELECT 1 FROM ${s}.instances i
        WHERE i.machine = b.machine AND i.id = b.instance_id AND i.status = 'active' AND i.entered_at = b.entered_at)`,
    // `counts()`: records per machine, state and status, with the oldest entry into the state.
    counts: `
      SELECT machine, state, status, count(*)::int AS count, min(entered_at) AS oldest
      FROM ${s}.instances WHERE $1::text IS NULL OR machine = $1
      GROUP BY machine, state, status ORDER BY machine, state, status`,
    residencyNow: `SELECT state, count(*)::int AS count FROM ${s}.instances WHERE machine = $1 AND status = 'active' GROUP BY state`,
    // Stays that ended since $2: a transition into a state (status active) up to the record's
    // next transition. Only records with a transition since $2 are read (transitions_at index).
    residencyStays: `
      WITH recent AS (SELECT DISTINCT instance_id FROM ${s}.transitions WHERE machine = $1 AND at >= $2),
      t AS (
        SELECT tr.to_state, tr.status, tr.at, lead(tr.at) OVER (PARTITION BY tr.instance_id ORDER BY tr.seq) AS left_at
        FROM ${s}.transitions tr JOIN recent r ON r.instance_id = tr.instance_id
        WHERE tr.machine = $1),
      stays AS (SELECT to_state AS state, extract(epoch FROM left_at - at)::float8 AS secs FROM t
                WHERE status = 'active' AND left_at IS NOT NULL AND left_at >= $2)
      SELECT state, count(*)::int AS stays,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS p50,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY secs) AS p95,
             percentile_cont(0.99) WITHIN GROUP (ORDER BY secs) AS p99,
             max(secs) AS max
      FROM stays GROUP BY state`,
  };
}

export type ResidencyQueries = ReturnType<typeof createResidencyQueries>;
