// drover under the three scenarios. Each run gets its own schema and runtime, on a pool whose
// statements are timed (see profile.ts), so every result comes with where the time went.
import { fromPromise, setup } from 'xstate';
import { createRuntime, type DurableMachine, defineJob, durable, type Runtime, type RuntimeOptions } from '../src/index.js';
import {
  admin,
  analyze,
  Countdown,
  config,
  coresSince,
  cpuMark,
  dropSchema,
  errorText,
  type LatencyResult,
  now,
  parallelFor,
  percentile,
  schemaName,
  settle,
  sleep,
  spaced,
  type ThroughputResult,
  within,
} from './common.js';
import { processInChildren } from './drover-procs.js';
import { cpuProfiled, type ProfiledPool, profiledPool } from './profile.js';

/** drover's knobs, from the environment; the defaults are what the tuning runs found best here. */
export const droverSettings = {
  batchSize: Number(process.env.BENCH_DROVER_BATCH ?? '1000'),
  concurrency: Number(process.env.BENCH_DROVER_CONCURRENCY ?? '1000'),
  pollInterval: Number(process.env.BENCH_DROVER_POLL_MS ?? '1000'),
  /** Records per caller transaction when enqueueing, and transactions in flight. */
  enqueueChunk: Number(process.env.BENCH_DROVER_ENQUEUE_CHUNK ?? '500'),
  enqueueParallel: Number(process.env.BENCH_DROVER_ENQUEUE_PARALLEL ?? '4'),
  /** Also run (a) and (b) with this many separate drover processes (0: skip). */
  processes: Number(process.env.BENCH_DROVER_PROCESSES ?? '2'),
};

export const describeSettings = () =>
  `batchSize ${droverSettings.batchSize}, concurrency ${droverSettings.concurrency}, pollInterval ${droverSettings.pollInterval} ms, pool 10`;

// (a) the one-step job: its invoked promise resolves at once.
export const oneStep = defineJob('bench_job', async () => ({ ok: true }));

// (b) three durable steps: each state invokes a promise and moves on when it resolves.
const step = fromPromise(async ({ input }: { input: { n: number } }) => input);
export const chain = durable(
  setup({
    types: { context: {} as { n: number }, input: {} as { n: number } },
    actors: { step1: step, step2: step, step3: step },
  }).createMachine({
    id: 'bench_chain',
    initial: 's1',
    context: ({ input }) => ({ n: input.n }),
    states: {
      s1: { invoke: { src: 'step1', input: ({ context }) => ({ n: context.n }), onDone: 's2' } },
      s2: { invoke: { src: 'step2', input: ({ context }) => ({ n: context.n }), onDone: 's3' } },
      s3: { invoke: { src: 'step3', input: ({ context }) => ({ n: context.n }), onDone: 'done' } },
      done: { type: 'final' },
    },
  }),
);

// (c) the invoked promise notes when it started.
const started = new Map<string, number>();
const latencyJob = defineJob('bench_latency', async (args: { key: string }) => {
  if (!started.has(args.key)) started.set(args.key, now());
});
const waiting = durable(
  setup({
    types: { context: {} as { key: string }, input: {} as { key: string } },
    actors: {
      work: fromPromise(async ({ input }: { input: { key: string } }) => {
        if (!started.has(input.key)) started.set(input.key, now());
      }),
    },
  }).createMachine({
    id: 'bench_wait',
    initial: 'idle',
    context: ({ input }) => ({ key: input.key }),
    states: {
      idle: { on: { go: 'work' } },
      work: { invoke: { src: 'work', input: ({ context }) => ({ key: context.key }), onDone: 'done' } },
      done: { type: 'final' },
    },
  }),
);

/** drover's warnings and errors, with BENCH_LOG=1. */
const consoleLogger = {
  debug: () => {},
  info: () => {},
  warn: (obj: object, msg?: string) => console.error('drover warn:', msg, JSON.stringify(obj)),
  error: (obj: object, msg?: string) => console.error('drover error:', msg, JSON.stringify(obj)),
};

/** A runtime with the benchmark's settings on a timed pool; `extra` adds options (the NATS scenario's `nats`). */
export async function open(
  schema: string,
  machines: DurableMachine[],
  extra: Partial<RuntimeOptions> = {},
): Promise<{ rt: Runtime; profile: ProfiledPool }> {
  const profile = profiledPool(schema);
  const rt = await createRuntime({
    database: profile.pool,
    schema,
    machines,
    batchSize: droverSettings.batchSize,
    concurrency: droverSettings.concurrency,
    pollInterval: droverSettings.pollInterval,
    logger: process.env.BENCH_LOG === '1' ? consoleLogger : undefined,
    ...extra,
  });
  return { rt, profile };
}

/**
 * Creates `n` records before any worker runs. drover has no bulk create, so records are
 * created in caller transactions (`create(..., { tx })`) of `enqueueChunk` records, with
 * `enqueueParallel` transactions in flight: one round trip per record, one commit per chunk.
 */
export async function enqueue(rt: Runtime, profile: ProfiledPool, machine: string, n: number, input: (i: number) => unknown): Promise<void> {
  const chunk = droverSettings.enqueueChunk;
  const chunks = Math.ceil(n / chunk);
  await parallelFor(chunks, droverSettings.enqueueParallel, async (c) => {
    const client = await profile.pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = c * chunk; i < Math.min(n, (c + 1) * chunk); i++) await rt.create(machine, { id: `r${i}`, input: input(i), tx: client });
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
  });
}

async function throughput(
  scenario: 'a' | 'b',
  machine: DurableMachine,
  n: number,
  stepsPerItem: number,
  input: (i: number) => unknown,
  processes = 0,
): Promise<ThroughputResult> {
  const schema = schemaName('drover');
  const { rt, profile } = await open(schema, [machine]);
  const result: ThroughputResult = {
    scenario,
    system: 'drover',
    variant: (scenario === 'a' ? 'defineJob' : '3-state machine') + (processes > 0 ? `, ${processes} processes` : ''),
    settings: describeSettings(),
    items: n,
    stepsPerItem,
    enqueueMs: 0,
    runMs: 0,
  };
  try {
    const t0 = now();
    await enqueue(rt, profile, machine.name, n, input);
    result.enqueueMs = now() - t0;
    await analyze(schema);
    if (processes > 0) {
      // `rt` stays a client; the work is done by separate drover processes.
      Object.assign(result, await processInChildren(schema, scenario, n, processes));
    } else {
      const done = new Countdown(n);
      rt.subscribe({ machine: machine.name, to: 'done' }, () => done.tick());
      profile.reset();
      const t1 = now();
      const cpuAt = cpuMark();
      const { lines: cpu } = await cpuProfiled(async () => {
        await rt.start();
        await within(done.done, config.timeoutMs, `drover ${scenario}`);
      });
      result.runMs = now() - t1;
      result.cores = coresSince(cpuAt);
      result.notes = [...profile.report(result.runMs), ...(cpu.length ? ['', ...cpu] : [])];
    }
    const check = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".instances WHERE status = 'done'`);
    if (check.rows[0]?.n !== n) throw new Error(`expected ${n} records done, found ${check.rows[0]?.n}`);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await rt.stop().catch(() => {});
    await profile.close();
    await dropSchema(schema);
    await settle();
  }
  return result;
}

/** (a) `config.jobs` one-step jobs. */
export const droverJobs = (n = config.jobs, processes = 0) => throughput('a', oneStep, n, 1, (i) => ({ i }), processes);

/** (b) `config.chains` records through s1 → s2 → s3 → done: three durable steps each. */
export const droverChains = (n = config.chains, processes = 0) => throughput('b', chain, n, 3, (i) => ({ n: i }), processes);

/**
 * (c) Latency, three ways, on one idle runtime:
 * - `create()` on the worker's own runtime (it wakes its poller in-process);
 * - `create()` on a second, never-started runtime (a client: the poller wakes on NOTIFY);
 * - `send()` of an event to a waiting record, whose step commits and spawns the invocation.
 * Each sample: from just before the call to the first line of the invoked promise.
 */
export async function droverLatency(): Promise<LatencyResult[]> {
  const schema = schemaName('drover');
  const { rt, profile } = await open(schema, [latencyJob, waiting]);
  const clientPool = profiledPool(schema, 4);
  const client = await createRuntime({ database: clientPool.pool, schema, machines: [latencyJob, waiting] });
  const n = config.latencyEvents;
  const results: LatencyResult[] = [];
  const base = { scenario: 'c' as const, system: 'drover', settings: describeSettings() };
  try {
    await parallelFor(n, 8, async (i) => {
      await rt.create('bench_wait', { id: `w${i}`, input: { key: `w${i}` } });
    });
    await analyze(schema);
    await rt.start();
    await sleep(500);
    const run = async (variant: string, fire: (i: number) => Promise<void>, prefix: string) => {
      const t0 = new Map<string, number>();
      const doneAt = new Map<string, number>();
      const unsubscribe = rt.subscribe({ to: 'done' }, (t) => {
        if (t.id.startsWith(prefix)) doneAt.set(t.id, now());
      });
      profile.reset();
      const wall = now();
      const callMs = await spaced(n, config.latencySpacingMs, async (i) => {
        t0.set(`${prefix}${i}`, now());
        await fire(i);
      });
      const keys = [...t0.keys()];
      await within(
        (async () => {
          while (keys.some((k) => !doneAt.has(k))) await sleep(10);
        })(),
        30_000,
        `drover latency ${variant}`,
      );
      unsubscribe();
      const samples = keys.map((k) => (started.get(k) as number) - (t0.get(k) as number)).sort((a, b) => a - b);
      const toDone = keys.map((k) => (doneAt.get(k) as number) - (t0.get(k) as number)).sort((a, b) => a - b);
      const fmt = (v: number) => v.toFixed(1);
      results.push({
        ...base,
        variant,
        samples,
        callMs,
        notes: [
          `call → record committed in its final state (done): p50 ${fmt(percentile(toDone, 50))} ms, p95 ${fmt(percentile(toDone, 95))} ms, p99 ${fmt(percentile(toDone, 99))} ms`,
          '',
          ...profile.report(now() - wall),
        ],
      });
      await sleep(300);
    };
    await run(
      'create() → promise start',
      async (i) => {
        await rt.create('bench_latency', { id: `l${i}`, input: { key: `l${i}` } });
      },
      'l',
    );
    await run(
      'create() from a client runtime (NOTIFY) → promise start',
      async (i) => {
        await client.create('bench_latency', { id: `k${i}`, input: { key: `k${i}` } });
      },
      'k',
    );
    await run(
      'send() → step commits → promise start',
      async (i) => {
        await rt.send('bench_wait', `w${i}`, { type: 'go' });
      },
      'w',
    );
  } catch (err) {
    results.push({ ...base, variant: 'latency', samples: [], callMs: [], error: errorText(err) });
  } finally {
    await client.stop().catch(() => {});
    await rt.stop().catch(() => {});
    await clientPool.close();
    await profile.close();
    await dropSchema(schema);
    await settle();
  }
  return results;
}
