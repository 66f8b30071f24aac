import { InvalidArgumentError, UnknownMachineError, UnknownVersionError } from '../errors.js';
import { isMachineLogic } from './actors.js';
import { type DurableMachine, durable } from './durable.js';

/**
 * `machines` with the child machines they invoke or spawn (their `setup({ actors })` entries
 * that are machines, at any depth) that no machine of that name stands for: those are
 * registered as `durable(child)` with the defaults, so a child record can be stored and run.
 * Register a child machine yourself to give it options (a queue, a version, retries).
 */
export function withChildMachines(machines: readonly DurableMachine[]): DurableMachine[] {
  const all = [...machines];
  const names = new Set(all.map((m) => m.name));
  for (let i = 0; i < all.length; i++) {
    const actors = ((all[i] as DurableMachine).machine.implementations?.actors ?? {}) as Record<string, unknown>;
    for (const logic of Object.values(actors)) {
      if (!isMachineLogic(logic) || names.has(logic.id)) continue;
      // A child that durable() refuses (no id) is left out: starting it fails the parent's invoke with the reason.
      let child: DurableMachine;
      try {
        child = durable(logic) as unknown as DurableMachine;
      } catch {
        continue;
      }
      names.add(child.name);
      all.push(child);
    }
  }
  return all;
}

/** The machines a runtime knows, by name and version. */
export class MachineRegistry {
  private readonly byName = new Map<string, Map<number, DurableMachine>>();

  constructor(machines: readonly DurableMachine[]) {
    for (const m of machines) {
      const versions = this.byName.get(m.name) ?? new Map<number, DurableMachine>();
      if (versions.has(m.version)) throw new InvalidArgumentError(`machine "${m.name}" version ${m.version} is registered twice`);
      const other = [...versions.values()][0];
      if (other && other.queue !== m.queue) {
        throw new InvalidArgumentError(`machine "${m.name}": every version must use one queue ("${other.queue}" vs "${m.queue}")`);
      }
      versions.set(m.version, m);
      this.byName.set(m.name, versions);
    }
  }

  /** The newest version: what `create()` starts. */
  latest(name: string): DurableMachine {
    const versions = this.byName.get(name);
    if (!versions) throw new UnknownMachineError(name, this.names());
    return [...versions.values()].reduce((a, b) => (b.version > a.version ? b : a));
  }

  /** One version, as a stored record needs it. */
  get(name: string, version: number): DurableMachine {
    const versions = this.byName.get(name);
    if (!versions) throw new UnknownMachineError(name, this.names());
    const m = versions.get(version);
    if (!m) throw new UnknownVersionError(name, version, [...versions.keys()]);
    return m;
  }

  /** The registered versions of a machine, oldest first. */
  versions(name: string): number[] {
    const versions = this.byName.get(name);
    if (!versions) throw new UnknownMachineError(name, this.names());
    return [...versions.keys()].sort((a, b) => a - b);
  }

  /** Checks that a machine name is registered. */
  assertKnown(name: string): void {
    if (!this.byName.has(name)) throw new UnknownMachineError(name, this.names());
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  queues(): string[] {
    return [...new Set([...this.byName.values()].flatMap((v) => [...v.values()].map((m) => m.queue)))].sort();
  }
}
