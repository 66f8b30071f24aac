import { type Database, quoteSchema } from '../db/database.js';
import type { DurableMachine } from '../record/durable.js';
import { canonicalStateString } from '../record/state.js';

const CANONICAL_STATES = 'canonical-states';

/**
 * Repairs state strings stored before drover named parallel states canonically (regions in
 * the order the machine defines them): the records' `state`, history's `from`/`to` and SLA
 * breaches. A change of key order alone was stored as a transition `A,B → B,A`; those rows are
 * dropped, since they were never a change of state. Runs once per machine version (recorded in
 * `repairs`), under an advisory lock so nodes starting together repair once.
 * Returns how many records were repaired.
 */
export async function repairStateStrings(db: Database, schema: string, machines: readonly DurableMachine[]): Promise<number> {
  const s = quoteSchema(schema);
  const done = await db.query<{ machine: string; version: number }>(`SELECT machine, version FROM ${s}.repairs WHERE name = $1`, [CANONICAL_STATES]);
  const repaired = new Set(done.rows.map((r) => `${r.machine}\u0000${r.version}`));
  const todo = machines.filter((m) => !repaired.has(`${m.name}\u0000${m.version}`));
  if (todo.length === 0) return 0;
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`drover.repair.${schema}`]);
    let records = 0;
    for (const def of todo) {
      const again = await tx.query(`SELECT 1 FROM ${s}.repairs WHERE name = $1 AND machine = $2 AND version = $3`, [CANONICAL_STATES, def.name, def.version]);
      if (again.rowCount > 0) continue;
      const args = [def.name, def.version];
      const fix = (state: string) => canonicalStateString(state, def.machine);
      const states = await tx.query<{ state: string }>(
        `SELECT DISTINCT state FROM ${s}.instances WHERE machine = $1 AND version = $2 AND state LIKE '%,%'`,
        args,
      );
      for (const { state } of states.rows) {
        if (fix(state) === state) continue;
        const res = await tx.query(`UPDATE ${s}.instances SET state = $3 WHERE machine = $1 AND version = $2 AND state = $4`, [...args, fix(state), state]);
        records += res.rowCount;
        await tx.query(
          `UPDATE ${s}.sla_breaches b SET state = $3 FROM ${s}.instances i
           WHERE b.machine = $1 AND b.state = $4 AND i.machine = b.machine AND i.id = b.instance_id AND i.version = $2`,
          [...args, fix(state), state],
        );
      }
      for (const column of ['from_state', 'to_state']) {
        const values = await tx.query<{ state: string }>(
          `SELECT DISTINCT ${column} AS state FROM ${s}.transitions WHERE machine = $1 AND version = $2 AND ${column} LIKE '%,%'`,
          args,
        );
        for (const { state } of values.rows) {
          if (fix(state) === state) continue;
          await tx.query(`UPDATE ${s}.transitions SET ${column} = $3 WHERE machine = $1 AND version = $2 AND ${column} = $4`, [
            ...args,
            fix(state),
            state,
          ]);
        }
      }
      // drover writes a transition only when the state or the status changes (its own
      // operations aside: cancel, retry, migrate): an active row from a state to itself was a
      // change of key order only.
      await tx.query(
        `DELETE FROM ${s}.transitions WHERE machine = $1 AND version = $2 AND from_state = to_state AND status = 'active'
           AND from_state LIKE '%,%' AND event->>'type' NOT LIKE 'drover.%'`,
        args,
      );
      await tx.query(`INSERT INTO ${s}.repairs (name, machine, version, done_at) VALUES ($1, $2, $3, now())`, [CANONICAL_STATES, def.name, def.version]);
    }
    return records;
  });
}
