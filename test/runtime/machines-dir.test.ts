import { execFile } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { createRuntime, MachinesLoadError } from '../../src/index.js';
import { loadMachinesDir } from '../../src/runtime/machines-dir.js';

// The machines-folder loader: createRuntime({ machinesDir }) and the CLI's --machines.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** The loader's rejection, checked to be a MachinesLoadError. */
async function loadError(dir: string, required = true): Promise<MachinesLoadError> {
  const err: unknown = await loadMachinesDir(dir, { required }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MachinesLoadError);
  return err as MachinesLoadError;
}

describe('loadMachinesDir', () => {
  it('loads the durable machines of .mjs and .ts modules, each once, with their register hooks; helper modules are fine', async () => {
    const js = await loadMachinesDir(fixture('javascript'), { required: true });
    expect(js.machines.map((m) => m.name)).toEqual(['bell']);
    const ts = await loadMachinesDir(fixture('typescript'), { required: true });
    // all.ts re-exports lamp and names.ts exports only a string.
    expect(ts.machines.map((m) => m.name)).toEqual(['lamp']);
    expect(ts.hooks.map((h) => h.file)).toEqual(['lamp.ts']);
  });

  it('a missing folder names the folder when required, and loads as empty when not', async () => {
    const err = await loadError(fixture('nowhere'));
    expect(err).toMatchObject({ code: 'MACHINES_LOAD', reason: 'NOT_FOUND', file: fixture('nowhere') });
    expect(err.message).toContain(`machines folder ${fixture('nowhere')} does not exist`);
    expect(err.message).not.toContain('ENOENT');
    await expect(loadMachinesDir(fixture('nowhere'), { required: false })).resolves.toMatchObject({ machines: [], hooks: [] });
  });

  it('a path that is a file is not a folder, required or not', async () => {
    const file = fixture('javascript/bell.mjs');
    expect(await loadError(file, false)).toMatchObject({ reason: 'NOT_A_FOLDER', file });
    expect((await loadError(file)).message).toContain('is not a folder');
  });

  it('a module that throws while importing is named, with its error as the cause', async () => {
    const err = await loadError(fixture('broken'));
    expect(err).toMatchObject({ reason: 'IMPORT_FAILED', file: fixture('broken/bad.mjs') });
    expect(err.message).toContain(`cannot load ${fixture('broken/bad.mjs')}: the module threw while loading`);
    expect((err.cause as Error).message).toBe('the module threw while loading');
  });

  it('a module exporting a plain XState machine and no durable one is told to wrap it in durable()', async () => {
    const err = await loadError(fixture('raw'));
    expect(err).toMatchObject({ reason: 'NOT_DURABLE', file: fixture('raw/plain.ts') });
    expect(err.message).toContain('exports the XState machine "door" (id "door") but no durable machine: wrap it in durable()');
  });

  it('a folder with no durable machine and no register hook is an error when required; hooks alone are enough', async () => {
    const err = await loadError(fixture('helpers-only'));
    expect(err).toMatchObject({ reason: 'NO_MACHINES', file: fixture('helpers-only') });
    expect(err.message).toContain('holds no durable machine and no register hook (read util.mjs)');
    await expect(loadMachinesDir(fixture('helpers-only'), { required: false })).resolves.toMatchObject({ machines: [] });
    const hooks = await loadMachinesDir(fixture('hooks-only'), { required: true });
    expect(hooks).toMatchObject({ machines: [], hooks: [{ file: 'jobs.mjs' }] });
  });

  it('createRuntime({ machinesDir }) rejects a missing folder with the typed error, not ENOENT', async () => {
    const err: unknown = await createRuntime({ machinesDir: fixture('nowhere') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MachinesLoadError);
    expect(err).toMatchObject({ reason: 'NOT_FOUND' });
  });
});

/**
 * Runs the loader from source under a plain `node` (no tsx flag): a hook transpiles only
 * drover's src/, so the fixture's .ts is Node's to refuse, as in a user's process. `tsx`:
 * 'missing' stands in a tsx that cannot be found; 'installed' lets drover find the real one.
 */
async function loadInPlainNode(tsx: 'missing' | 'installed'): Promise<Record<string, unknown>> {
  const script = `
    const { loadMachinesDir } = await import(${JSON.stringify(new URL('../../src/runtime/machines-dir.ts', import.meta.url).href)});
    const missing = () => Promise.reject(Object.assign(new Error("Cannot find package 'tsx'"), { code: 'ERR_MODULE_NOT_FOUND' }));
    const options = { required: true, ...(process.argv[1] === 'missing' ? { tsx: missing } : {}) };
    try {
      const folder = await loadMachinesDir(${JSON.stringify(fixture('typescript'))}, options);
      console.log(JSON.stringify({ machines: folder.machines.map((m) => m.name), hooks: folder.hooks.map((h) => h.file) }));
    } catch (err) {
      console.log(JSON.stringify({ name: err.name, reason: err.reason, file: err.file, message: err.message }));
    }`;
  const args = ['--import', fixture('src-only-hooks.mjs'), '--input-type=module', '-e', script, tsx];
  const env = { ...process.env, NODE_OPTIONS: '' };
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, env });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('TypeScript machines under plain node', () => {
  it('without a TypeScript loader the error names the file and every way to get one; with tsx installed drover registers it', async () => {
    const [missing, installed] = await Promise.all([loadInPlainNode('missing'), loadInPlainNode('installed')]);
    expect(missing).toMatchObject({ name: 'MachinesLoadError', reason: 'NO_TYPESCRIPT_LOADER', file: fixture('typescript/all.ts') });
    const message = String(missing.message);
    expect(message).toContain('(tsx is not installed)');
    for (const option of ['npx tsx', 'node --import tsx', 'npm install -D tsx', '--experimental-strip-types', 'compile the machines to .js']) {
      expect(message).toContain(option);
    }
    expect(installed).toEqual({ machines: ['lamp'], hooks: ['lamp.ts'] });
  });
});

/** `drover …args` in this process: its exit code and stderr. */
async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stderr = '';
  err.on('data', (d: Buffer) => (stderr += d.toString()));
  out.resume();
  const code = await runCli(args, { out, err, env: {} });
  return { code, stderr };
}

describe('the CLI on a machines folder that does not load', () => {
  it('exits 2 for a folder that is missing or holds no machine, 1 for a module that fails, printing the code', async () => {
    const missing = await cli(['--machines', fixture('nowhere'), 'export', 'lamp']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`error [MACHINES_LOAD]: machines folder ${fixture('nowhere')} does not exist`);
    expect((await cli(['--machines', fixture('helpers-only'), 'export', 'lamp'])).code).toBe(2);
    const broken = await cli(['--machines', fixture('broken'), 'export', 'lamp']);
    expect(broken).toMatchObject({ code: 1, stderr: expect.stringContaining('cannot load') as unknown });
    const raw = await cli(['--machines', fixture('raw'), 'export', 'door']);
    expect(raw.code).toBe(1);
    expect(raw.stderr).toContain('wrap it in durable()');
  });
});
