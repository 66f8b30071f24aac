import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UnknownMachineError, UnknownVersionError } from '../errors.js';
import { exportMachine } from '../graph/export.js';
import { createRuntime } from '../runtime/runtime.js';
import type { Runtime } from '../runtime/types.js';
import { cliLogger, databaseOf, type GlobalOptions, loadMachinesFolder, type MachinesFolder, schemaOf, withRuntime } from './connect.js';
import { type Command as Cmd, integer } from './parse.js';
import type { Io } from './output.js';

// The commands that run something: start (a node, or a worker on every node), export.

/** Runs each module's `register(drover)` hook: workers and periodics of the machines folder. */
async function registerHooks(runtime: Runtime, folder: MachinesFolder): Promise<void> {
  for (const hook of folder.hooks) await hook.register(runtime);
}

/** Options of `drover serve`. */
interface ServeFlags {
  port: number;
  host: string;
  token?: string;
  cors?: string[];
  start?: boolean;
}

/**
 * A node (`start: true`: supervisor, pollers, workers and periodics) and/or the HTTP API
 * (`serve`); drains on SIGINT/SIGTERM and exits 0.
 */
async function runNode(io: Io, g: GlobalOptions, what: { start: boolean; serve?: ServeFlags }): Promise<void> {
  const database = databaseOf(g, io);
  const folder = await loadMachinesFolder(g, what.start);
  const logger = cliLogger(io, true);
  const runtime = await createRuntime({ database, schema: schemaOf(g, io), machines: folder.machines, logger });
  runtime.handleSignals();
  if (what.start) {
    await registerHooks(runtime, folder);
    await runtime.start();
    const workers = runtime.supervisor.workers().map((w) => w.name);
    io.err.write(
      `drover: node ${runtime.node} running on schema "${runtime.schema}": machines ${folder.machines.map((m) => m.name).join(', ') || '(none)'}; ` +
        `workers ${workers.join(', ') || '(none)'}. Ctrl-C (SIGINT) or SIGTERM drains and exits.\n`,
    );
  }
  if (what.serve) {
    const { port, host, token, cors } = what.serve;
    const server = await runtime
      .serve({ port, host, ...(token ? { token } : {}), ...(cors?.length ? { cors: { origin: cors } } : {}) })
      .catch(async (err: unknown) => {
        await runtime.stop();
        throw err;
      });
    io.err.write(`drover: HTTP API on ${server.url}/api (OpenAPI: ${server.url}/api/openapi.json)${token ? ', bearer token required' : ''}\n`);
    io.err.write(`drover: dashboard on ${server.url}/${token ? ' (open it once as /?token=…)' : ''}\n`);
  }
  await runtime.done;
}

/** Adds `start` and `export` to the program. */
export function nodeCommands(program: Command, io: Io, run: Cmd): void {
  program
    .command('start')
    .description('run a node for the machines folder (no argument), or start a worker on every live node')
    .argument('[worker]', 'a worker or periodic to start on every live node that registers it')
    .action(
      run(async (worker: string | undefined, _o: object, g: GlobalOptions) => {
        if (worker === undefined) return runNode(io, g, { start: true });
        await withRuntime(g, io, { machines: 'none' }, async (rt) => {
          await rt.supervisor.startEverywhere(worker);
          io.out.write(`asked every node to start ${worker}\n`);
        });
      }),
    );

  program
    .command('serve')
    .description('serve the HTTP management API (docs/http.md) and the dashboard at / (docs/dashboard.md); --start runs a node in the same process')
    .option('--port <port>', 'the port (0: a free one)', integer('--port'), 7070)
    .option('--host <host>', 'the address to bind; other than loopback requires a token', '127.0.0.1')
    .option('--token <token>', 'bearer token for every /api request (default: $DROVER_TOKEN)')
    .option('--cors <origin...>', 'origins allowed to call it from a browser')
    .option('--start', 'also run a node (pollers, workers, periodics) for the machines folder')
    .action(
      run(async (o: ServeFlags, g: GlobalOptions) => {
        const token = o.token ?? io.env.DROVER_TOKEN;
        await runNode(io, g, { start: o.start === true, serve: { ...o, ...(token ? { token } : {}) } });
      }),
    );

  program
    .command('export')
    .description('print a machine as createMachine({...}) TypeScript for the Stately editor (needs no database)')
    .argument('<machine>')
    .option('--version <n>', 'the machine version to export (default: the newest in the folder)', integer('--version'))
    .option('--out <file>', 'write to a file instead of stdout')
    .action(
      run(async (name: string, o: { version?: number; out?: string }, g: GlobalOptions) => {
        const folder = await loadMachinesFolder(g, true);
        const versions = folder.machines.filter((m) => m.name === name);
        if (versions.length === 0) throw new UnknownMachineError(name, [...new Set(folder.machines.map((m) => m.name))]);
        const version = o.version ?? Math.max(...versions.map((m) => m.version));
        const def = versions.find((m) => m.version === version);
        if (!def) throw new UnknownVersionError(name, version, versions.map((m) => m.version));
        const code = exportMachine(def);
        if (o.out) {
          await writeFile(o.out, code);
          io.err.write(`wrote ${name} version ${version} to ${o.out}\n`);
        } else io.out.write(code);
      }),
    );
}
