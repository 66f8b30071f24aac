import { type AnyActorLogic, assign, fromPromise, setup } from 'xstate';

/** A long-running part of the engine (a queue poller) as the supervisor sees it. */
export interface Service {
  start(): void;
  /** Resolves when it has really stopped (the batch in hand persisted). */
  stop(): Promise<void>;
}

/** A queue poller (or any {@link Service}) as an XState actor: running → stopping → stopped. */
export const serviceMachine = setup({
  types: { context: {} as { service: Service }, input: {} as Service, events: {} as { type: 'STOP' } },
  actors: { stop: fromPromise<void, Service>(({ input }) => input.stop()) },
}).createMachine({
  id: 'service',
  context: ({ input }) => ({ service: input }),
  initial: 'running',
  states: {
    running: { entry: ({ context }) => context.service.start(), on: { STOP: 'stopping' } },
    stopping: { invoke: { src: 'stop', input: ({ context }) => context.service, onDone: 'stopped', onError: 'stopped' } },
    stopped: { type: 'final' },
  },
});

/** What the supervisor machine runs on its way up and down. */
export interface SupervisorHooks {
  boot(): Promise<void>;
  drain(): Promise<void>;
}

/** Adds a child actor (a worker, a periodic, a poller) to the supervisor. */
export type AddChild = { type: 'ADD'; name: string; logic: AnyActorLogic; input: unknown };

/**
 * The supervisor: starting → running → draining → stopped. Its children are the pollers,
 * workers, periodics and housekeeping actors, so one inspector shows the whole tree.
 */
export const supervisorMachine = setup({
  types: {
    context: {} as { hooks: SupervisorHooks; error: unknown },
    input: {} as SupervisorHooks,
    events: {} as AddChild | { type: 'START' } | { type: 'DRAIN' },
  },
  actors: {
    boot: fromPromise<void, SupervisorHooks>(({ input }) => input.boot()),
    drain: fromPromise<void, SupervisorHooks>(({ input }) => input.drain()),
  },
}).createMachine({
  id: 'drover.supervisor',
  context: ({ input }) => ({ hooks: input, error: null }),
  initial: 'idle',
  on: {
    ADD: {
      actions: assign(({ event, spawn }) => {
        // Children are added at run time with logic the machine cannot know in advance.
        (spawn as unknown as (logic: AnyActorLogic, options: { id: string; input: unknown }) => unknown)(event.logic, {
          id: event.name,
          input: event.input,
        });
        return {};
      }),
    },
  },
  states: {
    idle: { on: { START: 'starting', DRAIN: 'draining' } },
    starting: {
      invoke: {
        src: 'boot',
        input: ({ context }) => context.hooks,
        onDone: 'running',
        onError: { target: 'draining', actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    running: { on: { DRAIN: 'draining' } },
    draining: {
      invoke: { src: 'drain', input: ({ context }) => context.hooks, onDone: 'stopped', onError: 'stopped' },
    },
    stopped: { type: 'final' },
  },
});
