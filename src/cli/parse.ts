import { Command as Commander } from 'commander';
import { type GlobalOptions, UsageError } from './connect.js';

/** Wraps a command's action: commander passes `(...arguments, options, command)`; the action also gets the global options. */
export type Command = (fn: (...args: never[]) => Promise<void>) => (...args: unknown[]) => Promise<void>;

/** The action wrapper: appends `--database`, `--schema` and `--machines` as a last argument. */
export const withGlobals: Command = (fn) =>
  async (...args) => {
    const cmd = args[args.length - 1];
    const globals = cmd instanceof Commander ? (cmd.optsWithGlobals() as GlobalOptions) : {};
    await (fn as (...a: unknown[]) => Promise<void>)(...args.slice(0, -1), { database: globals.database, schema: globals.schema, machines: globals.machines });
  };

/** An option parser for a whole number (commander calls it with the text). */
export function integer(flag: string) {
  return (text: string): number => {
    if (!/^-?\d+$/.test(text.trim())) throw new UsageError(`${flag} must be a whole number (got "${text}")`);
    return Number(text);
  };
}

/** `--map a=b` pairs and/or a `--states` JSON object, as one state map. */
export function parseStateMap(pairs: readonly string[], object: unknown): Record<string, string> {
  const states: Record<string, string> = {};
  if (object !== undefined) {
    if (typeof object !== 'object' || object === null || Array.isArray(object)) throw new UsageError('--states must be a JSON object {"from state": "to state"}');
    for (const [k, v] of Object.entries(object)) {
      if (typeof v !== 'string') throw new UsageError(`--states: the target of "${k}" must be a string`);
      states[k] = v;
    }
  }
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) throw new UsageError(`--map takes from=to (got "${pair}")`);
    states[pair.slice(0, at)] = pair.slice(at + 1);
  }
  if (Object.keys(states).length === 0) throw new UsageError('give the state map: --map from=to (repeatable) or --states <json>');
  return states;
}
