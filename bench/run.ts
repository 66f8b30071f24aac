// `npm run bench`: drover, graphile-worker and pg-boss side by side on one PostgreSQL.
// drover runs on `createRuntime({ database, schema, machines })` defaults (only its logger, and
// for (n) `nats` with a prefix and stream of the run's own, are added); a BENCH_DROVER_* knob
// changes that only when set, and every row it changes says so in its variant name.
//   BENCH_SCALE=0.1          smaller runs for a quick check (default 1: 20k jobs, 5k chains, 200 events,
//                            500 timers, 20k bulk records, 100k idle records)
//   BENCH_ONLY=a,b,b0,c,t,e,i   scenarios to run (that list is the default, ~6 minutes at scale 1):
//                            a: one-step jobs; b: three-step chains; c: enqueue → start latency;
//                            b0: (b)'s chains, drover on defaults against graphile-worker at drover's default
//                                concurrency (BENCH_B0_CONCURRENCY, default 10 as in src/runtime/options.ts) with
//                                localQueue 500, and pg-boss batched; target drover ≥ 3× graphile-worker;
//                            t: drover timers, `after` delays 100–3000 ms from context: lateness p50/p99/max/min,
//                               one runtime (t1) and a restart after ~1 s (t2); target p99 ≤ 25 ms, never early;
//                            e: bulk create, createMany() of 20k records in calls of 1,000 and in one call
//                               (pg-boss insert(), graphile-worker addJobs() alongside); target ≥ 20,000 records/s;
//                            i: drover idle: 100k waiting records, a default runtime watched for BENCH_IDLE_SECONDS:
//                               statements per minute by statement, heap; target ~60 claims/min per queue;
//                            only when named:
//                            x: the XState step micro-benchmark, no database;
//                            o: OpenTelemetry cost per transition, no SDK vs an SDK, no database;
//                            n: drover over NATS JetStream against its in-process bus:
//                            commit → subscriber latency of (c)'s 200 spaced events, and (b)'s 5k records
//                            with every transition published through the outbox; drover only
//   BENCH_SYSTEMS=drover,pg-boss   systems to run
//   BENCH_REPEAT=3           rounds of (a), (b), (b0), (e) and (n)'s throughput; the median run of each is reported
//   BENCH_OUT=file.md        also write the report there
//   BENCH_IDLE_SECONDS       (i) how long the idle runtime is watched, default 60 (× BENCH_SCALE, never below 10 s)
//   BENCH_B0_CONCURRENCY     (b0) graphile-worker's concurrentJobs, default drover's concurrency (10)
//   DATABASE_URL             default postgres://postgres@127.0.0.1:5432/test
//   NATS_URL                 (n) default nats://127.0.0.1:4222 (nats-server with JetStream); each run uses
//                            its own subject prefix and stream, deleted afterwards
//   BENCH_RELAY_INTERVAL     (n) drover's relayInterval; unset: drover's default (1s; the relay is also woken by each commit)
// drover knobs, all off unless set (drover.ts): BENCH_DROVER_BATCH, BENCH_DROVER_CONCURRENCY, BENCH_DROVER_POLL_MS
// (runtime options), BENCH_DROVER_PROCESSES (also run (a)/(b) in N processes), BENCH_DROVER_ENQUEUE_CHUNK (items per
// createMany call, default 1000), BENCH_DROVER_ENQUEUE_PARALLEL (without createMany: transactions in flight, default 4);
// BENCH_CREATE_MANY=0 enqueues with the create() loop even when createMany() exists (an A/B of the two).
// Peers' knobs: see graphile.ts and pgboss.ts (BENCH_GW_*, BENCH_BOSS_*).
import { writeFileSync } from 'node:fs';
import { bulkCalls, droverBulk } from './bulk.js';
import {
  admin,
  type BulkResult,
  config,
  type NatsBusKind,
  type NatsThroughputResult,
  type Result,
  settle,
  type ThroughputResult,
} from './common.js';
import { b0Concurrency, droverChains, droverJobs, droverLatency, droverSettings } from './drover.js';
import { type GraphileVariant, graphileB0Variant, graphileBulk, graphileChains, graphileJobs, graphileLatency, graphileVariants } from './graphile.js';
import { droverIdle } from './idle.js';
import { natsLatency, natsThroughput } from './nats.js';
import { type BossVariant, bossBulk, bossChains, bossJobs, bossLatency, bossVariants } from './pgboss.js';
import { droverTimers } from './timers.js';
import { machine, median, report } from './report.js';
import { otelCost } from './otel.js';
import { xstateStep } from './xstate-step.js';

const results: Result[] = [];
const xstateLines: string[] = [];
const want = (scenario: string, system: string) => config.only.has(scenario) && config.systems.has(system);
const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

async function step<T extends Result | Result[]>(what: string, fn: () => Promise<T>): Promise<void> {
  log(`${what}…`);
  const out = await fn();
  for (const r of Array.isArray(out) ? out : [out]) {
    results.push(r);
    log(`  ${r.system} (${r.variant}): ${r.error ? `FAILED ${r.error}` : 'ok'}`);
  }
}

const header = await machine();
await settle();
const t0 = Date.now();

// Warm-up, not reported: loads every module and lets V8 compile the hot paths before anything is timed.
if (process.env.BENCH_WARMUP !== '0') {
  log('warm-up…');
  if (config.systems.has('drover')) await droverChains(300);
  if (config.systems.has('graphile-worker')) await graphileChains(graphileVariants[0] as GraphileVariant, 300);
  if (config.systems.has('pg-boss')) await bossChains(bossVariants[0] as BossVariant, 300);
  if (want('n', 'drover')) await natsThroughput('NATS JetStream', 300);
}

// (a), (b), (b0) and (e): every configuration once per round, rounds interleaved so that a burst
// of outside load hits them alike; the report keeps each one's median run and lists them all.
const tasks: Array<{ what: string; run: () => Promise<ThroughputResult | BulkResult> }> = [];
const P = droverSettings.processes;
for (const scenario of ['a', 'b'] as const) {
  const drover = scenario === 'a' ? droverJobs : droverChains;
  const size = scenario === 'a' ? config.jobs : config.chains;
  if (want(scenario, 'drover')) tasks.push({ what: `(${scenario}) drover`, run: () => drover(size) });
  if (want(scenario, 'drover') && P > 0) tasks.push({ what: `(${scenario}) drover, ${P} processes`, run: () => drover(size, P) });
  for (const v of graphileVariants)
    if (want(scenario, 'graphile-worker'))
      tasks.push({ what: `(${scenario}) graphile-worker ${v.name}`, run: () => (scenario === 'a' ? graphileJobs(v) : graphileChains(v)) });
  for (const v of bossVariants.filter((b) => scenario === 'b' || !b.transactional))
    if (want(scenario, 'pg-boss'))
      tasks.push({ what: `(${scenario}) pg-boss ${v.name}`, run: () => (scenario === 'a' ? bossJobs(v) : bossChains(v)) });
}
if (want('b0', 'drover')) tasks.push({ what: '(b0) drover', run: () => droverChains(config.chains, 0, 'b0') });
if (want('b0', 'graphile-worker')) {
  const v = graphileB0Variant(b0Concurrency());
  tasks.push({ what: `(b0) graphile-worker ${v.name}`, run: () => graphileChains(v, config.chains, 'b0') });
}
const bossBatched = bossVariants.find((b) => !b.transactional) as BossVariant;
if (want('b0', 'pg-boss')) tasks.push({ what: `(b0) pg-boss ${bossBatched.name}`, run: () => bossChains(bossBatched, config.chains, 'b0') });
for (const perCall of bulkCalls()) {
  if (want('e', 'drover')) tasks.push({ what: `(e) drover createMany, ${perCall} per call`, run: () => droverBulk(config.bulk, perCall) });
  if (want('e', 'pg-boss')) tasks.push({ what: `(e) pg-boss insert, ${perCall} per call`, run: () => bossBulk(config.bulk, perCall) });
  if (want('e', 'graphile-worker'))
    tasks.push({ what: `(e) graphile-worker addJobs, ${perCall} per call`, run: () => graphileBulk(config.bulk, perCall) });
}
const runs = tasks.map(() => [] as Array<ThroughputResult | BulkResult>);
for (let round = 1; round <= config.repeat; round++) {
  for (const [i, task] of tasks.entries()) {
    log(`${task.what}, round ${round}/${config.repeat}…`);
    const r = await task.run();
    const skipped = 'skipped' in r ? r.skipped : undefined;
    log(`  ${r.error ? `FAILED ${r.error}` : skipped ? `skipped: ${skipped}` : `${Math.round((r.items * 1000) / r.runMs)} items/s`}`);
    runs[i]?.push(r);
  }
}
for (const rs of runs) results.push(median(rs));

if (want('c', 'drover')) await step('(c) drover', droverLatency);
for (const v of graphileVariants) if (want('c', 'graphile-worker')) await step(`(c) graphile-worker ${v.name}`, () => graphileLatency(v));
for (const v of bossVariants.filter((b) => !b.transactional))
  if (want('c', 'pg-boss')) await step(`(c) pg-boss ${v.name}`, () => bossLatency(v));

if (want('t', 'drover')) await step('(t) drover timers', () => droverTimers());
if (want('i', 'drover')) await step(`(i) drover idle, ${config.idleRecords} records, ${config.idleSeconds} s`, () => droverIdle());

// (n) drover over NATS and over its in-process bus: latency once each, then the throughput
// rounds interleaved like (a) and (b), each bus's median round reported.
if (want('n', 'drover')) {
  const buses: NatsBusKind[] = ['NATS JetStream', 'in-process bus'];
  for (const bus of buses) await step(`(n) latency, ${bus}`, () => natsLatency(bus));
  const nRuns = buses.map(() => [] as NatsThroughputResult[]);
  for (let round = 1; round <= config.repeat; round++) {
    for (const [i, bus] of buses.entries()) {
      log(`(n) throughput, ${bus}, round ${round}/${config.repeat}…`);
      const r = await natsThroughput(bus);
      log(
        `  ${r.error ? `FAILED ${r.error}` : `${Math.round((r.items * r.stepsPerItem * 1000) / r.runMs)} steps/s, outbox ${r.backlogAtDone} rows at the last step, drained +${Math.round(r.drainMs)} ms, ${r.received}/${r.expected} received`}`,
      );
      nRuns[i]?.push(r);
    }
  }
  for (const rs of nRuns) results.push(median(rs));
}

if (config.only.has('x')) {
  log('(x) XState step micro-benchmark…');
  xstateLines.push(...xstateStep());
}
const otelLines: string[] = [];
if (config.only.has('o')) {
  log('(o) OpenTelemetry cost…');
  otelLines.push(...otelCost());
}

header.push(`- total benchmark time: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
const text = [report(results, header, xstateLines), ...(otelLines.length ? ['', ...otelLines, ''] : [])].join('\n');
console.log(text);
if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, `${text}\n`);
await admin.end();
if (results.some((r) => r.error)) process.exitCode = 1;
