import type pg from 'pg';
import type { Database } from '../db/database.js';
import { quoteSchema } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { convertHistory, type PartitionInterval, readPartitioning } from '../db/partitions.js';
import { pgDatabase } from '../db/pg.js';
import { isPGlite, type PGliteLike, pgliteDatabase } from '../db/pglite.js';
import { InvalidArgumentError } from '../errors.js';
import { rejectUnknownKeys } from '../keys.js';
import { silentLogger } from '../log.js';
import { type Clock, systemClock } from '../time.js';

/** Options of {@link partitionHistory}. */
export interface PartitionHistoryOptions {
  /** A connection string, a `pg.Pool` or a PGlite instance: the database the runtimes use. */
  database: string | pg.Pool | PGliteLike;
  /** The schema drover keeps its tables in. Default `drover`. */
  schema?: string;
  /** How long one partition covers, in UTC: `'month'` (default) or `'day'`. */
  interval?: PartitionInterval;
  /** Where "now" comes from (which partitions are made ahead). Default: the system clock. */
  clock?: Clock;
}

/** What {@link partitionHistory} did. */
export interface PartitionHistoryResult {
  /** `false` when the history was partitioned already (nothing changed). */
  converted: boolean;
  /** The range partitions now, oldest first (the default partition `transitions_kept` besides). */
  partitions: string[];
}

/**
 * Partitions a schema's history (`transitions`) by time, range on `at`, so that retention drops
 * whole partitions instead of deleting rows. Opt-in, for large deployments; run it once, with no
 * runtime on the schema (it applies drover's migrations first, so a new schema works too). It
 * copies the existing rows in one transaction that locks the history table throughout. From then
 * on, every runtime's housekeeping (`retention`, or `prune()`) makes the partitions of the next
 * intervals ahead of time and drops a partition once its whole range is older than
 * `retention.history`, keeping what that rule keeps (creation and latest entries, anything
 * unpublished) in the default partition. Idempotent: on a partitioned schema it changes nothing.
 *
 * @example await partitionHistory({ database: 'postgres://localhost/app', interval: 'day' });
 */
export async function partitionHistory(options: PartitionHistoryOptions): Promise<PartitionHistoryResult> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('partitionHistory() takes an options object');
  rejectUnknownKeys(options, ['database', 'schema', 'interval', 'clock'], 'partitionHistory()');
  const schema = options.schema ?? 'drover';
  quoteSchema(schema);
  const interval = options.interval ?? 'month';
  if (interval !== 'month' && interval !== 'day') {
    throw new InvalidArgumentError(`interval must be 'month' or 'day', not ${JSON.stringify(interval)}`);
  }
  const { database } = options;
  let db: Database;
  if (typeof database === 'string' || (typeof database === 'object' && database !== null && 'connect' in database)) {
    db = pgDatabase(database as string | pg.Pool, silentLogger);
  } else if (isPGlite(database)) {
    db = pgliteDatabase(database, false);
  } else {
    throw new InvalidArgumentError('database must be a connection string, a pg.Pool or a PGlite instance');
  }
  try {
    await migrate(db, schema);
    const converted = await convertHistory(db, schema, { interval, now: new Date((options.clock ?? systemClock).now()) });
    const state = await readPartitioning(db, schema);
    return { converted, partitions: (state?.partitions ?? []).map((p) => p.name) };
  } finally {
    await db.close();
  }
}
