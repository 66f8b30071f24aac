import { afterEach, describe, expect, it } from 'vitest';
import { fromPromise, setup } from 'xstate';
import { defineJob, durable } from '../../src/index.js';
import { createTestRuntime, DrainTimeoutError, type TestRuntime } from '../../src/testing/index.js';
import { order } from '../../machines/order.js';

// drover/testing, used the way docs/testing.md shows it: each test gets a fresh schema on the
// process's one in-memory PGlite, and moves the test clock instead of waiting.

/** Two timers in a row: `advance('1h')` must fire the second too, set by the first. */
const relay = durable(
  setup({}).createMachine({
    id: 'relay',
    initial: 'first',
    states: { first: { after: { 1_800_000: 'second' } }, second: { after: { 1_800_000: 'third' } }, third: { type: 'final' } },
  }),
);

let calls = 0;
/** Fails its first attempt; the retry waits a minute of backoff. */
const flaky = defineJob(
  'flaky',
  async (args: { key: string }) => {
    calls += 1;
    if (calls === 1) throw new Error('the first call fails');
    return args.key;
  },
  { maxAttempts: 3, backoff: '1m' },
);

/** Never resolves: drain() must give up instead of hanging. */
const stuck = durable(
  setup({ actors: { forever: fromPromise(() => new Promise<never>(() => {})) } }).createMachine({
    id: 'stuck',
    initial: 'waiting',
    states: { waiting: { invoke: { src: 'forever', onDone: 'done' } }, done: { type: 'final' } },
  }),
);

const report = defineJob('report', async (args: { at: string }) => args.at);

describe('drover/testing', () => {
  let t: TestRuntime | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it('advance() fires a durable timer when its time comes, not before', async () => {
    const rt = await createTestRuntime({ machines: [order], now: Date.UTC(2026, 0, 1) });
    t = rt;
    await rt.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 20, paymentWindowMs: 3_600_000 } });
    await rt.clock.advance('59m');
    expect((await rt.get('order', 'o-1'))?.state).toBe('awaiting_payment');
    const ran = await rt.clock.advance('1m');
    expect(ran.transitions.map((x) => [x.id, x.to])).toEqual([['o-1', 'expired']]);
    expect(await rt.states('order', 'o-1')).toEqual(['awaiting_payment', 'expired']);
    expect(rt.clock.now()).toBe(Date.UTC(2026, 0, 1, 1));
  });

  it('drain() runs events and invoked promises to the end without moving the clock', async () => {
    const rt = await createTestRuntime({ machines: [order] });
    t = rt;
    const start = rt.clock.now();
    await rt.create('order', { id: 'o-2', input: { order_id: 'o-2', amount: 20 } });
    await rt.send('order', 'o-2', { type: 'payment.confirmed' });
    const ran = await rt.drain();
    expect(ran.transitions.map((x) => x.to)).toEqual(['charging', 'shipped']);
    const shipped = await rt.get('order', 'o-2');
    expect(shipped?.status).toBe('done');
    expect(shipped?.context.receipt).toBe('rcpt-o-2');
    expect(await rt.events('order', 'o-2')).toEqual(['xstate.init', 'payment.confirmed', 'xstate.done.actor.0.order.charging']);
    expect(rt.clock.now()).toBe(start);
  });

  it('advance() stops at each due time on the way: a timer set by a timer fires in the same advance', async () => {
    const rt = await createTestRuntime({ machines: [relay] });
    t = rt;
    await rt.create('relay', { id: 'r-1' });
    const ran = await rt.clock.advance('1h');
    expect(ran.transitions.map((x) => x.to)).toEqual(['second', 'third']);
    expect((await rt.get('relay', 'r-1'))?.status).toBe('done');
  });

  it('a retry waits for its backoff on the test clock', async () => {
    calls = 0;
    const rt = await createTestRuntime({ machines: [flaky] });
    t = rt;
    await rt.create('flaky', { id: 'f-1', input: { key: 'k' } });
    await rt.drain();
    expect(calls).toBe(1);
    expect((await rt.get('flaky', 'f-1'))?.status).toBe('active');
    // The backoff is jittered: the retry comes between half the backoff and all of it.
    await rt.clock.advance('29s');
    expect(calls).toBe(1);
    await rt.clock.advance('31s');
    expect(calls).toBe(2);
    expect((await rt.get('flaky', 'f-1'))?.status).toBe('done');
  });

  it('advance() runs every periodic tick it passes, and what they start', async () => {
    const rt = await createTestRuntime({ machines: [report], now: Date.UTC(2026, 0, 1) });
    t = rt;
    rt.periodic('hourly-report', { every: '1h' }, () => ({ start: 'report', input: { at: new Date(rt.clock.now()).toISOString() } }));
    const ran = await rt.clock.advance('3h');
    expect(ran.runs.map((r) => [r.worker, r.status, r.scheduledFor.toISOString()])).toEqual([
      ['hourly-report', 'succeeded', '2026-01-01T01:00:00.000Z'],
      ['hourly-report', 'succeeded', '2026-01-01T02:00:00.000Z'],
      ['hourly-report', 'succeeded', '2026-01-01T03:00:00.000Z'],
    ]);
    const reports = await rt.list('report', { status: 'done' });
    expect(reports.items).toHaveLength(3);
  });

  it('drain() gives up with DrainTimeoutError on a promise that never settles', async () => {
    const rt = await createTestRuntime({ machines: [stuck], drainTimeout: '300ms' });
    t = rt;
    await rt.create('stuck', { id: 's-1' });
    await expect(rt.drain()).rejects.toBeInstanceOf(DrainTimeoutError);
  });

  it('each test runtime has its own schema on the shared database, dropped by stop()', async () => {
    const a = await createTestRuntime({ machines: [relay] });
    const b = await createTestRuntime({ machines: [relay] });
    try {
      expect(a.schema).not.toBe(b.schema);
      await a.create('relay', { id: 'same-id' });
      await b.create('relay', { id: 'same-id' });
      expect((await a.list('relay')).items).toHaveLength(1);
    } finally {
      await a.stop();
      await b.stop();
    }
    const probe = await createTestRuntime({ machines: [relay], start: false });
    t = probe;
    const { accessOf } = await import('../../src/runtime/access.js');
    const left = await accessOf(probe).db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ANY($1)', [
      [a.schema, b.schema],
    ]);
    expect(left.rows[0]?.n).toBe(0);
  });
});
