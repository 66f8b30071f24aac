import { createStore } from '@xstate/store';
import type { MetricEvent } from './metrics.js';

/** A worker's status: what `supervisor.status(name)` returns. */
export type WorkerStatus = 'running' | 'stopped' | 'crashed' | 'disabled';

/** One worker's entry in the status store. */
export interface WorkerEntry {
  name: string;
  kind: 'worker' | 'periodic';
  status: WorkerStatus;
  /** Panics since the last handler call that returned. */
  panics: number;
  lastMetric: MetricEvent | null;
}

/**
 * The supervisor's status store (an `@xstate/store`): worker status and last metric by name.
 * `status()`, the CLI and the dashboard read it; worker actors write it.
 */
export function createStatusStore() {
  return createStore({
    context: { workers: {} as Record<string, WorkerEntry> },
    on: {
      registered: (ctx, e: { name: string; kind: WorkerEntry['kind'] }) => ({
        workers: { ...ctx.workers, [e.name]: { name: e.name, kind: e.kind, status: 'stopped' as WorkerStatus, panics: 0, lastMetric: null } },
      }),
      status: (ctx, e: { name: string; status: WorkerStatus; panics: number }) => {
        const prev = ctx.workers[e.name];
        if (!prev || (prev.status === e.status && prev.panics === e.panics)) return ctx;
        return { workers: { ...ctx.workers, [e.name]: { ...prev, status: e.status, panics: e.panics } } };
      },
      metric: (ctx, e: { name: string; metric: MetricEvent }) => {
        const prev = ctx.workers[e.name];
        if (!prev) return ctx;
        return { workers: { ...ctx.workers, [e.name]: { ...prev, lastMetric: e.metric } } };
      },
    },
  });
}

export type StatusStore = ReturnType<typeof createStatusStore>;
