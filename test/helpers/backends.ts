import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { CallerTransaction } from '../../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A database for one test file: a fresh schema on PostgreSQL, or a fresh in-memory PGlite. */
export interface TestBackend {
  name: 'postgres' | 'pglite';
  /** Pass as `createRuntime({ database })`; the same value reconnects to the same data (restarts). */
  database: string | PGlite;
  schema: string;
  /** Raw SQL against the backend, for assertions. */
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
  /** Opens a transaction the test controls: run `fn` with a caller transaction, commit or roll back. */
  inTransaction(
    fn: (tx: CallerTransaction) => Promise<void>,
    outcome: 'commit' | 'rollback',
  ): Promise<void>;
  close(): Promise<void>;
}

let counter = 0;
/** A schema name unique to this process and call. */
export function uniqueSchema(prefix = 't'): string {
  counter += 1;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`;
}

export async function postgresBackend(): Promise<TestBackend> {
  const schema = uniqueSchema();
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  pool.on('error', () => {});
  return {
    name: 'postgres',
    database: DATABASE_URL,
    schema,
    async query(text, params) {
      return (await pool.query(text, params as unknown[])).rows;
    },
    async inTransaction(fn, outcome) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await fn(client);
        await client.query(outcome === 'commit' ? 'COMMIT' : 'ROLLBACK');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      } finally {
        client.release();
      }
    },
    async close() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

class Rollback extends Error {}

export async function pgliteBackend(): Promise<TestBackend> {
  const db = await PGlite.create();
  return {
    name: 'pglite',
    database: db,
    schema: 'drover',
    async query(text, params) {
      return (await db.query(text, params)).rows as never;
    },
    async inTransaction(fn, outcome) {
      try {
        await db.transaction(async (tx) => {
          await fn(tx);
          if (outcome === 'rollback') throw new Rollback();
        });
      } catch (err) {
        if (!(err instanceof Rollback)) throw err;
      }
    },
    async close() {
      await db.close();
    },
  };
}

/** Both backends, for `describe.each`: the same behavioural suite runs on each. */
export const BACKENDS = [
  { name: 'postgres', make: postgresBackend },
  { name: 'pglite', make: pgliteBackend },
] as const;
