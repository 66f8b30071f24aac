import pg from 'pg';
import type { Logger } from '../log.js';
import type { Database, Queryable, QueryResult } from './database.js';
import { OutageLog } from './outage.js';

/** A `Database` on node-postgres. Opens its own pool for a connection string; borrows a given one. */
export function pgDatabase(source: string | pg.Pool, logger: Logger): Database {
  const owned = typeof source === 'string';
  const pool = typeof source === 'string' ? new pg.Pool({ connectionString: source, max: 10 }) : source;
  // What a LISTEN connection of its own connects with: the pool's settings.
  const clientConfig: pg.ClientConfig = typeof source === 'string' ? { connectionString: source } : pool.options;
  // Without an error listener an idle client that loses its connection kills the process.
  const onPoolError = (err: Error) => logger.warn({ err: err.message }, 'drover: idle database client error');
  pool.on('error', onPoolError);
  // An 'error' event on a pool client with no listener takes the process down: it killed a
  // node once in the pg_terminate_backend chaos scenario (an 'Unhandled error event' from
  // pg-protocol; which moment of a client's life had no listener was not pinned down). Every
  // client of the pool keeps a listener for its whole life, beside pg-pool's own; the query or
  // transaction in flight still fails with the error.
  const onConnect = (client: pg.PoolClient) => {
    client.on('error', () => {});
  };
  pool.on('connect', onConnect);

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
      // A checked-out client that loses its connection (a restart, pg_terminate_backend) emits
      // 'error'; with no listener that kills the process. The query in flight fails with it too.
      const onLost = (err: Error) => {
        broken = err;
      };
      client.on('error', onLost);
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
        client.off('error', onLost);
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    async listen(channel, onNotify) {
      // LISTEN holds a connection for as long as the runtime runs: it gets its own, outside the
      // pool, so a small pool (even `max: 1`) is left whole for the work.
      let client: pg.Client | undefined;
      let closed = false;
      let retry: NodeJS.Timeout | undefined;
      const outage = new OutageLog(logger, { listen: channel }, Date.now);
      const reconnect = (ms: number) => {
        if (!closed && !retry) retry = setTimeout(() => void connect(), ms);
      };
      // Ends a listen client exactly once: pg can emit 'error' twice for one lost connection
      // (the server's FATAL message, then the socket's end).
      const dropped = new WeakSet<pg.Client>();
      const drop = (c: pg.Client) => {
        if (dropped.has(c)) return;
        dropped.add(c);
        if (client === c) client = undefined;
        c.end().catch(() => {});
      };
      const connect = async (): Promise<void> => {
        retry = undefined;
        if (closed) return;
        const c = new pg.Client(clientConfig);
        c.on('notification', (msg) => {
          if (msg.channel === channel) onNotify(msg.payload ?? '');
        });
        c.on('error', (err) => {
          if (dropped.has(c)) return;
          if (!outage.failed(err)) logger.warn({ err: err.message, channel }, 'drover: listen connection lost, reconnecting');
          drop(c);
          reconnect(500);
        });
        try {
          await c.connect();
          await c.query(`LISTEN "${channel}"`);
          if (closed) {
            drop(c);
            return;
          }
          client = c;
          outage.ok();
          // Anything sent while we were away is found by the next poll; wake once to look now.
          onNotify('');
        } catch (err) {
          drop(c);
          if (!closed && !outage.failed(err)) logger.warn({ err: (err as Error).message, channel }, 'drover: LISTEN failed, retrying');
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
          await c.query(`UNLISTEN "${channel}"`).catch(() => {}); // the connection is going away anyway
          drop(c);
        }
      };
    },
    async close() {
      pool.off('error', onPoolError);
      pool.off('connect', onConnect);
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
