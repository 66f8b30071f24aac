import type { PGlite } from '@electric-sql/pglite';
import type { Database, QueryResult } from './database.js';

/** The part of PGlite drover uses, typed by shape. */
export type PGliteLike = Pick<PGlite, 'query' | 'transaction' | 'listen' | 'close'>;

/** Tells a PGlite instance from a `pg.Pool` or a connection string. */
export function isPGlite(value: unknown): value is PGliteLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as PGliteLike).transaction === 'function' &&
    typeof (value as PGliteLike).listen === 'function' &&
    typeof (value as { connect?: unknown }).connect !== 'function'
  );
}

/**
 * A `Database` on PGlite. PGlite has one connection: its own `transaction()` holds it for
 * the whole transaction, so other callers' statements wait instead of joining it.
 */
export function pgliteDatabase(db: PGliteLike, owned: boolean): Database {
  const map = <R>(res: { rows: unknown[]; affectedRows?: number }): QueryResult<R> => ({
    rows: res.rows as R[],
    // PGlite reports affectedRows 0 for a SELECT: count returned rows when there are any.
    rowCount: res.rows.length > 0 ? res.rows.length : (res.affectedRows ?? 0),
  });
  return {
    kind: 'pglite',
    query: async (text, params) => map(await db.query(text, params)),
    transaction: (fn) => db.transaction((tx) => fn({ query: async (text, params) => map(await tx.query(text, params)) })),
    async listen(channel, onNotify) {
      const unlisten = await db.listen(channel, onNotify);
      return async () => {
        await unlisten();
      };
    },
    async close() {
      if (owned) await db.close();
    },
  };
}

/** Opens an in-memory PGlite (or one in `dataDir`). Loaded lazily so `pg` users never pay for it. */
export async function openPGlite(dataDir?: string): Promise<PGlite> {
  const { PGlite } = await import('@electric-sql/pglite');
  return PGlite.create(dataDir);
}
