import { describe, expect, it } from 'vitest';
import { assign, createMachine, fromPromise, raise, sendParent, setup } from 'xstate';
import { checkMachine, type CheckResult, durable, InvalidArgumentError } from '../../src/index.js';
import { checkOptions, order } from '../../machines/order.js';

// checkMachine() runs a machine durably (restore before every event) against in-memory XState.
// Each failing machine below misbehaves only because of persistence; each passing one must
// not be flagged.

const kinds = (r: CheckResult) => r.problems.map((p) => p.kind);
const route = (r: CheckResult, i = 0) => r.problems[i]?.path.map((e) => e.type);

describe('machines that survive persistence', () => {
  it('the order of machines/ passes with its samples: every transition run, the payment timer included', async () => {
    const result = await checkMachine(order, checkOptions.order);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    // awaiting_payment: payment.confirmed, cancel, the after timer; charging: done, error.
    expect(result.paths).toBe(5);
    expect(result.unexplored).toEqual([]);
  });

  it('parallel regions, deep history, raise, always and timers in both regions agree', async () => {
    const machine = setup({
      types: { context: {} as { count: number; log: string[] }, events: {} as { type: 'start' } | { type: 'inc'; by: number } | { type: 'pause' } | { type: 'resume' } | { type: 'faster' } },
    }).createMachine({
      id: 'busy',
      initial: 'idle',
      context: { count: 0, log: [] },
      states: {
        idle: { on: { start: 'active' } },
        active: {
          type: 'parallel',
          on: { pause: 'paused' },
          states: {
            engine: {
              initial: 'slow',
              states: {
                slow: { on: { faster: 'fast' }, after: { 500: 'fast' } },
                fast: { entry: raise({ type: 'inc', by: 1 }) },
                hist: { type: 'history', history: 'deep' },
              },
            },
            counter: {
              initial: 'counting',
              states: {
                counting: {
                  always: { guard: ({ context }) => context.count >= 3, target: 'capped' },
                  on: { inc: { actions: assign({ count: ({ context, event }) => context.count + event.by, log: ({ context }) => [...context.log, 'inc'] }) } },
                  after: { 2000: 'capped' },
                },
                capped: {},
              },
            },
          },
        },
        paused: { on: { resume: '#busy.active.engine.hist' } },
      },
    });
    const result = await checkMachine(durable(machine), { events: [{ type: 'inc', by: 2 }] });
    expect(result.problems).toEqual([]);
    expect(result.paths).toBeGreaterThan(10);
  });
});

describe('machines that do not', () => {
  it('a parent that invokes a child machine, and a child that calls sendParent, check clean (each on its own)', async () => {
    const child = setup({}).createMachine({
      id: 'chk_child',
      initial: 'a',
      states: { a: { entry: sendParent({ type: 'started' }), after: { 500: 'b' } }, b: { type: 'final' } },
      output: () => ({ ok: true }),
    });
    const parent = setup({ actors: { chk_child: child } }).createMachine({
      id: 'chk_parent',
      context: { started: 0 },
      initial: 'waiting',
      states: {
        waiting: {
          invoke: { id: 'kid', src: 'chk_child', onDone: 'done' },
          on: { started: { actions: assign({ started: ({ context }) => context.started + 1 }) } },
        },
        done: { type: 'final' },
      },
    });
    for (const m of [parent, child]) {
      const result = await checkMachine(durable(m), { events: [{ type: 'started' }], outputs: { kid: { ok: true } } });
      expect(result.problems, m.id).toEqual([]);
      expect(result.unexplored, m.id).toEqual([]);
    }
  });

  it('a plain XState machine durable() would refuse: its refusal comes back as a problem, naming the state', async () => {
    const machine = createMachine({ id: 'late', initial: 'waiting', states: { waiting: { after: { soon: 'gone' } }, gone: {} } });
    const result = await checkMachine(machine);
    expect(result.ok).toBe(false);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatchObject({ kind: 'definition', machine: 'late', state: 'late.waiting', path: [] });
    expect(result.problems[0]?.message).toMatch(/names the delay "soon"/);
  });

  it('a Date assigned into context: the event and state that put it there', async () => {
    const machine = durable(
      setup({ types: { context: {} as { at: Date | null } } }).createMachine({
        id: 'stamp',
        initial: 'open',
        context: { at: null },
        states: { open: { on: { stamp: { target: 'stamped', actions: assign({ at: () => new Date(0) }) } } }, stamped: {} },
      }),
    );
    const result = await checkMachine(machine);
    expect(kinds(result)).toEqual(['context']);
    expect(result.problems[0]?.state).toBe('open');
    expect(route(result)).toEqual(['stamp']);
    expect(result.problems[0]?.message).toMatch(/context\.at is a Date: store date\.toISOString\(\)/);
  });

  it('an actor ref spawned into context (it lives in memory only): the event that put it there', async () => {
    const machine = durable(
      setup({ actors: { work: fromPromise(async () => 1) } }).createMachine({
        id: 'spawner',
        initial: 'idle',
        context: { ref: null as unknown },
        states: { idle: { on: { go: { target: 'busy', actions: assign({ ref: ({ spawn }) => spawn('work') }) } } }, busy: {} },
      }),
    );
    const result = await checkMachine(machine);
    expect(kinds(result)).toEqual(['context']);
    expect(route(result)).toEqual(['go']);
    expect(result.problems[0]?.message).toMatch(/context\.ref is a Actor instance/);
  });

  it('an event whose payload the door refuses (a Date a guard reads): send() would refuse it', async () => {
    const machine = durable(
      setup({ types: { events: {} as { type: 'schedule'; at: Date } } }).createMachine({
        id: 'planner',
        initial: 'idle',
        states: { idle: { on: { schedule: { guard: ({ event }) => event.at.getTime() > 0, target: 'planned' } } }, planned: {} },
      }),
    );
    const result = await checkMachine(machine, { events: [{ type: 'schedule', at: new Date(1000) }] });
    expect(kinds(result)).toEqual(['event']);
    expect(result.problems[0]?.message).toMatch(/send\(\) refuses the event "schedule".*is a Date/);
  });

  it('an undefined field that JSON drops: a guard counting keys takes another branch after a restore', async () => {
    type Ev = { type: 'answer'; q: string; value?: string } | { type: 'submit' };
    const machine = durable(
      setup({ types: { context: {} as { answers: Record<string, string | undefined> }, events: {} as Ev } }).createMachine({
        id: 'survey',
        initial: 'asking',
        context: { answers: {} },
        states: {
          asking: {
            on: {
              answer: { actions: assign({ answers: ({ context, event }) => ({ ...context.answers, [event.q]: event.value }) }) },
              submit: [{ guard: ({ context }) => Object.keys(context.answers).length > 0, target: 'submitted' }, { target: 'empty' }],
            },
          },
          submitted: {},
          empty: {},
        },
      }),
    );
    // No value: the assign writes `q1: undefined`, which in memory is a key and in JSON is not.
    const result = await checkMachine(machine, { events: [{ type: 'answer', q: 'q1' }] });
    expect(kinds(result)).toEqual(['mismatch']);
    expect(result.problems[0]).toMatchObject({ machine: 'survey', state: 'asking' });
    expect(route(result)).toEqual(['answer', 'submit']);
    expect(result.problems[0]?.message).toBe('durably the record reaches "empty", in-memory XState "submitted"');
  });

  it('a timer crossing a restart: its guard reads a field the restore dropped, so it lands elsewhere', async () => {
    const machine = durable(
      setup({ types: { context: {} as { note?: string } } }).createMachine({
        id: 'reminder',
        initial: 'waiting',
        context: { note: undefined },
        states: {
          waiting: { after: { 60_000: [{ guard: ({ context }) => 'note' in context, target: 'noted' }, { target: 'plain' }] } },
          noted: {},
          plain: {},
        },
      }),
    );
    const result = await checkMachine(machine);
    expect(kinds(result)).toEqual(['timer']);
    expect(result.problems[0]?.state).toBe('waiting');
    expect(route(result)).toEqual(['xstate.after.60000.reminder.waiting']);
    expect(result.problems[0]?.message).toMatch(/durably the record reaches "plain", in-memory XState "noted"/);
  });

  it('a BigInt assigned into context: the durable step fails, in-memory XState does not', async () => {
    const machine = durable(
      setup({ types: { context: {} as { total: number | bigint } } }).createMachine({
        id: 'ledger',
        initial: 'open',
        context: { total: 0 },
        states: { open: { on: { add: { actions: assign({ total: () => 10n ** 20n }) } } } },
      }),
    );
    const result = await checkMachine(machine);
    expect(kinds(result)).toEqual(['error']);
    expect(result.problems[0]?.message).toMatch(/the durable step fails \(UnstorableValueError: .*BigInt.*\) where in-memory XState does not/);
  });

  it('a machine that cannot start without input says so, and passes with one', async () => {
    const machine = durable(
      setup({ types: { context: {} as { id: string }, input: {} as { id: string } } }).createMachine({
        id: 'needs',
        initial: 'a',
        context: ({ input }) => ({ id: input.id }),
        states: { a: { on: { go: 'b' } }, b: {} },
      }),
    );
    const without = await checkMachine(machine);
    expect(kinds(without)).toEqual(['input']);
    expect(without.problems[0]?.message).toMatch(/does not start with no input.*give a sample input/);
    expect((await checkMachine(machine, { input: { id: 'x' } })).problems).toEqual([]);
  });
});

describe('invoked promises, limits and arguments', () => {
  it('an invoke never runs; without a sample output an onDone reading it is listed as unexplored, with one it is checked', async () => {
    let ran = 0;
    const machine = durable(
      setup({
        types: { context: {} as { receipt: string | null } },
        actors: {
          charge: fromPromise(async () => {
            ran += 1;
            return { receipt: 'real' };
          }),
        },
      }).createMachine({
        id: 'pay',
        initial: 'charging',
        context: { receipt: null },
        states: {
          charging: { invoke: { src: 'charge', onDone: { target: 'paid', actions: assign({ receipt: ({ event }) => event.output.receipt }) }, onError: 'declined' } },
          paid: {},
          declined: {},
        },
      }),
    );
    const bare = await checkMachine(machine);
    expect(bare.problems).toEqual([]);
    expect(bare.unexplored).toEqual([{ state: 'charging', event: 'xstate.done.actor.0.pay.charging', message: expect.stringMatching(/receipt/) }]);
    const sampled = await checkMachine(machine, { outputs: { charge: { receipt: 'r-1' } } });
    expect(sampled.problems).toEqual([]);
    expect(sampled.unexplored).toEqual([]);
    expect(sampled.paths).toBe(2);
    expect(ran).toBe(0);
  });

  it('a context that grows without bound stops at maxStates', async () => {
    const machine = durable(
      setup({ types: { context: {} as { n: number } } }).createMachine({
        id: 'counter',
        context: { n: 0 },
        on: { inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
      }),
    );
    const result = await checkMachine(machine, { maxStates: 20 });
    expect(result.truncated).toBe(true);
    expect(result.problems).toEqual([]);
    expect(result.states).toBeLessThanOrEqual(22);
  });

  it('bad arguments throw InvalidArgumentError', async () => {
    await expect(checkMachine({} as never)).rejects.toThrow(InvalidArgumentError);
    await expect(checkMachine(order, { maxStates: 0 })).rejects.toThrow(/maxStates/);
    await expect(checkMachine(order, { nope: 1 } as never)).rejects.toThrow(InvalidArgumentError);
    await expect(checkMachine(order, { input: { when: new Date() } })).rejects.toThrow(/is a Date/);
    await expect(checkMachine(order, { events: [{ kind: 'x' }] as never })).rejects.toThrow(/non-empty string type/);
    await expect(checkMachine(order, { ...checkOptions.order, outputs: { charge: new Map() } })).rejects.toThrow(/outputs\.charge is a Map/);
  });
});
