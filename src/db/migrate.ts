import { readdir, readFile } from 'node:fs/promises';
import type { Database } from './database.js';
import { quoteSchema } from './database.js';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** The numbered migrations shipped with drover, in order. */
export async function loadMigrations(): Promise<Array<{ id: number; name: string; sql: string }>> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 3)),
      name: file.slice(4, -4),
      sql: await readFile(new URL(file, MIGRATIONS_DIR), 'utf8'),
    })),
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
    const done = new Set((await tx.query<{ id: number }>(`SELECT id FROM ${q}.migrations`)).rows.map((r) => r.id));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      for (const statement of statements(m.sql.replaceAll('{{schema}}', q))) await tx.query(statement);
      await tx.query(`INSERT INTO ${q}.migrations (id, name) VALUES ($1, $2)`, [m.id, m.name]);
      applied.push(m.id);
    }
    return applied;
  });
}
