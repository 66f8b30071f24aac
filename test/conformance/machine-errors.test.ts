import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { cancelJob, createRuntime, defineJob, durable, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { probe } from './machines.js';

// Machine errors fail the record (status `failed`, error stored, a failed history entry);
// invoke errors with onError go where the machine says; retries follow maxAttempts.

class Flaky extends Error {}

const faulty = durable(
  setup({
    types: { context: {} as { key: string; failures: number; caught: string | null }, input: {} as { key: string; failures?: number } },
    actors: {
      reject: fromPromise<string, { key: string }>(async ({ input }) => {
        probe(input.key).runs += 1;
        throw new Flaky(`promise failed for ${input.key}`);
      }),
      flaky: fromPromise<string, { key: string; failures: number }>(async ({ input }) => {
        const p = probe(input.key);
        p.runs += 1;
        if (p.runs <= input.failures) throw new Flaky(`attempt ${p.runs} failed`);
        return `ok after ${p.runs}`;
      }),
    },
    actions: {
      explode: () => {
        throw new Error('kaboom from a custom action');
      },
    },
    guards: {
      brokenGuard: () => {
        throw new Error('the guard threw');
      },
    },
  }).createMachine({
    id: 'faulty',
    initial: 'idle',
    context: ({ input }) => ({ key: input.key, failures: input.failures ?? 0, caught: null }),
    states: {
      idle: {
        on: {
          explode: { target: 'exploded', actions: 'explode' },
          guarded: { target: 'exploded', guard: 'brokenGuard' },
          unhandled: 'unhandled',
          handled: 'handled',
          retry: 'retrying',
        },
      },
      exploded: {},
      unhandled: { invoke: { src: 'reject', input: ({ context }) => ({ key: context.key }), onDone: 'finished' } },
      handled: {
        invoke: {
          src: 'reject',
          input: ({ context }) => ({ key: context.key }),
          onDone: 'finished',
          onError: { target: 'recovered', actions: assign({ caught: ({ event }) => (event.error as Error).message }) },
        },
      },
      retrying: {
        invoke: {
          src: 'flaky',
          input: ({ context }) => ({ key: context.key, failures: context.failures }),
          onDone: 'finished',
          onError: 'gaveUp',
        },
      },
      recovered: { type: 'final' },
      gaveUp: { type: 'final' },
      finished: { type: 'final' },
    },
  }),
  { maxAttempts: 1 },
);

const retried = durable(
  setup({
    types: { context: {} as { key: string; out: string | null }, input: {} as { key: string } },
    actors: {
      flaky: fromPromise<string, { key: string }>(async ({ input }) => {
        const p = probe(input.key);
        p.runs += 1;
        if (p.runs <= 2) throw new Flaky(`attempt ${p.runs} failed`);
        return `ok after ${p.runs}`;
      }),
    },
  }).createMachine({
    id: 'retried',
    initial: 'working',
    context: ({ input }) => ({ key: input.key, out: null }),
    states: {
      working: {
        invoke: {
          src: 'flaky',
          input: ({ context }) => ({ key: context.key }),
          onDone: { target: 'done', actions: assign({ out: ({ event }) => event.output }) },
        },
      },
      done: { type: 'final' },
    },
  }),
  { maxAttempts: 3, backoff: 10 },
);

const jobOk = defineJob('job_ok', async (args: { key: string }) => {
  probe(args.key).runs += 1;
  return 'fine';
});
const jobCancel = defineJob('job_cancel', async (args: { key: string }) => {
  probe(args.key).runs += 1;
  throw cancelJob(`gone: ${args.key}`);
});
const jobFail = defineJob(
  'job_fail',
  async (args: { key: string }) => {
    probe(args.key).runs += 1;
    throw new Flaky(`always fails (${args.key})`);
  },
  { maxAttempts: 2, backoff: 10 },
);

describe.each(BACKENDS)('machine errors on $name', ({ name, make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const key = (label: string) => `${name}/${label}`;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      machines: [faulty, retried, jobOk, jobCancel, jobFail],
      pollInterval: 50,
    });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('a custom action that throws fails the record: status failed, error stored, failed history entry', async () => {
    await rt.create('faulty', { id: 'e-1', input: { key: key('e-1') } });
    await rt.send('faulty', 'e-1', { type: 'explode' });
    const got = await rt.waitFor('faulty', 'e-1', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(got.error?.message).toBe('kaboom from a custom action');
    expect(got.wakeAt).toBeNull();
    const h = await rt.history('faulty', 'e-1');
    const failed = h.filter((e) => e.status === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ from: 'idle', error: { message: 'kaboom from a custom action' } });
    expect(failed[0]?.event.type).toBe('explode');
  });

  it('a guard that throws fails the record', async () => {
    await rt.create('faulty', { id: 'e-2', input: { key: key('e-2') } });
    await rt.send('faulty', 'e-2', { type: 'guarded' });
    const got = await rt.waitFor('faulty', 'e-2', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(got.error?.message).toContain('the guard threw');
    expect((await rt.history('faulty', 'e-2')).at(-1)?.status).toBe('failed');
  });

  it('an invoke that rejects with no onError (maxAttempts 1) fails the record', async () => {
    await rt.create('faulty', { id: 'e-3', input: { key: key('e-3') } });
    await rt.send('faulty', 'e-3', { type: 'unhandled' });
    const got = await rt.waitFor('faulty', 'e-3', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(got.error?.message).toBe(`promise failed for ${key('e-3')}`);
    expect(probe(key('e-3')).runs).toBe(1);
    const h = await rt.history('faulty', 'e-3');
    expect(h.at(-1)).toMatchObject({ status: 'failed', error: { message: `promise failed for ${key('e-3')}` } });
    expect(await backend.query(`SELECT * FROM "${backend.schema}".invocations WHERE instance_id = 'e-3'`)).toEqual([]);
  });

  it('an invoke that rejects with onError goes to the error target with the error in the event', async () => {
    await rt.create('faulty', { id: 'e-4', input: { key: key('e-4') } });
    await rt.send('faulty', 'e-4', { type: 'handled' });
    const got = await rt.waitFor('faulty', 'e-4', { status: 'done' }, { timeoutMs: 10_000 });
    expect(got.state).toBe('recovered');
    expect(got.context.caught).toBe(`promise failed for ${key('e-4')}`);
    expect(got.error).toBeNull();
    const last = (await rt.history('faulty', 'e-4')).at(-1);
    expect(last).toMatchObject({ from: 'handled', to: 'recovered', status: 'done' });
    expect(last?.event.type).toMatch(/^xstate\.error\.actor\./);
  });

  it('maxAttempts 3 with backoff: a promise failing twice then succeeding ends done after 3 runs', async () => {
    await rt.create('retried', { id: 'rt-1', input: { key: key('rt-1') } });
    const got = await rt.waitFor('retried', 'rt-1', { status: 'done' }, { timeoutMs: 15_000 });
    expect(got.context.out).toBe('ok after 3');
    expect(probe(key('rt-1')).runs).toBe(3);
    // Failed attempts did not reach the machine.
    expect((await rt.history('retried', 'rt-1')).map((e) => e.to)).toEqual(['working', 'done']);
  });

  it('maxAttempts 1: a failing invoke with onError is not retried', async () => {
    await rt.create('faulty', { id: 'e-5', input: { key: key('e-5'), failures: 1 } });
    await rt.send('faulty', 'e-5', { type: 'retry' });
    const got = await rt.waitFor('faulty', 'e-5', { status: 'done' }, { timeoutMs: 10_000 });
    expect(got.state).toBe('gaveUp');
    expect(probe(key('e-5')).runs).toBe(1);
  });

  it('defineJob: a job that returns ends done', async () => {
    await rt.create('job_ok', { id: 'j-1', input: { key: key('j-1') } });
    const got = await rt.waitFor('job_ok', 'j-1', { status: 'done' }, { timeoutMs: 10_000 });
    expect(got.state).toBe('done');
    expect(probe(key('j-1')).runs).toBe(1);
  });

  it('defineJob + cancelJob: failed at once, no retries despite maxAttempts 20', async () => {
    await rt.create('job_cancel', { id: 'j-2', input: { key: key('j-2') } });
    const got = await rt.waitFor('job_cancel', 'j-2', { status: 'failed' }, { timeoutMs: 10_000 });
    expect(got.error?.message).toBe(`gone: ${key('j-2')}`);
    expect(probe(key('j-2')).runs).toBe(1);
    expect((await rt.history('job_cancel', 'j-2')).at(-1)).toMatchObject({ status: 'failed', from: 'running' });
  });

  it('defineJob: a job that always throws is retried up to maxAttempts, then failed', async () => {
    await rt.create('job_fail', { id: 'j-3', input: { key: key('j-3') } });
    const got = await rt.waitFor('job_fail', 'j-3', { status: 'failed' }, { timeoutMs: 15_000 });
    expect(got.error?.message).toBe(`always fails (${key('j-3')})`);
    expect(probe(key('j-3')).runs).toBe(2);
  });
});
