// Shared pieces of the benchmark: configuration, schema housekeeping, counters and statistics.
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pg from 'pg';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** nats-server with JetStream, for scenario (n). */
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

const scale = Number(process.env.BENCH_SCALE ?? '1');
if (!Number.isFinite(scale) || scale <= 0) throw new Error(`BENCH_SCALE must be a positive number (got ${process.env.BENCH_SCALE})`);

const only = (process.env.BENCH_ONLY ?? 'a,b,b0,c,t,e,i')
  .split(',')
  .map((s) => s.trim().toLowerCase())
  .filter(Boolean);
const systems = (process.env.BENCH_SYSTEMS ?? 'drover,graphile-worker,pg-boss')
  .split(',')
  .map((s) => s.trim().toLowerCase())
  .filter(Boolean);

/** What one run does, from the environment. */
export const config = {
  scale,
  only: new Set(only),
  systems: new Set(systems),
  /** (a) one-step jobs. */
  jobs: Math.max(100, Math.round(20_000 * scale)),
  /** (b) records through three steps. */
  chains: Math.max(50, Math.round(5_000 * scale)),
  /** (t) timer records, each due 100–3000 ms after its creation. */
  timers: Math.max(50, Math.round(500 * scale)),
  /** (e) records per bulk create. */
  bulk: Math.max(2000, Math.round(20_000 * scale)),
  /** (i) idle records seeded, and how long the idle runtime is watched (s). */
  idleRecords: Math.max(1000, Math.round(100_000 * scale)),
  idleSeconds:
    process.env.BENCH_IDLE_SECONDS !== undefined ? Number(process.env.BENCH_IDLE_SECONDS) : Math.max(10, Math.round(60 * Math.min(1, scale))),
  /** (c) spaced enqueues and their spacing. */
  latencyEvents: Math.max(20, Math.round(200 * Math.min(1, scale * 2))),
  latencySpacingMs: Number(process.env.BENCH_SPACING_MS ?? '20'),
  /** Rounds of (a) and (b). */
  repeat: Math.max(1, Number(process.env.BENCH_REPEAT ?? '3')),
  /** Give up on a run after this long (it is then reported as timed out). */
  timeoutMs: Number(process.env.BENCH_TIMEOUT_MS ?? '180000'),
};

/** A small pool for housekeeping and completion checks, outside every system under test. */
export const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
admin.on('error', () => {});

let schemaCounter = 0;
/** A schema name unique to this run. */
export function schemaName(prefix: string): string {
  schemaCounter += 1;
  return `bench_${prefix}_${process.pid}_${Date.now().toString(36)}_${schemaCounter}`;
}

export async function dropSchema(schema: string): Promise<void> {
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/**
 * Between runs: autovacuum is off on the benchmark server, so dead tuples of the last run
 * are vacuumed away and statistics refreshed, then a checkpoint flushes dirty pages so the
 * next run does not pay for the previous one's writes.
 */
export async function settle(): Promise<void> {
  await admin.query('VACUUM ANALYZE');
  await admin.query('CHECKPOINT');
}

/** Statistics are taken after enqueueing and before processing (the planner needs row counts). */
export async function analyze(schema: string): Promise<void> {
  const { rows } = await admin.query<{ t: string }>(
    `SELECT quote_ident(schemaname) || '.' || quote_ident(relname) AS t FROM pg_stat_user_tables WHERE schemaname = $1`,
    [schema],
  );
  for (const { t } of rows) await admin.query(`VACUUM ANALYZE ${t}`);
  await admin.query('CHECKPOINT');
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export const now = () => performance.now();

/** Resolves once `tick()` has been called `n` times in all. */
export class Countdown {
  count = 0;
  readonly done: Promise<void>;
  private resolve!: () => void;
  constructor(readonly target: number) {
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
    if (target <= 0) this.resolve();
  }
  tick(k = 1): void {
    this.count += k;
    if (this.count >= this.target) this.resolve();
  }
}

/** Waits for a promise, or fails after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it is true (used to wait until a peer's completions are committed). */
export async function until(check: () => Promise<boolean>, ms: number, what: string, every = 10): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: timed out after ${ms} ms`);
    await sleep(every);
  }
}

/** Runs `fn` for 0..n-1 with at most `parallel` calls in flight. */
export async function parallelFor(n: number, parallel: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, lane));
}

/** The p-th percentile (0-100) of sorted values, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** CPU time so far: this Node process, and per process the given children, every PostgreSQL server and every nats-server on the machine. */
export interface CpuMark {
  at: number;
  /** This process, ms. */
  self: number;
  /** Other processes by pid: which kind, and CPU ticks (utime + stime, 100 Hz). */
  procs: Map<number, { kind: 'node' | 'pg' | 'nats'; ticks: number }>;
}

export function cpuMark(children: number[] = []): CpuMark {
  const u = process.cpuUsage();
  const procs: CpuMark['procs'] = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const kind = children.includes(Number(pid)) ? 'node' : stat.includes('(postgres)') ? 'pg' : stat.includes('(nats-server)') ? 'nats' : undefined;
      if (!kind) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      procs.set(Number(pid), { kind, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The process ended meanwhile.
    }
  }
  return { at: now(), self: (u.user + u.system) / 1000, procs };
}

/**
 * Cores used since `mark`: Node (this process and the given child processes), PostgreSQL
 * and nats-server, summed per process over the processes alive at the end (one that exited
 * meanwhile is not counted; one started meanwhile counts in full).
 */
export function coresSince(mark: CpuMark, children: number[] = []): { node: number; pg: number; nats: number } {
  const end = cpuMark(children);
  const wall = end.at - mark.at;
  const ms = { node: end.self - mark.self, pg: 0, nats: 0 };
  for (const [pid, p] of end.procs) {
    const before = mark.procs.get(pid);
    // A pid reused by a new process of another kind, or with fewer ticks, is a new process.
    const base = before && before.kind === p.kind && before.ticks <= p.ticks ? before.ticks : 0;
    ms[p.kind] += (p.ticks - base) * 10;
  }
  return { node: ms.node / wall, pg: ms.pg / wall, nats: ms.nats / wall };
}

/** A throughput result: scenario (a), (b) or (b0). */
export interface ThroughputResult {
  scenario: 'a' | 'b' | 'b0';
  system: string;
  variant: string;
  settings: string;
  items: number;
  stepsPerItem: number;
  enqueueMs: number;
  runMs: number;
  /** items/s of every round, when repeated. */
  rounds?: number[];
  /** Cores busy while processing: this Node process, and PostgreSQL (all its processes, so other load counts too). */
  cores?: { node: number; pg: number };
  error?: string;
  /** Extra lines for the report (e.g. drover's statement profile). */
  notes?: string[];
}

/** A latency result: scenario (c). */
export interface LatencyResult {
  scenario: 'c';
  system: string;
  variant: string;
  settings: string;
  /** Enqueue → handler start, ms, sorted. */
  samples: number[];
  /** How long the enqueue call itself took, ms, sorted. */
  callMs: number[];
  error?: string;
  notes?: string[];
}

/** Which bus carried the transitions in scenario (n). */
export type NatsBusKind = 'NATS JetStream' | 'in-process bus';

/** (n) committed transition → subscriber latency, over NATS or the in-process bus. */
export interface NatsLatencyResult {
  scenario: 'n';
  kind: 'latency';
  system: string;
  variant: NatsBusKind;
  /** ' (tuned: …)' when the row changes drover's defaults, shown after the bus. */
  tuned?: string;
  settings: string;
  /** The transition's `at` (the step's clock) → handler called, ms (Date.now, 1 ms resolution), sorted. */
  samples: number[];
  /** Just before `send()` → handler called, ms (performance.now), sorted. */
  sendToReceived: number[];
  /** How long `send()` itself took, ms, sorted. */
  callMs: number[];
  error?: string;
  notes?: string[];
}

/** (n) records through three steps with every transition published, over NATS or the in-process bus. */
export interface NatsThroughputResult {
  scenario: 'n';
  kind: 'throughput';
  system: string;
  variant: NatsBusKind;
  /** ' (tuned: …)' when the row changes drover's defaults, shown after the bus. */
  tuned?: string;
  settings: string;
  items: number;
  stepsPerItem: number;
  enqueueMs: number;
  /** start() → every record committed in `done`. */
  runMs: number;
  /** Last step committed → no row left with `published_at IS NULL` (0 for the in-process bus: no outbox). */
  drainMs: number;
  /** Rows still in the outbox when the last step had committed. */
  backlogAtDone: number;
  /** Transitions the subscriber should see (from the transitions table), and the distinct ones it saw. */
  expected: number;
  received: number;
  /** Of those, received after start() (the steps; with NATS the creations arrive during the enqueue). */
  receivedAfterStart: number;
  duplicates: number;
  /** start() → the last transition received. */
  receivedMs: number;
  /** items/s of every round, when repeated. */
  rounds?: number[];
  /** Cores busy from start() to the last transition received. */
  cores?: { node: number; pg: number; nats: number };
  /**
   * The relay's passes after start(), read back from `published_at` (one value per pass: the
   * mark's clock): how many, rows per pass, how many were full (the batch size), the median
   * time from one full pass's mark to the next one's while steps were still committing and
   * after the last one, and each step transition's `at` → `published_at` (ms).
   */
  relay?: {
    passes: number;
    meanRows: number;
    maxRows: number;
    fullPasses: number;
    gapDuring: number;
    gapAfter: number;
    lagP50: number;
    lagP99: number;
    lagMax: number;
  };
  error?: string;
  notes?: string[];
}

export type NatsResult = NatsLatencyResult | NatsThroughputResult;

/** (t) timers: how late each record's `after` transition ran, against the due time it was created with. */
export interface TimerResult {
  scenario: 't';
  system: string;
  variant: string;
  settings: string;
  /** Records in this group, and of those the ones whose transition ran. */
  records: number;
  fired: number;
  /** Action time − due time, ms, sorted (negative: early). */
  samples: number[];
  /** Lines for the scenario's own section (clock skew, the restart's timings). */
  info?: string[];
  error?: string;
  notes?: string[];
}

/** (e) bulk create: `items` records in calls of `perCall`, `runMs` for all calls. */
export interface BulkResult {
  scenario: 'e';
  system: string;
  variant: string;
  settings: string;
  items: number;
  perCall: number;
  runMs: number;
  rounds?: number[];
  /** Not run, and why (not a failure: e.g. this drover has no createMany). */
  skipped?: string;
  error?: string;
  notes?: string[];
}

/**
 * (e) a peer's bulk insert: `n` items in calls of `perCall` through `insert(from, to)`, timed;
 * then `count()` must find all of them; `close()` runs whatever happened.
 */
export async function timedBulk(
  peer: { system: string; verb: string; settings: string },
  n: number,
  perCall: number,
  insert: (from: number, to: number) => Promise<void>,
  count: () => Promise<number>,
  close: () => Promise<void>,
): Promise<BulkResult> {
  const result: BulkResult = {
    scenario: 'e',
    system: peer.system,
    variant: perCall >= n ? `${peer.verb}, ${n} in one call` : `${peer.verb}, ${perCall} per call`,
    settings: peer.settings,
    items: n,
    perCall,
    runMs: 0,
  };
  try {
    const t0 = now();
    for (let i = 0; i < n; i += perCall) await insert(i, Math.min(n, i + perCall));
    result.runMs = now() - t0;
    const found = await count();
    if (found !== n) throw new Error(`expected ${n} jobs, found ${found}`);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await close();
  }
  return result;
}

/** (i) an idle runtime over many waiting records: statements per minute and heap. */
export interface IdleResult {
  scenario: 'i';
  system: string;
  variant: string;
  settings: string;
  records: number;
  /** Queues the runtime polls. */
  queues: number;
  seedMs: number;
  seedHow: string;
  /** How long the statements were counted (ms). */
  measuredMs: number;
  /** Per statement label: calls, rows and time in the measured window. */
  statements: Array<{ name: string; calls: number; rows: number; ms: number }>;
  /** process.memoryUsage().heapUsed (bytes) at each point, after a full GC when one could be forced. */
  heap: Array<{ at: string; bytes: number }>;
  gcForced: boolean;
  /** Cores busy in the measured window: this Node process, and every PostgreSQL process on the machine. */
  cores?: { node: number; pg: number };
  pollIntervalMs: number;
  error?: string;
  notes?: string[];
}

export type Result = ThroughputResult | LatencyResult | NatsResult | TimerResult | BulkResult | IdleResult;

/**
 * Fires `fire(i)` every `spacingMs` on an absolute schedule (no drift), without waiting for
 * the previous call, and records how long each call took.
 */
export async function spaced(n: number, spacingMs: number, fire: (i: number) => Promise<void>): Promise<number[]> {
  const calls: Promise<number>[] = [];
  const start = now();
  for (let i = 0; i < n; i++) {
    const wait = start + i * spacingMs - now();
    if (wait > 0) await sleep(wait);
    const t0 = now();
    calls.push(fire(i).then(() => now() - t0));
  }
  return (await Promise.all(calls)).sort((a, b) => a - b);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
