import { type Duration, parseDuration } from '../time.js';

/** What a worker handler returns: how long to wait before its next call. */
export type HandlerResult = { kind: 'none'; idleMs: number } | { kind: 'done' } | { kind: 'fail'; error: unknown; idleMs: number };

/** No work was found: sleep `idle` before looking again. */
export function none(idle: Duration = 1000): HandlerResult {
  return { kind: 'none', idleMs: parseDuration(idle) };
}

/** Work was done: call the handler again at once. */
export function done(): HandlerResult {
  return { kind: 'done' };
}

/** Work failed (not a panic): log it and back off `idle`. */
export function fail(error: unknown, idle: Duration = 1000): HandlerResult {
  return { kind: 'fail', error, idleMs: parseDuration(idle) };
}
