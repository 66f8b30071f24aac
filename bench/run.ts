// `npm run bench`: drover, graphile-worker and pg-boss side by side on one PostgreSQL.
//   BENCH_SCALE=0.1          smaller runs for a quick check (default 1: 20k jobs, 5k chains, 200 events)
//   BENCH_ONLY=a,b           scenarios to run (a: one-step jobs, b: three-step chains, c: latency;
//                            x: the XState step micro-benchmark, no database, only when named;
//                            o: OpenTelemetry cost per transition, no SDK vs an SDK, no database, only when named;
//                            n: drover over NATS JetStream against its in-process bus, only when named:
//                            commit → subscriber latency of (c)'s 200 spaced events, and (b)'s 5k records
//                            with every transition published through the outbox; drover only)
//   BENCH_SYSTEMS=drover,pg-boss   systems to run
//   BENCH_REPEAT=3           rounds of (a), (b) and (n)'s throughput; the median run of each is reported
//   BENCH_OUT=file.md        also write the report there
//   DATABASE_URL             default postgres://postgres@127.0.0.1:5432/test
//   NATS_URL                 (n) default nats://127.0.0.1:4222 (nats-server with JetStream); each run uses
//                            its own subject prefix and stream, deleted afterwards
//   BENCH_RELAY_INTERVAL     (n) drover's relayInterval, default 1s (the relay is also woken by each commit)
// Knobs per system: see drover.ts, graphile.ts and pgboss.ts (BENCH_DROVER_*, BENCH_GW_*, BENCH_BOSS_*).
import { writeFileSync } from 'node:fs';
import { admin, config, type NatsBusKind, type NatsThroughputResult, type Result, settle, type ThroughputResult } from './common.js';
import { droverChains, droverJobs, droverLatency, droverSettings } from './drover.js';
import { type GraphileVariant, graphileChains, graphileJobs, graphileLatency, graphileVariants } from './graphile.js';
import { natsLatency, natsThroughput } from './nats.js';
import { type BossVariant, bossChains, bossJobs, bossLatency, bossVariants } from './pgboss.js';
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

// (a) and (b): every configuration once per round, rounds interleaved so that a burst of
// outside load hits them alike; the report keeps each one's median run and lists them all.
const tasks: Array<{ what: string; run: () => Promise<ThroughputResult> }> = [];
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
const runs = tasks.map(() => [] as ThroughputResult[]);
for (let round = 1; round <= config.repeat; round++) {
  for (const [i, task] of tasks.entries()) {
    log(`${task.what}, round ${round}/${config.repeat}…`);
    const r = await task.run();
    log(`  ${r.error ? `FAILED ${r.error}` : `${Math.round((r.items * 1000) / r.runMs)} items/s`}`);
    runs[i]?.push(r);
  }
}
for (const rs of runs) results.push(median(rs));

if (want('c', 'drover')) await step('(c) drover', droverLatency);
for (const v of graphileVariants) if (want('c', 'graphile-worker')) await step(`(c) graphile-worker ${v.name}`, () => graphileLatency(v));
for (const v of bossVariants.filter((b) => !b.transactional))
  if (want('c', 'pg-boss')) await step(`(c) pg-boss ${v.name}`, () => bossLatency(v));

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
