import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type DataPoint, type Histogram, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, ResidencySpanProcessor, type Runtime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// OpenTelemetry with the SDK's in-memory exporters, on real PostgreSQL.

class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schemas: string[] = [];
const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  context.disable();
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await admin.end();
});

function telemetry() {
  const spans = new InMemorySpanExporter();
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(spans), new ResidencySpanProcessor({ meterProvider, boundaries: [1, 60, 3600] })],
  });
  const metric = async (name: string) => {
    const { resourceMetrics } = await reader.collect();
    return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  };
  return { spans, tracerProvider, meterProvider, metric };
}

const hr = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
const stateSpans = (spans: InMemorySpanExporter) => spans.getFinishedSpans().filter((s) => s.name === 'drover.state');

const ticket = durable(
  setup({ types: { context: {} as { ticket_id: string }, input: {} as { ticket_id: string } } }).createMachine({
    id: 'ticket',
    initial: 'open',
    context: ({ input }) => ({ ticket_id: input.ticket_id }),
    states: {
      open: { on: { assign: 'assigned', boom: { actions: () => { throw new Error('kaput'); } } } },
      assigned: { on: { resolve: 'resolved' } },
      resolved: { type: 'final' },
    },
  }),
  { residency: { open: { sla: '300ms' } } },
);

async function open(t: ReturnType<typeof telemetry> | undefined, schema: string, extra: Record<string, unknown> = {}): Promise<Runtime> {
  return createRuntime({
    database: DATABASE_URL,
    schema,
    machines: [ticket],
    pollInterval: 50,
    ...(t ? { tracerProvider: t.tracerProvider, meterProvider: t.meterProvider } : {}),
    ...extra,
  });
}

describe('drover.state spans', () => {
  it('start at the stored entered_at, also across a restart of the runtime, and end when the record leaves the state', async () => {
    const schema = uniqueSchema('otel');
    schemas.push(schema);
    const first = await open(undefined, schema);
    await first.start();
    await first.create('ticket', { id: 't1', input: { ticket_id: 't1' } });
    await first.stop();
    const stored = (await admin.query<{ entered_at: Date }>(`SELECT entered_at FROM "${schema}".instances WHERE id = 't1'`)).rows[0]?.entered_at as Date;

    const t = telemetry();
    const second = await open(t, schema);
    try {
      await second.start();
      await second.send('ticket', 't1', { type: 'assign' });
      await second.send('ticket', 't1', { type: 'resolve' });
      await second.waitFor('ticket', 't1', { status: 'done' });
      const history = await second.history('ticket', 't1');
      const spans = stateSpans(t.spans);
      expect(spans).toHaveLength(2); // open and assigned; the final state's stay never ends
      const [openSpan, assignedSpan] = spans as [ReadableSpan, ReadableSpan];
      expect(hr(openSpan.startTime)).toBe(stored.getTime());
      expect(hr(openSpan.endTime)).toBe(history[1]?.at.getTime());
      expect(hr(assignedSpan.startTime)).toBe(history[1]?.at.getTime());
      expect(hr(assignedSpan.endTime)).toBe(history[2]?.at.getTime());
      expect(openSpan.attributes).toEqual({
        'drover.machine': 'ticket',
        'drover.machine.version': 1,
        'drover.state': 'open',
        'drover.instance.id': 't1',
        'drover.next_state': 'assigned',
        'drover.event': 'assign',
        'drover.status': 'active',
      });
      // The residency histogram: one observation per finished stay, with its length.
      const residency = await t.metric('drover.state.residency');
      const points = (residency?.dataPoints ?? []) as Array<DataPoint<Histogram>>;
      const byState = new Map(points.map((p) => [p.attributes['drover.state'], p.value]));
      expect(byState.get('open')?.count).toBe(1);
      expect(byState.get('open')?.sum).toBeCloseTo((history[1]?.at.getTime() as number) / 1000 - stored.getTime() / 1000, 3);
      expect(byState.get('assigned')?.count).toBe(1);
      expect(points.every((p) => p.attributes['drover.machine'] === 'ticket' && p.attributes['drover.machine.version'] === 1)).toBe(true);
      // Claims and steps of this node are spans too.
      expect(t.spans.getFinishedSpans().some((s) => s.name === 'drover.step' && s.attributes['drover.queue'] === 'ticket')).toBe(true);
      expect(t.spans.getFinishedSpans().some((s) => s.name === 'drover.claim')).toBe(true);
    } finally {
      await second.stop();
    }
  });

  it('a failing step ends the stay with an error status; cancel() ends it too', async () => {
    const schema = uniqueSchema('otelf');
    schemas.push(schema);
    const t = telemetry();
    const rt = await open(t, schema);
    try {
      await rt.start();
      await rt.create('ticket', { id: 'f1', input: { ticket_id: 'f1' } });
      await rt.send('ticket', 'f1', { type: 'boom' });
      await rt.waitFor('ticket', 'f1', { status: 'failed' });
      await rt.create('ticket', { id: 'c1', input: { ticket_id: 'c1' } });
      await rt.cancel('ticket', 'c1', 'changed my mind');
      const spans = stateSpans(t.spans);
      const failed = spans.find((s) => s.attributes['drover.instance.id'] === 'f1');
      expect(failed?.status).toMatchObject({ code: 2, message: 'kaput' });
      expect(failed?.attributes['drover.status']).toBe('failed');
      const cancelled = spans.find((s) => s.attributes['drover.instance.id'] === 'c1');
      expect(cancelled?.attributes).toMatchObject({ 'drover.status': 'cancelled', 'drover.event': 'drover.cancel', 'drover.state': 'open' });
    } finally {
      await rt.stop();
    }
  });

  it('send() inside a span: the event carries its traceparent, the step and the state span link to that trace', async () => {
    const schema = uniqueSchema('otell');
    schemas.push(schema);
    const t = telemetry();
    const rt = await open(t, schema);
    try {
      await rt.start();
      await rt.create('ticket', { id: 'l1', input: { ticket_id: 'l1' } });
      const tracer = t.tracerProvider.getTracer('app');
      const request = tracer.startSpan('POST /tickets/l1/assign');
      await context.with(trace.setSpan(context.active(), request), () => rt.send('ticket', 'l1', { type: 'assign' }));
      request.end();
      await rt.waitFor('ticket', 'l1', { state: 'assigned' });
      const traceId = request.spanContext().traceId;
      const row = (await admin.query<{ traceparent: string }>(`SELECT traceparent FROM "${schema}".transitions WHERE instance_id = 'l1' AND seq = 2`)).rows[0];
      expect(row?.traceparent).toBe(`00-${traceId}-${request.spanContext().spanId}-01`);
      await until(() => stateSpans(t.spans).some((s) => s.attributes['drover.instance.id'] === 'l1'), 'the state span');
      const state = stateSpans(t.spans).find((s) => s.attributes['drover.instance.id'] === 'l1');
      expect(state?.links.map((l) => l.context.traceId)).toEqual([traceId]);
      const step = t.spans.getFinishedSpans().find((s) => s.name === 'drover.step' && s.links.some((l) => l.context.traceId === traceId));
      expect(step).toBeDefined();
    } finally {
      await rt.stop();
    }
  });
});

describe('gauges and the SLA watch', () => {
  it('observable gauges give the records in each state and the oldest stay, read at collection time', async () => {
    const schema = uniqueSchema('otelg');
    schemas.push(schema);
    const t = telemetry();
    const rt = await open(t, schema);
    try {
      await rt.start();
      for (const id of ['g1', 'g2', 'g3']) await rt.create('ticket', { id, input: { ticket_id: id } });
      await rt.send('ticket', 'g3', { type: 'assign' });
      await rt.waitFor('ticket', 'g3', { state: 'assigned' });
      const records = await t.metric('drover.state.records');
      const counts = new Map((records?.dataPoints ?? []).map((p) => [p.attributes['drover.state'], p.value]));
      expect(counts.get('open')).toBe(2);
      expect(counts.get('assigned')).toBe(1);
      const oldest = await t.metric('drover.state.oldest_age');
      expect(oldest?.descriptor.unit).toBe('s');
      expect((oldest?.dataPoints ?? []).every((p) => (p.value as number) >= 0)).toBe(true);
      // A state that empties reads 0 at the next collection, not its last value.
      await rt.send('ticket', 'g3', { type: 'resolve' });
      await rt.waitFor('ticket', 'g3', { status: 'done' });
      const after = await t.metric('drover.state.records');
      expect(new Map((after?.dataPoints ?? []).map((p) => [p.attributes['drover.state'], p.value])).get('assigned')).toBe(0);
    } finally {
      await rt.stop();
    }
  });

  it('a record past its SLA is reported once per stay: a span event, a counter, never repeated', async () => {
    const schema = uniqueSchema('otels');
    schemas.push(schema);
    const t = telemetry();
    const rt = await open(t, schema, { slaInterval: 50 });
    try {
      await rt.start();
      await rt.create('ticket', { id: 's1', input: { ticket_id: 's1' } });
      await rt.create('ticket', { id: 's2', input: { ticket_id: 's2' } });
      await rt.send('ticket', 's2', { type: 'assign' }); // leaves `open` before its SLA
      const breachEvents = () =>
        t.spans
          .getFinishedSpans()
          .filter((s) => s.name === 'drover.sla.check')
          .flatMap((s) => s.events.filter((e) => e.name === 'drover.sla.breach'));
      await until(() => breachEvents().length >= 1, 'a breach');
      // Many more passes of the watch: no second report for the same stay.
      const passes = t.spans.getFinishedSpans().filter((s) => s.name === 'drover.sla.check').length;
      await until(() => t.spans.getFinishedSpans().filter((s) => s.name === 'drover.sla.check').length >= passes + 5, 'five more passes');
      expect(breachEvents().map((e) => e.attributes?.['drover.instance.id'])).toEqual(['s1']);
      expect(breachEvents()[0]?.attributes).toMatchObject({ 'drover.machine': 'ticket', 'drover.state': 'open', 'drover.sla.seconds': 0.3 });
      const counter = await t.metric('drover.sla.breaches');
      expect(counter?.dataPoints.map((p) => [p.attributes['drover.state'], p.value])).toEqual([['open', 1]]);
    } finally {
      await rt.stop();
    }
  });
});

describe('residency() from the transition history', () => {
  it('gives per state the count now and p50/p95/p99/max of the stays that ended since a time', async () => {
    const schema = uniqueSchema('otelr');
    schemas.push(schema);
    const rt = await open(undefined, schema);
    try {
      // Hand-made history: five records through open → assigned; open stays of 10, 20, 30, 40, 100 s.
      const base = Date.UTC(2026, 5, 1, 12);
      const openSecs = [10, 20, 30, 40, 100];
      const rows: unknown[][] = [];
      openSecs.forEach((secs, i) => {
        const id = `h${i}`;
        rows.push([id, 1, null, 'open', 'active', new Date(base)]);
        rows.push([id, 2, 'open', 'assigned', 'active', new Date(base + secs * 1000)]);
        if (i < 2) rows.push([id, 3, 'assigned', 'resolved', 'done', new Date(base + secs * 1000 + 5000)]);
      });
      for (const [id, seq, from, to, status, at] of rows) {
        await admin.query(
          `INSERT INTO "${schema}".transitions (machine, instance_id, version, seq, from_state, to_state, status, event, at, published_at)
           VALUES ('ticket', $1, 1, $2, $3, $4, $5, '{"type":"x"}', $6, $6)`,
          [id, seq, from, to, status, at],
        );
      }
      await rt.create('ticket', { id: 'now-open', input: { ticket_id: 'now-open' } });
      const result = await rt.residency('ticket', { since: new Date(base - 1000) });
      const open = result.find((r) => r.state === 'open');
      // percentile_cont over [10, 20, 30, 40, 100]: p50 = 30, p95 = 40 + 0.8 × 60 = 88, p99 = 40 + 0.96 × 60 = 97.6.
      expect(open).toMatchObject({ count: 1, stays: 5, p50: 30, max: 100 });
      expect(open?.p95).toBeCloseTo(88, 6);
      expect(open?.p99).toBeCloseTo(97.6, 6);
      const assigned = result.find((r) => r.state === 'assigned');
      expect(assigned).toMatchObject({ count: 0, stays: 2, p50: 5, max: 5 });
      expect(result.find((r) => r.state === 'resolved')).toBeUndefined(); // final: no stay ends
      // Only stays that ended since `since` count.
      const later = await rt.residency('ticket', { since: new Date(base + 35_000) });
      expect(later.find((r) => r.state === 'open')).toMatchObject({ stays: 2, p50: 70, max: 100 });
    } finally {
      await rt.stop();
    }
  });
});
