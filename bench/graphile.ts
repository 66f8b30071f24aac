// graphile-worker 0.18 under the three scenarios: `run()` with a taskList and concurrency,
// jobs added in bulk with WorkerUtils.addJobs, chains through helpers.addJob.
import { Logger, makeWorkerUtils, type RunnerOptions, run, type TaskList, type WorkerUtils } from 'graphile-worker';
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

/** Quiet unless something goes wrong. */
const logger = new Logger(() => (level, message) => {
  if (level === 'error') console.error(`graphile-worker: ${message}`);
});

export interface GraphileVariant {
  name: string;
  concurrency: number;
  /** `localQueue.size` (batched job fetching); -1 = off, the default. */
  localQueue: number;
  /** `completeJobBatchDelay` in ms (batched completion); -1 = off, the default. */
  completeDelay: number;
}

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);

/** The plain set-up (one fetch and one completion per job), and the documented batching options. */
export const graphileVariants: GraphileVariant[] = [
  { name: 'default', concurrency: env('BENCH_GW_CONCURRENCY', 16), localQueue: -1, completeDelay: -1 },
  {
    name: 'batched',
    concurrency: env('BENCH_GW_CONCURRENCY', 16),
    localQueue: env('BENCH_GW_LOCAL_QUEUE', 100),
    completeDelay: env('BENCH_GW_COMPLETE_DELAY_MS', 0),
  },
];

const describe = (v: GraphileVariant) =>
  `concurrency ${v.concurrency}, pool ${v.concurrency + 2}, localQueue ${v.localQueue}, completeJobBatchDelay ${v.completeDelay}` +
  ', pollInterval 2000 ms (LISTEN/NOTIFY)';

function runnerOptions(schema: string, v: GraphileVariant, taskList: TaskList): RunnerOptions {
  return {
    connectionString: DATABASE_URL,
    schema,
    concurrency: v.concurrency,
    maxPoolSize: v.concurrency + 2,
    noHandleSignals: true,
    taskList,
    logger,
    preset: { worker: { localQueue: { size: v.localQueue }, completeJobBatchDelay: v.completeDelay } },
  };
}

async function utilities(schema: string): Promise<WorkerUtils> {
  const utils = await makeWorkerUtils({ connectionString: DATABASE_URL, schema, logger });
  await utils.migrate();
  return utils;
}

/** Adds jobs in bulk, 1,000 per `addJobs` call. */
async function addMany(utils: WorkerUtils, identifier: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const specs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) specs.push({ identifier, payload: { n: j } });
    await utils.addJobs(specs);
  }
}

/** Completion is a DELETE of the job row: done when the table is empty. */
const remaining = async (schema: string) =>
  (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}"._private_jobs`)).rows[0]?.n ?? -1;

async function throughput(scenario: 'a' | 'b', v: GraphileVariant, size?: number): Promise<ThroughputResult> {
  const schema = schemaName('gw');
  const n = size ?? (scenario === 'a' ? config.jobs : config.chains);
  const stepsPerItem = scenario === 'a' ? 1 : 3;
  const result: ThroughputResult = {
    scenario,
    system: 'graphile-worker',
    variant: v.name,
    settings: describe(v),
    items: n,
    stepsPerItem,
    enqueueMs: 0,
    runMs: 0,
  };
  const finished = new Countdown(n);
  const taskList: TaskList =
    scenario === 'a'
      ? {
          job: async () => {
            finished.tick();
          },
        }
      : {
          s1: async (payload, helpers) => {
            await helpers.addJob('s2', payload);
          },
          s2: async (payload, helpers) => {
            await helpers.addJob('s3', payload);
          },
          s3: async () => {
            finished.tick();
          },
        };
  const utils = await utilities(schema);
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  try {
    const t0 = now();
    await addMany(utils, scenario === 'a' ? 'job' : 's1', n);
    result.enqueueMs = now() - t0;
    await analyze(schema);
    const t1 = now();
    const cpuAt = cpuMark();
    runner = await run(runnerOptions(schema, v, taskList));
    await within(finished.done, config.timeoutMs, `graphile-worker ${scenario}`);
    await until(async () => (await remaining(schema)) === 0, 30_000, 'graphile-worker completions');
    result.runMs = now() - t1;
    result.cores = coresSince(cpuAt);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await runner?.stop().catch(() => {});
    await utils.release();
    await dropSchema(schema);
    await settle();
  }
  return result;
}

export const graphileJobs = (v: GraphileVariant, n?: number) => throughput('a', v, n);
export const graphileChains = (v: GraphileVariant, n?: number, scenario: 'b' | 'b0' = 'b') =>
  throughput('b', v, n).then((r) => ({ ...r, scenario }));

/**
 * (b0) graphile-worker at drover's default concurrency: `concurrency` (concurrentJobs) from
 * BENCH_B0_CONCURRENCY (default: drover's), localQueue 500, completeJobBatchDelay off (its default).
 */
export const graphileB0Variant = (concurrency: number): GraphileVariant => ({
  name: `concurrentJobs ${concurrency}, localQueue 500`,
  concurrency,
  localQueue: 500,
  completeDelay: -1,
});

/** (e) `n` jobs added with WorkerUtils.addJobs, `perCall` per call (no worker running). */
export async function graphileBulk(n: number, perCall: number): Promise<BulkResult> {
  const schema = schemaName('gw');
  const utils = await utilities(schema);
  return timedBulk(
    { system: 'graphile-worker', verb: 'addJobs()', settings: 'WorkerUtils, its default pool' },
    n,
    perCall,
    async (from, to) => {
      const specs = [];
      for (let j = from; j < to; j++) specs.push({ identifier: 'job', payload: { n: j } });
      await utils.addJobs(specs);
    },
    () => remaining(schema),
    async () => {
      await utils.release();
      await dropSchema(schema);
      await settle();
    },
  );
}

/** (c) `WorkerUtils.addJob` (its own pool, so the runner learns of the job by NOTIFY) → task start. */
export async function graphileLatency(v: GraphileVariant): Promise<LatencyResult> {
  const schema = schemaName('gw');
  const result: LatencyResult = {
    scenario: 'c',
    system: 'graphile-worker',
    variant: `${v.name}: addJob() → task start`,
    settings: describe(v),
    samples: [],
    callMs: [],
  };
  const startedAt = new Map<number, number>();
  const utils = await utilities(schema);
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  try {
    runner = await run(
      runnerOptions(schema, v, {
        lat: async (payload) => {
          const i = (payload as { i: number }).i;
          if (!startedAt.has(i)) startedAt.set(i, now());
        },
      }),
    );
    await sleep(500);
    const t0 = new Map<number, number>();
    result.callMs = await spaced(config.latencyEvents, config.latencySpacingMs, async (i) => {
      t0.set(i, now());
      await utils.addJob('lat', { i });
    });
    await within(
      (async () => {
        while (startedAt.size < config.latencyEvents) await sleep(10);
      })(),
      30_000,
      'graphile-worker latency',
    );
    result.samples = [...t0.entries()].map(([i, t]) => (startedAt.get(i) as number) - t).sort((a, b) => a - b);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await runner?.stop().catch(() => {});
    await utils.release();
    await dropSchema(schema);
    await settle();
  }
  return result;
}
