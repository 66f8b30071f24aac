import {
  type Attributes,
  type Context,
  context,
  type Link,
  type MeterProvider,
  type Span,
  SpanStatusCode,
  type TracerProvider,
  metrics,
  ROOT_CONTEXT,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { errorMessage } from '../errors.js';
import type { TransitionRow } from '../record/step.js';
import * as N from './names.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The active span's context as a W3C `traceparent`, or undefined when there is none. */
export function captureTraceparent(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** A span link to a stored `traceparent` (invalid or missing: no link). */
export function linkTo(traceparent: string | null | undefined): Link[] {
  const m = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (!m) return [];
  return [{ context: { traceId: m[1] as string, spanId: m[2] as string, traceFlags: Number.parseInt(m[3] as string, 16) & TraceFlags.SAMPLED, isRemote: true } }];
}

/** One row of the state gauges: active records of a machine in a state, and the oldest stay. */
export interface StateCount {
  machine: string;
  state: string;
  count: number;
  oldest: Date;
}

/**
 * drover's OpenTelemetry: spans from the application's tracer provider (the global one unless
 * given), gauges and counters on its meter provider. Without an SDK every call is the API's no-op.
 */
export class Telemetry {
  private readonly tracerProvider: TracerProvider | undefined;
  private readonly meterProvider: MeterProvider | undefined;

  constructor(options: { tracerProvider?: TracerProvider | undefined; meterProvider?: MeterProvider | undefined } = {}) {
    this.tracerProvider = options.tracerProvider;
    this.meterProvider = options.meterProvider;
  }

  // Looked up per use so an SDK registered after createRuntime() is still picked up.
  get tracer() {
    return (this.tracerProvider ?? trace.getTracerProvider()).getTracer('drover');
  }

  private get meter() {
    return (this.meterProvider ?? metrics.getMeterProvider()).getMeter('drover');
  }

  /**
   * The `drover.state` spans of the stays a committed step ended: each starts when the record
   * entered the state (`enteredBefore` for the first, possibly days ago on another node) and
   * ends at the transition that left it, linked to the request whose event caused it.
   */
  stateSpans(machine: string, version: number, id: string, enteredBefore: number, transitions: readonly TransitionRow[]): void {
    if (transitions.length === 0) return;
    const tracer = this.tracer;
    let enteredAt = enteredBefore;
    for (const t of transitions) {
      if (t.from === null) {
        enteredAt = t.at;
        continue;
      }
      // Attributes and links are set after the start, so with no SDK (a non-recording span)
      // none of them is built: the common case costs a few allocations. (A sampler therefore
      // sees only the name and start time.)
      const span = tracer.startSpan(N.SPAN_STATE, { startTime: new Date(enteredAt) }, ROOT_CONTEXT);
      if (!span.isRecording()) {
        if (t.to !== t.from) enteredAt = t.at;
        continue;
      }
      span.setAttributes({
        [N.ATTR_MACHINE]: machine,
        [N.ATTR_VERSION]: version,
        [N.ATTR_STATE]: t.from,
        [N.ATTR_INSTANCE]: id,
        [N.ATTR_NEXT_STATE]: t.to,
        [N.ATTR_EVENT]: t.event.type,
        [N.ATTR_STATUS]: t.status,
      });
      const links = linkTo(t.traceparent);
      if (links.length > 0) span.addLinks(links);
      if (t.status === 'failed') span.setStatus({ code: SpanStatusCode.ERROR, message: t.error?.message ?? 'failed' });
      span.end(new Date(t.at));
      if (t.to !== t.from) enteredAt = t.at;
    }
  }

  /** Runs `fn` inside a span (a claim, a step batch, a periodic run); a throw marks it as an error. */
  async span<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, links: Link[] = []): Promise<T> {
    // Root spans: a runtime started inside a request's span must not make every later claim its child.
    return this.tracer.startActiveSpan(name, { attributes, links }, ROOT_CONTEXT, async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err instanceof Error ? err : String(err));
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  private breaches: import('@opentelemetry/api').Counter | undefined;

  /** Counts one SLA breach. */
  breach(machine: string, state: string): void {
    this.breaches ??= this.meter.createCounter(N.METRIC_SLA_BREACHES, { description: 'records that sat in a state past its SLA, once per stay' });
    this.breaches.add(1, {
      [N.ATTR_MACHINE]: machine,
      [N.ATTR_STATE]: state,
    });
  }

  /**
   * Observable gauges read at collection time: records in each state, and the age of the
   * oldest stay, per machine. `read` is one grouped query.
   */
  observeStates(read: () => Promise<StateCount[]>, now: () => number): () => void {
    const meter = this.meter;
    const records = meter.createObservableGauge(N.METRIC_RECORDS, { description: 'active records in each state' });
    const oldest = meter.createObservableGauge(N.METRIC_OLDEST, { description: 'age of the oldest active record in each state', unit: 's' });
    let seen = new Map<string, { [k: string]: string }>();
    const callback = async (observer: import('@opentelemetry/api').BatchObservableResult) => {
      let rows: StateCount[];
      try {
        rows = await read();
      } catch {
        return; // the database is away: no observation this time
      }
      const current = new Map<string, { [k: string]: string }>();
      for (const r of rows) {
        const attrs = { [N.ATTR_MACHINE]: r.machine, [N.ATTR_STATE]: r.state };
        current.set(`${r.machine}\u0000${r.state}`, attrs);
        observer.observe(records, r.count, attrs);
        observer.observe(oldest, Math.max(0, (now() - r.oldest.getTime()) / 1000), attrs);
      }
      // A state that emptied reads 0 instead of keeping its last value.
      for (const [key, attrs] of seen) {
        if (current.has(key)) continue;
        observer.observe(records, 0, attrs);
        observer.observe(oldest, 0, attrs);
      }
      seen = current;
    };
    meter.addBatchObservableCallback(callback, [records, oldest]);
    return () => meter.removeBatchObservableCallback(callback, [records, oldest]);
  }
}
