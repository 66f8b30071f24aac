// The machine of bench/scale.ts: a record that waits for an event forever.
import { setup } from 'xstate';
import { durable } from '../src/index.js';

export const scaleIdle = durable(
  setup({ types: { events: {} as { type: 'go' } } }).createMachine({
    id: 'scale_idle',
    initial: 'idle',
    states: { idle: { on: { go: 'done' } }, done: { type: 'final' } },
  }),
);
