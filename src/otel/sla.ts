import type { Database } from '../db/database.js';
import type { ResidencyQueries } from '../db/residency-queries.js';
import { parseDuration } from '../time.js';
import type { Clock } from '../time.js';
import type { DurableMachine } from '../record/durable.js';
import * as N from './names.js';
import type { Telemetry } from './telemetry.js';

/** A breach as published on `<prefix>.sla.<machine>.<state>`. */
export interface SlaBreach {
  machine: string;
  version: number;
  id: string;
  state: string;
  enteredAt: Date;
  slaMs: number;
  breachedAt: Date;
}

/** The SLA budgets of the registered machines, by machine and state (every version's, the tightest wins). */
export function slaBudgets(machines: readonly DurableMachine[]): Array<{ machine: string; state: string; slaMs: number }> {
  const budgets = new Map<string, { machine: string; state: string; slaMs: number }>();
  for (const def of machines) {
    for (const [state, options] of Object.entries(def.residency)) {
      if (options.sla === undefined) continue;
      const slaMs = parseDuration(options.sla);
      const key = `${def.name}\u0000${state}`;
      const prev = budgets.get(key);
      if (!prev || slaMs < prev.slaMs) budgets.set(key, { machine: def.name, state, slaMs });
    }
  }
  return [...budgets.values()];
}

/**
 * One pass of the SLA watch: records past a state's budget, each reported once per stay
 * (fleet wide) as a span event, a `drover.sla.breaches` count and, with NATS, a message.
 */
export async function watchSla(deps: {
  db: Database;
  sql: ResidencyQueries;
  clock: Clock;
  node: string;
  telemetry: Telemetry;
  budgets: ReturnType<typeof slaBudgets>;
  publish?: (breach: SlaBreach) => Promise<void>;
  onPublishError?: (err: unknown) => void;
}): Promise<number> {
  if (deps.budgets.length === 0) return 0;
  return deps.telemetry.span(N.SPAN_SLA_CHECK, { [N.ATTR_NODE]: deps.node }, async (span) => {
    let total = 0;
    for (const b of deps.budgets) {
      const now = deps.clock.now();
      const like = b.state.replace(/[\\%_]/g, (c) => `\\${c}`);
      const rows = (
        await deps.db.query<{ instance_id: string; entered_at: Date; version: number }>(deps.sql.slaBreaches, [
          b.machine,
          b.state,
          like,
          new Date(now),
          deps.node,
          new Date(now - b.slaMs),
        ])
      ).rows;
      for (const r of rows) {
        total += 1;
        span.addEvent(N.EVENT_SLA_BREACH, {
          [N.ATTR_MACHINE]: b.machine,
          [N.ATTR_VERSION]: r.version,
          [N.ATTR_STATE]: b.state,
          [N.ATTR_INSTANCE]: r.instance_id,
          [N.ATTR_SLA_SECONDS]: b.slaMs / 1000,
        });
        deps.telemetry.breach(b.machine, b.state);
        await deps
          .publish?.({
          machine: b.machine,
          version: r.version,
          id: r.instance_id,
          state: b.state,
          enteredAt: r.entered_at,
          slaMs: b.slaMs,
            breachedAt: new Date(now),
          })
          .catch((err: unknown) => {
            // Recorded, counted and in the span already; only the NATS message is lost.
            deps.onPublishError?.(err);
          });
      }
    }
    span.setAttribute(N.ATTR_RECORDS, total);
    return total;
  });
}
