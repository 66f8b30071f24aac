import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DATABASE_URL } from '../helpers/backends.js';

const WORKER = fileURLToPath(new URL('./fixtures/worker.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface WorkerOptions {
  schema: string;
  node: string;
  lease?: string;
  poll?: number;
  batch?: number;
  concurrency?: number;
  busyMs?: number;
  holdAfter?: number;
  holdId?: string;
  holdFile?: string;
  /** The database the node uses (default: the suite's DATABASE_URL). */
  databaseUrl?: string;
  /** More environment for the worker (DROVER_NATS, DROVER_POOL_MAX, DROVER_MACHINES, …: see fixtures/worker.ts). */
  env?: Record<string, string>;
}

/** A drover node in a child process (fixtures/worker.ts), and everything it printed. */
export class Worker {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly listeners = new Set<() => void>();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly options: WorkerOptions) {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: options.databaseUrl ?? DATABASE_URL,
      DROVER_SCHEMA: options.schema,
      DROVER_NODE: options.node,
      DROVER_LEASE: options.lease ?? '1s',
      DROVER_POLL: String(options.poll ?? 20),
      DROVER_BATCH: String(options.batch ?? 20),
      DROVER_CONCURRENCY: String(options.concurrency ?? 10),
      BUSY_MS: String(options.busyMs ?? 0),
      ...options.env,
    };
    if (options.holdAfter !== undefined) env.HOLD_AFTER = String(options.holdAfter);
    if (options.holdId !== undefined) env.HOLD_ID = options.holdId;
    if (options.holdFile !== undefined) env.HOLD_FILE = options.holdFile;
    this.child = spawn(process.execPath, ['--import', 'tsx', WORKER], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.lines.push(line);
      this.notify();
    });
    createInterface({ input: this.child.stderr }).on('line', (line) => this.stderr.push(line));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        this.notify();
        resolve(this.exitInfo);
      });
    });
  }

  /** How the process ended, once it has. */
  get exitCode(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Lines starting with `prefix` followed by a space, split into words (the prefix dropped). */
  words(prefix: string): string[][] {
    return this.lines.filter((l) => l.startsWith(`${prefix} `)).map((l) => l.split(' ').slice(1));
  }

  /** Resolves once `predicate` holds over the lines printed so far; rejects on exit or timeout. */
  until(what: string, predicate: (w: Worker) => boolean, timeoutMs = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate(this)) return finish();
        if (this.exitInfo)
          return finish(new Error(`worker ${this.options.node} exited (${JSON.stringify(this.exitInfo)}) before: ${what}\n${this.tail()}`));
      };
      const timer = setTimeout(
        () => finish(new Error(`worker ${this.options.node}: timed out after ${timeoutMs} ms waiting for: ${what}\n${this.tail()}`)),
        timeoutMs,
      );
      const finish = (err?: Error) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves on the first line starting with `prefix`, returning its words. */
  async line(prefix: string, timeoutMs?: number): Promise<string[]> {
    await this.until(`a line "${prefix} …"`, (w) => w.words(prefix).length > 0, timeoutMs);
    return this.words(prefix)[0] as string[];
  }

  ready(timeoutMs = 20_000): Promise<string[]> {
    return this.line('ready', timeoutMs);
  }

  /** SIGKILL: no shutdown, no lease released, nothing flushed. Resolves once the process is gone. */
  async kill(): Promise<void> {
    if (!this.exitInfo) this.child.kill('SIGKILL');
    const info = await this.exited;
    if (info.signal !== 'SIGKILL' && info.code === null) throw new Error(`unexpected exit ${JSON.stringify(info)}`);
  }

  /** SIGTERM: the worker stops its runtime gracefully (flushing results, releasing leases) and exits 0. */
  terminate(): void {
    if (!this.exitInfo) this.child.kill('SIGTERM');
  }

  tail(n = 15): string {
    return [...this.lines.slice(-n), ...this.stderr.slice(-n).map((l) => `stderr: ${l}`)].join('\n');
  }
}

/** The workers a suite started, to kill in `afterEach`/`afterAll` whatever happened. */
export function workerPool() {
  const all: Worker[] = [];
  return {
    start(options: WorkerOptions): Worker {
      const w = new Worker(options);
      all.push(w);
      return w;
    },
    async killAll(): Promise<void> {
      await Promise.all(all.splice(0).map((w) => w.kill().catch(() => {})));
    },
  };
}

/** Polls `check` until it returns true; rejects with `what` after `timeoutMs`. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Runs `fn` over `items`, at most `limit` at once. */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(lanes);
}

interface QueryFn {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
}

/**
 * Everything wrong with the stepper records `ids` in `schema`, as readable lines (empty when
 * all is well): each must be `done` with context `seen` = [1, 2, 3] (every event taken once,
 * in order) and transitions seq 1..4 going a, b, c, done exactly once; nothing may be left
 * in its inbox or locked.
 */
export async function stepperProblems(db: QueryFn, schema: string, ids: readonly string[], path: readonly string[]): Promise<string[]> {
  const s = `"${schema}"`;
  const problems: string[] = [];
  const history = await db.query<{ id: string; seqs: number[]; path: string[] }>(
    `SELECT instance_id AS id, array_agg(seq ORDER BY seq) AS seqs, array_agg(to_state ORDER BY seq) AS path
     FROM ${s}.transitions WHERE machine = 'stepper' AND instance_id = ANY($1) GROUP BY instance_id`,
    [ids],
  );
  const rows = await db.query<{ id: string; status: string; state: string; seen: number[]; locked_by: string | null }>(
    `SELECT id, status, state, snapshot->'context'->'seen' AS seen, locked_by FROM ${s}.instances
     WHERE machine = 'stepper' AND id = ANY($1)`,
    [ids],
  );
  const inbox = await db.query<{ id: string; n: number }>(
    `SELECT instance_id AS id, count(*)::int AS n FROM ${s}.events WHERE machine = 'stepper' AND instance_id = ANY($1) GROUP BY instance_id`,
    [ids],
  );
  const byId = new Map(history.map((h) => [h.id, h]));
  const rowById = new Map(rows.map((r) => [r.id, r]));
  const expectedSeqs = path.map((_, i) => i + 1);
  const expectedSeen = path.slice(1).map((_, i) => i + 1);
  for (const id of ids) {
    const h = byId.get(id);
    const r = rowById.get(id);
    if (!r) {
      problems.push(`${id}: no record`);
      continue;
    }
    if (r.status !== 'done' || r.state !== path[path.length - 1]) problems.push(`${id}: status ${r.status} in ${r.state}`);
    if (JSON.stringify(r.seen) !== JSON.stringify(expectedSeen)) problems.push(`${id}: took events ${JSON.stringify(r.seen)}`);
    if (r.locked_by !== null) problems.push(`${id}: still locked by ${r.locked_by}`);
    if (!h) problems.push(`${id}: no transitions`);
    else {
      if (JSON.stringify(h.seqs) !== JSON.stringify(expectedSeqs)) problems.push(`${id}: transition seqs ${JSON.stringify(h.seqs)}`);
      if (JSON.stringify(h.path) !== JSON.stringify(path)) problems.push(`${id}: path ${JSON.stringify(h.path)}`);
    }
  }
  for (const { id, n } of inbox) problems.push(`${id}: ${n} event(s) left in the inbox`);
  return problems;
}

/** `commit` lines of workers as `id:seq` → to_state; duplicates (one step committed twice) listed apart. */
export function commitsOf(workers: readonly Worker[], machine: string): { commits: Map<string, string>; duplicates: string[] } {
  const commits = new Map<string, string>();
  const duplicates: string[] = [];
  for (const w of workers) {
    for (const [m, id, seq, to] of w.words('commit')) {
      if (m !== machine) continue;
      const key = `${id}:${seq}`;
      if (commits.has(key)) duplicates.push(`${key} (${w.options.node})`);
      commits.set(key, to as string);
    }
  }
  return { commits, duplicates };
}

/** Transitions stored in `schema` as `id:seq` → to_state. */
export async function storedTransitions(db: QueryFn, schema: string, machine: string): Promise<Map<string, string>> {
  const rows = await db.query<{ id: string; seq: number; to_state: string }>(
    `SELECT instance_id AS id, seq, to_state FROM "${schema}".transitions WHERE machine = $1`,
    [machine],
  );
  return new Map(rows.map((r) => [`${r.id}:${r.seq}`, r.to_state]));
}
