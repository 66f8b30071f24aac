/**
 * Every error drover throws on purpose. Catch `DroverError` for all of them, or a specific
 * class; each carries a stable `code` for programs and a message that says how to fix it.
 */
export class DroverError extends Error {
  /** A stable, machine-readable code such as `UNKNOWN_MACHINE`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** No machine with that name is registered with the runtime. */
export class UnknownMachineError extends DroverError {
  constructor(machine: string, known: readonly string[]) {
    super('UNKNOWN_MACHINE', `no machine "${machine}" is registered (known: ${known.length ? known.join(', ') : 'none'})`);
  }
}

/** A record was started on a machine version that this runtime does not have registered. */
export class UnknownVersionError extends DroverError {
  constructor(machine: string, version: number, known: readonly number[]) {
    super(
      'UNKNOWN_VERSION',
      `machine "${machine}" has no version ${version} registered (known: ${known.join(', ')}); keep old versions in \`machines\` until their records finish`,
    );
  }
}

/** `create()` with an id or unique key that already exists for that machine. */
export class DuplicateRecordError extends DroverError {
  constructor(machine: string, what: 'id' | 'uniqueKey', value: string) {
    super('DUPLICATE_RECORD', `machine "${machine}" already has a record with ${what} "${value}"`);
  }
}

/** No record with that id exists for that machine. */
export class RecordNotFoundError extends DroverError {
  constructor(machine: string, id: string) {
    super('RECORD_NOT_FOUND', `machine "${machine}" has no record "${id}"`);
  }
}

/**
 * `send()` with an event the record cannot take: its current state has no transition for it
 * (or every guard refuses it), or the record has already finished. Nothing is stored.
 */
export class EventNotAcceptedError extends DroverError {
  constructor(machine: string, id: string, eventType: string, reason: string) {
    super('EVENT_NOT_ACCEPTED', `record "${id}" of machine "${machine}" cannot take event "${eventType}": ${reason}`);
  }
}

/** A stored snapshot that the registered machine cannot restore. The stored row is kept as is. */
export class SnapshotRestoreError extends DroverError {
  constructor(machine: string, id: string, cause: unknown) {
    super('SNAPSHOT_RESTORE', `the stored snapshot of record "${id}" (machine "${machine}") does not restore: ${errorMessage(cause)}`, {
      cause,
    });
  }
}

/** Options or arguments that cannot be used (bad schema name, bad duration, inline invoke…). */
export class InvalidArgumentError extends DroverError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** `waitFor()` ran out of time before the record matched. */
export class WaitTimeoutError extends DroverError {
  constructor(machine: string, id: string, timeoutMs: number, last: string) {
    super('WAIT_TIMEOUT', `record "${id}" of machine "${machine}" did not match within ${timeoutMs} ms (last: ${last})`);
  }
}

/** `waitFor()` found the record finished in a way that can never match. */
export class WaitUnreachableError extends DroverError {
  constructor(machine: string, id: string, status: string) {
    super('WAIT_UNREACHABLE', `record "${id}" of machine "${machine}" finished with status "${status}" without matching`);
  }
}

/** The runtime was stopped; it takes no more calls. */
export class RuntimeStoppedError extends DroverError {
  constructor() {
    super('RUNTIME_STOPPED', 'the runtime has been stopped; create a new one');
  }
}

/** The message of anything thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A JSON-safe description of an error, as stored in a record and in history. */
export function serializeError(err: unknown): { name: string; message: string; stack?: string } {
  if (err instanceof Error) {
    const out: { name: string; message: string; stack?: string } = { name: storableText(String(err.name)), message: storableText(String(err.message)) };
    if (err.stack !== undefined) out.stack = storableText(err.stack);
    return out;
  }
  return { name: 'Error', message: storableText(String(err)) };
}

/**
 * An error's text as PostgreSQL can store it: NUL and lone UTF-16 surrogates (which `jsonb`
 * refuses) become U+FFFD. Error text is drover's to describe, unlike a record's data, so it is
 * mended rather than refused: a failure must always be storable.
 */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE, '\uFFFD');
}

// eslint-disable-next-line no-control-regex -- NUL is what it finds
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** No worker with that name is registered on this runtime. */
export class WorkerNotFoundError extends DroverError {
  constructor(name: string) {
    super('WORKER_NOT_FOUND', `worker ${name} not found`);
  }
}

/** `add()` or `periodic()` with a name already taken. */
export class DuplicateWorkerError extends DroverError {
  constructor(name: string) {
    super('DUPLICATE_WORKER', `worker ${name} already exists`);
  }
}

/** A run that outlived its `timeout`. */
export class RunTimeoutError extends DroverError {
  constructor(name: string, ms: number) {
    super('RUN_TIMEOUT', `periodic "${name}" ran longer than its timeout of ${ms} ms`);
  }
}

/** One problem a validator found: what is wrong, and where (`path` from the input's root). */
export interface InputIssue {
  message: string;
  path: ReadonlyArray<string | number>;
}

/**
 * `create()` or `createMany()` with input the machine cannot start from: the `input`
 * validator of `durable()` refused it, or the initial transition threw (a context factory,
 * an entry action). Nothing is stored.
 */
export class InvalidInputError extends DroverError {
  /** What the validator (or the initial transition) said, with paths. */
  readonly issues: readonly InputIssue[];
  constructor(machine: string, issues: readonly InputIssue[], options?: { cause?: unknown; item?: number }) {
    const where = options?.item === undefined ? '' : `items[${options.item}]: `;
    const list = issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
    super('INVALID_INPUT', `${where}machine "${machine}" cannot start with this input: ${list}`, options);
    this.issues = issues;
  }
}

/**
 * `durable()` refused a machine that drover cannot run faithfully: it names the state and
 * says what to change (an undefined delay, an actor that cannot run durably, context that is
 * not JSON).
 */
export class MachineDefinitionError extends DroverError {
  constructor(message: string) {
    super('MACHINE_DEFINITION', message);
  }
}

/**
 * A registered machine version's structure differs from what is stored for that version
 * in the database: bump the version (or pass `allowChange: true` when no live record is
 * stranded). Lists the differences and the stranded records.
 */
export class MachineChangedError extends DroverError {
  constructor(message: string) {
    super('MACHINE_CHANGED', message);
  }
}

/** An applied SQL migration whose file has changed since: landed migrations never change. */
export class MigrationChangedError extends DroverError {
  constructor(message: string) {
    super('MIGRATION_CHANGED', message);
  }
}

/** `migrate()` refused: some live records are in states that the state map does not map. */
export class UnmappedStatesError extends DroverError {
  /** The live states of version `from` that have no mapping, with how many records are in each. */
  readonly states: ReadonlyArray<{ state: string; count: number }>;
  constructor(machine: string, from: number, states: ReadonlyArray<{ state: string; count: number }>) {
    super(
      'UNMAPPED_STATES',
      `machine "${machine}" version ${from} has live records in states the map does not name: ${states
        .map((s) => `"${s.state}" (${s.count})`)
        .join(', ')}; add them to \`states\``,
    );
    this.states = states;
  }
}

/** `retry()` of a record that has not failed. */
export class NotFailedError extends DroverError {
  constructor(machine: string, id: string, status: string) {
    super('NOT_FAILED', `record "${id}" of machine "${machine}" is ${status}, not failed: only a failed record can be retried`);
  }
}

/**
 * A step produced a value that cannot be stored (a BigInt, a cycle, NUL or a lone surrogate in
 * a string, nesting too deep), or the database refused the record's write. The record fails
 * alone with this error; the rest of its batch commits.
 */
export class UnstorableValueError extends DroverError {
  constructor(message: string) {
    super('UNSTORABLE_VALUE', message);
  }
}

/**
 * A step sent an event that cannot be delivered: to a record that does not exist
 * (`sendToRecord`), `sendParent` from a record that has no parent, or a delayed send to another
 * record. The sending record fails on that event (a machine error, in its history); nothing of
 * the step is stored, and `retry()` runs it again once the target exists.
 */
export class UndeliverableMessageError extends DroverError {
  constructor(message: string) {
    super('UNDELIVERABLE_MESSAGE', message);
  }
}

/**
 * The database could not be reached or kept dropping the connection (refused, reset, the
 * server shutting down, no free connection), after drover's own retries. A write that failed
 * this way committed whole or not at all (each is one transaction): when the connection dropped
 * during the commit, read back before repeating it (a repeated `create()` with the same id is a
 * `DuplicateRecordError`, never a second record). `cause` is the driver's error.
 */
export class DatabaseUnavailableError extends DroverError {
  constructor(cause: unknown) {
    super('DATABASE_UNAVAILABLE', `the database is unavailable: ${errorMessage(cause)}; try again when it is back`, { cause });
  }
}

/** Why a machines folder did not load: see {@link MachinesLoadError}. */
export type MachinesLoadReason =
  | 'NOT_FOUND'
  | 'NOT_A_FOLDER'
  | 'NO_TYPESCRIPT_LOADER'
  | 'IMPORT_FAILED'
  | 'NOT_DURABLE'
  | 'NO_MACHINES';

/**
 * A machines folder (`createRuntime({ machinesDir })`, `drover --machines`) did not load:
 * `reason` says why and `file` names the folder or module. The message says what to do: the
 * TypeScript loaders to choose from, the folder to pass, `durable()` to wrap a plain XState
 * machine in. A module that failed to import is the `cause`.
 */
export class MachinesLoadError extends DroverError {
  /** What went wrong, stable for programs: `NOT_FOUND`, `NO_TYPESCRIPT_LOADER`, `IMPORT_FAILED`… */
  readonly reason: MachinesLoadReason;
  /** The absolute path of the folder or module concerned. */
  readonly file: string;
  constructor(reason: MachinesLoadReason, file: string, message: string, options?: { cause?: unknown }) {
    super('MACHINES_LOAD', message, options);
    this.reason = reason;
    this.file = file;
  }
}
