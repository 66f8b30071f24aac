import { type ActorRefFrom, assign, fromPromise, type SnapshotFrom, setup } from 'xstate';
import { backoffMs } from '../db/database.js';
import { OutageLog } from '../db/outage.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { MetricsHub } from './metrics.js';
import type { HandlerResult } from './results.js';
import type { WorkerStatus } from './store.js';

/** What a worker handler gets on each call. */
export interface HandlerContext {
  /** The worker's name. */
  name: string;
  /** Aborted when the worker is asked to stop (or is disabled): finish up and return. */
  signal: AbortSignal;
  /** 1, or 1 + the panics since the last call that returned. */
  attempt: number;
  logger: Logger;
}

/** A worker's unit of work: returns `none(idle)`, `done()` or `fail(err, idle)`; a throw is a panic. */
export type WorkerHandler = (ctx: HandlerContext) => HandlerResult | Promise<HandlerResult>;

/** What the worker machine needs from its supervisor. */
export interface WorkerInput {
  name: string;
  handler: WorkerHandler;
  /** Panics in a row before the worker stops itself as `crashed`; 0 = no limit. */
  maxPanicAttempts: number;
  panicBackoffMs: number;
  logger: Logger;
  metrics: MetricsHub;
  /** Publishes a metric event to readers and the status store. */
  emit: (event: Parameters<MetricsHub['publish']>[0]) => void;
  /** Stored as disabled (fleet wide) when the worker was created. */
  disabled: boolean;
  /** Wraps each call (run records); must not throw. */
  around?: (call: () => Promise<HandlerResult>) => Promise<HandlerResult>;
  /** Awaited before the worker counts as stopped (work it started in the background). */
  drain?: () => Promise<void>;
  /** Called each time the worker enters `running` (start, enable, restart after a crash). */
  onRun?: () => void;
  /** Called when the worker is asked to stop or is disabled (aborts its background work). */
  onHalt?: () => void;
}

interface WorkerContext extends WorkerInput {
  /** Whether the operator wants it running (start → true, stop → false). */
  wanted: boolean;
  panics: number;
  idleMs: number;
  last: 'none' | 'done' | 'fail' | 'panic' | null;
  controller: AbortController;
  everStarted: boolean;
  /** A WAKE arrived during the call: call again instead of sleeping. */
  woken: boolean;
  /** Says once that the database is away while this worker's handler keeps failing on it, and once that it is back. */
  outage: OutageLog;
  /** How long the next backoff after a panic waits. */
  backoffMs: number;
}

/** The longest backoff of a worker while the database is unavailable. */
const OUTAGE_BACKOFF_MAX_MS = 10_000;

/** Events a worker actor takes. */
export type WorkerEvent = { type: 'START' } | { type: 'STOP' } | { type: 'ENABLE' } | { type: 'DISABLE' } | { type: 'WAKE' };

const isResult = (r: unknown): r is HandlerResult =>
  typeof r === 'object' && r !== null && ['none', 'done', 'fail'].includes((r as { kind?: string }).kind as string);

/** One handler call. A `done()` loop yields to the event loop between calls so it cannot starve I/O. */
async function call(ctx: WorkerContext): Promise<HandlerResult> {
  await new Promise((resolve) => setImmediate(resolve));
  const run = async () => {
    const result = await ctx.handler({ name: ctx.name, signal: ctx.controller.signal, attempt: ctx.panics + 1, logger: ctx.logger });
    if (!isResult(result)) throw new TypeError(`worker "${ctx.name}": the handler must return none(), done() or fail() (got ${String(result)})`);
    return result;
  };
  const started = Date.now();
  try {
    const result = await (ctx.around ? ctx.around(run) : run());
    ctx.emit({
      kind: 'handle',
      worker: ctx.name,
      at: new Date(),
      status: result.kind,
      durationMs: Date.now() - started,
      ...(result.kind === 'fail' ? { error: errorMessage(result.error) } : {}),
    });
    return result;
  } catch (err) {
    ctx.emit({ kind: 'handle', worker: ctx.name, at: new Date(), status: 'fail', durationMs: Date.now() - started, error: errorMessage(err) });
    throw err;
  }
}

const lifecycle = (ctx: WorkerContext, event: 'started' | 'stopped' | 'crashed' | 'disabled') =>
  ctx.emit({ kind: 'lifecycle', worker: ctx.name, at: new Date(), event });

/**
 * A supervised worker: an XState machine, so starting, idling, panics, backoff, crashing and
 * stopping are its transitions and show in the Stately inspector. `STOP` while a call is in
 * flight aborts the call's signal and waits for the handler to return before `stopped`.
 */
export const workerMachine = setup({
  types: { context: {} as WorkerContext, input: {} as WorkerInput, events: {} as WorkerEvent },
  actors: {
    call: fromPromise<HandlerResult, WorkerContext>(({ input }) => call(input)),
    drain: fromPromise<void, WorkerContext>(async ({ input }) => {
      await input.drain?.();
    }),
  },
  delays: {
    idle: ({ context }) => context.idleMs,
    panicBackoff: ({ context }) => context.backoffMs,
  },
  guards: {
    unwanted: ({ context }) => !context.wanted,
    disabled: ({ context }) => context.disabled,
    wanted: ({ context }) => context.wanted,
    crashLimit: ({ context }) => context.last === 'panic' && context.maxPanicAttempts > 0 && context.panics >= context.maxPanicAttempts,
    panicked: ({ context }) => context.last === 'panic',
    again: ({ context }) => context.last === 'done' || (context.woken && context.last !== 'fail'),
  },
  actions: {
    want: assign({ wanted: true }),
    unwant: assign({ wanted: false }),
    enable: assign({ disabled: false }),
    disable: assign({ disabled: true }),
    abort: ({ context }) => {
      context.controller.abort();
      context.onHalt?.();
    },
  },
}).createMachine({
  id: 'worker',
  context: ({ input }) => ({
    ...input,
    wanted: false,
    panics: 0,
    outage: new OutageLog(input.logger, { worker: input.name }, Date.now),
    backoffMs: input.panicBackoffMs,
    idleMs: 0,
    last: null,
    controller: new AbortController(),
    everStarted: false,
    woken: false,
  }),
  initial: 'stopped',
  on: { ENABLE: { actions: 'enable' }, DISABLE: { actions: 'disable' } },
  states: {
    stopped: {
      entry: ({ context }) => {
        if (context.everStarted) lifecycle(context, 'stopped');
      },
      on: {
        START: [
          { guard: 'disabled', target: 'disabled', actions: 'want' },
          { target: 'running', actions: ['want', assign({ panics: 0 })] },
        ],
      },
    },
    disabled: {
      entry: ({ context }) => lifecycle(context, 'disabled'),
      on: {
        START: { actions: 'want' },
        STOP: { target: 'stopped', actions: 'unwant' },
        ENABLE: [
          { guard: 'wanted', target: 'running', actions: ['enable', assign({ panics: 0 })] },
          { target: 'stopped', actions: 'enable' },
        ],
      },
    },
    crashed: {
      entry: [({ context }) => lifecycle(context, 'crashed'), 'unwant'],
      on: {
        START: [
          { guard: 'disabled', target: 'disabled', actions: 'want' },
          { target: 'running', actions: ['want', assign({ panics: 0 })] },
        ],
        STOP: { target: 'stopped' },
      },
    },
    running: {
      entry: [assign({ everStarted: true }), ({ context }) => lifecycle(context, 'started'), ({ context }) => context.onRun?.()],
      on: {
        START: { actions: 'want' },
        STOP: { actions: ['unwant', 'abort'] },
        DISABLE: { actions: ['disable', 'abort'] },
        WAKE: { actions: assign({ woken: true }) },
      },
      initial: 'calling',
      states: {
        calling: {
          entry: assign({ controller: () => new AbortController(), woken: false }),
          invoke: {
            src: 'call',
            input: ({ context }) => context,
            onDone: {
              target: 'decide',
              actions: assign(({ event, context }) => {
                const r = event.output;
                context.outage.ok();
                if (r.kind === 'fail') context.logger.error({ worker: context.name, err: errorMessage(r.error) }, 'drover: worker handler failed');
                return { last: r.kind, panics: 0, idleMs: r.kind === 'done' ? 0 : r.idleMs, backoffMs: context.panicBackoffMs };
              }),
            },
            onError: {
              target: 'decide',
              actions: assign(({ event, context }) => {
                const panics = context.panics + 1;
                context.emit({ kind: 'panic', worker: context.name, at: new Date(), attempt: panics, error: errorMessage(event.error) });
                // The database away: one line for the outage and a capped exponential backoff, not an error twice a second.
                if (context.outage.failed(event.error)) {
                  return { last: 'panic' as const, panics, backoffMs: backoffMs(panics, context.panicBackoffMs, Math.max(context.panicBackoffMs, OUTAGE_BACKOFF_MAX_MS)) };
                }
                context.logger.error({ worker: context.name, attempt: panics, err: errorMessage(event.error) }, 'drover: worker panicked, recovered');
                return { last: 'panic' as const, panics, backoffMs: context.panicBackoffMs };
              }),
            },
          },
        },
        decide: {
          always: [
            { guard: 'unwanted', target: 'draining' },
            { guard: 'disabled', target: 'draining' },
            { guard: 'crashLimit', target: 'draining' },
            { guard: 'panicked', target: 'backoff' },
            { guard: 'again', target: 'calling' },
            { target: 'idle' },
          ],
        },
        idle: {
          always: [
            { guard: 'unwanted', target: 'draining' },
            { guard: 'disabled', target: 'draining' },
          ],
          after: { idle: 'calling' },
          // Something happened that the worker waits for (a commit for the relay): call now.
          on: { WAKE: 'calling' },
        },
        backoff: {
          always: [
            { guard: 'unwanted', target: 'draining' },
            { guard: 'disabled', target: 'draining' },
          ],
          after: { panicBackoff: 'calling' },
        },
        // Background work of the worker (a periodic's overlapping runs) finishes before it stops.
        draining: {
          invoke: {
            src: 'drain',
            input: ({ context }) => context,
            onDone: 'leave',
            onError: 'leave',
          },
        },
        leave: {
          always: [
            { guard: 'crashLimit', target: '#worker.crashed' },
            { guard: 'unwanted', target: '#worker.stopped' },
            { target: '#worker.disabled' },
          ],
        },
      },
    },
  },
});

export type WorkerActor = ActorRefFrom<typeof workerMachine>;

/** The status a worker snapshot shows. */
export function workerStatus(snapshot: SnapshotFrom<typeof workerMachine>): WorkerStatus {
  if (snapshot.matches('running')) return 'running';
  if (snapshot.matches('crashed')) return 'crashed';
  if (snapshot.matches('disabled') || snapshot.context.disabled) return 'disabled';
  return 'stopped';
}
