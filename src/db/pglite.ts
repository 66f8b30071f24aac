import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

/**
 * Opens an in-memory PGlite from a saved copy of a freshly initialised cluster when `cacheDir`
 * holds one, else cold, saving the new cluster there for the next boot. A cold boot is mostly
 * PGlite's initdb (4-7.5 s here; from the copy 1.4-2.4 s, docs/operations.md), and initdb
 * writes the same cluster on every boot of one PGlite version, so the copy is keyed by it. A
 * copy that cannot be read or written only costs the cold boot. `say` hears each step.
 */
export async function openCachedPGlite(cacheDir: string, say: (line: string) => void = () => {}): Promise<PGlite> {
  const { PGlite } = await import('@electric-sql/pglite');
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  const file = join(cacheDir, `pglite-${await pgliteVersion()}-initdb.tar.gz`);
  const saved = await readFile(file).catch(() => null);
  if (saved) {
    say('starting the embedded database (PGlite, in memory) from the cluster saved by an earlier run…');
    try {
      const db = await PGlite.create({ loadDataDir: new Blob([saved]) });
      say(`PGlite ready in ${took()}`);
      return db;
    } catch {
      say('the saved cluster did not load; booting cold');
    }
  }
  say('starting the embedded database (PGlite, in memory): its initdb takes a few seconds on the first run…');
  const db = await PGlite.create();
  say(`PGlite ready in ${took()}; saving the fresh cluster for the next run`);
  try {
    const dump = Buffer.from(await (await db.dumpDataDir('gzip')).arrayBuffer());
    await mkdir(cacheDir, { recursive: true });
    const partial = `${file}.${process.pid}`;
    await writeFile(partial, dump);
    await rename(partial, file); // whole or not at all, should two boots race
  } catch {
    // A read-only or missing cache folder: the next boot is cold too.
  }
  return db;
}

/** The installed PGlite's version, read from its package.json beside its entry point. */
async function pgliteVersion(): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.resolve('@electric-sql/pglite')));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    const pkg = await readFile(join(dir, 'package.json'), 'utf8').catch(() => null);
    if (pkg && (JSON.parse(pkg) as { name?: string }).name === '@electric-sql/pglite') return (JSON.parse(pkg) as { version: string }).version;
  }
  return 'unknown';
}
