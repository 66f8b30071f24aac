// drover under the three scenarios. Each run gets its own schema and runtime, on a pool whose
// statements are timed (see profile.ts), so every result comes with where the time went.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { fromPromise, setup } from 'xstate';
import {
  type CallerTransaction,
  createRuntime,
  type DurableMachine,
  defineJob,
  durable,
  type RecordView,
  type Runtime,
  type RuntimeOptions,
} from '../src/index.js';
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

/**
 * drover runs on `createRuntime({ database, schema, machines })` defaults. The BENCH_DROVER_*
 * knobs are off unless set; a row that uses one says so in its variant name and settings.
 */
const envNumber = (name: string): number | undefined => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new Error(`${name} must be a number (got ${raw})`);
  return v;
};

/** The runtime options the environment overrides (empty: drover's defaults). */
export const droverOverrides: Partial<Pick<RuntimeOptions, 'batchSize' | 'concurrency' | 'pollInterval'>> = Object.fromEntries(
  (
    [
      ['batchSize', envNumber('BENCH_DROVER_BATCH')],
      ['concurrency', envNumber('BENCH_DROVER_CONCURRENCY')],
      ['pollInterval', envNumber('BENCH_DROVER_POLL_MS')],
    ] as const
  ).filter(([, v]) => v !== undefined),
);

/** How the benchmark itself drives drover (not drover options). */
export const droverSettings = {
  /** Records per enqueue call: createMany() items per call; without createMany, records per caller transaction. */
  enqueueChunk: envNumber('BENCH_DROVER_ENQUEUE_CHUNK') ?? 1000,
  /** Without createMany: caller transactions in flight while enqueueing. */
  enqueueParallel: envNumber('BENCH_DROVER_ENQUEUE_PARALLEL') ?? 4,
  /** Also run (a) and (b) with this many separate drover processes (0, the default: skip). */
  processes: envNumber('BENCH_DROVER_PROCESSES') ?? 0,
};

const overrideText = () =>
  Object.entries(droverOverrides)
    .map(([k, v]) => `${k} ${v}${k === 'pollInterval' ? ' ms' : ''}`)
    .join(', ');

/** ' (tuned: batchSize 1000, …)' when an override is set, for variant names; '' on defaults. */
export const tunedSuffix = () => (Object.keys(droverOverrides).length ? ` (tuned: ${overrideText()})` : '');

/** What drover ran with: its defaults plus whatever the environment overrode. */
export const describeSettings = () => {
  const o = overrideText();
  return `createRuntime() defaults${o ? ` + ${o}` : ''}; pool: pg.Pool max 10 (drover's own size for a connection string)`;
};

/**
 * drover's defaults as written in src/runtime/options.ts (read as text, for the report only:
 * nothing private is called). undefined where the source does not match the pattern.
 */
export function sourceDefaults(): { batchSize?: number; concurrency?: number; pollInterval?: string } {
  let text = '';
  try {
    text = readFileSync(fileURLToPath(new URL('../src/runtime/options.ts', import.meta.url)), 'utf8');
  } catch {
    return {};
  }
  const int = (name: string) => {
    const m = new RegExp(`positiveInt\\('${name}',\\s*options\\.${name},\\s*(\\d+)\\)`).exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const poll = /options\.pollInterval \?\? '([^']+)'/.exec(text)?.[1];
  return { batchSize: int('batchSize'), concurrency: int('concurrency'), pollInterval: poll };
}

/** The concurrency drover runs (b0) with: the override, else its default from options.ts (10 if unreadable). */
export const droverConcurrency = () => droverOverrides.concurrency ?? sourceDefaults().concurrency ?? 10;

/** (b0) graphile-worker's concurrentJobs: BENCH_B0_CONCURRENCY, else drover's concurrency. */
export const b0Concurrency = () => Number(process.env.BENCH_B0_CONCURRENCY ?? droverConcurrency());

/** One item of `createMany()`. */
export interface BulkItem {
  id?: string;
  input?: unknown;
  runAt?: Date | number;
  priority?: number;
  uniqueKey?: string;
}
type CreateMany = (machine: string, items: readonly BulkItem[], options?: { tx?: CallerTransaction }) => Promise<RecordView[]>;

/**
 * `rt.createMany`, when this drover has it (it is feature-detected: the bench runs before and
 * after it landed); BENCH_CREATE_MANY=0 ignores it (the create() loop, for an A/B).
 */
export function createManyOf(rt: Runtime): CreateMany | undefined {
  if (process.env.BENCH_CREATE_MANY === '0') return undefined;
  const fn = (rt as unknown as { createMany?: unknown }).createMany;
  return typeof fn === 'function' ? (fn as CreateMany).bind(rt) : undefined;
}

/** How `enqueue()` creates records with this runtime, for the settings column. */
export const enqueueText = (rt: Runtime, tx = false) =>
  createManyOf(rt)
    ? `enqueue: createMany(), ${droverSettings.enqueueChunk} per call${tx ? ', each in a caller transaction' : ''}`
    : `enqueue: no createMany(), create() in caller transactions of ${droverSettings.enqueueChunk}, ${droverSettings.enqueueParallel} in flight`;

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

// (c) the invoked promise notes when it started; the entry action of `work`, when it ran.
const started = new Map<string, number>();
const acted = new Map<string, number>();
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
    actions: {
      noteActed: ({ context }) => {
        if (!acted.has(context.key)) acted.set(context.key, now());
      },
    },
  }).createMachine({
    id: 'bench_wait',
    initial: 'idle',
    context: ({ input }) => ({ key: input.key }),
    states: {
      idle: { on: { go: 'work' } },
      work: { entry: 'noteActed', invoke: { src: 'work', input: ({ context }) => ({ key: context.key }), onDone: 'done' } },
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

/**
 * A runtime on drover's defaults (plus any BENCH_DROVER_* override) on a timed pool; `extra`
 * adds options (the NATS scenario's `nats` and its own prefix and stream). `allClients`: also
 * count the statements drover runs inside its transactions (see profiledPool).
 */
export async function open(
  schema: string,
  machines: DurableMachine[],
  extra: Partial<RuntimeOptions> = {},
  allClients = false,
): Promise<{ rt: Runtime; profile: ProfiledPool }> {
  const profile = profiledPool(schema, 10, { allClients });
  const rt = await createRuntime({
    database: profile.pool,
    schema,
    machines,
    ...(process.env.BENCH_LOG === '1' ? { logger: consoleLogger } : {}),
    ...droverOverrides,
    ...extra,
  });
  return { rt, profile };
}

/** After a drover run: its runtime stopped, its timed pool closed, its schema dropped, the server settled. */
export async function closeRun(rt: Runtime, profile: ProfiledPool, schema: string): Promise<void> {
  await rt.stop().catch(() => {});
  await profile.close();
  await dropSchema(schema);
  await settle();
}

/**
 * Creates `n` records before any worker runs: `createMany()` in calls of `enqueueChunk` items,
 * one call at a time (with `tx`, each call in a caller transaction of its own). A drover
 * without createMany: `create(..., { tx })` in caller transactions of `enqueueChunk` records,
 * `enqueueParallel` transactions in flight (one round trip per record, one commit per chunk).
 */
export async function enqueue(
  rt: Runtime,
  profile: ProfiledPool,
  machine: string,
  n: number,
  input: (i: number) => unknown,
  options: { tx?: boolean; id?: (i: number) => string } = {},
): Promise<void> {
  const chunk = droverSettings.enqueueChunk;
  const chunks = Math.ceil(n / chunk);
  const id = options.id ?? ((i: number) => `r${i}`);
  const inTx = async (fn: (client: pg.PoolClient) => Promise<void>) => {
    const client = await profile.pool.connect();
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
  };
  const createMany = createManyOf(rt);
  if (createMany) {
    for (let c = 0; c < chunks; c++) {
      const items: BulkItem[] = [];
      for (let i = c * chunk; i < Math.min(n, (c + 1) * chunk); i++) items.push({ id: id(i), input: input(i) });
      if (options.tx) await inTx((client) => createMany(machine, items, { tx: client }).then(() => {}));
      else await createMany(machine, items);
    }
    return;
  }
  await parallelFor(chunks, droverSettings.enqueueParallel, (c) =>
    inTx(async (client) => {
      for (let i = c * chunk; i < Math.min(n, (c + 1) * chunk); i++) await rt.create(machine, { id: id(i), input: input(i), tx: client });
    }),
  );
}

async function throughput(
  scenario: 'a' | 'b' | 'b0',
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
    variant: (scenario === 'a' ? 'defineJob' : '3-state machine') + (processes > 0 ? `, ${processes} processes` : '') + tunedSuffix(),
    settings: `${describeSettings()}; ${enqueueText(rt)}`,
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
      Object.assign(result, await processInChildren(schema, scenario === 'a' ? 'a' : 'b', n, processes));
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
    await closeRun(rt, profile, schema);
  }
  return result;
}

/** (a) `config.jobs` one-step jobs. */
export const droverJobs = (n = config.jobs, processes = 0) => throughput('a', oneStep, n, 1, (i) => ({ i }), processes);

/** (b) and (b0) `config.chains` records through s1 → s2 → s3 → done: three durable steps each. */
export const droverChains = (n = config.chains, processes = 0, scenario: 'b' | 'b0' = 'b') =>
  throughput(scenario, chain, n, 3, (i) => ({ n: i }), processes);

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
  const tuned = tunedSuffix();
  try {
    await parallelFor(n, 8, async (i) => {
      await rt.create('bench_wait', { id: `w${i}`, input: { key: `w${i}` } });
      await rt.create('bench_wait', { id: `a${i}`, input: { key: `a${i}` } });
    });
    await analyze(schema);
    await rt.start();
    await sleep(500);
    const run = async (variant: string, fire: (i: number) => Promise<void>, prefix: string, at: Map<string, number> = started) => {
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
      const samples = keys.map((k) => (at.get(k) as number) - (t0.get(k) as number)).sort((a, b) => a - b);
      const toDone = keys.map((k) => (doneAt.get(k) as number) - (t0.get(k) as number)).sort((a, b) => a - b);
      const fmt = (v: number) => v.toFixed(1);
      results.push({
        ...base,
        variant: variant + tuned,
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
    await run(
      "send() → the transition's action runs",
      async (i) => {
        await rt.send('bench_wait', `a${i}`, { type: 'go' });
      },
      'a',
      acted,
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
