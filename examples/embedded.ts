// The examples' embedded database: an in-memory PGlite, booted from a saved copy of a freshly
// initialised cluster when there is one. A cold PGlite boot is mostly its initdb (3-7 s here,
// against ~0.1 s for drover's migrations; docs/operations.md#the-embedded-default), and what
// initdb writes is the same on every run of one PGlite version. So the first run keeps it in
// node_modules/.cache/drover and later runs load it (~1.5 s). `createRuntime()` with no
// database does the plain cold boot; the examples and drover/testing boot this way.

import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { openCachedPGlite } from '../src/db/pglite.js';

/** An in-memory PGlite, with a line for each step of its boot through `say`. */
export function openEmbedded(say: (line: string) => void): Promise<PGlite> {
  return openCachedPGlite(fileURLToPath(new URL('../node_modules/.cache/drover', import.meta.url)), say);
}
