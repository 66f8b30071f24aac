import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DroverError, errorMessage, MachinesLoadError, type MachinesLoadReason } from '../errors.js';
import { checkCommands } from './check.js';
import { UsageError } from './connect.js';
import { nodeCommands } from './node.js';
import { operatorCommands } from './operations.js';
import { type Io, json } from './output.js';
import { withGlobals } from './parse.js';
import { recordCommands } from './records.js';

/** Exit codes of the `drover` command (docs/cli.md). */
export const EXIT = { ok: 0, error: 1, usage: 2 } as const;

/** A machines folder that is absent, empty or needs a TypeScript loader: how drover was run, exit 2; a module's own failure is 1. */
const USAGE_LOAD_REASONS: ReadonlySet<MachinesLoadReason> = new Set(['NOT_FOUND', 'NOT_A_FOLDER', 'NO_TYPESCRIPT_LOADER', 'NO_MACHINES']);

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const FOOTER = `
Connection: --database or DATABASE_URL (postgres://…), --schema or DROVER_SCHEMA (default drover).
Machines: --machines <dir> (default ./machines): its .js/.ts modules' durable machines, and
each module's \`export function register(drover)\` for workers and periodics (drover start).
Exit codes: 0 ok, 1 error (the message names its code), 2 wrong usage.
Colour only on a terminal; NO_COLOR turns it off. Docs: docs/cli.md`;

/** The `drover` program, writing to `io`. */
export function buildProgram(io: Io): Command {
  const program = new Command('drover')
    .description('drover: durable records on XState, PostgreSQL and NATS — the operator CLI')
    .option('--database <url>', 'PostgreSQL connection string (default: $DATABASE_URL)')
    .option('--schema <name>', "drover's schema (default: $DROVER_SCHEMA or drover)")
    .option('--machines <dir>', 'the machines folder (default: ./machines)')
    .addHelpText('after', FOOTER)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) });
  recordCommands(program, io, withGlobals);
  operatorCommands(program, io, withGlobals);
  nodeCommands(program, io, withGlobals);
  checkCommands(program, io, withGlobals);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) });
  return program;
}

/**
 * Runs the CLI on `argv` (without `node` and the script) and resolves to its exit code: 0 ok,
 * 1 an error (a `DroverError` prints its code), 2 wrong usage (unknown command or option, a
 * missing argument, a malformed value, no database, a machines folder that is missing, empty or
 * needs a TypeScript loader).
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  // `--version` is read here: commander's would also catch `drover export <m> --version 2`.
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    io.out.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const program = buildProgram(io);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.usage;
  }
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return EXIT.ok;
      // Commander printed the message; an option parser's UsageError arrives wrapped.
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      io.err.write(wantsJson ? json({ error: { code: 'USAGE', message: err.message } }) : `error: ${err.message}\n(see drover --help)\n`);
      return EXIT.usage;
    }
    if (err instanceof DroverError) {
      io.err.write(wantsJson ? json({ error: { code: err.code, message: err.message } }) : `error [${err.code}]: ${err.message}\n`);
      return err instanceof MachinesLoadError && USAGE_LOAD_REASONS.has(err.reason) ? EXIT.usage : EXIT.error;
    }
    io.err.write(wantsJson ? json({ error: { code: 'ERROR', message: errorMessage(err) } }) : `error: ${errorMessage(err)}\n`);
    return EXIT.error;
  }
}
