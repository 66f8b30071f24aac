import { DatabaseUnavailableError, DroverError, InvalidArgumentError } from '../errors.js';

/** The result of one statement, the same shape on every backend. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/** Anything that runs parameterised SQL: a pool, a client in a transaction, a PGlite transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * The seam between drover and its store. Two implementations, PostgreSQL through `pg` and
 * PGlite, pass the same conformance suite.
 */
export interface Database extends Queryable {
  readonly kind: 'pg' | 'pglite';
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Calls `onNotify` for every NOTIFY on `channel`; resolves to an unsubscribe function. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  /** Releases what drover opened itself (a pool given by the caller is left open). */
  close(): Promise<void>;
}

/** What a caller may pass as `{ tx }`: a `pg` client inside BEGIN, or a PGlite transaction. */
export interface CallerTransaction {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[]; rowCount?: number | null; affectedRows?: number }>;
}

/** Wraps a caller's transaction so drover's queries see one result shape. */
export function adoptTransaction(tx: CallerTransaction): Queryable {
  return {
    async query<R>(text: string, params?: unknown[]) {
      const res = await tx.query(text, params);
      // pg gives rowCount; PGlite gives affectedRows, which is 0 for a SELECT.
      return { rows: res.rows as R[], rowCount: res.rowCount ?? (res.rows.length > 0 ? res.rows.length : (res.affectedRows ?? 0)) };
    },
  };
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Checks a schema name and returns it quoted for SQL. Only lower-case identifiers are taken. */
export function quoteSchema(schema: string): string {
  if (typeof schema !== 'string' || !IDENTIFIER.test(schema)) {
    throw new InvalidArgumentError(
      `schema "${String(schema)}" is not a valid identifier: use 1-63 characters of a-z, 0-9 and _, not starting with a digit`,
    );
  }
  return `"${schema}"`;
}

const RETRYABLE_SQLSTATE = new Set(['40001', '40P01', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', '53300']);
const RETRYABLE_NODE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);

/**
 * Whether an error is the infrastructure's (a lost connection, a serialization failure, a
 * deadlock) and so worth retrying, rather than a mistake that will fail again.
 */
export function isTransientError(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError) return true;
  if (!err || typeof err !== 'object' || err instanceof DroverError) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (RETRYABLE_SQLSTATE.has(code) || RETRYABLE_NODE.has(code))) return true;
  const message = (err as { message?: unknown }).message;
  return (
    typeof message === 'string' &&
    /Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(message)
  );
}

/** Whether a statement gave up waiting for a row lock (SQLSTATE 55P03, lock_not_available: its `lock_timeout` ran out). */
export function isLockTimeout(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '55P03';
}

/** A transient database error as callers see it: a {@link DatabaseUnavailableError} with the driver's error as `cause`; any other error as it is. */
export function asDatabaseUnavailable(err: unknown): unknown {
  return isTransientError(err) && !(err instanceof DatabaseUnavailableError) ? new DatabaseUnavailableError(err) : err;
}

/** Capped exponential backoff with full jitter: attempt 1 → up to `baseMs`, doubling up to `maxMs`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Retries `fn` on transient errors with capped exponential backoff, up to `attempts` tries
 * (one to two seconds on the defaults); then throws a {@link DatabaseUnavailableError}. One already
 * thrown by a nested `withRetry` is not retried again.
 */
export async function withRetry<T>(fn: () => Promise<T>, attempts = 6, baseMs = 50, maxMs = 2000): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !isTransientError(err) || err instanceof DatabaseUnavailableError) throw asDatabaseUnavailable(err);
      await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt, baseMs, maxMs)));
    }
  }
}
