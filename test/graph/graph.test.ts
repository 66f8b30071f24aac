import { describe, expect, it } from 'vitest';
import { setup, fromPromise } from 'xstate';
import { durable } from '../../src/record/durable.js';
import { machineGraph, type GraphState } from '../../src/graph/graph.js';

describe('machineGraph', () => {
  it('describes nested, parallel and delayed states with guards and invokes', () => {
    const m = durable(
      setup({
        actors: { charge: fromPromise(async () => 1) },
        guards: { ok: () => true },
        delays: { soon: 1000 },
      }).createMachine({
        id: 'g1',
        initial: 'a',
        states: {
          a: { on: { GO: { target: 'b', guard: 'ok' } }, after: { soon: 'c' } },
          b: {
            type: 'parallel',
            states: {
              x: { initial: 'x1', states: { x1: { on: { N: 'x2' } }, x2: {} } },
              y: { initial: 'y1', states: { y1: { invoke: { src: 'charge', onDone: 'y2' } }, y2: { type: 'final' } } },
            },
          },
          c: { always: 'd' },
          d: { type: 'final' },
        },
      }),
    );
    const g = machineGraph(m);
    expect(g.name).toBe('g1');
    expect(g.root.type).toBe('compound');
    expect(g.root.initial).toBe('g1.a');
    expect(g.root.states.map((s) => s.id)).toEqual(['g1.a', 'g1.b', 'g1.c', 'g1.d']);
    const [a, b, c, d] = g.root.states as [GraphState, GraphState, GraphState, GraphState];
    expect(a.transitions).toEqual([
      { event: 'after soon', targets: ['g1.c'], delay: 'soon' },
      { event: 'GO', targets: ['g1.b'], guard: 'ok' },
    ]);
    expect(b.type).toBe('parallel');
    expect(b.states.map((s) => s.path)).toEqual([['b', 'x'], ['b', 'y']]);
    const y1 = b.states[1]!.states[0]!;
    expect(y1.invokes).toEqual(['charge']);
    expect(y1.transitions[0]!.targets).toEqual(['g1.b.y.y2']);
    expect(y1.transitions[0]!.event).toMatch(/^xstate\.done\.actor\./);
    expect(c.transitions).toEqual([{ event: 'always', targets: ['g1.d'] }]);
    expect(d.type).toBe('final');
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
    expect(machineGraph(m)).toEqual(g);
  });
});
