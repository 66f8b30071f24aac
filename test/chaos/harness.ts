import { appendFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { createRuntime, type Runtime } from '../../src/index.js';
import { type Worker, type WorkerOptions, workerPool } from '../crash/helpers.js';
import { freePort, openNats, OwnNatsServer, streamMessages } from '../helpers/nats.js';
import { PgCluster } from './cluster.js';
import { CHAIN_PATH, chain, type ChainInput } from './fixtures/machines.js';

/** `CHAOS_SCALE=full` (npm run chaos): the sizes and durations the numbers come from; otherwise the short form CI runs. */
export const FULL = process.env.CHAOS_SCALE === 'full';
/** `short` in the short form, `full` in the full run. */
export const scale = <T>(short: T, full: T): T => (FULL ? full : short);

const MACHINES = pathToFileURL(fileURLToPath(new URL('./fixtures/machines.ts', import.meta.url))).href;
const SCHEMA = 'chaos';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface ChaosOptions {
  /** Drover nodes (child processes) to start. */
  nodes: number;
  /** Run a nats-server of the scenario's own and put every node (and the client) on it. */
  nats?: boolean;
  /** Each node's pg.Pool size (the worker's default is 5). */
  poolMax?: number;
  /** The cluster's max_connections (default 60). */
  maxConnections?: number;
  /** Overrides of the node options (lease, batch, concurrency, …). */
  worker?: Partial<WorkerOptions>;
}

/** One scenario's world: its own PostgreSQL cluster and nats-server, drover nodes in child processes, and a client runtime. */
export class ChaosEnv {
  readonly workers: Worker[] = [];
  private readonly pool = workerPool();
  private nodeCount = 0;
  private disposing = false;
  private readonly killed = new Set<Worker>();
  /** Nodes that exited by themselves (not killed by the scenario), each replaced at once as a process supervisor would. */
  readonly crashes: { node: string; exit: string; stderr: string }[] = [];
  private nc: NatsConnection | undefined;
  readonly startedAt = Date.now();

  private constructor(
    readonly pg: PgCluster,
    readonly nats: OwnNatsServer | undefined,
    readonly admin: pg.Pool,
    readonly client: Runtime,
    readonly clientPool: pg.Pool,
    private readonly options: ChaosOptions,
  ) {}

  static async create(options: ChaosOptions): Promise<ChaosEnv> {
    const cluster = await PgCluster.create({ maxConnections: options.maxConnections });
    let nats: OwnNatsServer | undefined;
    if (options.nats) {
      nats = new OwnNatsServer(await freePort());
      await nats.start();
    }
    const admin = new pg.Pool({ connectionString: cluster.adminUrl, max: 4 });
    admin.on('error', () => {});
    const clientPool = new pg.Pool({ connectionString: cluster.url, max: 4, application_name: 'chaos-client' });
    clientPool.on('error', () => {});
    // A client runtime (never started): it creates the records and reads them, as an application would.
    const client = await createRuntime({ database: clientPool, schema: SCHEMA, machines: [chain], ...(nats ? { nats: nats.url } : {}) });
    const env = new ChaosEnv(cluster, nats, admin, client, clientPool, options);
    await Promise.all(Array.from({ length: options.nodes }, () => env.startNode().ready(60_000)));
    return env;
  }

  /** Starts one more drover node (a child process running test/crash/fixtures/worker.ts). */
  startNode(): Worker {
    this.nodeCount += 1;
    const w = this.pool.start({
      schema: SCHEMA,
      node: `node-${this.nodeCount}`,
      lease: '1s',
      poll: 50,
      batch: 50,
      concurrency: 20,
      ...this.options.worker,
      databaseUrl: this.pg.url,
      env: {
        DROVER_MACHINES: MACHINES,
        DROVER_QUIET: '1',
        MAX_LIFE_MS: String(20 * 60_000),
        ...(this.options.poolMax !== undefined ? { DROVER_POOL_MAX: String(this.options.poolMax) } : {}),
        ...(this.nats ? { DROVER_NATS: this.nats.url } : {}),
        ...this.options.worker?.env,
      },
    });
    this.workers.push(w);
    void w.exited.then((exit) => {
      if (this.disposing || this.killed.has(w)) return;
      this.crashes.push({ node: w.options.node, exit: JSON.stringify(exit), stderr: w.stderr.slice(0, 12).join('\n') });
      this.workers.splice(this.workers.indexOf(w), 1);
      this.startNode();
    });
    return w;
  }

  /** SIGKILLs node `w` (a fault the scenario makes, so it is not replaced). */
  async kill(w: Worker): Promise<void> {
    this.killed.add(w);
    await w.kill();
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
  }

  /** Raw SQL as the superuser (it keeps a reserved connection when drover's run out). */
  async query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]> {
    return (await this.admin.query(text, params)).rows as R[];
  }

  /** Creates `n` chain records named `<prefix>-<i>` through the client runtime; returns their ids. */
  async create(prefix: string, n: number, input: (i: number) => ChainInput = () => ({})): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    for (let i = 0; i < ids.length; i += 1000) {
      const slice = ids.slice(i, i + 1000);
      await this.client.createMany(
        'chain',
        slice.map((id, j) => ({ id, input: input(i + j) })),
      );
    }
    return ids;
  }

  /**
   * Creates records at `perSecond` for `ms` (or while `ms()` holds), in ticks of 100 ms, calling `sample` once a second;
   * returns the ids. A tick that falls behind is made up in the next one.
   */
  async feed(
    prefix: string,
    perSecond: number,
    ms: number | (() => boolean),
    sample?: (elapsedMs: number) => Promise<void>,
    input: (i: number) => ChainInput = () => ({}),
  ): Promise<string[]> {
    const ids: string[] = [];
    const start = Date.now();
    let nextSample = 1000;
    let tick = 0;
    const going = typeof ms === 'number' ? () => Date.now() - start < ms : ms;
    while (going()) {
      const due = Math.floor(((Date.now() - start) / 1000) * perSecond) - ids.length;
      if (due > 0) {
        tick += 1;
        ids.push(...(await this.create(`${prefix}-${tick}`, due, input)));
      }
      if (sample && Date.now() - start >= nextSample) {
        nextSample += 1000;
        await sample(Date.now() - start);
      }
      // Pacing: the feed is a rate over wall time, so it has to wait for the next tick.
      await sleep(100);
    }
    return ids;
  }

  /** Records not yet in a final status. */
  async pending(): Promise<number> {
    const [r] = await this.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${SCHEMA}".instances WHERE status = 'active'`);
    return r?.n ?? 0;
  }

  /** Waits until no record is active (or `timeoutMs`); returns how long it took. */
  async settle(timeoutMs: number): Promise<number> {
    const start = Date.now();
    for (;;) {
      const n = await this.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${SCHEMA}".instances WHERE status = 'active'`).then(
        (r) => r[0]?.n ?? 1,
        () => 1,
      );
      if (n === 0 || Date.now() - start > timeoutMs) return Date.now() - start;
      // Polling the database from outside: there is nothing to wait on in another process.
      await sleep(200);
    }
  }

  /** Waits until the outbox holds nothing unpublished (parked rows aside), or `timeoutMs`. */
  async drainOutbox(timeoutMs: number): Promise<number> {
    const start = Date.now();
    for (;;) {
      const [r] = await this.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${SCHEMA}".transitions WHERE published_at IS NULL AND parked_at IS NULL`,
      ).catch(() => [{ n: 1 }]);
      if (r?.n === 0 || Date.now() - start > timeoutMs) return Date.now() - start;
      await sleep(200);
    }
  }

  /** What the record holds right now for the node `node`: ids and their seq, to see later when they moved on. */
  async heldBy(node: string): Promise<Map<string, number>> {
    const rows = await this.query<{ id: string; seq: number }>(
      `SELECT i.id, i.seq FROM "${SCHEMA}".instances i
       WHERE i.status = 'active' AND (i.locked_by = $1 OR EXISTS (
         SELECT 1 FROM "${SCHEMA}".invocations v WHERE v.machine = i.machine AND v.instance_id = i.id AND v.locked_by = $1))`,
      [node],
    );
    return new Map(rows.map((r) => [r.id, r.seq]));
  }

  /** ms from `since` until the last of `held` committed its next transition (-1: one never did). */
  async movedOn(held: Map<string, number>, since: number): Promise<number> {
    if (held.size === 0) return 0;
    const rows = await this.query<{ id: string; at: Date | null }>(
      `SELECT h.id, (SELECT min(t.at) FROM "${SCHEMA}".transitions t WHERE t.machine = 'chain' AND t.instance_id = h.id AND t.seq > h.seq) AS at
       FROM unnest($1::text[], $2::int[]) AS h(id, seq)`,
      [[...held.keys()], [...held.values()]],
    );
    let worst = 0;
    for (const r of rows) {
      if (!r.at) return -1;
      worst = Math.max(worst, r.at.getTime() - since);
    }
    return worst;
  }

  /** ms from `since` to the first transition committed at or after it (-1: none). */
  async firstCommitAfter(since: number): Promise<number> {
    const [r] = await this.query<{ at: Date | null }>(`SELECT min(at) AS at FROM "${SCHEMA}".transitions WHERE at >= $1`, [new Date(since)]);
    return r?.at ? r.at.getTime() - since : -1;
  }

  /** Step latency percentiles (ms): the time between consecutive transitions of one record, over every record. */
  async latency(): Promise<{ p50: number; p99: number; max: number }> {
    const [r] = await this.query<{ p50: number; p99: number; max: number }>(
      `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0)::float AS p50,
              coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0)::float AS p99, coalesce(max(ms), 0)::float AS max
       FROM (SELECT extract(epoch FROM at - lag(at) OVER (PARTITION BY instance_id ORDER BY seq)) * 1000 AS ms
             FROM "${SCHEMA}".transitions WHERE machine = 'chain') x WHERE ms IS NOT NULL`,
    );
    return { p50: Math.round(r?.p50 ?? 0), p99: Math.round(r?.p99 ?? 0), max: Math.round(r?.max ?? 0) };
  }

  /**
   * Counts from outside what went wrong for `ids`: a record missing or not `done` (lost; those
   * in `failing` must be `failed` instead), a history that is not s1 → s2 → s3 → done with seq
   * 1..4 (duplicated: a transition twice, or a gap), and with NATS, the stream's messages per
   * record against its history (duplicate `Nats-Msg-Id`s, missing or extra messages).
   */
  async audit(ids: readonly string[], failing: ReadonlySet<string> = new Set()): Promise<Audit> {
    const rows = await this.query<{ id: string; status: string; state: string; error: unknown }>(
      `SELECT id, status, state, error FROM "${SCHEMA}".instances WHERE machine = 'chain'`,
    );
    const hist = await this.query<{ id: string; seqs: number[]; path: string[]; statuses: string[] }>(
      `SELECT instance_id AS id, array_agg(seq ORDER BY seq) AS seqs, array_agg(to_state ORDER BY seq) AS path,
              array_agg(status ORDER BY seq) AS statuses
       FROM "${SCHEMA}".transitions WHERE machine = 'chain' GROUP BY instance_id`,
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const histById = new Map(hist.map((h) => [h.id, h]));
    const problems: string[] = [];
    let lost = 0;
    let duplicates = 0;
    let historyRows = 0;
    for (const id of ids) {
      const r = byId.get(id);
      const h = histById.get(id);
      historyRows += h?.seqs.length ?? 0;
      const want = failing.has(id) ? 'failed' : 'done';
      if (!r || r.status !== want) {
        lost += 1;
        if (problems.length < 20) problems.push(`${id}: ${r ? `${r.status} in ${r.state}` : 'no record'} (want ${want})`);
      }
      if (!h) continue;
      // Duplicated: a state entered twice, a seq twice or skipped, or a step the chain does not
      // take. A history that merely stops early is the record's being lost, counted above.
      // A record that failed stays in its state: its last entry is that state again, `failed`.
      const path = failing.has(id) && h.statuses.at(-1) === 'failed' ? h.path.slice(0, -1) : h.path;
      const seqOk = h.seqs.every((s, i) => s === i + 1);
      const repeated = path.length - new Set(path).size;
      const pathOk = repeated === 0 && path.every((p, i) => p === CHAIN_PATH[i]);
      if (!seqOk || !pathOk) {
        duplicates += Math.max(1, repeated);
        if (problems.length < 20) problems.push(`${id}: history ${JSON.stringify(h.path)} seqs ${JSON.stringify(h.seqs)}`);
      }
    }
    const audit: Audit = { records: ids.length, lost, duplicates, historyRows, problems };
    if (this.nats) {
      this.nc ??= await openNats(this.nats.url);
      const msgs = (await streamMessages(this.nc, 'DROVER')).filter((m) => m.subject.startsWith('drover.transition.chain.'));
      const seen = new Set<string>();
      let jsDuplicates = 0;
      for (const m of msgs) {
        const key = m.msgId ?? `${m.seq}`;
        if (seen.has(key)) jsDuplicates += 1;
        seen.add(key);
      }
      let missing = 0;
      const expected = new Set<string>();
      for (const id of ids) for (const s of histById.get(id)?.seqs ?? []) expected.add(`chain:${id}:${s}`);
      for (const k of expected) if (!seen.has(k)) missing += 1;
      let extra = 0;
      for (const k of seen) if (!expected.has(k)) extra += 1;
      const [parked] = await this.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${SCHEMA}".transitions WHERE parked_at IS NOT NULL`);
      Object.assign(audit, { jsMessages: msgs.length, jsDuplicates, jsMissing: missing, jsExtra: extra, parked: parked?.n ?? 0 });
      if (missing > 0) problems.push(`${missing} transitions in history never reached JetStream`);
      if (extra > 0) problems.push(`${extra} JetStream messages with no transition in history`);
    }
    return audit;
  }

  /** Nodes that exited, and the last lines of every node: for a failing scenario's report. */
  nodeState(): { exited: number; tails: string } {
    const exited = this.workers.filter((w) => w.exitCode !== undefined).length;
    return { exited, tails: this.workers.map((w) => `--- ${w.options.node}\n${w.tail(8)}`).join('\n') };
  }

  async dispose(): Promise<void> {
    this.disposing = true;
    await this.pool.killAll();
    await this.client.stop().catch(() => {});
    await this.clientPool.end().catch(() => {});
    await this.admin.end().catch(() => {});
    await this.nc?.close().catch(() => {});
    await this.nats?.dispose().catch(() => {});
    this.pg.dispose();
  }
}

export interface Audit {
  records: number;
  lost: number;
  duplicates: number;
  historyRows: number;
  jsMessages?: number;
  jsDuplicates?: number;
  jsMissing?: number;
  jsExtra?: number;
  parked?: number;
  problems: string[];
}

/**
 * Prints the scenario's line (and appends it as JSON to `CHAOS_RESULTS`, when set): records,
 * lost, duplicate transitions in history, duplicate JetStream messages, time to recover, p99
 * step latency and anything else the scenario measured.
 */
export function report(
  env: ChaosEnv,
  scenario: string,
  audit: Audit,
  numbers: { recoverMs?: number; p50?: number; p99?: number; wallMs?: number; [k: string]: unknown },
): void {
  const { problems, ...counts } = audit;
  const nodes = env.nodeState();
  const line = {
    scenario,
    scale: FULL ? 'full' : 'short',
    ...counts,
    ...numbers,
    nodeCrashes: env.crashes.length,
  };
  const text = Object.entries(line)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ');
  const crashes = env.crashes.slice(0, 3).map((c) => `--- ${c.node} exited by itself ${c.exit}:\n${c.stderr}`);
  console.log(
    `chaos ${text}${problems.length ? `\n  problems:\n  ${problems.join('\n  ')}\n${nodes.tails}` : ''}${crashes.length ? `\n${crashes.join('\n')}` : ''}`,
  );
  if (process.env.CHAOS_RESULTS) appendFileSync(process.env.CHAOS_RESULTS, `${JSON.stringify({ ...line, problems })}\n`);
}

/**
 * The checks every scenario ends with: nothing lost, nothing twice, with NATS every transition
 * in the stream exactly once, and no node dead of the fault (rather than of the scenario's
 * SIGKILL), even when its replacement finished the work.
 */
export function expectClean(env: ChaosEnv, audit: Audit, expect: (v: unknown) => { toEqual(v: unknown): void }): void {
  expect({ lost: audit.lost, duplicates: audit.duplicates, problems: audit.problems }).toEqual({ lost: 0, duplicates: 0, problems: [] });
  if (audit.jsMessages !== undefined)
    expect({ jsDuplicates: audit.jsDuplicates, jsMissing: audit.jsMissing, jsExtra: audit.jsExtra }).toEqual({ jsDuplicates: 0, jsMissing: 0, jsExtra: 0 });
  const crashes = env.crashes.map((c) => `${c.node} ${c.exit}: ${c.stderr.split('\n').find((l) => /error/i.test(l) && !/Unhandled/.test(l)) ?? ''}`);
  expect(crashes).toEqual([]);
}

export { sleep };
