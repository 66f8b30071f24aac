// Scenario o (BENCH_ONLY=o, no database): what drover's OpenTelemetry costs per transition.
// It times the calls the poller makes for every committed transition (one drover.state span,
// its link, and the trace context capture of a send()) three ways: with no SDK registered (the
// API's no-ops, drover's default), with an SDK that records into memory, and with the SDK plus
// the ResidencySpanProcessor feeding the residency histogram. The XState step itself costs
// 20-40 µs (scenario x), so the no-SDK column is what "near-zero" has to beat.
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ResidencySpanProcessor } from '../src/index.js';
import { captureTraceparent, Telemetry } from '../src/otel/telemetry.js';
import type { TransitionRow } from '../src/record/step.js';
import { time } from './xstate-step.js';

class Reader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const transitions: TransitionRow[] = [
  {
    seq: 2,
    from: 'awaiting_payment',
    to: 'charging',
    status: 'active',
    event: { type: 'payment.confirmed' },
    at: Date.now(),
    ids: { order_id: 'o-1' },
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  },
];

export function otelCost(n = 50_000): string[] {
  const enteredBefore = Date.now() - 60_000;
  const none = new Telemetry();
  const spans = new InMemorySpanExporter();
  const sdk = new Telemetry({ tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }) });
  const meterProvider = new MeterProvider({ readers: [new Reader()] });
  const withHistogram = new Telemetry({
    tracerProvider: new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(spans), new ResidencySpanProcessor({ meterProvider })],
    }),
    meterProvider,
  });
  const run = (t: Telemetry) => () => {
    t.stateSpans('order', 1, 'o-1', enteredBefore, transitions);
    if (spans.getFinishedSpans().length > 10_000) spans.reset();
  };
  const rows = [
    ['no SDK (default)', time(n, run(none))],
    ['SDK, in-memory exporter', time(n, run(sdk))],
    ['SDK + ResidencySpanProcessor', time(n, run(withHistogram))],
  ] as const;
  const capture = time(n, () => captureTraceparent());
  const lines = [
    '### (o) OpenTelemetry cost per committed transition (no database)',
    '',
    '| configuration | µs per transition (drover.state span + link) | vs no SDK |',
    '|---|---:|---:|',
    ...rows.map(([name, us]) => `| ${name} | ${us.toFixed(3)} | ${(us / (rows[0][1] || 1)).toFixed(1)}× |`),
    '',
    `captureTraceparent() with no active span (each create()/send()): ${(capture * 1000).toFixed(0)} ns. Fastest of 5 batches of ${n} calls.`,
  ];
  return lines;
}
