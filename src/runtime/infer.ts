import type { AnyStateMachine, ContextFrom, EmittedFrom, MachineContext, EventFrom, StateFrom, StateSchemaFrom, StateValue, StateValueFrom } from 'xstate';
import type { DurableMachine } from '../record/durable.js';
import type { RecordView } from './types.js';

// What the runtime's calls take and return for a machine, read from the types the user wrote
// in `setup({ types })`: the machine name (its `id` literal), input, events, context and state
// values. A machine without those types (plain `createMachine`, or one loaded from a folder)
// keeps the loose types: any name, `Record<string, unknown>` context, `{ type: string }` events.

/** Any durable machine: what a runtime of unknown machines is typed by. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDurableMachine = DurableMachine<any, any, string>;

type IsAny<T> = 0 extends 1 & T ? true : false;

/** A name type that is a literal, else `string`. */
type Literal<I> = IsAny<I> extends true ? string : I extends string ? (string extends I ? string : I) : string;

/** An XState machine's `id` as a literal type, or `string` when XState did not keep it (plain `createMachine`). */
export type MachineId<M extends AnyStateMachine> = IsAny<M> extends true ? string : Literal<StateSchemaFrom<M> extends { id: infer I } ? I : string>;

/** The machine name of a durable machine: its `id` as a literal type, or `string`. */
export type MachineName<D> = D extends DurableMachine<infer _M, infer _I, infer N> ? (string extends N ? string : N) : never;

type ExactlyNamed<D, N> = D extends unknown ? ([MachineName<D>] extends [N] ? ([N] extends [MachineName<D>] ? D : never) : never) : never;
type LooselyNamed<D> = D extends unknown ? (string extends MachineName<D> ? D : never) : never;
type TypedName<D> = D extends unknown ? (string extends MachineName<D> ? never : MachineName<D>) : never;

/** What the runtime's calls take and return for one machine name (every version of it). */
export interface MachineTypes<D> {
  input: InputOf<D>;
  record: RecordOf<D>;
  event: EventOf<D>;
  /** A state for `list({ state })`. */
  path: StatePathOf<D>;
  /** A state for `waitFor({ state })`. */
  match: MatchValueOf<D> | StatePathOf<D>;
  /** An event the machine emits (`emit()`), for `on()`. */
  emitted: EmittedOf<D>;
}

/**
 * Each machine name of `D` with its {@link MachineTypes}. Loosely typed machines (no `id`
 * literal) add an index signature: any other name, loose types.
 */
export type Catalog<D> =
  IsAny<D> extends true
    ? { [name: string]: MachineTypes<AnyDurableMachine> }
    : { [N in TypedName<D>]: MachineTypes<ExactlyNamed<D, N>> } & ([LooselyNamed<D>] extends [never]
        ? unknown
        : { [name: string]: MachineTypes<LooselyNamed<D>> });

/** The machine names a runtime of machines `D` takes. */
export type NameOf<D> = keyof Catalog<D> & string;

/** The input `create()` takes for a machine: its `durable({ input })` validator's input type, else the machine's input type. */
export type InputOf<D> = D extends DurableMachine<infer _M, infer I, infer _N> ? (IsAny<I> extends true ? unknown : I) : never;

/** A record's context: the machine's context type, or `Record<string, unknown>` for a machine without one. */
export type ContextOf<D> =
  D extends DurableMachine<infer M, infer _I, infer _N> ? (IsAny<M> extends true ? Record<string, unknown> : LooseContext<ContextFrom<M>>) : never;

/** XState's `MachineContext` (any field, `any` values) and `any` become `Record<string, unknown>`. */
type LooseContext<C> = IsAny<C> extends true ? Record<string, unknown> : [MachineContext] extends [C] ? Record<string, unknown> : C;

/** An event `send()` takes: the machine's event union, or any `{ type }` with JSON fields. */
export type EventOf<D> =
  D extends DurableMachine<infer M, infer _I, infer _N>
    ? IsAny<M> extends true
      ? LooseEvent
      : IsAny<EventFrom<M>> extends true
        ? LooseEvent
        : string extends EventFrom<M>['type']
          ? LooseEvent
          : EventFrom<M>
    : never;

/** An event a machine emits: its `setup({ types: { emitted } })` union, or any `{ type }` with JSON fields. */
export type EmittedOf<D> =
  D extends DurableMachine<infer M, infer _I, infer _N>
    ? IsAny<M> extends true
      ? LooseEvent
      : IsAny<EmittedFrom<M>> extends true
        ? LooseEvent
        : [EmittedFrom<M>] extends [never]
          ? LooseEvent
          : string extends EmittedFrom<M>['type']
            ? LooseEvent
            : EmittedFrom<M>
    : never;

/** The emitted events of union `E` that `on(machine, type)` delivers: those of `type`, or all for `'*'`. */
export type EmittedOfType<E extends { type: string }, T extends string> = string extends T ? E : T extends '*' ? E : Extract<E, { type: T }>;

/** An event for a machine without typed events: a `type` and any JSON fields. */
export type LooseEvent = { type: string } & Record<string, unknown>;

/** Whether a machine has no typed state value (`any`, or XState's `StateValue` of a plain `createMachine`). */
type LooseValue<M extends AnyStateMachine> = IsAny<M> extends true ? true : IsAny<StateFrom<M>['value']> extends true ? true : string extends StateFrom<M>['value'] ? true : false;

/** XState's state value of a record: the machine's own (`'idle' | { shipping: 'packed' }`), or `StateValue`. */
export type ValueOf<D> =
  D extends DurableMachine<infer M, infer _I, infer _N> ? (LooseValue<M> extends true ? StateValue : StateFrom<M>['value']) : never;

/** A state value to match against, as `snapshot.matches()` takes it (a parent state matches its children). */
export type MatchValueOf<D> = D extends DurableMachine<infer M, infer _I, infer _N> ? (LooseValue<M> extends true ? StateValue : StateValueFrom<M>) : never;

/** Every state of a state value as a dotted path: `'shipping' | 'shipping.packed'`. */
type Paths<V> = V extends string
  ? V
  : V extends object
    ? { [K in keyof V & string]: K | `${K}.${Paths<NonNullable<V[K]>>}` }[keyof V & string]
    : never;

/** The leaf states of a state value as dotted paths: `'shipping.packed'`. */
type Leaves<V> = V extends string ? V : V extends object ? { [K in keyof V & string]: `${K}.${Leaves<NonNullable<V[K]>>}` }[keyof V & string] : never;

type IsUnion<T, U = T> = T extends unknown ? ([U] extends [T] ? false : true) : never;

/** Whether a state value has parallel regions side by side (an object level with several keys). */
type HasParallel<V> = V extends string ? false : V extends object ? (true extends IsUnion<keyof V> ? true : { [K in keyof V]: HasParallel<NonNullable<V[K]>> }[keyof V]) : false;

/** A state name `list({ state })` takes: any state of the machine as a dotted path, or `string`. */
export type StatePathOf<D> = string extends ValueOf<D> ? string : [Paths<ValueOf<D>>] extends [never] ? string : Paths<ValueOf<D>>;

/**
 * A record's `state` string: the leaf state's dotted path. A machine with parallel regions
 * joins one leaf per region with commas (`p.l.l1,p.r.r1`), which is typed as `string`.
 */
export type StateStringOf<D> = string extends ValueOf<D>
  ? string
  : true extends HasParallel<ValueOf<D>>
    ? string
    : [Leaves<ValueOf<D>>] extends [never]
      ? string
      : Leaves<ValueOf<D>>;

/** A record of machine(s) `D` as the runtime returns it: typed by the machine's `setup({ types })`. */
export type RecordOf<D> = D extends unknown ? RecordView<ContextOf<D>, ValueOf<D>, StateStringOf<D>> : never;
