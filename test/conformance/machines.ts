// Small durable machines and helpers shared by the conformance suite.

import { assign, cancel, type EventObject, fromPromise, raise, setup } from 'xstate';
import { durable, type Runtime } from '../../src/index.js';
import type { TestBackend } from '../helpers/backends.js';

/** A promise with its resolve function outside. */
export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  settled: boolean;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve(value) {
      d.settled = true;
      resolve(value);
    },
  };
  return d;
}

/** Resolves with the promise, or rejects with a clear message after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets wall-clock time pass (only for timers that must be given the chance to fire, or not). */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true (for conditions the runtime gives no signal for). */
export async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let delay = 10; ; delay = Math.min(delay * 2, 100)) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(delay);
  }
}

/** Everything drover stores in the backend's schema, for "nothing changed" assertions. */
export async function dump(backend: TestBackend) {
  const s = `"${backend.schema}"`;
  return {
    instances: await backend.query(`SELECT * FROM ${s}.instances ORDER BY machine, id`),
    events: await backend.query(`SELECT * FROM ${s}.events ORDER BY id`),
    transitions: await backend.query(`SELECT * FROM ${s}.transitions ORDER BY id`),
    invocations: await backend.query(`SELECT * FROM ${s}.invocations ORDER BY machine, instance_id, invoke_id`),
  };
}

/** One stored instance row (raw). */
export async function row(backend: TestBackend, machine: string, id: string) {
  const rows = await backend.query(`SELECT * FROM "${backend.schema}".instances WHERE machine = $1 AND id = $2`, [machine, id]);
  return rows[0];
}

/** Waits until a record has no inbox events left and is not claimed: every sent event was stepped. */
export async function drained(backend: TestBackend, machine: string, id: string, ms = 10_000): Promise<void> {
  const s = `"${backend.schema}"`;
  await until(
    async () => {
      const [r] = await backend.query<{ n: number; locked: boolean }>(
        `SELECT (SELECT count(*)::int FROM ${s}.events WHERE machine = $1 AND instance_id = $2) AS n,
                (SELECT locked_by IS NOT NULL FROM ${s}.instances WHERE machine = $1 AND id = $2) AS locked`,
        [machine, id],
      );
      return r?.n === 0 && r.locked === false;
    },
    ms,
    `record ${machine}/${id} to take every sent event`,
  );
}

/** Runs a promise and hands back its rejection (fails if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to reject, it resolved');
}

// --- probes: what invoked promises did, keyed by a label from the record's input ---

export interface Probe {
  started: Deferred;
  aborted: Deferred;
  runs: number;
}
const probes = new Map<string, Probe>();
export function probe(key: string): Probe {
  let p = probes.get(key);
  if (!p) {
    p = { started: deferred(), aborted: deferred(), runs: 0 };
    probes.set(key, p);
  }
  return p;
}

/**
 * The `add` event. `send()` takes an `EventObject`, so a fresh literal with a payload
 * (`{ type: 'add', n }`) fails TypeScript's excess-property check; build it here.
 */
export const add = (n: number): EventObject => ({ type: 'add', n }) as EventObject;

type LcEvent = { type: 'add'; n: number } | { type: 'go' } | { type: 'next' } | { type: 'work' } | { type: 'compute' } | { type: 'finish' };

/**
 * The lifecycle machine: `idle` collects numbers; `b` is nested (`b.x` → `b.y`); `working`
 * invokes a promise that only ends when aborted; `computing` invokes one whose output is
 * assigned to the context.
 */
export const lifecycle = durable(
  setup({
    types: {
      context: {} as { label: string; items: number[]; result: unknown },
      input: {} as { label?: string } | undefined,
      events: {} as LcEvent,
    },
    actors: {
      hang: fromPromise<never, { key: string }>(async ({ input, signal }) => {
        const p = probe(input.key);
        p.runs += 1;
        p.started.resolve();
        return new Promise<never>((_, reject) => {
          signal.addEventListener('abort', () => {
            p.aborted.resolve();
            reject(new Error('aborted'));
          });
        });
      }),
      enrich: fromPromise<{ doubled: number; tag: string; nested: { list: number[] } }, { n: number; key: string }>(async ({ input }) => {
        probe(input.key).runs += 1;
        await sleep(20);
        return { doubled: input.n * 2, tag: `t-${input.n}`, nested: { list: [input.n, input.n + 1] } };
      }),
    },
  }).createMachine({
    id: 'lc',
    initial: 'idle',
    context: ({ input }) => ({ label: input?.label ?? '', items: [], result: null }),
    states: {
      idle: {
        on: {
          add: { actions: assign({ items: ({ context, event }) => [...context.items, event.n] }) },
          go: 'b',
          work: 'working',
          compute: 'computing',
          finish: 'finished',
        },
      },
      b: { initial: 'x', states: { x: { on: { next: 'y' } }, y: {} }, on: { finish: 'finished' } },
      working: { invoke: { id: 'hang', src: 'hang', input: ({ context }) => ({ key: context.label }) }, on: { finish: 'finished' } },
      computing: {
        invoke: {
          src: 'enrich',
          input: ({ context }) => ({ n: context.items.length, key: context.label }),
          onDone: { target: 'computed', actions: assign({ result: ({ event }) => event.output }) },
        },
      },
      computed: { on: { finish: 'finished' } },
      finished: { type: 'final' },
    },
  }),
);

/** For list(): nested states (`b.x`, `b.y`), a sibling named like a prefix (`bb`), parallel regions (`p.l.*,p.r.*`). */
export const pager = durable(
  setup({
    types: { events: {} as { type: 'go' } | { type: 'next' } | { type: 'bb' } | { type: 'par' } | { type: 'right' } | { type: 'finish' } },
  }).createMachine({
    id: 'pager',
    initial: 'idle',
    states: {
      idle: { on: { go: 'b', bb: 'bb', par: 'p', finish: 'finished' } },
      b: { initial: 'x', states: { x: { on: { next: 'y' } }, y: {} } },
      bb: {},
      p: {
        type: 'parallel',
        states: {
          l: { initial: 'l1', states: { l1: {} } },
          r: { initial: 'r1', states: { r1: { on: { right: 'r2' } }, r2: {} } },
        },
      },
      finished: { type: 'final' },
    },
  }),
);

// --- timers ---

export const tSimple = durable(
  setup({}).createMachine({
    id: 't_simple',
    initial: 'waiting',
    states: {
      waiting: { after: { 500: 'expired' }, on: { go: 'away' } },
      away: { on: { back: 'waiting' } },
      expired: { type: 'final' },
    },
  }),
);

export const tNested = durable(
  setup({}).createMachine({
    id: 't_nested',
    initial: 'outer',
    states: {
      outer: {
        initial: 'a',
        after: { 900: 'late' },
        states: { a: { after: { 200: 'b' } }, b: { after: { 200: 'c' } }, c: {} },
      },
      late: { type: 'final' },
    },
  }),
);

export const tParallel = durable(
  setup({}).createMachine({
    id: 't_parallel',
    initial: 'p',
    states: {
      p: {
        type: 'parallel',
        states: {
          l: { initial: 'l1', states: { l1: { after: { 200: 'l2' } }, l2: {} } },
          r: { initial: 'r1', states: { r1: { after: { 600: 'r2' } }, r2: {} } },
        },
      },
    },
  }),
);

/** A delayed raise with an id and a named delay; `hush` cancels it by that id. */
export const tRaise = durable(
  setup({ delays: { pingDelay: 500 } }).createMachine({
    id: 't_raise',
    initial: 'idle',
    states: {
      idle: {
        entry: raise({ type: 'ping' }, { delay: 'pingDelay', id: 'ping-timer' }),
        on: { ping: 'pinged', hush: { actions: cancel('ping-timer') } },
      },
      pinged: { type: 'final' },
    },
  }),
);

/** For the restart test: only the restart test's runtimes register it. */
export const tRestart = durable(
  setup({}).createMachine({
    id: 't_restart',
    initial: 'waiting',
    states: { waiting: { after: { 1500: 'expired' } }, expired: { type: 'final' } },
  }),
);

/** Runs `fn` with a runtime and always stops it. */
export async function withRuntime<T>(make: () => Promise<Runtime>, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await make();
  try {
    return await fn(rt);
  } finally {
    await rt.stop();
  }
}

/** `s0 -next0-> s1 -next1-> … -> sN` (final): each event is only valid once the previous one was taken. */
export const CHAIN_LENGTH = 40;
export const chain = durable(
  setup({ types: { events: {} as { type: `next${number}` } } }).createMachine({
    id: 'chain',
    initial: 's0',
    states: Object.fromEntries(
      Array.from({ length: CHAIN_LENGTH + 1 }, (_, i) => [
        `s${i}`,
        i === CHAIN_LENGTH ? { type: 'final' as const } : { on: { [`next${i}`]: `s${i + 1}` } },
      ]),
    ),
  }),
);
