import type { StandardSchemaV1 } from '@standard-schema/spec';
import {
  type ActorRefFromLogic,
  type AnyEventObject,
  type AnyStateMachine,
  type EventObject,
  fromPromise,
  type InputFrom,
  type MetaObject,
  type PromiseActorLogic,
  setup,
  type StateMachine,
} from 'xstate';
import { InvalidArgumentError } from '../errors.js';
import { rejectUnknownKeys } from '../keys.js';
import { type Duration, parseDuration } from '../time.js';
import { checkDefinition } from './check.js';
import { isStandardSchema } from './input.js';
import type { MachineId } from '../runtime/infer.js';

/** How a state's residency is watched (used by the SLA watch). */
export interface ResidencyOptions {
  sla?: Duration;
}

/** Options of {@link durable}. */
export interface DurableOptions<TSchema extends StandardSchemaV1 = StandardSchemaV1> {
  /** The machine version; records stay on the version they started with. Default 1. */
  version?: number;
  /** The queue whose pollers run this machine's records. Default: the machine id. */
  queue?: string;
  /** Attempts of each invoked promise before its error reaches the machine. Default 1. */
  maxAttempts?: number;
  /** Backoff between attempts: capped exponential, `{ base, max }` or a base duration. Default 1s, capped at 1h. */
  backoff?: Duration | { base?: Duration; max?: Duration };
  /** Residency budgets per state (read by the SLA watch). */
  residency?: Record<string, ResidencyOptions>;
  /**
   * Validates each record's input at `create()`, `createMany()` and over NATS: any Standard
   * Schema validator (zod, valibot, arktype…). Input it refuses rejects with
   * `InvalidInputError` and the validator's issues; the validator's output (transforms and
   * defaults applied) is the input the machine starts from.
   */
  input?: TSchema;
  /** Accept a structural change of this version that strands no live record. Default false. */
  allowChange?: boolean;
}

/** Every key of {@link DurableOptions}: `satisfies` makes a key added there and missed here a compile error. */
const DURABLE_OPTION_KEYS = Object.keys({
  version: true,
  queue: true,
  maxAttempts: true,
  backoff: true,
  residency: true,
  input: true,
  allowChange: true,
} satisfies Record<keyof DurableOptions, true>);

/**
 * A machine wrapped by {@link durable}: what the runtime registers. `TInput` is what `create()`
 * takes as `input`: the `input` validator's input type when there is one, else the machine's.
 */
export interface DurableMachine<TMachine extends AnyStateMachine = AnyStateMachine, TInput = InputFrom<TMachine>, TName extends string = MachineId<TMachine>> {
  readonly kind: 'drover.durable';
  /** The machine name: the XState machine `id` (typed as its literal when XState keeps it, as `setup().createMachine()` does). */
  readonly name: TName;
  readonly version: number;
  readonly queue: string;
  readonly maxAttempts: number;
  readonly backoff: { baseMs: number; maxMs: number };
  readonly residency: Readonly<Record<string, ResidencyOptions>>;
  /** The input validator (a Standard Schema), if any: see `validateInput()`. */
  readonly input?: StandardSchemaV1;
  /** Accept a structural change of this version that strands no live record. */
  readonly allowChange: boolean;
  readonly machine: TMachine;
  /** Type-level only: what `create()` takes as `input`. */
  readonly '~input'?: TInput;
}

/** The input type of a durable machine: the validator's input, else the machine's. */
type DurableInput<TMachine extends AnyStateMachine, TSchema> = [TSchema] extends [never] ? InputFrom<TMachine> : StandardSchemaV1.InferInput<TSchema & StandardSchemaV1>;

const NAME = /^[A-Za-z0-9_-]{1,100}$/;

/**
 * Makes an XState v5 machine durable: each record of it is an actor that lives in the
 * database. The machine `id` is the machine name; every invoked actor must be a promise
 * actor registered by name in `setup({ actors })`, because an inline one cannot be found
 * again after a restore. A machine drover cannot run faithfully is refused with a
 * `MachineDefinitionError` naming the state and the fix (see docs/machines.md): an `after`
 * key or a delayed `raise`/`sendTo` naming no defined delay, an invoked or spawned callback,
 * observable, transition or machine actor, a static context that is not JSON-safe.
 *
 * @example
 * export const order = durable(setup({ actors: { charge } }).createMachine({ id: 'order', … }),
 *   { version: 1, queue: 'orders', maxAttempts: 5, backoff: '1s', input: z.object({ order_id: z.string() }) });
 */
export function durable<TMachine extends AnyStateMachine, TSchema extends StandardSchemaV1 = never>(
  machine: TMachine,
  options: DurableOptions<TSchema> = {},
): DurableMachine<TMachine, DurableInput<TMachine, TSchema>, MachineId<TMachine>> {
  const name = machine?.id;
  if (!machine || typeof machine.transition !== 'function' || !machine.root) {
    throw new InvalidArgumentError('durable() takes an XState v5 machine made with createMachine() or setup().createMachine()');
  }
  if (!NAME.test(name) || name === '(machine)') {
    throw new InvalidArgumentError(
      `durable() needs the machine to have an id of letters, digits, "_" or "-" (got "${name}"): the id is the machine name`,
    );
  }
  rejectUnknownKeys(options, DURABLE_OPTION_KEYS, `durable() of machine "${name}"`);
  const version = options.version ?? 1;
  if (!Number.isInteger(version) || version < 1) throw new InvalidArgumentError(`machine "${name}": version must be an integer >= 1`);
  const queue = options.queue ?? name;
  if (!NAME.test(queue)) throw new InvalidArgumentError(`machine "${name}": queue "${queue}" must be letters, digits, "_" or "-"`);
  const maxAttempts = options.maxAttempts ?? 1;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
    throw new InvalidArgumentError(`machine "${name}": maxAttempts must be an integer >= 1`);
  const b = options.backoff;
  if (typeof b === 'object') rejectUnknownKeys(b, ['base', 'max'], `durable() of machine "${name}", backoff`);
  const backoff =
    b === undefined || typeof b === 'number' || typeof b === 'string'
      ? { baseMs: parseDuration(b ?? '1s'), maxMs: 3_600_000 }
      : { baseMs: parseDuration(b.base ?? '1s'), maxMs: parseDuration(b.max ?? '1h') };
  for (const [state, r] of Object.entries(options.residency ?? {})) {
    rejectUnknownKeys(r, ['sla'], `durable() of machine "${name}", residency "${state}"`);
    if (r.sla !== undefined) parseDuration(r.sla);
  }
  if (options.input !== undefined && !isStandardSchema(options.input)) {
    throw new InvalidArgumentError(
      `machine "${name}": input must be a Standard Schema validator (an object with "~standard" version 1, as zod, valibot and arktype schemas are), e.g. input: z.object({ … })`,
    );
  }
  if (options.allowChange !== undefined && typeof options.allowChange !== 'boolean')
    throw new InvalidArgumentError(`machine "${name}": allowChange must be true or false`);
  checkDefinition(machine);
  return Object.freeze({
    kind: 'drover.durable' as const,
    name: name as MachineId<TMachine>,
    version,
    queue,
    maxAttempts,
    backoff,
    residency: Object.freeze({ ...(options.residency ?? {}) }),
    ...(options.input ? { input: options.input } : {}),
    allowChange: options.allowChange ?? false,
    machine,
  });
}

/** Whether a value is a {@link DurableMachine}. */
export function isDurableMachine(value: unknown): value is DurableMachine {
  return typeof value === 'object' && value !== null && (value as DurableMachine).kind === 'drover.durable';
}

/** What a job function gets besides its arguments. */
export interface JobContext {
  /** Aborted when the job is cancelled or its record leaves the running state. */
  signal: AbortSignal;
}

/** The machine of a job named `TName`: `running` (invoking `job` with the args) then `done`. */
export type JobMachine<TName extends string, TArgs, TOut> = StateMachine<
  { args: TArgs },
  AnyEventObject,
  { [id: string]: ActorRefFromLogic<PromiseActorLogic<TOut, TArgs>> | undefined },
  { src: 'job'; logic: PromiseActorLogic<TOut, TArgs>; id: string | undefined },
  never,
  never,
  never,
  'running' | 'done',
  string,
  TArgs,
  TOut,
  EventObject,
  MetaObject,
  { id: TName; states: { readonly running: object; readonly done: object } }
>;

/** Options of {@link defineJob}. */
export type JobOptions = Omit<DurableOptions, 'residency'>;

/**
 * A one-shot job: the degenerate durable machine `running → done`. Resolving finishes the
 * record (`done`); throwing retries with capped exponential backoff until `maxAttempts`
 * (default 20), then the record is `failed`. Throw {@link cancelJob} to fail at once.
 *
 * @example
 * const cleanup = defineJob('cleanup', async (args: { days: number }) => purge(args.days));
 * await runtime.create('cleanup', { input: { days: 30 } });
 */
export function defineJob<const TName extends string, TArgs = unknown, TOut = unknown>(
  name: TName,
  run: (args: TArgs, ctx: JobContext) => Promise<TOut> | TOut,
  options: JobOptions = {},
) {
  const machine = setup({
    types: { context: {} as { args: unknown }, input: {} as unknown, output: {} as TOut },
    actors: { job: fromPromise<TOut, unknown>(async ({ input, signal }) => run(input as TArgs, { signal })) },
  }).createMachine({
    id: name,
    initial: 'running',
    context: ({ input }) => ({ args: input }),
    states: {
      running: { invoke: { id: 'job', src: 'job', input: ({ context }: { context: { args: unknown } }) => context.args, onDone: 'done' } },
      done: { type: 'final' },
    },
  });
  // Built on `unknown` (XState's conditional input types do not resolve on a type parameter),
  // typed here as the job's own: `create()` takes `TArgs`, the context holds them.
  return durable(machine as unknown as JobMachine<TName, TArgs, TOut>, { maxAttempts: 20, ...options }) as DurableMachine<
    JobMachine<TName, TArgs, TOut>,
    TArgs,
    TName
  >;
}

/** Thrown from a job or invoked promise, fails it at once with no further attempts. */
export class JobCancelledError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'JobCancelledError';
  }
}

/** Returns the error to throw from a job to fail it at once: `throw cancelJob('gone')`. */
export function cancelJob(reason: string): JobCancelledError {
  return new JobCancelledError(reason);
}
