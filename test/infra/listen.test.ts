import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { pgDatabase } from '../../src/db/pg.js';
import { silentLogger } from '../../src/log.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';

// Real PostgreSQL: the LISTEN connection of the pg adapter when the server kills it.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
admin.on('error', () => {});
afterAll(() => admin.end());

const backends = async (app: string, listening: boolean) =>
  (
    await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND ($2::boolean IS FALSE OR query LIKE 'LISTEN%')`,
      [app, listening],
    )
  ).rows[0]?.n ?? 0;

const until = async (check: () => Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('pg LISTEN connection', () => {
  it('reconnects once after the server kills it, and close() leaves no connection behind', async () => {
    const app = uniqueSchema('listen');
    const db = pgDatabase(`${DATABASE_URL}?application_name=${app}`, silentLogger);
    let wakes = 0;
    const unlisten = await db.listen('drover_listen_test', () => {
      wakes += 1;
    });
    await until(async () => (await backends(app, true)) === 1);
    for (let round = 0; round < 3; round++) {
      const before = wakes;
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app]);
      // The reconnect wakes the listener once to look for anything missed meanwhile.
      await until(async () => wakes > before && (await backends(app, true)) === 1);
    }
    // pg emits 'error' twice for one killed connection; each must not open a listener of its own.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await backends(app, true)).toBe(1);
    await admin.query(`NOTIFY drover_listen_test, 'hello'`);
    await until(async () => wakes > 3 + 1);
    await unlisten();
    await db.close();
    await until(async () => (await backends(app, false)) === 0);
  });
});
