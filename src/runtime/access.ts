import type { Bus } from '../bus/bus.js';
import type { Database } from '../db/database.js';
import type { Engine } from '../engine/engine.js';
import { InvalidArgumentError } from '../errors.js';
import type { MachineRegistry } from '../record/registry.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { Clock } from '../time.js';
import type { Runtime } from './types.js';

/**
 * What drover's own operator tools (the CLI, the HTTP API, the inspector bridge) read of a
 * runtime beside its public API: its database, schema, machines, bus and supervisor. Not
 * exported from the package: the public surface stays the `Runtime` interface.
 */
export interface RuntimeAccess {
  readonly db: Database;
  readonly schema: string;
  readonly node: string;
  readonly registry: MachineRegistry;
  readonly clock: Required<Clock>;
  readonly bus: Bus;
  readonly supervisor: Supervisor;
  readonly engine: Engine;
}

const access = new WeakMap<Runtime, RuntimeAccess>();

/** Called once by the runtime's constructor. */
export function registerAccess(runtime: Runtime, parts: RuntimeAccess): void {
  access.set(runtime, parts);
}

/** The internals of a runtime made by `createRuntime()`. */
export function accessOf(runtime: Runtime): RuntimeAccess {
  const parts = access.get(runtime);
  if (!parts) throw new InvalidArgumentError('expected a runtime made by createRuntime()');
  return parts;
}
