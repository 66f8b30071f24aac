import { InvalidArgumentError } from '../errors.js';
import { type Database, type Queryable, quoteSchema } from './database.js';

/** How long one history partition covers. */
export type PartitionInterval = 'day' | 'month';

/** One range partition of a partitioned history: `[from, to)` in UTC. */
export interface HistoryPartition {
  name: string;
  from: Date;
  to: Date;
}

/** The default partition: rows of no range, which is where kept rows of dropped partitions go. */
export const KEPT_PARTITION = 'transitions_kept';
/** Partitions kept ready ahead of the current one, so a write never lands outside a range. */
export const PARTITIONS_AHEAD = 3;

const NAME = /^transitions_(?:m(\d{4})(\d{2})|d(\d{4})(\d{2})(\d{2}))$/;

/** The interval that starts at or before `t`, in UTC. */
export function intervalStart(interval: PartitionInterval, t: Date): Date {
  return interval === 'month'
    ? new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), 1))
    : new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
}

function nextStart(interval: PartitionInterval, start: Date): Date {
  return interval === 'month'
    ? new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1))
    : new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + 1));
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** The partition for the interval starting at `start`. */
export function partitionFor(interval: PartitionInterval, start: Date): HistoryPartition {
  const y = pad(start.getUTCFullYear(), 4);
  const m = pad(start.getUTCMonth() + 1);
  const name = interval === 'month' ? `transitions_m${y}${m}` : `transitions_d${y}${m}${pad(start.getUTCDate())}`;
  return { name, from: start, to: nextStart(interval, start) };
}

/** A partition's range and interval from its name; `null` for a name drover did not give. */
export function parsePartition(name: string): (HistoryPartition & { interval: PartitionInterval }) | null {
  const m = NAME.exec(name);
  if (!m) return null;
  const interval: PartitionInterval = m[1] ? 'month' : 'day';
  const start =
    interval === 'month' ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1)) : new Date(Date.UTC(Number(m[3]), Number(m[4]) - 1, Number(m[5])));
  return { ...partitionFor(interval, start), interval };
}

/** What a partitioned history looks like now: its interval and its range partitions, oldest first. */
export interface PartitionedHistory {
  interval: PartitionInterval;
  partitions: HistoryPartition[];
}

/**
 * The history partitioning of `schema`: `null` when `transitions` is a plain table (the
 * default), else its interval and range partitions. One catalog read.
 */
export async function readPartitioning(q: Queryable, schema: string): Promise<PartitionedHistory | null> {
  const { rows } = await q.query<{ kind: string; parts: string[] | null }>(
    `SELECT c.relkind::text AS kind,
            (SELECT array_agg(p.relname::text) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid) AS parts
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'transitions'`,
    [schema],
  );
  const row = rows[0];
  if (!row || row.kind !== 'p') return null;
  const parsed = (row.parts ?? []).map(parsePartition).filter((p) => p !== null);
  parsed.sort((a, b) => a.from.getTime() - b.from.getTime());
  return { interval: parsed[0]?.interval ?? 'month', partitions: parsed.map(({ name, from, to }) => ({ name, from, to })) };
}

const iso = (d: Date) => d.toISOString();

/** Creates the missing partitions from the current interval to `ahead` intervals past it; resolves to their names. */
export async function createPartitionsAhead(
  q: Queryable,
  schema: string,
  state: PartitionedHistory,
  now: Date,
  ahead = PARTITIONS_AHEAD,
): Promise<string[]> {
  const s = quoteSchema(schema);
  const have = new Set(state.partitions.map((p) => p.name));
  const made: string[] = [];
  let start = intervalStart(state.interval, now);
  for (let k = 0; k <= ahead; k++) {
    const p = partitionFor(state.interval, start);
    if (!have.has(p.name)) {
      // Names come from partitionFor (digits only), bounds from Dates: nothing of the caller's in the text.
      await q.query(`CREATE TABLE IF NOT EXISTS ${s}.${p.name} PARTITION OF ${s}.transitions FOR VALUES FROM ('${iso(p.from)}') TO ('${iso(p.to)}')`);
      made.push(p.name);
    }
    start = p.to;
  }
  return made;
}

/**
 * {@link createPartitionsAhead} in its own transaction, by the one node holding `lockKey`, with
 * the same lock timeout as a detach: when sessions hold the history table past it, nothing is
 * made this round (resolves to `[]`) rather than every writer queueing behind the wait.
 */
export async function createPartitionsLocked(db: Database, schema: string, state: PartitionedHistory, now: Date, lockKey: string): Promise<string[]> {
  const missing = (() => {
    const have = new Set(state.partitions.map((p) => p.name));
    let start = intervalStart(state.interval, now);
    for (let k = 0; k <= PARTITIONS_AHEAD; k++) {
      const p = partitionFor(state.interval, start);
      if (!have.has(p.name)) return true;
      start = p.to;
    }
    return false;
  })();
  if (!missing) return [];
  try {
    return await db.transaction(async (tx) => {
      const { rows } = await tx.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok`, [lockKey]);
      if (!rows[0]?.ok) return [];
      await tx.query(`SET LOCAL lock_timeout = '${DETACH_LOCK_TIMEOUT_MS}ms'`);
      return createPartitionsAhead(tx, schema, state, now);
    });
  } catch (err) {
    if ((err as { code?: string }).code === '55P03') return [];
    throw err;
  }
}

/**
 * Drops one range partition whose whole range is past retention, keeping what the history
 * rule keeps: each record's creation entry, its latest entry, and anything unpublished. In one
 * transaction: the rows to keep are found, the partition is detached (which locks the history
 * table until commit), the kept rows are inserted again through the parent (no range covers
 * them any more, so they land in the default partition `transitions_kept`, ids and times
 * unchanged), and the table is dropped. Resolves to the rows that went; `'locked'` when another
 * node holds the partition lock or the detach could not get the table's lock within
 * {@link DETACH_LOCK_TIMEOUT_MS}; `'gone'` when the partition is no longer there.
 */
export async function dropPartition(db: Database, schema: string, name: string, lockKey: string): Promise<number | 'locked' | 'gone'> {
  const s = quoteSchema(schema);
  if (!NAME.test(name)) throw new InvalidArgumentError(`"${name}" is not a drover history partition`);
  return dropIn(db, async (tx) => {
    const { rows } = await tx.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok`, [lockKey]);
    if (!rows[0]?.ok) return 'locked';
    const attached = await tx.query(
      `SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid JOIN pg_namespace n ON n.oid = p.relnamespace
       WHERE n.nspname = $1 AND p.relname = $2`,
      [schema, name],
    );
    if (attached.rows.length === 0) return 'gone';
    // The rows to keep are found first, while every other session goes on reading and writing
    // (this transaction holds only a share lock meanwhile): creation entries, unpublished rows,
    // and each record's last row here when the record has nothing later elsewhere (one look-up
    // per record, not per row). Only then is the partition detached, which locks the history
    // table until commit, and the short part runs: the kept rows re-inserted by id, as they are
    // now, and the table dropped. A row written into the partition after the look-up (a clock
    // more than the retention behind) has a higher id and is kept too.
    const { rows: counted } = await tx.query<{ n: number; max_id: string | null }>(
      `SELECT count(*)::int AS n, max(id)::text AS max_id FROM ${s}.${name}`,
    );
    const all = counted[0]?.n ?? 0;
    await tx.query(
      `CREATE TEMP TABLE drover_kept_ids ON COMMIT DROP AS
       WITH latest AS (
         SELECT DISTINCT ON (machine, instance_id) id, machine, instance_id, seq FROM ${s}.${name}
         ORDER BY machine, instance_id, seq DESC)
       SELECT t.id FROM ${s}.${name} t WHERE t.from_state IS NULL OR t.published_at IS NULL
       UNION
       SELECT l.id FROM latest l
       WHERE NOT EXISTS (SELECT 1 FROM ${s}.transitions n WHERE n.machine = l.machine AND n.instance_id = l.instance_id AND n.seq > l.seq)`,
    );
    await tx.query(`SET LOCAL lock_timeout = '${DETACH_LOCK_TIMEOUT_MS}ms'`);
    try {
      await tx.query(`ALTER TABLE ${s}.transitions DETACH PARTITION ${s}.${name}`);
    } catch (err) {
      // Sessions held the table past the timeout: leave it for the next round rather than queue everybody behind us.
      if ((err as { code?: string }).code === '55P03') throw new LockBusy();
      throw err;
    }
    const kept = await tx.query(
      `INSERT INTO ${s}.transitions OVERRIDING SYSTEM VALUE
       SELECT t.* FROM ${s}.${name} t WHERE t.id IN (SELECT id FROM drover_kept_ids) OR t.id > $1::bigint`,
      [counted[0]?.max_id ?? '0'],
    );
    await tx.query(`DROP TABLE ${s}.${name}`);
    return all - kept.rowCount;
  });
}

/** How long the detach waits for sessions using the history table before it gives up for this round. */
export const DETACH_LOCK_TIMEOUT_MS = 2000;

class LockBusy extends Error {}

/** Runs a drop in a transaction; a detach that timed out on the lock rolls it back and resolves to `'locked'`. */
async function dropIn(db: Database, fn: (tx: Queryable) => Promise<number | 'locked' | 'gone'>): Promise<number | 'locked' | 'gone'> {
  try {
    return await db.transaction(fn);
  } catch (err) {
    if (err instanceof LockBusy) return 'locked';
    throw err;
  }
}

/** Options of {@link convertHistory}. */
export interface ConvertOptions {
  interval: PartitionInterval;
  now: Date;
  ahead?: number;
}

/**
 * Turns `schema`'s plain `transitions` table into one range-partitioned on `at`, in one
 * transaction that holds the table's lock throughout: the rows are copied (ids kept, the id
 * sequence continued), a partition is made for every interval from the oldest row to `ahead`
 * past now, plus the default partition `transitions_kept`. Keys gain `at` (a partitioned
 * table's unique keys must hold the partition key): the primary key becomes `(id, at)` and
 * `UNIQUE (machine, instance_id, seq)` becomes `(machine, instance_id, seq, at)`. The other
 * indexes are made again with their names and definitions. Resolves to `false` when the table
 * was partitioned already (nothing is changed).
 */
export async function convertHistory(db: Database, schema: string, options: ConvertOptions): Promise<boolean> {
  const s = quoteSchema(schema);
  return db.transaction(async (tx) => {
    const { rows: kind } = await tx.query<{ kind: string }>(
      `SELECT c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'transitions'`,
      [schema],
    );
    if (!kind[0]) throw new InvalidArgumentError(`schema "${schema}" has no drover history table: start a runtime on it once first`);
    if (kind[0].kind === 'p') return false;
    await tx.query(`LOCK TABLE ${s}.transitions IN ACCESS EXCLUSIVE MODE`);
    const { rows: indexes } = await tx.query<{ name: string; def: string; constraint: string | null; kind: string | null }>(
      `SELECT ic.relname::text AS name, pg_get_indexdef(ix.indexrelid) AS def, con.conname::text AS constraint,
              con.contype::text AS kind
       FROM pg_index ix JOIN pg_class ic ON ic.oid = ix.indexrelid
       LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
       WHERE ix.indrelid = '${s}.transitions'::regclass ORDER BY ic.relname`,
    );
    const { rows: uniques } = await tx.query<{ name: string; def: string }>(
      `SELECT conname::text AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = '${s}.transitions'::regclass AND contype = 'u'`,
    );
    const { rows: cols } = await tx.query<{ name: string }>(
      `SELECT quote_ident(attname) AS name FROM pg_attribute WHERE attrelid = '${s}.transitions'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    );
    const columns = cols.map((c) => c.name).join(', ');

    await tx.query(`ALTER TABLE ${s}.transitions RENAME TO transitions_unpartitioned`);
    for (const ix of indexes) {
      if (ix.constraint) await tx.query(`ALTER TABLE ${s}.transitions_unpartitioned RENAME CONSTRAINT "${ix.constraint}" TO "${ix.constraint.slice(0, 50)}_unpart"`);
      else await tx.query(`ALTER INDEX ${s}."${ix.name}" RENAME TO "${ix.name.slice(0, 50)}_unpart"`);
    }
    await tx.query(
      `CREATE TABLE ${s}.transitions (LIKE ${s}.transitions_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED)
       PARTITION BY RANGE (at)`,
    );
    await tx.query(`ALTER TABLE ${s}.transitions ADD CONSTRAINT transitions_pkey PRIMARY KEY (id, at)`);
    for (const u of uniques) {
      const def = u.def.replace(/\)\s*$/, ', at)');
      await tx.query(`ALTER TABLE ${s}.transitions ADD CONSTRAINT "${u.name}" ${def}`);
    }
    for (const ix of indexes) {
      if (ix.constraint) continue;
      if (/^CREATE UNIQUE/i.test(ix.def)) throw new InvalidArgumentError(`index ${ix.name} is unique without the partition key: cannot partition`);
      // The definition as PostgreSQL printed it names `schema.transitions`, now the new table.
      await tx.query(ix.def);
    }

    const { rows: span } = await tx.query<{ oldest: Date | null; next_id: string }>(
      `SELECT min(at) AS oldest, (coalesce(max(id), 0) + 1)::text AS next_id FROM ${s}.transitions_unpartitioned`,
    );
    const oldest = span[0]?.oldest ?? options.now;
    const state: PartitionedHistory = { interval: options.interval, partitions: [] };
    const first = intervalStart(options.interval, oldest < options.now ? oldest : options.now);
    for (let start = first; start < intervalStart(options.interval, options.now); ) {
      const p = partitionFor(options.interval, start);
      await tx.query(`CREATE TABLE ${s}.${p.name} PARTITION OF ${s}.transitions FOR VALUES FROM ('${iso(p.from)}') TO ('${iso(p.to)}')`);
      start = p.to;
    }
    await createPartitionsAhead(tx, schema, state, options.now, options.ahead ?? PARTITIONS_AHEAD);
    await tx.query(`CREATE TABLE ${s}.${KEPT_PARTITION} PARTITION OF ${s}.transitions DEFAULT`);
    await tx.query(`INSERT INTO ${s}.transitions (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM ${s}.transitions_unpartitioned`);
    await tx.query(`ALTER TABLE ${s}.transitions ALTER COLUMN id RESTART WITH ${BigInt(span[0]?.next_id ?? '1').toString()}`);
    await tx.query(`DROP TABLE ${s}.transitions_unpartitioned`);
    return true;
  });
}

/** The statement that prunes old history rows of the default partition (rows kept from dropped partitions). */
export function keptHistorySql(schema: string): string {
  const s = quoteSchema(schema);
  return `
    WITH doomed AS (
      SELECT t.id, t.at FROM ${s}.${KEPT_PARTITION} t
      WHERE t.at < $1 AND t.from_state IS NOT NULL AND t.published_at IS NOT NULL
        AND EXISTS (SELECT 1 FROM ${s}.transitions n
                    WHERE n.machine = t.machine AND n.instance_id = t.instance_id AND n.seq > t.seq)
      ORDER BY t.at
      LIMIT $2
      FOR UPDATE SKIP LOCKED)
    DELETE FROM ${s}.${KEPT_PARTITION} t USING doomed d WHERE t.id = d.id AND t.at = d.at`;
}
