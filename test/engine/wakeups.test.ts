import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromPromise, setup } from 'xstate';
import { createRuntime, defineJob, durable, type Runtime, TestClock } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { gate } from '../helpers/until.js';

// Every runtime here polls once an hour: anything that happens in seconds was woken by the
// engine itself (a freed slot, a local timer at the earliest wake_at, a NOTIFY), not by a poll.
const HOUR = '1h';

const gates = new Map<string, ReturnType<typeof gate<void>>>();
const held = durable(
  setup({
    types: { context: {} as { key: string }, input: {} as { key: string } },
    actors: {
      hold: fromPromise(async ({ input }: { input: { key: string } }) => {
        const g = gate();
        gates.set(input.key, g);
        await g.promise;
      }),
    },
  }).createMachine({
    id: 'held',
    initial: 'working',
    context: ({ input }) => ({ key: input.key }),
    states: {
      working: { invoke: { src: 'hold', input: ({ context }) => ({ key: context.key }), onDone: 'done' } },
      done: { type: 'final' },
    },
  }),
);

const delayed = durable(
  setup({
    types: { context: {} as { ms: number }, input: {} as { ms: number } },
    delays: { wait: ({ context }) => context.ms },
  }).createMachine({
    id: 'delayed',
    initial: 'waiting',
    context: ({ input }) => ({ ms: input.ms }),
    states: { waiting: { after: { wait: 'fired' } }, fired: { type: 'final' } },
  }),
);

let attempts = 0;
const flaky = defineJob(
  'flaky',
  async () => {
    attempts += 1;
    if (attempts === 1) throw new Error('first attempt fails');
  },
  { maxAttempts: 3, backoff: '200ms' },
);

const firedAt = async (rt: Runtime, machine: string, id: string) => {
  const entry = (await rt.history(machine, id)).find((h) => h.to === 'fired');
  if (!entry) throw new Error(`${id} never fired`);
  return entry.at.getTime();
};

describe.each(BACKENDS)('engine wake-ups on $name', ({ make }) => {
  let backend: TestBackend;
  let worker: Runtime;
  let client: Runtime;
  beforeAll(async () => {
    backend = await make();
    // Room for one running and two waiting invocations: a fourth must be claimed when room frees.
    worker = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      machines: [held, delayed, flaky],
      pollInterval: HOUR,
      concurrency: 1,
      batchSize: 1,
      node: 'worker',
    });
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [held, delayed, flaky], node: 'client' });
    await worker.start();
  });
  afterAll(async () => {
    await client?.stop();
    await worker?.stop();
    await backend?.close();
  });

  it('an invocation that finishes frees a slot: the one left in the database is claimed at once', async () => {
    gates.clear();
    for (const key of ['a', 'b', 'c', 'd']) await worker.create('held', { id: key, input: { key } });
    // One runs; two wait for a slot on this node; the fourth is left unclaimed (no room).
    await expect.poll(() => gates.size, { timeout: 5000 }).toBe(1);
    const unclaimed = async () =>
      (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${backend.schema}".invocations WHERE locked_by IS NULL`))[0]?.n;
    await expect.poll(unclaimed, { timeout: 5000 }).toBe(1);
    for (let i = 0; i < 4; i++) {
      await expect.poll(() => gates.size, { timeout: 5000 }).toBe(i + 1);
      for (const g of gates.values()) g.open();
    }
    for (const key of ['a', 'b', 'c', 'd']) await worker.waitFor('held', key, { status: 'done' }, { timeoutMs: 5000 });
  });

  it('a timer fires at its wake_at from a local timer, not at the next poll', async () => {
    const before = Date.now();
    await worker.create('delayed', { id: 'local', input: { ms: 300 } });
    await worker.waitFor('delayed', 'local', { status: 'done' }, { timeoutMs: 10_000 });
    const fired = await firedAt(worker, 'delayed', 'local');
    expect(fired).toBeGreaterThanOrEqual(before + 300); // never early
    expect(fired - (before + 300)).toBeLessThan(3000); // the poll is an hour away
  });

  it('a NOTIFY from another runtime carrying an earlier wake_at re-arms the local timer', async () => {
    // The worker already waits for a far timer; the client's record is due much sooner.
    await worker.create('delayed', { id: 'far', input: { ms: 600_000 } });
    const before = Date.now();
    await client.create('delayed', { id: 'near', input: { ms: 300 } });
    await worker.waitFor('delayed', 'near', { status: 'done' }, { timeoutMs: 10_000 });
    const fired = await firedAt(worker, 'delayed', 'near');
    expect(fired).toBeGreaterThanOrEqual(before + 300);
    expect(fired - (before + 300)).toBeLessThan(3000);
    expect((await worker.get('delayed', 'far'))?.status).toBe('active');
  });

  it("a retry's due time wakes the worker: the second attempt runs after the backoff", async () => {
    attempts = 0;
    await worker.create('flaky', { id: 'f1' });
    await worker.waitFor('flaky', 'f1', { status: 'done' }, { timeoutMs: 10_000 });
    expect(attempts).toBe(2);
  });
});

describe.each(BACKENDS)('a runtime that starts after its timers were stored, on $name', ({ make }) => {
  it('arms its local timer from the stored wake_at at start: the timer fires on time, not at the first poll', async () => {
    const backend = await make();
    // Created while no runtime runs (a client that never starts): no NOTIFY reaches a worker.
    const client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [delayed] });
    const before = Date.now();
    await client.create('delayed', { id: 'stored', input: { ms: 1500 } });
    const worker = await createRuntime({ database: backend.database, schema: backend.schema, machines: [delayed], pollInterval: HOUR });
    try {
      await worker.start();
      await worker.waitFor('delayed', 'stored', { status: 'done' }, { timeoutMs: 10_000 });
      const fired = await firedAt(worker, 'delayed', 'stored');
      expect(fired).toBeGreaterThanOrEqual(before + 1500);
      expect(fired - (before + 1500)).toBeLessThan(3000);
    } finally {
      await worker.stop();
      await client.stop();
      await backend.close();
    }
  });
});

describe('engine wake-ups on a test clock', () => {
  it('a timer fires when the clock reaches its wake_at, and not a millisecond before', async () => {
    const clock = new TestClock(Date.UTC(2026, 5, 1));
    const rt = await createRuntime({ machines: [delayed], clock, pollInterval: HOUR });
    try {
      await rt.start();
      const created = await rt.create('delayed', { id: 'd', input: { ms: 5000 } });
      expect(created.wakeAt?.getTime()).toBe(clock.now() + 5000);
      clock.advance(4999);
      // Nothing can have run: no timer is due and the poll is an hour of test-clock time away.
      await new Promise((resolve) => setTimeout(resolve, 200)); // real time for a step that must not happen
      expect((await rt.get('delayed', 'd'))?.state).toBe('waiting');
      clock.advance(1);
      const done = await rt.waitFor('delayed', 'd', { status: 'done' }, { timeoutMs: 10_000 });
      expect(done.state).toBe('fired');
      expect(await firedAt(rt, 'delayed', 'd')).toBe(created.enteredAt.getTime() + 5000);
    } finally {
      await rt.stop();
    }
  }, 30_000);
});
