// pg-boss 12 under the three scenarios: queues with NOTIFY, jobs inserted in bulk with
// `insert()`, `work()` with batches; chains insert the next step's jobs from the handler.
import { PgBoss, type WorkOptions } from 'pg-boss';
import {
  admin,
  analyze,
  type BulkResult,
  Countdown,
  config,
  coresSince,
  cpuMark,
  DATABASE_URL,
  dropSchema,
  errorText,
  type LatencyResult,
  now,
  schemaName,
  settle,
  sleep,
  spaced,
  type ThroughputResult,
  timedBulk,
  until,
  within,
} from './common.js';

export interface BossVariant {
  name: string;
  batchSize: number;
  localConcurrency: number;
  /** The handler's inserts commit in the transaction that completes its batch (chains only). */
  transactional: boolean;
}

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);

export const bossVariants: BossVariant[] = [
  { name: 'batched', batchSize: env('BENCH_BOSS_BATCH', 500), localConcurrency: env('BENCH_BOSS_WORKERS', 2), transactional: false },
  {
    name: 'batched, transactional',
    batchSize: env('BENCH_BOSS_BATCH', 500),
    localConcurrency: env('BENCH_BOSS_WORKERS', 2),
    transactional: true,
  },
];

const describe = (v: BossVariant) =>
  `batchSize ${v.batchSize}, localConcurrency ${v.localConcurrency}, burstWhenBatchFull, transactional ${v.transactional}, ` +
  'queue notify + useListenNotify, pool 10';

const workOptions = (v: BossVariant): WorkOptions => ({
  batchSize: v.batchSize,
  localConcurrency: v.localConcurrency,
  burstWhenBatchFull: true,
  pollingIntervalSeconds: 0.5,
});

async function openBoss(schema: string, queues: string[]): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: DATABASE_URL, schema, useListenNotify: true, max: 10 });
  boss.on('error', (err) => console.error(`pg-boss: ${errorText(err)}`));
  // Warnings such as `autovacuum_disabled` are about this server's set-up, not the run.
  boss.on('warning', () => {});
  await boss.start();
  for (const q of queues) await boss.createQueue(q, { notify: true });
  return boss;
}

/** Completed jobs stay in the table (state `completed`) until their retention runs out. */
const remaining = async (schema: string) =>
  (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".job WHERE state <> 'completed'`)).rows[0]?.n ?? -1;

async function throughput(scenario: 'a' | 'b', v: BossVariant, size?: number): Promise<ThroughputResult> {
  const schema = schemaName('boss');
  const n = size ?? (scenario === 'a' ? config.jobs : config.chains);
  const result: ThroughputResult = {
    scenario,
    system: 'pg-boss',
    variant: v.name,
    settings: describe(v),
    items: n,
    stepsPerItem: scenario === 'a' ? 1 : 3,
    enqueueMs: 0,
    runMs: 0,
  };
  const queues = scenario === 'a' ? ['job'] : ['s1', 's2', 's3'];
  const boss = await openBoss(schema, queues);
  try {
    const t0 = now();
    for (let i = 0; i < n; i += 1000) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + 1000); j++) jobs.push({ data: { n: j } });
      await boss.insert(queues[0] as string, jobs);
    }
    result.enqueueMs = now() - t0;
    await analyze(schema);
    const finished = new Countdown(n);
    const t1 = now();
    const cpuAt = cpuMark();
    if (scenario === 'a') {
      await boss.work('job', workOptions(v), async (jobs) => {
        finished.tick(jobs.length);
      });
    } else if (v.transactional) {
      const chainTo = (next: string) => async (jobs: Array<{ data: object }>, tx: unknown) => {
        await boss.insert(
          next,
          jobs.map((j) => ({ data: j.data })),
          { db: tx as never },
        );
      };
      await boss.work('s1', { ...workOptions(v), transactional: true }, chainTo('s2'));
      await boss.work('s2', { ...workOptions(v), transactional: true }, chainTo('s3'));
      await boss.work('s3', workOptions(v), async (jobs) => {
        finished.tick(jobs.length);
      });
    } else {
      const chainTo = (next: string) => async (jobs: Array<{ data: object }>) => {
        await boss.insert(
          next,
          jobs.map((j) => ({ data: j.data })),
        );
      };
      await boss.work('s1', workOptions(v), chainTo('s2'));
      await boss.work('s2', workOptions(v), chainTo('s3'));
      await boss.work('s3', workOptions(v), async (jobs) => {
        finished.tick(jobs.length);
      });
    }
    await within(finished.done, config.timeoutMs, `pg-boss ${scenario}`);
    await until(async () => (await remaining(schema)) === 0, 30_000, 'pg-boss completions');
    result.runMs = now() - t1;
    result.cores = coresSince(cpuAt);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeBoss(boss, schema);
  }
  return result;
}

export const bossJobs = (v: BossVariant, n?: number) => throughput('a', v, n);
export const bossChains = (v: BossVariant, n?: number, scenario: 'b' | 'b0' = 'b') =>
  throughput('b', v, n).then((r) => ({ ...r, scenario }));

/** (e) `n` jobs inserted with `insert()`, `perCall` per call (no worker running). */
export async function bossBulk(n: number, perCall: number): Promise<BulkResult> {
  const schema = schemaName('boss');
  const boss = await openBoss(schema, ['job']);
  return timedBulk(
    { system: 'pg-boss', verb: 'insert()', settings: 'queue notify + useListenNotify, pool 10' },
    n,
    perCall,
    async (from, to) => {
      const jobs = [];
      for (let j = from; j < to; j++) jobs.push({ data: { n: j } });
      await boss.insert('job', jobs);
    },
    () => remaining(schema),
    () => closeBoss(boss, schema),
  );
}

/** After a pg-boss run: stopped (gracefully, up to 5 s), its schema dropped, the server settled. */
async function closeBoss(boss: { stop(options: { graceful: boolean; timeout: number }): Promise<void> }, schema: string): Promise<void> {
  await boss.stop({ graceful: true, timeout: 5000 }).catch(() => {});
  await dropSchema(schema);
  await settle();
}

/** (c) `send()` → handler start, woken by the queue's NOTIFY. */
export async function bossLatency(v: BossVariant): Promise<LatencyResult> {
  const schema = schemaName('boss');
  const result: LatencyResult = {
    scenario: 'c',
    system: 'pg-boss',
    variant: `${v.name}: send() → handler start`,
    settings: describe(v),
    samples: [],
    callMs: [],
  };
  const startedAt = new Map<number, number>();
  const boss = await openBoss(schema, ['lat']);
  try {
    await boss.work('lat', workOptions(v), async (jobs) => {
      const t = now();
      for (const job of jobs) {
        const i = (job.data as { i: number }).i;
        if (!startedAt.has(i)) startedAt.set(i, t);
      }
    });
    await sleep(500);
    const t0 = new Map<number, number>();
    result.callMs = await spaced(config.latencyEvents, config.latencySpacingMs, async (i) => {
      t0.set(i, now());
      await boss.send('lat', { i });
    });
    await within(
      (async () => {
        while (startedAt.size < config.latencyEvents) await sleep(10);
      })(),
      30_000,
      'pg-boss latency',
    );
    result.samples = [...t0.entries()].map(([i, t]) => (startedAt.get(i) as number) - t).sort((a, b) => a - b);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeBoss(boss, schema);
  }
  return result;
}
