import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { type CheckOptions, checkMachine, type CheckResult } from '../check/machine.js';
import { DroverError, InvalidArgumentError } from '../errors.js';
import type { DurableMachine } from '../record/durable.js';
import { type GlobalOptions, loadMachinesFolder, UsageError } from './connect.js';
import { colourOn, type Io, json, painter } from './output.js';
import { type Command as Cmd, integer } from './parse.js';

// `drover check [dir]`: checkMachine() on every durable machine of a machines folder. Needs no database.

/** Some machine of the folder has problems: exit code 1, after they were printed. */
class CheckFailedError extends DroverError {
  constructor(message: string) {
    super('CHECK_FAILED', message);
  }
}

/** Options of `drover check`. */
interface CheckFlags {
  json?: boolean;
  maxStates?: number;
}

/** Adds `check` to the program. */
export function checkCommands(program: Command, io: Io, run: Cmd): void {
  program
    .command('check')
    .description('check that every durable machine of the folder survives persistence: every transition run durably, restored before each event, against in-memory XState (needs no database)')
    .argument('[dir]', 'the machines folder (default: --machines, else ./machines)')
    .option('--max-states <n>', 'the most distinct states walked per machine (default 500)', integer('--max-states'))
    .option('--json', 'print the results as JSON')
    .action(
      run(async (dir: string | undefined, o: CheckFlags, g: GlobalOptions) => {
        const started = performance.now();
        const folder = await loadMachinesFolder({ ...g, machines: dir ?? g.machines }, true);
        if (folder.machines.length === 0) throw new UsageError(`${folder.dir} holds no durable machine: export machines made by durable() or defineJob()`);
        const samples = await checkOptionsOf(folder.dir, folder.machines);
        const results: Array<CheckResult & { version: number; ms: number }> = [];
        // By name and version: the order of a module's exports depends on the loader.
        const machines = [...folder.machines].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.version - b.version));
        for (const def of machines) {
          const t = performance.now();
          const options: CheckOptions = { ...samples.get(def.name), ...(o.maxStates !== undefined ? { maxStates: o.maxStates } : {}) };
          let result: CheckResult;
          try {
            result = await checkMachine(def, options);
          } catch (err) {
            // A bad sample is the module's: say which machine's checkOptions to fix.
            if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`machine "${def.name}" (its checkOptions): ${err.message}`);
            throw err;
          }
          results.push({ ...result, version: def.version, ms: Math.round(performance.now() - t) });
        }
        const ms = Math.round(performance.now() - started);
        const problems = results.reduce((n, r) => n + r.problems.length, 0);
        if (o.json) io.out.write(json({ dir: folder.dir, ok: problems === 0, problems, ms, machines: results }));
        else io.out.write(report(results, colourOn(io)) + `checked ${results.length} machine${results.length === 1 ? '' : 's'} in ${ms} ms: ${problems === 0 ? 'no problems' : `${problems} problem${problems === 1 ? '' : 's'}`}\n`);
        if (problems > 0) {
          const failing = results.filter((r) => !r.ok).length;
          throw new CheckFailedError(`${problems} problem${problems === 1 ? '' : 's'} in ${failing} of ${results.length} machines (see docs/machines.md, "Checking a machine survives persistence")`);
        }
      }),
    );
}

/** Each machine's line, its problems under it, and what was left unexplored. */
function report(results: ReadonlyArray<CheckResult & { version: number; ms: number }>, colour: boolean): string {
  const paint = painter(colour);
  let text = '';
  for (const r of results) {
    const head = `${paint('bold', r.machine)} v${r.version}`;
    const stats = `${r.paths} path${r.paths === 1 ? '' : 's'}${r.truncated ? ', stopped at --max-states' : ''}, ${r.ms} ms`;
    text += r.ok ? `${head}  ${paint('green', 'ok')}  (${stats})\n` : `${head}  ${paint('red', `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`)}  (${stats})\n`;
    for (const p of r.problems) {
      const path = p.path.length ? p.path.map((e) => e.type).join(' → ') : '(the start)';
      text += `  ${paint('red', p.kind)} in state "${p.state}" after ${path}\n    ${p.message}\n`;
    }
    for (const u of r.unexplored) {
      text += `  ${paint('yellow', 'not explored')}: "${u.event}" in state "${u.state}" throws in memory too (${u.message}); give a sample event in checkOptions\n`;
    }
  }
  return text;
}

/**
 * The sample input, events and outputs each machine is checked with: the folder's modules
 * may export `checkOptions`, an object of {@link CheckOptions} by machine name. The modules
 * were imported by the loader already, so importing them again returns the same instances.
 */
async function checkOptionsOf(dir: string, machines: readonly DurableMachine[]): Promise<Map<string, CheckOptions>> {
  const names = new Set(machines.map((m) => m.name));
  const found = new Map<string, CheckOptions>();
  const files = (await readdir(dir)).filter((f) => /\.(m?js|m?ts)$/.test(f) && !/\.d\.m?ts$/.test(f)).sort();
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as { checkOptions?: unknown };
    const given = mod.checkOptions;
    if (given === undefined) continue;
    if (typeof given !== 'object' || given === null || Array.isArray(given)) {
      throw new InvalidArgumentError(`${join(dir, file)}: checkOptions must be an object of check options by machine name, e.g. { order: { input: { … } } }`);
    }
    for (const [name, options] of Object.entries(given)) {
      if (!names.has(name)) {
        throw new InvalidArgumentError(`${join(dir, file)}: checkOptions names "${name}", which is no durable machine of the folder (known: ${[...names].join(', ')})`);
      }
      found.set(name, options as CheckOptions);
    }
  }
  return found;
}
