import { describe, expect, it } from 'vitest';
import {
  type AnyStateMachine,
  createMachine,
  enqueueActions,
  fromCallback,
  fromEventObservable,
  fromObservable,
  fromPromise,
  fromTransition,
  raise,
  sendTo,
  setup,
  spawnChild,
} from 'xstate';
import { defineJob, durable, InvalidArgumentError, MachineDefinitionError } from '../../src/index.js';
import { jsonProblem, logicKind } from '../../src/record/check.js';

/** The error durable() throws for this machine (fails the test when it accepts it). */
function refusal(machine: AnyStateMachine, options?: Parameters<typeof durable>[1]): Error {
  try {
    durable(machine, options);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`durable() accepted machine "${machine.id}"`);
}

const work = fromPromise(async () => 'ok');
const noop = () => () => {};
const subscribable = { subscribe: () => ({ unsubscribe: () => {} }) };
/** An undefined delay name: typed setup() refuses it at compile time, JavaScript and casts do not. */
const later = 'later' as never;

describe('durable(): after keys and delays', () => {
  it('refuses an after key that is neither ms nor a defined delay (the book-lending PT2W), naming the state at depth', () => {
    const lending = setup({ delays: { oneWeek: 604_800_000 } }).createMachine({
      id: 'book',
      initial: 'lent',
      states: {
        lent: {
          initial: 'fresh',
          states: { fresh: { after: { oneWeek: 'late' } }, late: { after: { PT2W: '#book.returned' } } },
        },
        returned: { type: 'final' },
      },
    });
    const err = refusal(lending);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('machine "book"');
    expect(err.message).toContain('state "book.lent.late"');
    expect(err.message).toContain('"PT2W"');
    expect(err.message).toContain('setup({ delays: { "PT2W": ms } })'); // the fix
  });

  it('suggests the milliseconds when the key reads as a duration', () => {
    const m = setup({}).createMachine({ id: 'iso', initial: 'a', states: { a: { after: { P14D: 'b' } }, b: {} } });
    const err = refusal(m);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('state "iso.a"');
    expect(err.message).toContain(`"P14D" would be ${14 * 86_400_000}`);
  });

  it('refuses a delay in a parallel region and a non-finite numeric key', () => {
    const parallel = setup({}).createMachine({
      id: 'par',
      type: 'parallel',
      states: { left: {}, right: { initial: 'r', states: { r: { after: { soon: 'r2' } }, r2: {} } } },
    });
    const err = refusal(parallel);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('state "par.right.r"');
    const infinite = setup({}).createMachine({ id: 'inf', initial: 'a', states: { a: { after: { Infinity: 'b' } }, b: {} } });
    const err2 = refusal(infinite);
    expect(err2).toBeInstanceOf(MachineDefinitionError);
    expect(err2.message).toMatch(/state "inf\.a".*Infinity.*finite number of milliseconds/);
  });

  it('refuses a delay that setup({ delays }) defines as something other than ms or a function', () => {
    const m = setup({ delays: { twoWeeks: 'P14D' as unknown as number } }).createMachine({
      id: 'strdelay',
      initial: 'a',
      states: { a: { after: { twoWeeks: 'b' } }, b: {} },
    });
    const err = refusal(m);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('"twoWeeks" as "P14D"');
    expect(err.message).toContain('define it as milliseconds');
  });

  it('refuses delayed raise and sendTo naming an undefined delay, in entry, exit, transition, always and named actions', () => {
    const cases: Array<[string, AnyStateMachine, string]> = [
      [
        'entry',
        setup({}).createMachine({ id: 'r1', initial: 'a', states: { a: { entry: raise({ type: 'ping' }, { delay: later }) } } }),
        'r1.a',
      ],
      [
        'exit',
        setup({}).createMachine({
          id: 'r2',
          initial: 'a',
          states: { a: { initial: 'b', states: { b: { exit: sendTo(({ self }) => self, { type: 'ping' }, { delay: later }), on: { go: 'c' } }, c: {} } } },
        }),
        'r2.a.b',
      ],
      [
        'the actions of "go"',
        setup({}).createMachine({ id: 'r3', initial: 'a', states: { a: { on: { go: { actions: raise({ type: 'ping' }, { delay: later }) } } } } }),
        'r3.a',
      ],
      [
        'the actions of always',
        setup({}).createMachine({
          id: 'r4',
          initial: 'a',
          states: { a: { always: { target: 'b', actions: raise({ type: 'ping' }, { delay: later }) } }, b: {} },
        }),
        'r4.a',
      ],
      [
        'entry',
        setup({ actions: { pingLater: raise({ type: 'ping' }, { delay: later }) } }).createMachine({
          id: 'r5',
          initial: 'a',
          states: { a: { entry: 'pingLater' } },
        }),
        'r5.a',
      ],
      [
        'entry',
        setup({ actions: { pingLater: raise({ type: 'ping' }, { delay: later }) } }).createMachine({
          id: 'r6',
          initial: 'a',
          states: { a: { entry: { type: 'pingLater' } } },
        }),
        'r6.a',
      ],
    ];
    for (const [where, machine, state] of cases) {
      const err = refusal(machine);
      expect(err, machine.id).toBeInstanceOf(MachineDefinitionError);
      expect(err.message, machine.id).toContain(`state "${state}"`);
      expect(err.message, machine.id).toContain(`in ${where} names the delay "later"`);
      expect(err.message, machine.id).toContain('setup({ delays: { "later": ms } })');
    }
  });

  it('accepts numeric after keys, defined delays (numbers and functions), and delayed raise/sendTo with numbers or defined delays', () => {
    const m = setup({
      types: { context: {} as { ms: number } },
      delays: { short: 50, computed: ({ context }) => context.ms },
      actions: { pingShort: raise({ type: 'ping' }, { delay: 'short' }) },
    }).createMachine({
      id: 'delays_ok',
      context: { ms: 10 },
      initial: 'a',
      states: {
        a: {
          after: { 1000: 'b', short: 'b', computed: 'b' },
          entry: [raise({ type: 'ping' }, { delay: 500 }), 'pingShort', sendTo(({ self }) => self, { type: 'ping' }, { delay: 'computed' })],
          on: { ping: {} },
        },
        b: { entry: raise({ type: 'ping' }, { delay: ({ context }) => context.ms }) },
      },
    });
    expect(durable(m).name).toBe('delays_ok');
  });
});

describe('durable(): invoked and spawned logic', () => {
  const child = createMachine({ id: 'child', initial: 'x', states: { x: {} } });
  const anonymous = createMachine({ initial: 'x', states: { x: {} } });
  const actors = {
    work,
    ticker: fromCallback(noop),
    stream: fromObservable(() => subscribable),
    events: fromEventObservable(() => subscribable),
    counter: fromTransition((n: number) => n + 1, 0),
    child,
    anonymous,
  };
  const invoking = (src: keyof typeof actors, id: string) =>
    setup({ actors }).createMachine({ id, initial: 'a', states: { a: { initial: 'deep', states: { deep: { invoke: { src } } } } } });

  it('tells XState 5.33 logic kinds apart', () => {
    expect(logicKind(actors.work)).toBe('promise');
    expect(logicKind(actors.ticker)).toBe('callback');
    expect(logicKind(actors.stream)).toBe('observable');
    expect(logicKind(actors.events)).toBe('observable');
    expect(logicKind(actors.counter)).toBe('transition');
    expect(logicKind(actors.child)).toBe('machine');
    expect(logicKind(setup({}).createMachine({ id: 's' }))).toBe('machine');
    expect(logicKind({})).toBe('unknown');
  });

  it('refuses invoked callback, observable, event-observable and transition actors, and child machines without an id, naming the state and the fix', () => {
    const expected: Array<[keyof typeof actors, RegExp]> = [
      ['ticker', /callback actor \(fromCallback\).*fromPromise actor/],
      ['stream', /observable actor.*fromPromise actor/],
      ['events', /observable actor.*fromPromise actor/],
      ['counter', /transition actor \(fromTransition\).*assign\(\)/],
      ['anonymous', /child machine without an id.*its records are named by it/],
    ];
    for (const [src, fix] of expected) {
      const err = refusal(invoking(src, `inv_${src}`));
      expect(err, src).toBeInstanceOf(MachineDefinitionError);
      expect(err.message, src).toContain(`machine "inv_${src}", state "inv_${src}.a.deep"`);
      expect(err.message, src).toContain(`invoke src "${src}"`);
      expect(err.message, src).toMatch(fix);
    }
  });

  it('takes an invoked or spawned child machine with an id (it becomes a child record)', () => {
    expect(durable(invoking('child', 'inv_child')).name).toBe('inv_child');
    const spawning = setup({ actors }).createMachine({ id: 'sp0', initial: 'a', states: { a: { entry: spawnChild('child', { id: 'c' }) } } });
    expect(durable(spawning).name).toBe('sp0');
  });

  it('refuses spawnChild of such logic, in entry, transition actions and named actions', () => {
    const inEntry = setup({ actors }).createMachine({ id: 'sp1', initial: 'a', states: { a: { entry: spawnChild('ticker') } } });
    const err = refusal(inEntry);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('state "sp1.a"');
    expect(err.message).toMatch(/spawnChild in entry "ticker" is a callback actor.*fromPromise/);
    const onEvent = setup({ actors }).createMachine({
      id: 'sp2',
      initial: 'a',
      states: { a: { on: { go: { actions: spawnChild('anonymous', { id: 'kid' }) } } } },
    });
    const err2 = refusal(onEvent);
    expect(err2).toBeInstanceOf(MachineDefinitionError);
    expect(err2.message).toMatch(/state "sp2\.a": spawnChild in the actions of "go" "anonymous" is a child machine without an id/);
    const named = setup({ actors, actions: { startStream: spawnChild('stream') } }).createMachine({
      id: 'sp3',
      initial: 'a',
      states: { a: { exit: 'startStream' } },
    });
    const err3 = refusal(named);
    expect(err3).toBeInstanceOf(MachineDefinitionError);
    expect(err3.message).toMatch(/state "sp3\.a": spawnChild in exit "stream" is an observable actor/);
  });

  it('still refuses an inline or unregistered invoke or spawnChild with InvalidArgumentError', () => {
    const inline = createMachine({ id: 'inl', initial: 'a', states: { a: { invoke: { src: fromPromise(async () => 1) } } } });
    const err = refusal(inline);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/state "inl\.a": invoke src must name an actor registered in setup\(\{ actors \}\)/);
    const spawnedInline = createMachine({ id: 'inl2', initial: 'a', states: { a: { entry: spawnChild(fromPromise(async () => 1)) } } });
    const err2 = refusal(spawnedInline);
    expect(err2).toBeInstanceOf(InvalidArgumentError);
    expect(err2.message).toMatch(/state "inl2\.a": spawnChild in entry must name an actor registered/);
  });

  it('accepts registered promise actors, invoked and spawned, at any depth; defineJob still works', () => {
    const m = setup({ actors: { work } }).createMachine({
      id: 'promises_ok',
      initial: 'a',
      states: {
        a: { invoke: { src: 'work', onDone: 'b' } },
        b: { type: 'parallel', states: { l: { entry: spawnChild('work', { id: 'w2' }) }, r: { invoke: { src: 'work' } } } },
      },
    });
    expect(durable(m).name).toBe('promises_ok');
    expect(defineJob('job_ok', async () => 1).name).toBe('job_ok');
  });

  it('cannot see actions that enqueueActions() builds when it runs (documented): they pass', () => {
    const m = setup({ actors }).createMachine({
      id: 'enq',
      initial: 'a',
      states: { a: { entry: enqueueActions(({ enqueue }) => enqueue.spawnChild('ticker')) } },
    });
    expect(durable(m).name).toBe('enq');
  });
});

describe('durable(): context', () => {
  it('refuses a static context that is not JSON-safe, with the path and the fix', () => {
    const m = setup({}).createMachine({ id: 'ctx', context: { loan: { due: new Date(0) } }, initial: 'a', states: { a: {} } });
    const err = refusal(m);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect(err.message).toContain('machine "ctx": context.loan.due is a Date: store date.toISOString()');
  });

  it('accepts a JSON context and a context factory (checked at create())', () => {
    const plain = setup({}).createMachine({
      id: 'ctx_ok',
      context: { a: 1, b: 'x', c: [1, { d: null }], e: true, f: undefined },
      initial: 'a',
      states: { a: {} },
    });
    expect(durable(plain).name).toBe('ctx_ok');
    const factory = setup({}).createMachine({ id: 'ctx_fn', context: () => ({ due: new Date() }), initial: 'a', states: { a: {} } });
    expect(durable(factory).name).toBe('ctx_fn');
  });
});

describe('jsonProblem', () => {
  class Loan {
    constructor(readonly id: string) {}
  }
  const cyclic: Record<string, unknown> = { a: { b: {} } };
  (cyclic.a as { b: Record<string, unknown> }).b.back = cyclic.a;
  const cases: Array<[unknown, string]> = [
    [{ due: new Date() }, 'context.due is a Date: store date.toISOString()'],
    [{ seen: new Map() }, 'context.seen is a Map: JSON stores it as {}; store Object.fromEntries(map)'],
    [{ tags: [1, new Set()] }, 'context.tags[1] is a Set: JSON stores it as {}; store [...set]'],
    [{ loan: new Loan('x') }, 'context.loan is a Loan instance: JSON keeps only its own fields'],
    [{ on: () => 1 }, 'context.on is a function: JSON drops it'],
    [{ n: 10n }, 'context.n is a BigInt: JSON cannot store it; store value.toString()'],
    [{ list: [1, undefined] }, 'context.list[1] is undefined: JSON stores it as null in an array; store null'],
    [{ x: Number.NaN }, 'context.x is NaN: JSON stores it as null'],
    [{ deep: { y: [Infinity] } }, 'context.deep.y[0] is Infinity: JSON stores it as null'],
    [{ y: -Infinity }, 'context.y is -Infinity'],
    [cyclic, 'context.a.b.back refers back to context.a (a cycle)'],
    [{ s: Symbol('s') }, 'context.s is a symbol'],
    [{ [Symbol('k')]: 1 }, 'context has the symbol key Symbol(k)'],
    [{ 'odd key': new Date() }, 'context["odd key"] is a Date'],
    [{ re: /x/ }, 'context.re is a RegExp'],
    [{ err: new Error('x') }, 'context.err is an Error: JSON stores it as {}; store { name: error.name, message: error.message }'],
    [{ bytes: new Uint8Array(2) }, 'context.bytes is a Uint8Array: store a base64 string'],
    [{ boxed: new String('x') }, 'context.boxed is a boxed String: store the primitive value'],
    [{ p: Promise.resolve(1) }, 'context.p is a Promise'],
    // eslint-disable-next-line no-sparse-arrays
    [{ holes: [1, , 3] }, 'context.holes[1] is an empty slot (a sparse array)'],
  ];

  it.each(cases.map(([value, message], i) => ({ i, value, message })))('names the path and the fix: $message', ({ value, message }) => {
    expect(jsonProblem(value)).toContain(message);
  });

  it('is null for JSON-safe values, including null prototypes, shared (not cyclic) references and undefined fields', () => {
    const shared = { x: 1 };
    const nullProto = Object.assign(Object.create(null) as object, { a: 1 });
    for (const value of [undefined, null, 0, -1.5, 'x', true, [], {}, { a: [1, 'b', null, { c: false }] }, nullProto, { s1: shared, s2: [shared] }, { gone: undefined }]) {
      expect(jsonProblem(value)).toBeNull();
    }
  });

  it('takes the root name for the path', () => {
    expect(jsonProblem([new Date()], 'output')).toBe('output[0] is a Date: store date.toISOString()');
  });
});

describe('durable(): options', () => {
  const m = setup({}).createMachine({ id: 'opts', initial: 'a', states: { a: {} } });

  it('refuses unknown option keys, naming the nearest valid one', () => {
    const err = refusal(m, { maxAttempt: 3 } as never);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toContain('unknown option "maxAttempt" (did you mean "maxAttempts"?)');
    expect(err.message).toContain('allowChange, backoff, input, maxAttempts, queue, residency, version');
    expect(refusal(m, { backoff: { base: '1s', maxx: '1m' } } as never).message).toContain('unknown option "maxx" (did you mean "max"?)');
    expect(refusal(m, { residency: { a: { slaa: '1m' } } } as never).message).toMatch(/residency "a": unknown option "slaa" \(did you mean "sla"\?\)/);
  });

  it('allowChange defaults to false and is stored; a non-boolean is refused', () => {
    expect(durable(m).allowChange).toBe(false);
    expect(durable(m, { allowChange: true }).allowChange).toBe(true);
    expect(refusal(m, { allowChange: 'yes' } as never)).toBeInstanceOf(InvalidArgumentError);
  });
});
