import pg from 'pg';
import type { Logger } from '../log.js';
import type { Database, Queryable, QueryResult } from './database.js';

/** A `Database` on node-postgres. Opens its own pool for a connection string; borrows a given one. */
export function pgDatabase(source: string | pg.Pool, logger: Logger): Database {
  const owned = typeof source === 'string';
  const pool = typeof source === 'string' ? new pg.Pool({ connectionString: source, max: 10 }) : source;
  // Without an error listener an idle client that loses its connection kills the process.
  const onPoolError = (err: Error) => logger.warn({ err: err.message }, 'drover: idle database client error');
  pool.on('error', onPoolError);

  const run = async <R>(client: Pick<pg.Pool, 'query'>, text: string, params?: unknown[]): Promise<QueryResult<R>> => {
    const res = await client.query(text, params as unknown[]);
    return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
  };

  return {
    kind: 'pg',
    query: (text, params) => run(pool, text, params),
    async transaction(fn) {
      const client = await pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        const tx: Queryable = { query: (text, params) => run(client, text, params) };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr;
        }
        throw err;
      } finally {
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    async listen(channel, onNotify) {
      let client: pg.PoolClient | undefined;
      let closed = false;
      const connect = async (): Promise<void> => {
        try {
          const c = await pool.connect();
          client = c;
          c.on('notification', (msg) => {
            if (msg.channel === channel) onNotify(msg.payload ?? '');
          });
          c.on('error', (err) => {
            logger.warn({ err: err.message, channel }, 'drover: listen connection lost, reconnecting');
            c.release(err);
            client = undefined;
            if (!closed) setTimeout(() => void connect(), 500);
          });
          await c.query(`LISTEN "${channel}"`);
          // Anything sent while we were away is found by the next poll; wake once to look now.
          onNotify('');
        } catch (err) {
          logger.warn({ err: (err as Error).message, channel }, 'drover: LISTEN failed, retrying');
          if (!closed) setTimeout(() => void connect(), 1000);
        }
      };
      await connect();
      return async () => {
        closed = true;
        const c = client;
        client = undefined;
        if (c) {
          try {
            await c.query(`UNLISTEN "${channel}"`);
          } catch {
            // The connection is going away anyway.
          }
          c.release();
        }
      };
    },
    async close() {
      pool.off('error', onPoolError);
      if (owned) await pool.end();
    },
  };
}
