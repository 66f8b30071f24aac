import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root, where the CLI runs from in tests. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The CLI's entry point in source, run under tsx. */
export const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** What a CLI run printed and how it exited. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `drover ...args` from source (tsx) in a child process; `env` adds variables, or removes those set to undefined. */
export function runDrover(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: merged });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
