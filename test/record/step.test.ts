import { describe, expect, it } from 'vitest';
import { assign, createActor, createMachine, fromPromise, raise, setup } from 'xstate';
import { durable, InvalidArgumentError, stateString } from '../../src/index.js';
import { foldStep, initialStep, type StepOutcome } from '../../src/record/step.js';

describe('stateString', () => {
  it('writes dotted paths and joins parallel leaves with commas', () => {
    expect(stateString('a')).toBe('a');
    expect(stateString({ b: 'x' })).toBe('b.x');
    expect(stateString({ on: { second: 'x' } })).toBe('on.second.x');
    expect(stateString({ p: { l: 'l1', r: { r1: 'deep' } } })).toBe('p.l.l1,p.r.r1.deep');
  });
});

const machine = durable(
  setup({
    types: { context: {} as { n: number; log: string[] } },
    actors: { work: fromPromise(async ({ input }: { input: number }) => input * 2) },
    actions: {
      explode: () => {
        throw new Error('kaboom');
      },
    },
  }).createMachine({
    id: 'unit',
    initial: 'idle',
    context: { n: 0, log: [] },
    states: {
      idle: {
        after: { 1000: 'late' },
        entry: raise({ type: 'ping' }, { delay: 500, id: 'ping-timer' }),
        on: {
          go: 'working',
          bump: { actions: assign({ n: ({ context }) => context.n + 1 }) },
          boom: { actions: 'explode' },
          ping: { actions: assign({ log: ({ context }) => [...context.log, 'ping'] }) },
        },
      },
      working: {
        invoke: {
          id: 'w',
          src: 'work',
          input: ({ context }) => context.n,
          onDone: { target: 'finished', actions: assign({ n: ({ event }) => event.output }) },
        },
        on: { stop: 'idle' },
      },
      late: {},
      finished: { type: 'final' },
    },
  }),
);

const start = (now = 10_000): StepOutcome => initialStep(machine, undefined, now);
const feed = (prev: StepOutcome, events: Array<{ type: string } & Record<string, unknown>>, now: number) =>
  foldStep(
    machine,
    prev,
    events.map((event, i) => ({ kind: 'event' as const, eventId: String(i), event, at: now })),
    now,
  );

describe('the step', () => {
  it('turns after and delayed raise into timers with due times, and writes the creation row', () => {
    const out = start();
    expect(out.state).toBe('idle');
    expect(out.timers.map((t) => [t.id, t.at]).sort()).toEqual([
      ['ping-timer', 10_500],
      ['xstate.after.1000.unit.idle', 11_000],
    ]);
    expect(out.transitions).toEqual([expect.objectContaining({ seq: 1, from: null, to: 'idle', status: 'active' })]);
  });

  it('cancels the after timer on leaving the state and records an invocation to start', () => {
    const out = feed(start(), [{ type: 'go' }], 10_100);
    expect(out.state).toBe('working');
    expect(out.timers.map((t) => t.id)).toEqual(['ping-timer']); // a delayed raise outlives its state, as in XState
    expect([...out.spawns.values()]).toEqual([{ id: 'w', src: 'work', input: 0 }]);
    expect(out.transitions).toEqual([expect.objectContaining({ seq: 2, from: 'idle', to: 'working', status: 'active' })]);
    expect(out.consumedEventIds).toEqual(['0']);
  });

  it('stops the invocation when the state is left and restarts it on re-entry', () => {
    const working = feed(start(), [{ type: 'go' }], 10_100);
    const back = feed(working, [{ type: 'stop' }, { type: 'go' }], 10_200);
    expect(back.stops.has('w')).toBe(true);
    expect(back.spawns.has('w')).toBe(true);
    expect(back.transitions.map((t) => t.to)).toEqual(['idle', 'working']);
  });

  it('feeds an invocation result through onDone into context and finishes', () => {
    const working = feed(feed(start(), [{ type: 'bump' }, { type: 'bump' }], 10_050), [{ type: 'go' }], 10_100);
    const done = feed(working, [{ type: 'xstate.done.actor.w', output: 4, actorId: 'w' }], 10_300);
    expect(done.status).toBe('done');
    expect(done.snapshot.context.n).toBe(4);
    expect(done.timers).toEqual([]);
  });

  it('context-only steps write no transition row', () => {
    const out = feed(start(), [{ type: 'bump' }], 10_050);
    expect(out.snapshot.context.n).toBe(1);
    expect(out.transitions).toEqual([]);
  });

  it('fires a due timer with its own event', () => {
    const s = start();
    const out = foldStep(machine, s, [{ kind: 'timer', timer: s.timers.find((t) => t.id === 'ping-timer')! }], 10_600);
    expect(out.snapshot.context.log).toEqual(['ping']);
    expect(out.timers.map((t) => t.id)).toEqual(['xstate.after.1000.unit.idle']);
  });

  it('a throwing action fails the record and keeps the last good snapshot', () => {
    const bumped = feed(start(), [{ type: 'bump' }], 10_050);
    const out = feed(bumped, [{ type: 'boom' }, { type: 'bump' }], 10_100);
    expect(out.status).toBe('failed');
    expect(out.error?.message).toBe('kaboom');
    expect(out.snapshot.context.n).toBe(1);
    expect(out.transitions).toEqual([expect.objectContaining({ status: 'failed', from: 'idle', to: 'idle' })]);
    // The event after the failed one stays in the inbox for a retry.
    expect(out.ignored).toEqual([]);
    expect(out.consumedEventIds).toEqual(['0']);
    expect(out.failure).toMatchObject({ event: { type: 'boom' }, state: 'idle' });
  });

  it('an event no state takes is ignored', () => {
    const out = feed(start(), [{ type: 'nope' }], 10_050);
    expect(out.ignored).toEqual([{ type: 'nope' }]);
    expect(out.transitions).toEqual([]);
  });

  it('matches plain XState on the same events, with a restore between each', () => {
    const events = [{ type: 'bump' }, { type: 'bump' }, { type: 'go' }, { type: 'stop' }, { type: 'bump' }];
    const live = createActor(machine.machine).start();
    let durableOut = start();
    for (const e of events) {
      live.send(e);
      durableOut = feed(durableOut, [e], 10_100);
    }
    expect(durableOut.snapshot.value).toEqual(live.getSnapshot().value);
    expect(JSON.parse(JSON.stringify(durableOut.snapshot.context))).toEqual(JSON.parse(JSON.stringify(live.getSnapshot().context)));
    live.stop();
  });
});

describe('durable()', () => {
  it('rejects an inline invoke, a machine without an id and bad options', () => {
    const inline = createMachine({ id: 'inline', initial: 'a', states: { a: { invoke: { src: fromPromise(async () => 1) } } } });
    expect(() => durable(inline)).toThrow(/registered in setup/);
    expect(() => durable(setup({}).createMachine({ initial: 'a', states: { a: {} } }))).toThrow(InvalidArgumentError);
    const ok = setup({}).createMachine({ id: 'ok', initial: 'a', states: { a: {} } });
    expect(() => durable(ok, { version: 0 })).toThrow(/version/);
    expect(() => durable(ok, { backoff: 'soon' })).toThrow(InvalidArgumentError);
    expect(() => durable(ok, { queue: 'has space' })).toThrow(/queue/);
  });
});
