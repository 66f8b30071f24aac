import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { MigrationChangedError } from '../errors.js';
import type { Database } from './database.js';
import { quoteSchema } from './database.js';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** One numbered migration file. */
export interface Migration {
  id: number;
  name: string;
  /** The file name, e.g. `001_core.sql`. */
  file: string;
  sql: string;
  /** sha256 (hex) of the file text; see {@link checksum}. */
  checksum: string;
}

/**
 * Checksums a migration once had, by id, still accepted from databases that applied that text
 * (and replaced there by the current one). Only for files edited before checksums existed:
 * from now on a landed migration never changes, so this list should never grow.
 */
const EARLIER_CHECKSUMS: Readonly<Record<number, readonly string[]>> = {
  // 001_core.sql as it first landed (6bc1c91, invocations_due on (queue, locked_until)), before
  // 2a255c1 edited it in place. Both texts landed, so the file stays as it is now and both are
  // accepted; 005_invocations_due rebuilds the index for databases migrated with the first text.
  1: ['0c7cce5ab3890ec39f6c9bc4e38cdbe668a04b443bd2eb843c8686b173a8226f'],
};

/**
 * sha256 of a migration's text. Line endings are normalised first, so a checkout that turns
 * `\n` into `\r\n` (git's autocrlf) does not look like an edit.
 */
export function checksum(sql: string): string {
  return createHash('sha256').update(sql.replaceAll('\r\n', '\n')).digest('hex');
}

/** The numbered migrations shipped with drover, in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(new URL(file, MIGRATIONS_DIR), 'utf8');
      return { id: Number(file.slice(0, 3)), name: file.slice(4, -4), file, sql, checksum: checksum(sql) };
    }),
  );
}

/** Splits a migration into statements (migrations keep `;` at line ends only). */
function statements(sql: string): string[] {
  return sql
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter(Boolean);
}

/**
 * Applies every migration not yet recorded in `<schema>.migrations`, in order, in one
 * transaction under an advisory lock, so runtimes starting together apply each once.
 * Each applied migration is recorded with the checksum of its file; an applied migration
 * whose file has changed since refuses the whole run with `MigrationChangedError` before
 * anything is applied. Rows from before checksums were stored get the current one.
 * Returns the ids applied now.
 */
export async function migrate(db: Database, schema: string): Promise<number[]> {
  const q = quoteSchema(schema);
  const migrations = await loadMigrations();
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`drover.migrate.${schema}`]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS ${q}.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    // The table is made here, not by a migration, so its later columns are added here too.
    await tx.query(`ALTER TABLE ${q}.migrations ADD COLUMN IF NOT EXISTS checksum text`);
    const rows = (await tx.query<{ id: number; checksum: string | null }>(`SELECT id, checksum FROM ${q}.migrations`)).rows;
    const stored = new Map(rows.map((r) => [r.id, r.checksum]));

    const pending: Migration[] = [];
    for (const m of migrations) {
      if (!stored.has(m.id)) {
        pending.push(m);
        continue;
      }
      const found = stored.get(m.id) ?? null;
      if (found === m.checksum) continue;
      if (found !== null && !EARLIER_CHECKSUMS[m.id]?.includes(found)) {
        throw new MigrationChangedError(
          `migration ${m.file} was applied to schema "${schema}" with checksum ${found}, but the file now has checksum ${m.checksum}: ` +
            'a landed migration never changes. Restore the file to the text it was applied with, and put the change in a new numbered migration.',
        );
      }
      // Applied before checksums were stored, or as a known earlier text: record the current one.
      await tx.query(`UPDATE ${q}.migrations SET checksum = $2 WHERE id = $1`, [m.id, m.checksum]);
    }

    for (const m of pending) {
      for (const statement of statements(m.sql.replaceAll('{{schema}}', q))) await tx.query(statement);
      await tx.query(`INSERT INTO ${q}.migrations (id, name, checksum) VALUES ($1, $2, $3)`, [m.id, m.name, m.checksum]);
    }
    return pending.map((m) => m.id);
  });
}

/** One migration as `migrationStatus()` reports it. */
export interface MigrationState {
  id: number;
  name: string;
  /** `applied`; `pending` (not yet); `changed` (applied with other text: `migrate` refuses to run). */
  state: 'applied' | 'pending' | 'changed';
  appliedAt: Date | null;
  /** The shipped file's checksum. */
  checksum: string;
  /** The checksum stored when it was applied (null if pending or applied before checksums). */
  storedChecksum: string | null;
}

/** Every shipped migration with whether the schema has it (reads only; a missing schema has them all pending). */
export async function migrationStatus(db: Database, schema: string): Promise<MigrationState[]> {
  const q = quoteSchema(schema);
  const migrations = await loadMigrations();
  const exists = await db.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`${q}.migrations`]);
  const rows = exists.rows[0]?.t
    ? (await db.query<{ id: number; applied_at: Date; checksum: string | null }>(`SELECT id, applied_at, checksum FROM ${q}.migrations`)).rows
    : [];
  const stored = new Map(rows.map((r) => [r.id, r]));
  return migrations.map((m) => {
    const row = stored.get(m.id);
    const known = row?.checksum == null || row.checksum === m.checksum || EARLIER_CHECKSUMS[m.id]?.includes(row.checksum);
    return {
      id: m.id,
      name: m.name,
      state: !row ? 'pending' : known ? 'applied' : 'changed',
      appliedAt: row?.applied_at ?? null,
      checksum: m.checksum,
      storedChecksum: row?.checksum ?? null,
    };
  });
}
