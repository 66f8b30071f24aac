import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { isTransientError } from './database.js';

/**
 * What one component (a poller, a worker, the LISTEN connection) says about a database
 * outage: one `warn` when it begins, one `info` with its length when the database answers
 * again, and nothing in between, however often the component retries.
 */
export class OutageLog {
  private since: number | null = null;

  constructor(
    private readonly logger: Logger,
    /** Names the component in both lines, e.g. `{ queue: 'orders' }`. */
    private readonly fields: Record<string, unknown>,
    private readonly now: () => number,
  ) {}

  /** Whether an outage is going on. */
  get down(): boolean {
    return this.since !== null;
  }

  /** A failure: `true` (logged at most once per outage) when it is the database being away, `false` for any other error, which the caller reports. */
  failed(err: unknown): boolean {
    if (!isTransientError(err)) return false;
    if (this.since === null) {
      this.since = this.now();
      this.logger.warn({ ...this.fields, err: errorMessage(err) }, 'drover: database unavailable; retrying with backoff until it is back');
    }
    return true;
  }

  /** A success: ends the outage, if there was one. */
  ok(): void {
    if (this.since === null) return;
    this.logger.info({ ...this.fields, downMs: this.now() - this.since }, 'drover: database available again');
    this.since = null;
  }
}
