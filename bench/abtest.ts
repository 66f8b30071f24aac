// Diagnosis (BENCH_AB=1): just before drover runs one of its hot statements on a big batch,
// the same statement, with the same parameters and on the same data, is run under
// EXPLAIN ANALYZE in a transaction that is rolled back, as drover wrote it and as rewritten
// by each variant below. Server-side execution times are then comparable like for like.
// The rolled-back transactions hold row locks briefly and delay the run: the timed results
// of a BENCH_AB run are not comparable with a normal run.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DATABASE_URL } from './common.js';

interface Variant {
  name: string;
  rewrite: (sql: string) => string;
  /** SQL run first in the same (rolled-back) transaction, e.g. a candidate index; gets the quoted schema. */
  setup?: (schema: string) => string;
}

const same = (s: string) => s;

/** What each variant changes, by drover statement name. Each variant is a concrete suggestion for src. */
const VARIANTS: Record<string, Variant[]> = {
  persistSteps: [
    // Every step rewrites state/status/wake_at, so the UPDATE is never HOT and maintains every index of instances.
    // Dropping the two indexes only list() needs (in the rolled-back transaction) shows what they cost the step.
    {
      name: 'without instances_state and instances_status',
      rewrite: same,
      setup: (s) => `DROP INDEX ${s}.instances_state; DROP INDEX ${s}.instances_status`,
    },
  ],
  completeInvocations: [
    // What the completion costs without waking the record (event_seq/wake_at UPDATE of instances).
    { name: 'without the instances UPDATE', rewrite: (s) => s.replace("AND i.status = 'active'", 'AND false') },
  ],
  claimInstances: [],
  claimInvocations: [
    // ORDER BY priority DESC, locked_until cannot use invocations_due (queue, locked_until): every due row is sorted.
    {
      name: 'index (queue, priority DESC, locked_until)',
      rewrite: same,
      setup: (s) => `CREATE INDEX ab_invocations_due ON ${s}.invocations (queue, priority DESC, locked_until)`,
    },
  ],
  loadEvents: [],
};

export interface AbSample {
  statement: string;
  rows: number;
  /** Execution time (ms) per variant, `original` first: the minimum of the repeats. */
  ms: Record<string, number>;
}

/** Runs the A/B comparisons for a few big batches of each hot statement. */
export class AbTester {
  private client: pg.Client | undefined;
  private readonly seen = new Map<string, number>();
  readonly samples: AbSample[] = [];
  private readonly plans: string[] = [];

  constructor(
    private readonly minRows = 100,
    private readonly perStatement = 3,
  ) {}

  wants(name: string, params: unknown[] | undefined): boolean {
    if (!(name in VARIANTS) || (this.seen.get(name) ?? 0) >= this.perStatement) return false;
    return batchRows(name, params) >= this.minRows;
  }

  /** One comparison at a time: the poller and the invoker call in parallel, and share the client. */
  run(name: string, text: string, params: unknown[] | undefined): Promise<void> {
    this.seen.set(name, (this.seen.get(name) ?? 0) + 1);
    const next = this.queue.then(() => this.compare(name, text, params));
    this.queue = next.catch(() => {});
    return next;
  }

  private queue: Promise<void> = Promise.resolve();

  private async compare(name: string, text: string, params: unknown[] | undefined): Promise<void> {
    if (!this.client) {
      this.client = new pg.Client({ connectionString: DATABASE_URL });
      this.client.on('error', () => {});
      await this.client.connect();
    }
    const variants: Variant[] = [{ name: 'original', rewrite: same }, ...(VARIANTS[name] ?? [])];
    const ms: Record<string, number> = {};
    const schema = /"(bench_[a-z0-9_]+)"\./.exec(text)?.[1] ?? 'drover';
    for (let repeat = 0; repeat < 2; repeat++) {
      for (const v of variants) {
        const sql = v.rewrite(text);
        if (v.name !== 'original' && !v.setup && sql === text) throw new Error(`variant "${v.name}" of ${name} changed nothing`);
        await this.client.query('BEGIN');
        try {
          if (v.setup) await this.client.query(v.setup(`"${schema}"`));
          const res = await this.client.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
          const plan = res.rows.map((r) => r['QUERY PLAN'] as string).join('\n');
          const time = (label: string) => Number(new RegExp(`${label}: ([0-9.]+) ms`).exec(plan)?.[1] ?? Number.NaN);
          ms[v.name] = Math.min(ms[v.name] ?? Number.POSITIVE_INFINITY, time('Execution Time') + time('Planning Time'));
          if (repeat === 1 && this.plans.length < 30) this.plans.push(`-- ${name}, ${batchRows(name, params)} rows, ${v.name}\n${plan}\n`);
        } finally {
          await this.client.query('ROLLBACK');
        }
      }
    }
    this.samples.push({ statement: name, rows: batchRows(name, params), ms });
  }

  /** A table of the samples, and where the plans were written. */
  report(): string[] {
    const lines = [
      '| statement | batch rows | variant | server ms (EXPLAIN ANALYZE, min of 2) | vs original |',
      '|---|---:|---|---:|---:|',
    ];
    for (const s of this.samples) {
      const base = s.ms.original ?? Number.NaN;
      for (const [variant, t] of Object.entries(s.ms)) {
        lines.push(
          `| ${s.statement} | ${s.rows} | ${variant} | ${t.toFixed(1)} | ${variant === 'original' ? '' : `${((100 * t) / base).toFixed(0)}%`} |`,
        );
      }
    }
    if (this.plans.length > 0) {
      const file = join(tmpdir(), `drover-bench-plans-${process.pid}-${Date.now()}.txt`);
      writeFileSync(file, this.plans.join('\n'));
      lines.push('', `EXPLAIN ANALYZE plans of the originals: ${file}`);
    }
    return lines;
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }
}

/** How many records a batch statement carries (its first JSON-array parameter), or its LIMIT. */
function batchRows(name: string, params: unknown[] | undefined): number {
  if (name === 'claimInstances' || name === 'claimInvocations') return Number(params?.[2] ?? 0);
  const first = params?.[0];
  if (typeof first !== 'string' || !first.startsWith('[')) return 0;
  try {
    return (JSON.parse(first) as unknown[]).length;
  } catch {
    return 0;
  }
}
