import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage, MachinesLoadError } from '../errors.js';
import { type DurableMachine, isDurableMachine } from '../record/durable.js';
import type { Runtime } from './types.js';

// The one loader of a machines folder: createRuntime({ machinesDir }) and the CLI's --machines.

/** What a machines folder holds: its durable machines and the `register` hooks of its modules. */
export interface MachinesFolder {
  dir: string;
  machines: DurableMachine[];
  /** `export function register(drover)` of each module, run by `drover start` and `drover serve`. */
  hooks: Array<{ file: string; register: (runtime: Runtime) => unknown }>;
}

/** tsx's programmatic API, as far as the loader uses it. */
interface TsxApi {
  register: () => unknown;
}

/** Options of {@link loadMachinesDir}. */
export interface LoadMachinesOptions {
  /**
   * The folder must exist and hold at least one durable machine or `register` hook. Otherwise a
   * missing folder loads as empty (the CLI's default `./machines`, which may be absent).
   */
  required: boolean;
  /** How tsx is found (a test seam): default `import('tsx/esm/api')`, resolved from drover's install. */
  tsx?: () => Promise<TsxApi>;
}

const MODULE = /\.(m?js|m?ts)$/;
const DECLARATION = /\.d\.m?ts$/;
const TYPESCRIPT = /\.m?ts$/;

/**
 * Loads every `.js`, `.mjs`, `.ts` and `.mts` module of a folder (not its subfolders), in name
 * order: the durable machines they export (each once) and their `register` hooks. Under a
 * process that does not already run on tsx, `.ts` modules are loaded through tsx when it is
 * installed (drover registers it); else through whatever the process has (Node's type
 * stripping), and a `.ts` file Node refuses is a `MachinesLoadError` naming the options.
 * Every failure is a `MachinesLoadError` with its `reason` and the file.
 */
export async function loadMachinesDir(dir: string, options: LoadMachinesOptions): Promise<MachinesFolder> {
  const abs = resolve(dir);
  const found: MachinesFolder = { dir: abs, machines: [], hooks: [] };
  const info = await stat(abs).catch(() => null);
  if (!info || !info.isDirectory()) {
    if (!options.required && !info) return found;
    const what = info ? 'is not a folder' : 'does not exist';
    throw new MachinesLoadError(
      info ? 'NOT_A_FOLDER' : 'NOT_FOUND',
      abs,
      `machines folder ${abs} ${what}: pass the folder that holds your machine modules (drover --machines <dir>, default ./machines; createRuntime({ machinesDir }))`,
    );
  }
  const files = (await readdir(abs)).filter((f) => MODULE.test(f) && !DECLARATION.test(f)).sort();
  const tsx = files.some((f) => TYPESCRIPT.test(f)) ? await typescriptLoader(options.tsx) : 'not needed';
  for (const file of files) {
    const path = join(abs, file);
    const mod = await importModule(path, tsx);
    const exported = Object.entries(mod);
    for (const [, value] of exported) if (isDurableMachine(value) && !found.machines.includes(value)) found.machines.push(value);
    const register = mod.register;
    if (typeof register === 'function') found.hooks.push({ file, register: register as MachinesFolder['hooks'][number]['register'] });
    else if (!exported.some(([, v]) => isDurableMachine(v))) {
      // A module with neither may be a helper; one that exports a bare XState machine forgot durable().
      const raw = exported.find(([, v]) => isXStateMachine(v));
      if (raw) {
        const [name, machine] = raw as [string, { id: string }];
        throw new MachinesLoadError(
          'NOT_DURABLE',
          path,
          `${path} exports the XState machine ${name === 'default' ? 'as default' : `"${name}"`} (id "${machine.id}") but no durable machine: wrap it in durable() (\`export const ${name === 'default' ? machine.id : name} = durable(machine)\`) so drover can run it`,
        );
      }
    }
  }
  if (options.required && found.machines.length === 0 && found.hooks.length === 0) {
    throw new MachinesLoadError(
      'NO_MACHINES',
      abs,
      `machines folder ${abs} holds no durable machine and no register hook (${
        files.length ? `read ${files.join(', ')}` : 'no .js, .mjs or .ts module in it'
      }): export machines made by durable() or defineJob(), or pass the right folder`,
    );
  }
  return found;
}

/** How `.ts` modules are loaded in this process. */
type TypeScriptSupport = 'not needed' | 'tsx' | 'tsx not installed';

let defaultTsx: Promise<TypeScriptSupport> | undefined;

/** Registers tsx once per process unless the process already runs on it. */
function typescriptLoader(find: LoadMachinesOptions['tsx']): Promise<TypeScriptSupport> {
  if (runsOnTsx()) return Promise.resolve('tsx');
  const attempt = async (): Promise<TypeScriptSupport> => {
    let api: TsxApi;
    try {
      api = find ? await find() : ((await import('tsx/esm/api' as string)) as TsxApi);
    } catch {
      return 'tsx not installed';
    }
    api.register();
    return 'tsx';
  };
  if (find) return attempt();
  defaultTsx ??= attempt();
  return defaultTsx;
}

/** `tsx file`, `node --import tsx` or `NODE_OPTIONS=--import=tsx`: its hooks already load `.ts`. */
function runsOnTsx(): boolean {
  // Flags one by one (an `-e` script may mention tsx): `tsx`, `--import=tsx`, `…/node_modules/tsx/dist/loader.mjs`.
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return flags.some((a) => /(^|[=/\\])tsx([/\\]|$)/.test(a)) || process.env.TSX_TSCONFIG_PATH !== undefined;
}

async function importModule(path: string, tsx: TypeScriptSupport): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (TYPESCRIPT.test(path) && code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw new MachinesLoadError(
        'NO_TYPESCRIPT_LOADER',
        path,
        `${path} is TypeScript and this process has no TypeScript loader${tsx === 'tsx not installed' ? ' (tsx is not installed)' : ''}. Either: ` +
          'run under tsx (`npx tsx app.ts`, `node --import tsx app.js`); ' +
          'install tsx (`npm install -D tsx`) and drover registers it itself; ' +
          'use Node 22.6+ with `--experimental-strip-types` (the default from Node 23.6); ' +
          'or compile the machines to .js',
        { cause: err },
      );
    }
    const hint =
      code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX' || (TYPESCRIPT.test(path) && code === 'ERR_MODULE_NOT_FOUND' && tsx !== 'tsx')
        ? ' (Node strips types but does not compile TypeScript or map `.js` imports to `.ts` files: install tsx, or compile the machines to .js)'
        : '';
    throw new MachinesLoadError('IMPORT_FAILED', path, `cannot load ${path}: ${errorMessage(err)}${hint}`, { cause: err });
  }
}

/** A machine from XState's `createMachine()`/`setup().createMachine()` (duck-typed: the app may hold its own xstate copy). */
function isXStateMachine(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === 'string' && typeof v.transition === 'function' && typeof v.getInitialSnapshot === 'function' && 'root' in v;
}
