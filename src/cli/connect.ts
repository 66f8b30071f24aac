import { stat, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { type DurableMachine, isDurableMachine } from '../record/durable.js';
import { createRuntime } from '../runtime/runtime.js';
import type { RuntimeOptions } from '../runtime/options.js';
import type { Runtime } from '../runtime/types.js';
import type { Io } from './output.js';

/** A wrong command line: printed with the usage hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The options every command shares (`drover --database … <command>`). */
export interface GlobalOptions {
  database?: string;
  schema?: string;
  machines?: string;
}

/** What a machines folder holds: its durable machines and the `register` hooks of its modules. */
export interface MachinesFolder {
  dir: string;
  machines: DurableMachine[];
  /** `export function register(drover)` of each module, run by `drover start` and `drover serve`. */
  hooks: Array<{ file: string; register: (runtime: Runtime) => unknown }>;
}

/** The connection string: `--database`, else `DATABASE_URL`. */
export function databaseOf(opts: GlobalOptions, io: Io): string {
  const url = opts.database ?? io.env.DATABASE_URL;
  if (!url) throw new UsageError('no database: pass --database <postgres://…> or set DATABASE_URL');
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError(`--database must be a postgres:// or postgresql:// URL (got "${url}")`);
  return url;
}

/** The schema: `--schema`, else `DROVER_SCHEMA`, else `drover`. */
export const schemaOf = (opts: GlobalOptions, io: Io): string => opts.schema ?? io.env.DROVER_SCHEMA ?? 'drover';

/**
 * Loads every `.js`, `.mjs` and `.ts` module of a machines folder (not its subfolders). A `.ts`
 * file needs a TypeScript loader: under plain `node`, drover registers `tsx` when it is
 * installed, else it says how to run. A missing folder is a `UsageError` only when it was
 * named (`--machines`); the default `./machines` may be absent (`required: false`).
 */
export async function loadMachinesFolder(opts: GlobalOptions, required: boolean): Promise<MachinesFolder> {
  const named = opts.machines !== undefined;
  const dir = resolve(opts.machines ?? 'machines');
  const found: MachinesFolder = { dir, machines: [], hooks: [] };
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) {
    if (named || required) {
      throw new UsageError(`machines folder ${dir} ${info ? 'is not a folder' : 'does not exist'}: pass --machines <dir> (default ./machines)`);
    }
    return found;
  }
  const files = (await readdir(dir)).filter((f) => /\.(m?js|ts|mts)$/.test(f) && !/\.d\.m?ts$/.test(f)).sort();
  if (files.some((f) => /\.m?ts$/.test(f))) await typescriptLoader(dir);
  for (const file of files) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`cannot load ${join(dir, file)}: ${errorMessage(err)}`, { cause: err });
    }
    for (const value of Object.values(mod)) if (isDurableMachine(value) && !found.machines.includes(value)) found.machines.push(value);
    if (typeof mod.register === 'function') found.hooks.push({ file, register: mod.register as MachinesFolder['hooks'][number]['register'] });
  }
  return found;
}

let tsReady: Promise<void> | undefined;
/** Makes `import()` of `.ts` files work: already so under tsx (or Node with type stripping), else via tsx's API. */
function typescriptLoader(dir: string): Promise<void> {
  tsReady ??= (async () => {
    if ((process.features as { typescript?: unknown }).typescript || process.execArgv.some((a) => a.includes('tsx')) || process.env.TSX_TSCONFIG_PATH) return;
    try {
      const api = (await import('tsx/esm/api')) as { register: () => unknown };
      api.register();
    } catch {
      throw new UsageError(
        `${dir} holds .ts machines but no TypeScript loader is installed: \`npm install -D tsx\`, or compile the machines to .js`,
      );
    }
  })();
  return tsReady;
}

/** Log lines for the terminal: `warn` and `error` always, `info` with `verbose` (as for `drover start`). */
export function cliLogger(io: Io, verbose: boolean): Logger {
  const line = (level: string) => (obj: object, msg?: string) => {
    const fields = Object.keys(obj).length ? ` ${JSON.stringify(obj)}` : '';
    io.err.write(`${new Date().toISOString()} ${level} ${msg ?? ''}${fields}\n`);
  };
  const noop = () => {};
  return { debug: noop, info: verbose ? line('info') : noop, warn: line('warn'), error: line('error') };
}

/** Opens a runtime (a client: never started) for one command, and always stops it. */
export async function withRuntime<T>(
  opts: GlobalOptions,
  io: Io,
  options: { machines?: 'required' | 'optional' | 'none'; logger?: Logger },
  fn: (runtime: Runtime, folder: MachinesFolder) => Promise<T>,
): Promise<T> {
  const database = databaseOf(opts, io);
  const folder =
    options.machines === 'none' || options.machines === undefined
      ? { dir: '', machines: [], hooks: [] }
      : await loadMachinesFolder(opts, options.machines === 'required');
  const runtimeOptions: RuntimeOptions = { database, schema: schemaOf(opts, io), machines: folder.machines, logger: options.logger ?? cliLogger(io, false) };
  const runtime = await createRuntime(runtimeOptions);
  try {
    return await fn(runtime, folder);
  } finally {
    await runtime.stop();
  }
}
