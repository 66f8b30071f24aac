// Runs the processing phase of (a) or (b) in N drover processes (drover-node.ts) on one schema:
// the deployment DESIGN.md §9 describes (many nodes, SKIP LOCKED splits the work), on this machine.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Countdown, config, coresSince, cpuMark, now, within } from './common.js';

const entry = fileURLToPath(new URL('./drover-node.ts', import.meta.url));

/** Starts `count` processes, releases them at once, and resolves when `n` records are done. */
export async function processInChildren(
  schema: string,
  scenario: 'a' | 'b',
  n: number,
  count: number,
): Promise<{ runMs: number; cores: { node: number; pg: number } }> {
  const children: ChildProcessWithoutNullStreams[] = [];
  const done = new Countdown(n);
  const perChild: number[] = [];
  try {
    for (let k = 0; k < count; k++) {
      const child = spawn(process.execPath, ['--import', 'tsx', entry, schema, scenario], { stdio: 'pipe', env: process.env });
      child.stderr.on('data', (d) => process.stderr.write(`[drover-node ${k}] ${d}`));
      children.push(child);
      perChild.push(0);
      const lines = createInterface({ input: child.stdout });
      const ready = new Promise<void>((resolve) => {
        lines.on('line', (line) => {
          if (line === 'ready') resolve();
          const m = /^done (\d+)$/.exec(line);
          if (m) {
            const total = Number(m[1]);
            done.tick(total - (perChild[k] as number));
            perChild[k] = total;
          }
        });
      });
      await within(ready, 30_000, `drover process ${k} start`);
    }
    const pids = children.map((c) => c.pid as number);
    const t0 = now();
    const cpu = cpuMark(pids);
    for (const child of children) child.stdin.write('go\n');
    await within(done.done, config.timeoutMs, `drover ${scenario} in ${count} processes`);
    return { runMs: now() - t0, cores: coresSince(cpu, pids) };
  } finally {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}
