// The examples' embedded database: an in-memory PGlite, booted from a saved copy of a freshly
// initialised cluster when there is one. A cold PGlite boot is mostly its initdb (3-7 s here,
// against ~0.1 s for drover's migrations; docs/operations.md#the-embedded-default), and what
// initdb writes is the same on every run of one PGlite version. So the first run keeps it in
// node_modules/.cache/drover and later runs load it (~1.5 s). `createRuntime()` with no
// database does the plain cold boot; this is for the examples, which are started often.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';

const PGLITE_PACKAGE = new URL('../node_modules/@electric-sql/pglite/package.json', import.meta.url);
const { version } = JSON.parse(await readFile(PGLITE_PACKAGE, 'utf8')) as { version: string };
const CACHE = new URL(`../node_modules/.cache/drover/pglite-${version}-initdb.tar.gz`, import.meta.url);

/** An in-memory PGlite, with a line for each step of its boot through `say`. */
export async function openEmbedded(say: (line: string) => void): Promise<PGlite> {
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  const saved = await readFile(CACHE).catch(() => null);
  if (saved) {
    say('starting the embedded database (PGlite, in memory) from the cluster saved by an earlier run…');
    const db = await PGlite.create({ loadDataDir: new Blob([saved]) });
    say(`PGlite ready in ${took()}`);
    return db;
  }
  say('starting the embedded database (PGlite, in memory): its initdb takes a few seconds on the first run…');
  const db = await PGlite.create();
  say(`PGlite ready in ${took()}; saving the fresh cluster for the next run`);
  const dump = Buffer.from(await (await db.dumpDataDir('gzip')).arrayBuffer());
  await mkdir(new URL('.', CACHE), { recursive: true });
  const partial = new URL(`${CACHE.href}.${process.pid}`);
  await writeFile(partial, dump);
  await rename(partial, CACHE); // whole or not at all, should two runs race
  return db;
}
