import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { runDrover } from '../helpers/cli.js';

// `drover check [dir]`: two runs as a child process (the bin, exit codes, no database), the
// output of a failing folder in process through runCli.

const CLEAN = fileURLToPath(new URL('./fixtures/clean', import.meta.url));
const BROKEN = fileURLToPath(new URL('./fixtures/broken', import.meta.url));

/** `drover ...args` from source, with no database in the environment. */
const drover = (args: string[]) => runDrover(args, { DATABASE_URL: undefined, DROVER_SCHEMA: undefined, NO_COLOR: undefined, FORCE_COLOR: undefined });

/** runCli in this process, its output collected. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (add: (s: string) => void) => new Writable({ write: (chunk: Buffer, _e, done) => (add(chunk.toString()), done()) });
  const code = await runCli(args, { out: sink((s) => (stdout += s)), err: sink((s) => (stderr += s)), env: {} });
  return { code, stdout, stderr };
}

describe('drover check', () => {
  it('a clean folder: each machine ok with its paths, exit 0, no database needed', async () => {
    const r = await drover(['check', CLEAN]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^signup v1 {2}ok {2}\(3 paths, \d+ ms\)$/m);
    expect(r.stdout).toMatch(/^purge v1 {2}ok {2}\(1 path, \d+ ms\)$/m);
    expect(r.stdout).toMatch(/^checked 2 machines in \d+ ms: no problems$/m);
  }, 30_000);

  it('a folder that does not exist is wrong usage: exit 2', async () => {
    const r = await drover(['check', `${CLEAN}-nope`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not exist/);
  }, 30_000);

  it('a failing folder (--machines): each problem with machine, state and path; exit 1', async () => {
    const r = await inProcess(['--machines', BROKEN, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ping v1 {2}ok/m);
    expect(r.stdout).toContain('survey v1  1 problem');
    expect(r.stdout).toContain('  mismatch in state "asking" after answer → submit\n    durably the record reaches "empty", in-memory XState "submitted"\n');
    expect(r.stderr).toMatch(/^error \[CHECK_FAILED\]: 1 problem in 1 of 2 machines/);
  });

  it('--json: the results of every machine, exit 1', async () => {
    const r = await inProcess(['check', BROKEN, '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { ok: boolean; problems: number; machines: Array<{ machine: string; ok: boolean; problems: Array<{ kind: string; state: string; path: Array<{ type: string }> }> }> };
    expect(out.ok).toBe(false);
    expect(out.problems).toBe(1);
    expect(out.machines.map((m) => [m.machine, m.ok])).toEqual([
      ['ping', true],
      ['survey', false],
    ]);
    expect(out.machines[1]?.problems[0]).toMatchObject({ kind: 'mismatch', state: 'asking', path: [{ type: 'answer', q: 'q1' }, { type: 'submit' }] });
    expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: 'CHECK_FAILED' } });
  });
});
