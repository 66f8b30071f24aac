import { describe, expect, it } from 'vitest';
import { assign, fromPromise, initialTransition, setup, transition } from 'xstate';
import { pureInitialTransition, pureRestore, pureTransition } from '../../src/record/pure.js';

const machine = setup({
  types: { context: {} as { n: number }, input: {} as { n: number } },
  actors: { work: fromPromise(async () => 1) },
}).createMachine({
  id: 'p',
  initial: 'idle',
  context: ({ input }) => ({ n: input.n }),
  states: {
    idle: { on: { go: { target: 'busy', actions: assign({ n: ({ context }) => context.n + 1 }) } }, after: { 1000: 'late' } },
    busy: { invoke: { src: 'work', id: 'w', systemId: 'the-worker', onDone: 'idle' } },
    late: {},
  },
});

const strip = ([snapshot, actions]: [unknown, unknown[]]) => [
  JSON.parse(JSON.stringify((snapshot as { value: unknown; context: unknown }).value)),
  (snapshot as { context: unknown }).context,
  actions.map((a) => (a as { type: string }).type),
];

describe('pure steps on one scope per machine', () => {
  it('give what XState transition() / initialTransition() give, call after call', () => {
    const [s0, a0] = pureInitialTransition(machine, { n: 1 });
    expect(strip([s0, a0])).toEqual(strip(initialTransition(machine, { n: 1 }) as never));
    let snapshot = s0;
    for (let i = 0; i < 3; i++) {
      // A child with a systemId: XState refuses to register it twice in one system, so the
      // second spawn on the shared scope falls back to XState's own functions.
      const [next, actions] = pureTransition(machine, snapshot, { type: 'go' });
      expect(strip([next, actions])).toEqual(strip(transition(machine, snapshot, { type: 'go' }) as never));
      expect(next.value).toBe('busy');
      const [back] = pureTransition(machine, next, { type: 'xstate.done.actor.w', output: 1 } as never);
      expect(back.value).toBe('idle');
      snapshot = back;
    }
    expect(snapshot.context).toEqual({ n: 4 });
  });

  it('restore keeps the value, context and children of a persisted snapshot', () => {
    const [busy] = pureTransition(machine, pureInitialTransition(machine, { n: 1 })[0], { type: 'go' });
    const restored = pureRestore(machine, machine.getPersistedSnapshot(busy));
    expect(restored.value).toBe('busy');
    expect(restored.context).toEqual({ n: 2 });
    expect(Object.keys(restored.children)).toEqual(['w']);
  });
});
