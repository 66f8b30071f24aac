import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { canonicalStateString } from '../record/state.js';
import type { RuntimeAccess } from '../runtime/access.js';
import { createEventQueries, type EventQueries, type StreamRow } from './event-queries.js';

/** How often a stream looks for new transitions (a local commit wakes it sooner). */
export const POLL_MS = 250;
/** A comment line this often keeps proxies from closing an idle stream. */
export const KEEP_ALIVE_MS = 15_000;
/** What the client is told to wait before reconnecting. */
export const RETRY_MS = 2_000;
/** Rows per read. */
const BATCH = 500;
/**
 * How long a missing id below visible ones may hold a stream back when the snapshot cannot
 * settle it (a long transaction elsewhere on the server keeps the snapshot's xmin low).
 */
const GAP_WAIT_MS = 10_000;

/** A gap in the ids: `[start, limit)` missing, seen when transactions below `xmax` could still commit into it. */
interface Gap {
  start: bigint;
  limit: bigint;
  xmax: bigint | null;
  seenAt: number;
}

/** One open stream; `stop()` ends it (client gone, server closing). */
interface Stream {
  stop(): void;
}

/** The event streams of one server: opened per request, all ended when the server closes. */
export class EventStreams {
  private readonly streams = new Set<Stream>();
  private readonly sql: EventQueries;

  constructor(
    private readonly access: RuntimeAccess,
    private readonly logger: Logger,
  ) {
    this.sql = createEventQueries(access.schema);
  }

  /** Ends every open stream. */
  closeAll(): void {
    for (const s of [...this.streams]) s.stop();
  }

  /**
   * Serves `GET /api/events`: replays the transitions after `Last-Event-ID` (none without it),
   * then follows new ones in id order. Rows are delivered only up to the first id that a
   * running transaction may still commit, so a resumed stream misses nothing and repeats nothing.
   */
  async open(request: FastifyRequest, reply: FastifyReply, query: { machine?: string; state?: string; lastEventId?: string }): Promise<void> {
    const { db, registry } = this.access;
    if (query.machine !== undefined) registry.assertKnown(query.machine);
    const header = request.headers['last-event-id'];
    const resume = (typeof header === 'string' && /^\d{1,19}$/.test(header.trim()) ? header.trim() : undefined) ?? query.lastEventId;
    const machine = query.machine ?? null;
    const state = query.state === undefined ? null : machine ? canonicalStateString(query.state, registry.latest(machine).machine) : query.state;
    const like = state === null ? null : state.replace(/[\\%_]/g, (c) => `\\${c}`);
    let cursor = BigInt(resume ?? (await db.query<{ id: string }>(this.sql.end)).rows[0]?.id ?? '0');

    reply.hijack();
    const res: ServerResponse = reply.raw;
    res.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${RETRY_MS}\n\n`);

    const gaps: Gap[] = [];
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let wakeNow: (() => void) | undefined;
    // Real timers, not the runtime's clock: a stream follows the database, and a test clock
    // that never advances would freeze it.
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    // A commit of this runtime wakes the stream at once (the in-process bus only: on NATS a
    // subscription is a consumer, too heavy for a wake-up); other nodes' commits wait a poll.
    const unsubscribe = this.access.bus.outbox ? undefined : this.access.bus.subscribe(machine ? { machine } : {}, () => wakeNow?.());
    const stream: Stream = {
      stop: () => {
        if (stopped) return;
        stopped = true;
        clearInterval(keepAlive);
        if (timer) clearTimeout(timer);
        unsubscribe?.();
        wakeNow?.();
        this.streams.delete(stream);
        res.end();
      },
    };
    this.streams.add(stream);
    res.on('close', () => stream.stop());

    /** The highest id up to which every id is settled: visible, or missing for good. */
    const horizon = (ids: string[], xminText: string | null, xmaxText: string | null): bigint => {
      const xmin = xminText === null ? null : BigInt(xminText);
      const xmax = xmaxText === null ? null : BigInt(xmaxText);
      const now = Date.now();
      let settled = cursor;
      for (const text of ids) {
        const id = BigInt(text);
        if (id > settled + 1n) {
          const start = settled + 1n;
          let gap = gaps.find((g) => g.start <= start && start < g.limit);
          if (!gap) {
            gap = { start, limit: id, xmax, seenAt: now };
            gaps.push(gap);
          }
          // Every transaction that could still fill the gap was running when it was seen.
          const done = (gap.xmax !== null && xmin !== null && xmin >= gap.xmax) || now - gap.seenAt >= GAP_WAIT_MS;
          if (!done) break;
        }
        settled = id;
      }
      for (let i = gaps.length - 1; i >= 0; i--) if ((gaps[i] as Gap).limit <= settled) gaps.splice(i, 1);
      return settled;
    };

    const write = (row: StreamRow): boolean => {
      const data = {
        id: row.instance_id,
        machine: row.machine,
        version: row.version,
        seq: row.seq,
        from: row.from_state,
        to: row.to_state,
        status: row.status,
        event: row.event,
        at: row.at,
        ...(row.error ? { error: row.error } : {}),
      };
      return res.write(`id: ${row.tid}\nevent: transition\ndata: ${JSON.stringify(data)}\n\n`);
    };

    const loop = async () => {
      while (!stopped) {
        const snap = (
          await db.query<{ xmin: string | null; xmax: string | null; ids: string[] }>(this.sql.visibleIds, [cursor.toString(), BATCH])
        ).rows[0];
        const ids = snap?.ids ?? [];
        const upTo = horizon(ids, snap?.xmin ?? null, snap?.xmax ?? null);
        let flowing = true;
        if (upTo > cursor) {
          const rows = (await db.query<StreamRow>(this.sql.rows, [cursor.toString(), upTo.toString(), machine, state, like, BATCH])).rows;
          if (stopped) return;
          for (const row of rows) flowing = write(row) && flowing;
          cursor = upTo;
        }
        if (!flowing) await new Promise<void>((resolve) => res.once('drain', resolve).once('close', resolve));
        // A full batch that moved: read on at once.
        if (ids.length === BATCH && upTo === BigInt(ids[ids.length - 1] as string)) continue;
        await new Promise<void>((resolve) => {
          wakeNow = resolve;
          timer = setTimeout(resolve, POLL_MS);
        });
        wakeNow = undefined;
      }
    };
    loop().catch((err: unknown) => {
      if (!stopped) this.logger.warn({ err: errorMessage(err) }, 'drover http: event stream ended on an error; the client reconnects with Last-Event-ID');
      stream.stop();
    });
  }
}
