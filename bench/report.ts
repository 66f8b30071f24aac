// Turns results into Markdown tables: throughput, latency and drover/peer ratios.
import { execSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { connect } from '@nats-io/transport-node';
import {
  admin,
  type BulkResult,
  config,
  errorText,
  type IdleResult,
  NATS_URL,
  type LatencyResult,
  type NatsLatencyResult,
  type NatsThroughputResult,
  percentile,
  type Result,
  type ThroughputResult,
  type TimerResult,
} from './common.js';
import { b0Concurrency, describeSettings, droverConcurrency, droverOverrides, sourceDefaults } from './drover.js';

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');

type Timed = { items: number; runMs: number; error?: string; skipped?: string };
export const itemsPerSec = (r: Timed) => (r.error || r.skipped ? Number.NaN : (r.items * 1000) / r.runMs);
const label = (r: Result) => `${r.system} (${r.variant})`;

/** The run with the median items/s (failed runs count as slowest), with every round's items/s. */
export function median<T extends Timed>(runs: T[]): T & { rounds: number[] } {
  const speed = (r: T) => (r.error || r.skipped ? -1 : itemsPerSec(r));
  const sorted = [...runs].sort((a, b) => speed(a) - speed(b));
  const mid = sorted[Math.floor((sorted.length - 1) / 2)] as T;
  return { ...mid, rounds: runs.map(speed) };
}

/** The machine and server the run was on. */
export async function machine(): Promise<string[]> {
  const pgVersion = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v ?? '?';
  const settings = (
    await admin.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings
       WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'autovacuum', 'max_connections', 'wal_level', 'work_mem')
       ORDER BY name`,
    )
  ).rows.map((s) => `${s.name}=${s.setting}${s.unit ? ` (${s.unit})` : ''}`);
  let natsVersion = '';
  if (config.only.has('n')) {
    try {
      const nc = await connect({ servers: NATS_URL, name: 'drover-bench-info' });
      natsVersion = `nats-server ${nc.info?.version ?? '?'}, JetStream, file storage`;
      await nc.close();
    } catch (err) {
      natsVersion = `not reachable (${errorText(err)})`;
    }
  }
  let nproc = '';
  try {
    nproc = execSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    nproc = String(cpus().length);
  }
  return [
    `- CPUs (nproc): ${nproc}, ${cpus()[0]?.model ?? '?'}`,
    `- memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- PostgreSQL: ${pgVersion}`,
    `- server settings: ${settings.join(', ')}`,
    `- Node ${process.version}, over TCP to 127.0.0.1; every system runs in this one process (except the drover N-process rows)`,
    `- load average at start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    `- BENCH_SCALE=${config.scale}: (a) ${config.jobs} jobs, (b) and (b0) ${config.chains} records × 3 steps, (c) ${config.latencyEvents} events every ${config.latencySpacingMs} ms` +
      `, (t) ${config.timers} timers, (e) ${config.bulk} records, (i) ${config.idleRecords} idle records watched ${config.idleSeconds} s`,
    `- drover: ${describeSettings()}; its defaults, as src/runtime/options.ts has them: ${defaultsText()}`,
    ...(config.only.has('n') ? [`- (n) NATS at ${NATS_URL}: ${natsVersion}; ${config.chains} records × 3 steps, ${config.latencyEvents} sends every ${config.latencySpacingMs} ms`] : []),
  ];
}

/** drover's defaults read from src/runtime/options.ts (text only), for the header. */
function defaultsText(): string {
  const d = sourceDefaults();
  return `batchSize ${d.batchSize ?? '?'}, concurrency ${d.concurrency ?? '?'}, pollInterval ${d.pollInterval ?? '?'}`;
}

function throughputTable(results: ThroughputResult[]): string[] {
  const lines = [
    '| system | enqueue ms | enqueue/s | run s | items/s (median) | steps/s | items/s of each round | CPU cores: Node / PG | settings |',
    '|---|---:|---:|---:|---:|---:|---|---:|---|',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${label(r)} | – | – | – | – | – | – | – | failed: ${r.error} |`);
      continue;
    }
    const cores = r.cores ? `${f2(r.cores.node)} / ${f2(r.cores.pg)}` : '–';
    const ips = itemsPerSec(r);
    lines.push(
      `| ${label(r)} | ${f0(r.enqueueMs)} | ${f0((r.items * 1000) / r.enqueueMs)} | ${f2(r.runMs / 1000)} | ${f0(ips)} | ${f0(ips * r.stepsPerItem)} | ${(r.rounds ?? []).map((x) => (x < 0 ? 'failed' : f0(x))).join(', ')} | ${cores} | ${r.settings} |`,
    );
  }
  return lines;
}

function latencyTable(results: LatencyResult[]): string[] {
  const lines = [
    '| system | n | p50 ms | p95 ms | p99 ms | max ms | enqueue call p50 ms | settings |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${label(r)} | – | – | – | – | – | – | – | failed: ${r.error} |`);
      continue;
    }
    const s = r.samples;
    lines.push(
      `| ${label(r)} | ${s.length} | ${f1(percentile(s, 50))} | ${f1(percentile(s, 95))} | ${f1(percentile(s, 99))} | ${f1(s[s.length - 1] ?? Number.NaN)} | ${f1(percentile(r.callMs, 50))} | ${r.settings} |`,
    );
  }
  return lines;
}

function ratios(results: Result[]): string[] {
  const lines = ['| scenario | drover | peer | drover / peer |', '|---|---|---|---:|'];
  for (const scenario of ['a', 'b', 'b0'] as const) {
    const rows = results.filter((r): r is ThroughputResult => r.scenario === scenario && !r.error);
    const drover = rows.find((r) => r.system === 'drover');
    if (!drover) continue;
    for (const peer of rows.filter((r) => r.system !== 'drover')) {
      lines.push(
        `| (${scenario}) items/s | ${f0(itemsPerSec(drover))} | ${label(peer)}: ${f0(itemsPerSec(peer))} | ${f2(itemsPerSec(drover) / itemsPerSec(peer))}× |`,
      );
    }
  }
  return lines;
}

/** drover's latency (each way it was measured) over each peer's: below 1 means drover starts work sooner. */
function latencyRatios(results: Result[]): string[] {
  const lat = results.filter((r): r is LatencyResult => r.scenario === 'c' && !r.error && r.samples.length > 0);
  const peers = lat.filter((r) => r.system !== 'drover');
  if (peers.length === 0) return [];
  const lines = [
    `| drover, p50 / p99 ms | ${peers.map((p) => `÷ ${label(p)}`).join(' | ')} |`,
    `|---|${peers.map(() => '---:').join('|')}|`,
  ];
  for (const d of lat.filter((r) => r.system === 'drover')) {
    const cells = peers.map(
      (p) =>
        `${f2(percentile(d.samples, 50) / percentile(p.samples, 50))}× / ${f2(percentile(d.samples, 99) / percentile(p.samples, 99))}×`,
    );
    lines.push(`| ${d.variant}: ${f1(percentile(d.samples, 50))} / ${f1(percentile(d.samples, 99))} | ${cells.join(' | ')} |`);
  }
  return lines;
}

/** (n): NATS against the in-process bus, latency and throughput, and what NATS costs. */
function natsSection(results: Result[]): string[] {
  const lat = results.filter((r): r is NatsLatencyResult => r.scenario === 'n' && r.kind === 'latency');
  const thr = results.filter((r): r is NatsThroughputResult => r.scenario === 'n' && r.kind === 'throughput');
  const out: string[] = [];
  if (lat.length) {
    out.push(
      'Latency, committed transition → subscriber (`at` → handler, Date.now, 1 ms resolution):',
      '',
      '| bus | n | p50 ms | p95 ms | p99 ms | max ms | send() call → handler p50 / p99 ms | send() call p50 ms | settings |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const r of lat) {
      if (r.error) {
        out.push(`| ${r.variant}${r.tuned ?? ''} | – | – | – | – | – | – | – | failed: ${r.error} |`);
        continue;
      }
      const s = r.samples;
      out.push(
        `| ${r.variant}${r.tuned ?? ''} | ${s.length} | ${f1(percentile(s, 50))} | ${f1(percentile(s, 95))} | ${f1(percentile(s, 99))} | ${f1(s[s.length - 1] ?? Number.NaN)} | ${f1(percentile(r.sendToReceived, 50))} / ${f1(percentile(r.sendToReceived, 99))} | ${f1(percentile(r.callMs, 50))} | ${r.settings} |`,
      );
    }
    out.push('');
  }
  if (thr.length) {
    out.push(
      `Throughput, ${thr[0]?.items ?? '?'} records × 3 steps, one subscriber on every transition:`,
      '',
      '| bus | enqueue ms | run s | records/s (median) | steps/s | steps/s of each round | outbox at the last step: rows, ms to drain | received / expected | last received, s after start() | received/s after start() | CPU cores: Node / PG / NATS | settings |',
      '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|',
    );
    const relayLines: string[] = [];
    for (const r of thr) {
      if (r.error) {
        out.push(`| ${r.variant}${r.tuned ?? ''} | – | – | – | – | – | – | ${r.received} / ${r.expected} | – | – | – | failed: ${r.error} |`);
        continue;
      }
      const ips = itemsPerSec(r);
      const cores = r.cores ? `${f2(r.cores.node)} / ${f2(r.cores.pg)} / ${f2(r.cores.nats)}` : '–';
      if (r.relay) {
        const x = r.relay;
        relayLines.push(
          `- relay (${r.variant}${r.tuned ?? ''}, median round, after start()), read back from \`published_at\`: ${f0(x.passes)} passes, ${f1(x.meanRows)} rows per pass on average (max ${f0(x.maxRows)}), ${f0(x.fullPasses)} of them full (256); ` +
            `while steps were committing it published ${f0(r.receivedAfterStart - r.backlogAtDone)} rows in ${f2(r.runMs / 1000)} s (${f0(((r.receivedAfterStart - r.backlogAtDone) * 1000) / r.runMs)}/s, a full pass every ${f1(x.gapDuring)} ms, p50), ` +
            `after the last step ${f0(r.backlogAtDone)} rows in ${f2(r.drainMs / 1000)} s (${f0((r.backlogAtDone * 1000) / r.drainMs)}/s, every ${f1(x.gapAfter)} ms); ` +
            `each transition's \`at\` → \`published_at\`: p50 ${f0(x.lagP50)} ms, p99 ${f0(x.lagP99)} ms, max ${f0(x.lagMax)} ms`,
        );
      }
      out.push(
        `| ${r.variant}${r.tuned ?? ''} | ${f0(r.enqueueMs)} | ${f2(r.runMs / 1000)} | ${f0(ips)} | ${f0(ips * r.stepsPerItem)} | ${(r.rounds ?? []).map((x) => (x < 0 ? 'failed' : f0(x * r.stepsPerItem))).join(', ')} | ${f0(r.backlogAtDone)}, ${f0(r.drainMs)} | ${f0(r.received)} / ${f0(r.expected)}${r.duplicates ? ` (${r.duplicates} duplicates)` : ''} | ${f2(r.receivedMs / 1000)} | ${f0((r.receivedAfterStart * 1000) / r.receivedMs)} | ${cores} | ${r.settings} |`,
      );
    }
    out.push('', ...(relayLines.length ? [...relayLines, ''] : []));
  }
  const ratio: string[] = [];
  const nt = thr.find((r) => r.variant === 'NATS JetStream' && !r.error);
  const lt = thr.find((r) => r.variant === 'in-process bus' && !r.error);
  if (nt && lt) {
    ratio.push(
      `| steps/s, NATS / in-process | ${f0(itemsPerSec(nt) * nt.stepsPerItem)} / ${f0(itemsPerSec(lt) * lt.stepsPerItem)} | ${f2(itemsPerSec(nt) / itemsPerSec(lt))}× |`,
      `| start() → last transition received, NATS / in-process | ${f2(nt.receivedMs / 1000)} s / ${f2(lt.receivedMs / 1000)} s | ${f2(nt.receivedMs / lt.receivedMs)}× |`,
    );
  }
  const nl = lat.find((r) => r.variant === 'NATS JetStream' && !r.error);
  const ll = lat.find((r) => r.variant === 'in-process bus' && !r.error);
  if (nl && ll) {
    for (const p of [50, 99]) {
      const a = percentile(nl.samples, p);
      const b = percentile(ll.samples, p);
      ratio.push(`| latency p${p}, NATS / in-process | ${f1(a)} ms / ${f1(b)} ms | ${f2(a / b)}× (+${f1(a - b)} ms) |`);
    }
  }
  if (ratio.length) out.push('| what | NATS / in-process | ratio |', '|---|---:|---:|', ...ratio, '');
  return out;
}

/** (b0): the throughput table, and drover over each peer against the 3× target. */
function b0Section(rows: ThroughputResult[]): string[] {
  const out = [...throughputTable(rows), ''];
  const drover = rows.find((r) => r.system === 'drover' && !r.error);
  for (const peer of rows.filter((r) => r.system !== 'drover' && !r.error)) {
    if (!drover) break;
    const ratio = itemsPerSec(drover) / itemsPerSec(peer);
    const target = peer.system === 'graphile-worker' ? ` (target ≥ 3×: ${ratio >= 3 ? 'met' : 'not met'})` : '';
    out.push(`- drover / ${label(peer)}: ${f0(itemsPerSec(drover))} / ${f0(itemsPerSec(peer))} items/s = **${f2(ratio)}×**${target}`);
  }
  return [...out, ''];
}

/** (t): lateness per group, against p99 ≤ 25 ms and never early. */
function timerSection(rows: TimerResult[]): string[] {
  const out = [
    '| variant | records | fired | p50 ms | p99 ms | max ms | min ms | early | target | settings |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  const info: string[] = [];
  for (const r of rows) {
    const s = r.samples;
    const early = s.filter((x) => x < 0).length;
    const p99 = percentile(s, 99);
    const target = s.length === 0 ? '–' : early > 0 ? '**not met: EARLY**' : p99 <= 25 ? 'met' : 'not met';
    const fail = r.error ? ` (failed: ${r.error})` : '';
    out.push(
      `| ${r.variant} | ${r.records} | ${r.fired} | ${f1(percentile(s, 50))} | ${f1(p99)} | ${f1(s[s.length - 1] ?? Number.NaN)} | ${f1(s[0] ?? Number.NaN)} | ${early ? `**${early} EARLY**` : '0'} | ${target}${fail} | ${r.settings} |`,
    );
    for (const line of r.info ?? []) info.push(`- ${r.variant.split(':')[0]}: ${line}`);
  }
  return [...out, '', ...(info.length ? [...info, ''] : [])];
}

/** (e): records/s per way of calling, against ≥ 20,000 records/s for drover. */
function bulkSection(rows: BulkResult[]): string[] {
  const out = ['| system | records | per call | s | records/s (median) | records/s of each round | target | settings |', '|---|---:|---:|---:|---:|---|---|---|'];
  for (const r of rows) {
    if (r.skipped || r.error) {
      out.push(`| ${label(r)} | ${r.items} | ${r.perCall} | – | – | – | – | ${r.skipped ?? `failed: ${r.error}`} |`);
      continue;
    }
    const ips = itemsPerSec(r);
    const target = r.system === 'drover' ? (ips >= 20_000 ? 'met' : 'not met') : '';
    out.push(
      `| ${label(r)} | ${r.items} | ${r.perCall} | ${f2(r.runMs / 1000)} | ${f0(ips)} | ${(r.rounds ?? []).map((x) => (x < 0 ? 'failed' : f0(x))).join(', ')} | ${target} | ${r.settings} |`,
    );
  }
  return [...out, ''];
}

/** (i): statements per minute by label, claims against one per pollInterval per queue, heap. */
function idleSection(r: IdleResult): string[] {
  if (r.error) return [`${label(r)}: failed: ${r.error}`, ''];
  const minutes = r.measuredMs / 60_000;
  const perMin = (calls: number) => calls / minutes;
  const total = r.statements.reduce((n, s) => n + s.calls, 0);
  const limit = 60_000 / r.pollIntervalMs;
  const out = [
    `${label(r)}: ${f0(r.records)} records seeded in ${f2(r.seedMs / 1000)} s (${r.seedHow}), ${r.queues} queue(s), a 5 s settle after start(), then counted for ${f1(r.measuredMs / 1000)} s. ` +
      `Every statement the runtime's pool ran (its transactions too): **${f1(perMin(total))} per minute** in all. Settings: ${r.settings}.`,
    '',
    '| statement | calls | per minute | per minute per queue | rows/call | mean ms |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const s of [...r.statements].sort((a, b) => b.calls - a.calls)) {
    out.push(`| ${s.name} | ${s.calls} | ${f1(perMin(s.calls))} | ${f1(perMin(s.calls) / r.queues)} | ${f1(s.rows / s.calls)} | ${f2(s.ms / s.calls)} |`);
  }
  out.push('');
  // The poller's own statements: the claims, and the probe for the next due time.
  const polls = r.statements.filter((s) => /^(claim|nextDue|loadEvents)/.test(s.name));
  const pollRate = polls.reduce((n, s) => n + perMin(s.calls), 0) / r.queues;
  const worstClaim = Math.max(0, ...polls.filter((s) => /^claim/.test(s.name)).map((s) => perMin(s.calls) / r.queues));
  out.push(
    `- the poller's statements per queue: ${polls.length ? polls.map((s) => `${s.name} ${f1(perMin(s.calls) / r.queues)}/min`).join(', ') : 'none'} ` +
      `(${f1(pollRate)}/min together; claims alone at most ${f1(worstClaim)}/min); target at most one per pollInterval (${r.pollIntervalMs} ms) → ${f0(limit)}/min per queue, ` +
      `5% slack for the window's edges: claims **${worstClaim <= limit * 1.05 ? 'met' : 'not met'}**, all poller statements together **${pollRate <= limit * 1.05 ? 'met' : 'not met'}**`,
  );
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(2)} MB`;
  out.push(`- heap used${r.gcForced ? ' (after a forced full GC)' : ''}: ${r.heap.map((h) => `${h.at} ${mb(h.bytes)}`).join(', ')}`);
  if (r.cores) out.push(`- CPU while idle: Node ${f1(r.cores.node * 100)}% of a core, PostgreSQL (every backend on the machine) ${f1(r.cores.pg * 100)}%`);
  return [...out, ''];
}

/** The whole report as Markdown. */
export function report(results: Result[], header: string[], xstate: string[] = []): string {
  const out = ['# drover benchmark', '', ...header, ''];
  const a = results.filter((r): r is ThroughputResult => r.scenario === 'a');
  const b = results.filter((r): r is ThroughputResult => r.scenario === 'b');
  const b0 = results.filter((r): r is ThroughputResult => r.scenario === 'b0');
  const c = results.filter((r): r is LatencyResult => r.scenario === 'c');
  const t = results.filter((r): r is TimerResult => r.scenario === 't');
  const e = results.filter((r): r is BulkResult => r.scenario === 'e');
  const i = results.filter((r): r is IdleResult => r.scenario === 'i');
  if (a.length) out.push('## (a) one-step jobs', '', ...throughputTable(a), '');
  if (b.length) out.push('## (b) three steps per record', '', ...throughputTable(b), '');
  if (b0.length) {
    out.push(
      `## (b0) three steps per record, graphile-worker at drover's concurrency — target: drover ≥ 3× graphile-worker`,
      '',
      `drover runs on ${droverOverrides.concurrency === undefined ? 'its default' : 'the overridden'} concurrency, ${droverConcurrency()} invocations at once per queue ` +
        `(the default as src/runtime/options.ts has it: ${sourceDefaults().concurrency ?? '?'}); graphile-worker runs concurrentJobs ${b0Concurrency()}` +
        `${process.env.BENCH_B0_CONCURRENCY ? ' (BENCH_B0_CONCURRENCY)' : ''} with localQueue 500; pg-boss as in (b), batched.`,
      '',
      ...b0Section(b0),
    );
  }
  if (c.length) out.push('## (c) enqueue → start latency', '', ...latencyTable(c), '');
  if (t.length) {
    out.push(
      `## (t) timers: ${config.timers} records, \`after\` delays 100–3000 ms from context — target: p99 ≤ 25 ms late, never early`,
      '',
      'Lateness: the `fired` entry action\'s time (performance.timeOrigin + performance.now()) − the due time stored at creation (Date.now() + delay, taken before the create call).',
      '',
      ...timerSection(t),
    );
  }
  if (e.length) out.push(`## (e) bulk create, ${config.bulk} records — target: drover ≥ 20,000 records/s`, '', ...bulkSection(e));
  for (const r of i) {
    out.push(`## (i) idle: ${f0(r.records)} waiting records — target: at most one claim per pollInterval per queue (~60/min per queue)`, '', ...idleSection(r));
  }
  const n = natsSection(results);
  if (n.length) out.push('## (n) NATS', '', ...n);
  if (xstate.length) out.push('## (x) one step in JavaScript (no database)', '', ...xstate, '');
  // Only when there is a peer to compare with (the header row and rule alone are 2 lines).
  const tr = ratios(results);
  const lr = latencyRatios(results);
  if (tr.length > 2 || lr.length) out.push('## Ratios', '');
  if (tr.length > 2) out.push('Throughput, drover over each peer (above 1: drover is faster):', '', ...tr, '');
  if (lr.length) out.push('Latency, drover over each peer, p50 / p99 (below 1: drover starts work sooner):', '', ...lr, '');
  const notes = results.filter((r) => r.notes && r.notes.length > 0);
  if (notes.length) {
    out.push('## Where drover spent its time (client-side statement timings)', '');
    for (const r of notes) {
      const bus = r.scenario === 'n' ? `${r.tuned ?? ''}, ${r.kind}` : '';
      out.push(`### (${r.scenario}) ${label(r)}${bus}`, '', ...(r.notes ?? []), '');
    }
  }
  out.push(
    `load average at end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  return out.join('\n');
}
