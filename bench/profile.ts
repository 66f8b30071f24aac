// A pg.Pool that times every statement drover sends through it, by statement name.
// drover takes a caller's pool (`createRuntime({ database: pool })`), so this needs no change
// in src: the pool's `query` is wrapped (and, with `allClients`, every checked-out client's
// too), and statements are named by matching their text against drover's own statement
// tables (data path, supervisor, residency).
import pg from 'pg';
import { createQueries } from '../src/db/queries.js';
import { createResidencyQueries } from '../src/db/residency-queries.js';
import { createSupervisorQueries } from '../src/db/supervisor-queries.js';
import { AbTester } from './abtest.js';
import { DATABASE_URL, now } from './common.js';

interface Stat {
  calls: number;
  ms: number;
  rows: number;
  max: number;
}

export interface ProfiledPool {
  pool: pg.Pool;
  stats: Map<string, Stat>;
  reset(): void;
  /** With BENCH_AB=1: the rolled-back EXPLAIN ANALYZE comparisons (see abtest.ts). */
  ab: AbTester | undefined;
  close(): Promise<void>;
  /** Per statement: calls, total ms, mean ms, rows per call; sorted by total time. */
  report(wallMs: number): string[];
}

/**
 * A pool for drover with statement timing. `max` is drover's own default (10). By default only
 * `pool.query` is timed (drover's single statements); with `allClients` the statements drover
 * runs on a checked-out client (its transactions: BEGIN, the statements, COMMIT; LISTEN) count
 * too, so that the profile holds every statement the pool ran.
 */
export function profiledPool(schema: string, max = 10, options: { allClients?: boolean } = {}): ProfiledPool {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max });
  pool.on('error', () => {});
  const explainMs = process.env.BENCH_AUTO_EXPLAIN_MS;
  if (explainMs !== undefined) {
    // Diagnosis only: plans of statements slower than this go to the server log (needs superuser).
    pool.on('connect', (client) => {
      void client.query(
        `LOAD 'auto_explain'; SET auto_explain.log_min_duration = ${Number(explainMs)}; SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_timing = on`,
      );
    });
  }
  const names = new Map<string, string>();
  // With NATS (scenario n) the statements that write transitions leave them in the outbox: their text differs.
  for (const outbox of [false, true]) for (const [name, text] of Object.entries(createQueries(schema, { outbox }).sql)) names.set(text, name);
  const more: Array<[string, Record<string, unknown>]> = [
    ['supervisor', createSupervisorQueries(schema)],
    ['residency', createResidencyQueries(schema)],
  ];
  for (const [group, table] of more) for (const [name, text] of Object.entries(table)) if (typeof text === 'string') names.set(text, `${group}: ${name}`);
  const stats = new Map<string, Stat>();
  const label = (text: string) => names.get(text) ?? `other: ${text.replace(/\s+/g, ' ').trim().slice(0, 40)}`;
  const original = pool.query.bind(pool) as (text: string, params?: unknown[]) => Promise<pg.QueryResult>;
  const ab = process.env.BENCH_AB === '1' ? new AbTester(Number(process.env.BENCH_AB_MIN_ROWS ?? '100')) : undefined;
  const note = (name: string, dt: number, rows: number) => {
    const s = stats.get(name) ?? { calls: 0, ms: 0, rows: 0, max: 0 };
    s.calls += 1;
    s.ms += dt;
    s.rows += rows;
    s.max = Math.max(s.max, dt);
    stats.set(name, s);
  };
  const timed = async (text: string, params?: unknown[]) => {
    const name = label(text);
    if (ab?.wants(name, params)) await ab.run(name, text, params).catch((err) => console.error(`A/B of ${name} failed: ${err.message}`));
    const t0 = now();
    const res = await original(text, params);
    note(name, now() - t0, res.rowCount ?? 0);
    return res;
  };
  (pool as unknown as { query: typeof timed }).query = timed;
  if (options.allClients) {
    // pg.Pool's own query() calls client.query(text, values, callback): already timed above.
    // A promise call on a checked-out client (drover's transactions, LISTEN) is timed here.
    pool.on('connect', (client) => {
      const own = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        if (typeof args[args.length - 1] === 'function' || typeof args[0] !== 'string') return own(...args);
        const text = args[0];
        const t0 = now();
        const out = own(...args) as Promise<pg.QueryResult>;
        return out.then((res) => {
          note(label(text), now() - t0, res?.rowCount ?? 0);
          return res;
        });
      };
    });
  }
  return {
    pool,
    stats,
    ab,
    async close() {
      await ab?.close();
      await pool.end().catch(() => {});
    },
    reset: () => stats.clear(),
    report(wallMs: number) {
      const lines = ['| statement | calls | rows/call | mean ms | max ms | total ms | % of wall |', '|---|---:|---:|---:|---:|---:|---:|'];
      for (const [name, s] of [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
        lines.push(
          `| ${name} | ${s.calls} | ${(s.rows / s.calls).toFixed(1)} | ${(s.ms / s.calls).toFixed(2)} | ${s.max.toFixed(1)} | ${s.ms.toFixed(0)} | ${((100 * s.ms) / wallMs).toFixed(0)}% |`,
        );
      }
      if (ab && ab.samples.length > 0) lines.push('', ...ab.report());
      return lines;
    },
  };
}

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
  hitCount?: number;
}

/**
 * With BENCH_CPU_PROF=1: samples this process's CPU (V8 profiler) while `fn` runs, and returns
 * where the time went, grouped by package (self time).
 */
export async function cpuProfiled<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  if (process.env.BENCH_CPU_PROF !== '1') return { value: await fn(), lines: [] };
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  const t0 = now();
  let value: T;
  let profile: { nodes: CpuNode[]; startTime: number; endTime: number };
  try {
    value = await fn();
  } finally {
    profile = ((await session.post('Profiler.stop')) as { profile: typeof profile }).profile;
    session.disconnect();
  }
  const wall = now() - t0;
  const total = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0);
  const byGroup = new Map<string, number>();
  const byFn = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const { url, functionName, lineNumber } = node.callFrame;
    const group = groupOf(url, functionName);
    byGroup.set(group, (byGroup.get(group) ?? 0) + hits);
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${lineNumber + 1}:${node.callFrame.columnNumber ?? 0}`;
    byFn.set(key, (byFn.get(key) ?? 0) + hits);
  }
  const ms = (hits: number) => ((hits / total) * ((profile.endTime - profile.startTime) / 1000)).toFixed(0);
  const pct = (hits: number) => `${((100 * hits) / total).toFixed(1)}%`;
  const lines = [`Node CPU profile of the processing phase (${(wall / 1000).toFixed(2)} s wall), self time by group:`, ''];
  lines.push('| group | ms | share of samples |', '|---|---:|---:|');
  for (const [g, h] of [...byGroup.entries()].sort((a, b) => b[1] - a[1])) lines.push(`| ${g} | ${ms(h)} | ${pct(h)} |`);
  lines.push('', 'Top functions (self time):', '', '| function | ms | share |', '|---|---:|---:|');
  for (const [f, h] of [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`| ${f} | ${ms(h)} | ${pct(h)} |`);
  return { value, lines };
}

function groupOf(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle (waiting for PostgreSQL)';
  if (fn === '(garbage collector)') return 'garbage collector';
  if (fn === '(program)' || fn === '(root)') return 'V8/native (program)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.includes('/src/')) return `drover src/${url.split('/src/')[1]?.split('/')[0]}`;
  if (url.startsWith('node:')) return `node core (${url.slice(5).split('/')[0]})`;
  if (url === '') return `native: ${fn}`;
  return url.replace(/^.*\/bench\//, 'bench/');
}
