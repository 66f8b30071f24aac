/** A metric event of a worker: after each handler call, on a recovered panic, on start and stop. */
export type MetricEvent =
  | { kind: 'handle'; worker: string; at: Date; status: 'none' | 'done' | 'fail'; durationMs: number; error?: string }
  | { kind: 'panic'; worker: string; at: Date; attempt: number; error: string }
  | { kind: 'lifecycle'; worker: string; at: Date; event: 'started' | 'stopped' | 'crashed' | 'disabled' };

/** How many events a slow reader may fall behind before the oldest are dropped. */
export const METRICS_BUFFER = 256;

/** A reader of a worker's metrics: an async iterable that also counts the events it lost. */
export type MetricStream = AsyncIterableIterator<MetricEvent> & {
  /** Events dropped because this reader fell more than {@link METRICS_BUFFER} behind. */
  readonly dropped: number;
};

interface Reader {
  queue: MetricEvent[];
  wake: (() => void) | undefined;
  ended: boolean;
  dropped: number;
}

/**
 * The metric stream of one worker. Publishing never blocks the worker: each reader has a
 * bounded buffer ({@link METRICS_BUFFER} events) and, when it falls that far behind, loses
 * its oldest events (counted in `dropped`). Readers end when the worker stops.
 */
export class MetricsHub {
  private readonly readers = new Set<Reader>();
  last: MetricEvent | undefined;

  publish(event: MetricEvent): void {
    this.last = event;
    for (const r of this.readers) {
      r.queue.push(event);
      if (r.queue.length > METRICS_BUFFER) {
        r.queue.shift();
        r.dropped += 1;
      }
      r.wake?.();
    }
  }

  /** Ends every reader's iteration (after it has read what is buffered). */
  end(): void {
    for (const r of this.readers) {
      r.ended = true;
      r.wake?.();
    }
    this.readers.clear();
  }

  iterate(): MetricStream {
    const reader: Reader = { queue: [], wake: undefined, ended: false, dropped: 0 };
    this.readers.add(reader);
    const readers = this.readers;
    const iterator = {
      get dropped() {
        return reader.dropped;
      },
      async next(): Promise<IteratorResult<MetricEvent>> {
        for (;;) {
          const event = reader.queue.shift();
          if (event) return { value: event, done: false };
          if (reader.ended) return { value: undefined, done: true };
          await new Promise<void>((resolve) => {
            reader.wake = resolve;
          });
          reader.wake = undefined;
        }
      },
      async return(): Promise<IteratorResult<MetricEvent>> {
        reader.ended = true;
        reader.queue.length = 0;
        readers.delete(reader);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }
}
