import { resolve } from 'node:path';
import type { Logger } from '../log.js';
import { loadMachinesDir, type MachinesFolder } from '../runtime/machines-dir.js';
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

export type { MachinesFolder };

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
 * The machines folder of a command: `--machines`, else `./machines`, read by the runtime's one
 * loader ({@link loadMachinesDir}). `required` (or a folder named with `--machines`) makes a
 * missing or empty folder a `MachinesLoadError`; the default `./machines` may be absent.
 */
export function loadMachinesFolder(opts: GlobalOptions, required: boolean): Promise<MachinesFolder> {
  return loadMachinesDir(resolve(opts.machines ?? 'machines'), { required: required || opts.machines !== undefined });
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
