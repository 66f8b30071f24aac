import { type Attributes, type Histogram, type HrTime, type MeterProvider, metrics } from '@opentelemetry/api';
import * as N from './names.js';

/** The part of an SDK's ended span the processor reads (typed by shape: drover has no SDK dependency). */
interface EndedSpan {
  name: string;
  attributes: Attributes;
  startTime: HrTime;
  endTime: HrTime;
}

/** Options of {@link ResidencySpanProcessor}. */
export interface ResidencyProcessorOptions {
  /** Where the histogram goes. Default: the global meter provider. */
  meterProvider?: MeterProvider;
  /** Bucket boundaries in seconds. Default: 1 s up to 30 days ({@link RESIDENCY_BUCKETS}). */
  boundaries?: number[];
}

const seconds = (t: HrTime) => t[0] + t[1] / 1e9;

/**
 * A span processor for the application's tracer provider: every ended `drover.state` span
 * becomes one observation of the histogram `drover.state.residency` (seconds, by machine,
 * version and state). Add it next to your exporter.
 *
 * @example
 * const provider = new BasicTracerProvider({ spanProcessors: [new ResidencySpanProcessor({ meterProvider }), new BatchSpanProcessor(exporter)] });
 */
export class ResidencySpanProcessor {
  private instrument: Histogram | undefined;

  constructor(private readonly options: ResidencyProcessorOptions = {}) {}

  // Made on the first ended span, so a processor built before the global meter provider is
  // registered (the usual NodeSDK order) still records into it.
  private get histogram(): Histogram {
    this.instrument ??= (this.options.meterProvider ?? metrics.getMeterProvider()).getMeter('drover').createHistogram(N.METRIC_RESIDENCY, {
      description: 'how long records stayed in a state',
      unit: 's',
      advice: { explicitBucketBoundaries: this.options.boundaries ?? N.RESIDENCY_BUCKETS },
    });
    return this.instrument;
  }

  onStart(): void {}

  onEnd(span: EndedSpan): void {
    if (span.name !== N.SPAN_STATE) return;
    const a = span.attributes;
    this.histogram.record(Math.max(0, seconds(span.endTime) - seconds(span.startTime)), {
      [N.ATTR_MACHINE]: a[N.ATTR_MACHINE] as string,
      [N.ATTR_VERSION]: a[N.ATTR_VERSION] as number,
      [N.ATTR_STATE]: a[N.ATTR_STATE] as string,
    });
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {}
}

export { RESIDENCY_BUCKETS } from './names.js';
