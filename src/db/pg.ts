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
      let retry: NodeJS.Timeout | undefined;
      const reconnect = (ms: number) => {
        if (!closed && !retry) retry = setTimeout(() => void connect(), ms);
      };
      // Releases a listen client exactly once: pg can emit 'error' twice for one lost
      // connection (the server's FATAL message, then the socket's end), and a client that
      // is never released makes pool.end() wait forever.
      const drop = (c: pg.PoolClient, err?: Error) => {
        if ((c as { droverReleased?: boolean }).droverReleased) return;
        (c as { droverReleased?: boolean }).droverReleased = true;
        if (client === c) client = undefined;
        c.release(err ?? true);
      };
      const connect = async (): Promise<void> => {
        retry = undefined;
        if (closed) return;
        let c: pg.PoolClient | undefined;
        try {
          c = await pool.connect();
          const self = c;
          self.on('notification', (msg) => {
            if (msg.channel === channel) onNotify(msg.payload ?? '');
          });
          self.on('error', (err) => {
            if ((self as { droverReleased?: boolean }).droverReleased) return;
            logger.warn({ err: err.message, channel }, 'drover: listen connection lost, reconnecting');
            drop(self, err);
            reconnect(500);
          });
          await self.query(`LISTEN "${channel}"`);
          if (closed) {
            drop(self);
            return;
          }
          client = self;
          // Anything sent while we were away is found by the next poll; wake once to look now.
          onNotify('');
        } catch (err) {
          if (c) drop(c, err as Error);
          if (!closed) logger.warn({ err: (err as Error).message, channel }, 'drover: LISTEN failed, retrying');
          reconnect(1000);
        }
      };
      await connect();
      return async () => {
        closed = true;
        if (retry) clearTimeout(retry);
        retry = undefined;
        const c = client;
        client = undefined;
        if (c) {
          try {
            await c.query(`UNLISTEN "${channel}"`);
            drop(c);
          } catch (err) {
            // The connection is going away anyway.
            drop(c, err as Error);
          }
        }
      };
    },
    async close() {
      pool.off('error', onPoolError);
      if (!owned) return;
      // pool.end() waits for every checked-out client; never let a leaked one hang stop().
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([
        pool.end().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), 10_000);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
      if (!ended) logger.error({ waiting: pool.totalCount - pool.idleCount }, 'drover: database pool did not close in 10s (clients still checked out)');
    },
  };
}
