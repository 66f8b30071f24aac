// `npm run example:residency`: how long records stay in each state, on the embedded default
// (in-memory PGlite, in-process bus, no servers). Six support tickets go through
// open → triaged → in_progress → resolved with short real waits, so their stays differ. Then:
//   - `residency()`: per state, the records there now and p50/p95/p99/max of the stays that
//     ended, computed in SQL from the transition history (no OpenTelemetry needed);
//   - the same stays as OpenTelemetry: `drover.state` spans, turned into the histogram
//     `drover.state.residency` by `ResidencySpanProcessor`, read from an in-memory meter;
//   - the SLA watch: `triaged` has a 400 ms budget, counted by `drover.sla.breaches`.

import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type DataPoint, type Histogram, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createRuntime, ResidencySpanProcessor } from '../src/index.js';
import { ticket } from './machines/ticket.js';

// A reader that collects on demand (a real service uses a PeriodicExportingMetricReader and an exporter).
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

// The application's SDK. drover itself depends on @opentelemetry/api only.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()); // for send() inside a span
const reader = new OnDemandReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [
    new SimpleSpanProcessor(spans),
    // Sub-second buckets for this demo; the default runs from 1 s to 30 days (RESIDENCY_BUCKETS).
    new ResidencySpanProcessor({ meterProvider, boundaries: [0.1, 0.25, 0.5, 1, 2] }),
  ],
});

const drover = await createRuntime({ machines: [ticket], pollInterval: 50, slaInterval: 100, tracerProvider, meterProvider });
await drover.start();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Waits in ms before triage, start and resolve; t6 stays in progress. A stay lasts its wait
// plus drover's own latency (the send, the poller's wake-up, the commit), all six tickets
// sharing one PGlite connection.
const plans: Array<[string, number[]]> = [
  ['t1', [100, 150, 200]],
  ['t2', [200, 250, 300]],
  ['t3', [300, 600, 150]],
  ['t4', [150, 100, 500]],
  ['t5', [500, 200, 250]],
  ['t6', [250, 700]],
];
const steps = [
  { event: 'triage', to: 'triaged' },
  { event: 'start', to: 'in_progress' },
  { event: 'resolve', to: 'resolved' },
] as const;
const started = Date.now();

await Promise.all(
  plans.map(async ([id, waits]) => {
    await drover.create('ticket', { id, input: { ticket_id: id } });
    for (const [i, ms] of waits.entries()) {
      await sleep(ms);
      const { event, to } = steps[i] as (typeof steps)[number];
      if (id === 't1' && event === 'resolve') {
        // An HTTP handler would have this span active already: its trace context goes with the event.
        const request = tracerProvider.getTracer('app').startSpan('POST /tickets/t1/resolve');
        await context.with(trace.setSpan(context.active(), request), () => drover.send('ticket', id, { type: event }));
        request.end();
      } else {
        await drover.send('ticket', id, { type: event });
      }
      await drover.waitFor('ticket', id, { state: to }); // the next stay starts once this one has ended
    }
  }),
);
await sleep(200); // one more pass of the SLA watch
console.log(`drove 6 tickets in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

// 1. residency(): SQL over the transition history.
const secs = (v: number | null) => (v === null ? '-' : v.toFixed(3));
console.log('residency("ticket"), seconds:');
console.log(['state', 'count', 'stays', 'p50', 'p95', 'p99', 'max'].map((h, i) => (i === 0 ? h.padEnd(12) : h.padStart(7))).join(''));
for (const r of await drover.residency('ticket')) {
  console.log(r.state.padEnd(12) + [r.count, r.stays].map((n) => String(n).padStart(7)).join('') + [r.p50, r.p95, r.p99, r.max].map((v) => secs(v).padStart(7)).join(''));
}

// 2. The histogram drover.state.residency, from the drover.state spans.
const { resourceMetrics } = await reader.collect();
const metric = (name: string) => resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
const points = (metric('drover.state.residency')?.dataPoints ?? []) as Array<DataPoint<Histogram>>;
const bounds = points[0]?.value.buckets.boundaries ?? [];
const labels = [...bounds.map((b) => `≤${b}`), `>${bounds.at(-1)}`];
console.log('\ndrover.state.residency (histogram, s): observations per bucket');
console.log(`${'state'.padEnd(12)}${'count'.padStart(7)}${'sum'.padStart(8)}  ${labels.map((l) => l.padStart(6)).join('')}`);
for (const p of points.sort((a, b) => String(a.attributes['drover.state']).localeCompare(String(b.attributes['drover.state'])))) {
  const state = String(p.attributes['drover.state']);
  const counts = p.value.buckets.counts.map((n) => String(n).padStart(6)).join('');
  console.log(`${state.padEnd(12)}${String(p.value.count).padStart(7)}${(p.value.sum ?? 0).toFixed(3).padStart(8)}  ${counts}`);
}

// 3. Trace context: the span of t1's stay in `in_progress` links to the request that resolved it.
const stay = spans.getFinishedSpans().find((s) => s.name === 'drover.state' && s.attributes['drover.instance.id'] === 't1' && s.attributes['drover.state'] === 'in_progress');
const requestSpan = spans.getFinishedSpans().find((s) => s.name === 'POST /tickets/t1/resolve');
const linked = requestSpan !== undefined && stay?.links[0]?.context.traceId === requestSpan.spanContext().traceId;
console.log(`\nt1's in_progress span links to the trace of the request that resolved it: ${linked}`);

// 4. The SLA watch: tickets that sat in `triaged` past 400 ms, once per stay.
const breaches = metric('drover.sla.breaches')?.dataPoints.map((p) => `${p.attributes['drover.state']}: ${p.value}`) ?? [];
console.log(`drover.sla.breaches: ${breaches.join(', ') || 'none'}`);

await drover.stop();
await tracerProvider.shutdown();
await meterProvider.shutdown();
