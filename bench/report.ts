// Turns results into Markdown tables: throughput, latency and drover/peer ratios.
import { execSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { admin, config, type LatencyResult, percentile, type Result, type ThroughputResult } from './common.js';

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');

export const itemsPerSec = (r: ThroughputResult) => (r.error ? Number.NaN : (r.items * 1000) / r.runMs);
const label = (r: Result) => `${r.system} (${r.variant})`;

/** The run with the median items/s (failed runs count as slowest), with every round's items/s. */
export function median(runs: ThroughputResult[]): ThroughputResult {
  const speed = (r: ThroughputResult) => (r.error ? -1 : itemsPerSec(r));
  const sorted = [...runs].sort((a, b) => speed(a) - speed(b));
  const mid = sorted[Math.floor((sorted.length - 1) / 2)] as ThroughputResult;
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
    `- BENCH_SCALE=${config.scale}: (a) ${config.jobs} jobs, (b) ${config.chains} records × 3 steps, (c) ${config.latencyEvents} events every ${config.latencySpacingMs} ms`,
  ];
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
  for (const scenario of ['a', 'b'] as const) {
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

/** The whole report as Markdown. */
export function report(results: Result[], header: string[], xstate: string[] = []): string {
  const out = ['# drover benchmark', '', ...header, ''];
  const a = results.filter((r): r is ThroughputResult => r.scenario === 'a');
  const b = results.filter((r): r is ThroughputResult => r.scenario === 'b');
  const c = results.filter((r): r is LatencyResult => r.scenario === 'c');
  if (a.length) out.push('## (a) one-step jobs', '', ...throughputTable(a), '');
  if (b.length) out.push('## (b) three steps per record', '', ...throughputTable(b), '');
  if (c.length) out.push('## (c) enqueue → start latency', '', ...latencyTable(c), '');
  if (xstate.length) out.push('## (x) one step in JavaScript (no database)', '', ...xstate, '');
  out.push('## Ratios', '', 'Throughput, drover over each peer (above 1: drover is faster):', '', ...ratios(results), '');
  const lr = latencyRatios(results);
  if (lr.length) out.push('Latency, drover over each peer, p50 / p99 (below 1: drover starts work sooner):', '', ...lr, '');
  const notes = results.filter((r) => r.notes && r.notes.length > 0);
  if (notes.length) {
    out.push('## Where drover spent its time (client-side statement timings)', '');
    for (const r of notes) out.push(`### (${r.scenario}) ${label(r)}`, '', ...(r.notes ?? []), '');
  }
  out.push(
    `load average at end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  return out.join('\n');
}
