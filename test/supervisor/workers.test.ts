import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import {
  createRuntime,
  DuplicateWorkerError,
  done,
  durable,
  fail,
  InvalidArgumentError,
  type MetricEvent,
  none,
  type Runtime,
  WorkerNotFoundError,
} from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { gate, until } from '../helpers/until.js';

// The operator API of the supervisor on real PostgreSQL: one runtime, user workers.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schema = uniqueSchema('sup');
let rt: Runtime;

const lamp = durable(setup({}).createMachine({ id: 'lamp', initial: 'off', states: { off: { on: { toggle: 'on' } }, on: {} } }));

beforeAll(async () => {
  rt = await createRuntime({ database: DATABASE_URL, schema, machines: [lamp], controlInterval: 50, pollInterval: 50 });
  await rt.start();
});
afterAll(async () => {
  await rt?.stop();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

describe('operator API', () => {
  it('add() of a taken name fails with "worker NAME already exists"; unknown names with "worker NAME not found"', async () => {
    rt.supervisor.add('dup', () => none('1h'));
    expect(() => rt.supervisor.add('dup', () => none('1h'))).toThrow(DuplicateWorkerError);
    expect(() => rt.supervisor.add('dup', () => none('1h'))).toThrow('worker dup already exists');
    for (const call of [
      () => rt.supervisor.start('ghost'),
      () => rt.supervisor.status('ghost'),
      () => rt.supervisor.worker('ghost'),
    ]) {
      expect(call).toThrow(WorkerNotFoundError);
      expect(call).toThrow('worker ghost not found');
    }
    await expect(rt.supervisor.stop('ghost')).rejects.toThrow('worker ghost not found');
    // Internal actors are not workers an operator can reach.
    expect(() => rt.supervisor.status('drover.heartbeat')).toThrow(WorkerNotFoundError);
    expect(() => rt.supervisor.add('drover.mine', () => none())).toThrow(InvalidArgumentError);
    expect(() => rt.supervisor.add('bad name', () => none())).toThrow(InvalidArgumentError);
    expect(() => rt.supervisor.add('neg', () => none(), { maxPanicAttempts: -1 })).toThrow(InvalidArgumentError);
    expect(rt.supervisor.status('dup')).toBe('stopped');
  });

  it('start() runs the handler; start() again is a no-op; stop() resolves only after the handler returned', async () => {
    let calls = 0;
    let returned = false;
    const entered = gate();
    rt.supervisor.add('slow', async ({ signal }) => {
      calls += 1;
      entered.open();
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      await new Promise((resolve) => setTimeout(resolve, 200)); // finishing up after the abort
      returned = true;
      return none('1h');
    });
    rt.supervisor.start('slow');
    await entered.promise;
    rt.supervisor.start('slow');
    expect(rt.supervisor.status('slow')).toBe('running');
    await rt.supervisor.stop('slow');
    expect(returned).toBe(true);
    expect(calls).toBe(1);
    expect(rt.supervisor.status('slow')).toBe('stopped');
  });

  it('done() calls again at once, none(idle) sleeps, fail(err, idle) is logged as a failed handle', async () => {
    const results = [done(), done(), fail(new Error('smtp down'), 30), none('1h')];
    let calls = 0;
    const handle = rt.supervisor.add('seq', () => results[calls++] ?? none('1h'));
    const events: MetricEvent[] = [];
    const reading = (async () => {
      for await (const e of handle.metrics()) events.push(e);
    })();
    rt.supervisor.start('seq');
    await until(() => calls === 4, 'four calls');
    expect(handle.lastMetric()).toMatchObject({ kind: 'handle', status: 'none' });
    await rt.supervisor.stop('seq');
    await reading; // the stream ends when the worker stops
    expect(calls).toBe(4); // none('1h') keeps it asleep until stopped
    expect(events.map((e) => (e.kind === 'handle' ? e.status : e.kind === 'lifecycle' ? e.event : 'panic'))).toEqual([
      'started',
      'done',
      'done',
      'fail',
      'none',
      'stopped',
    ]);
    expect(events[3]).toMatchObject({ kind: 'handle', status: 'fail', error: 'smtp down' });
  });

  it('a throw is a recovered panic; at maxPanicAttempts in a row the worker is crashed; start() revives it', async () => {
    let calls = 0;
    const handle = rt.supervisor.add(
      'panicky',
      async ({ attempt }) => {
        calls += 1;
        if (calls === 2) return done(); // a call that returns resets the count
        throw new Error(`boom ${attempt}`);
      },
      { maxPanicAttempts: 3, panicBackoff: 5 },
    );
    const events: MetricEvent[] = [];
    const reading = (async () => {
      for await (const e of handle.metrics()) events.push(e);
    })();
    rt.supervisor.start('panicky');
    await until(() => rt.supervisor.status('panicky') === 'crashed', 'crashed');
    await reading;
    expect(calls).toBe(5); // panic, done, then three panics in a row
    const panics = events.filter((e) => e.kind === 'panic');
    expect(panics.map((e) => (e as { attempt: number }).attempt)).toEqual([1, 1, 2, 3]);
    expect(panics[3]).toMatchObject({ error: 'boom 3' });
    expect(events.at(-1)).toMatchObject({ kind: 'lifecycle', event: 'crashed' });
    expect(rt.supervisor.workers().find((w) => w.name === 'panicky')).toMatchObject({ status: 'crashed', panics: 3 });
    rt.supervisor.start('panicky');
    await until(() => calls > 5, 'a call after the restart');
    await rt.supervisor.stop('panicky');
  });

  it('a rejected promise is a panic too; the panic backoff is cut short by stop()', async () => {
    let calls = 0;
    rt.supervisor.add('rejecting', () => {
      calls += 1;
      return Promise.reject(new Error('nope'));
    }, { panicBackoff: '1h' });
    rt.supervisor.start('rejecting');
    await until(() => rt.supervisor.worker('rejecting').lastMetric()?.kind === 'panic', 'a panic');
    const t0 = Date.now();
    await rt.supervisor.stop('rejecting');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(calls).toBe(1);
    expect(rt.supervisor.status('rejecting')).toBe('stopped');
  });

  it('a handler that returns something else panics with a clear message', async () => {
    rt.supervisor.add('confused', () => 42 as never, { maxPanicAttempts: 1 });
    rt.supervisor.start('confused');
    await until(() => rt.supervisor.status('confused') === 'crashed', 'crashed');
    expect(rt.supervisor.worker('confused').lastMetric()).toMatchObject({ kind: 'lifecycle', event: 'crashed' });
    const runs = rt.supervisor.store.getSnapshot().context.workers.confused;
    expect(runs?.status).toBe('crashed');
  });

  it('startAll() and stopAll() cover every worker; workers() lists them with status and last metric', async () => {
    rt.supervisor.add('all-a', () => none('1h'));
    rt.supervisor.add('all-b', () => none('1h'));
    rt.supervisor.startAll();
    await until(() => rt.supervisor.worker('all-b').lastMetric()?.kind === 'handle', 'all-b called');
    const listed = rt.supervisor.workers();
    expect(listed.map((w) => w.name)).toEqual(expect.arrayContaining(['dup', 'all-a', 'all-b', 'panicky']));
    for (const name of ['dup', 'all-a', 'all-b']) expect(listed.find((w) => w.name === name)?.status).toBe('running');
    expect(listed.find((w) => w.name === 'all-a')?.lastMetric).toMatchObject({ kind: 'handle', status: 'none' });
    await rt.supervisor.stopAll();
    // Crashed workers that crash again stay crashed; the rest are stopped.
    expect(rt.supervisor.workers().every((w) => w.status === 'stopped' || w.status === 'crashed')).toBe(true);
    for (const name of ['dup', 'all-a', 'all-b']) expect(rt.supervisor.status(name)).toBe('stopped');
  });

  it('metrics never block the worker: a reader that does not read loses the oldest events, bounded', async () => {
    let calls = 0;
    const handle = rt.supervisor.add('chatty', () => {
      calls += 1;
      return calls < 400 ? done() : none('1h');
    });
    const reader = handle.metrics();
    rt.supervisor.start('chatty');
    await until(() => calls === 400, '400 calls');
    expect(reader.dropped).toBeGreaterThan(0);
    let buffered = 0;
    await rt.supervisor.stop('chatty');
    for await (const _ of reader) buffered += 1;
    expect(buffered).toBeLessThanOrEqual(256);
    expect(buffered + reader.dropped).toBe(402); // started + 400 handles + stopped
  });

  it('disable() is stored and honoured at once here: the handler stops being called; enable() resumes', async () => {
    let calls = 0;
    rt.supervisor.add('toggled', () => {
      calls += 1;
      return none(20);
    });
    rt.supervisor.start('toggled');
    await until(() => calls >= 2, 'running');
    await rt.supervisor.disable('toggled');
    await until(() => rt.supervisor.status('toggled') === 'disabled', 'disabled');
    const frozen = calls;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).toBe(frozen);
    const stored = await admin.query(`SELECT enabled FROM "${schema}".workers WHERE name = 'toggled'`);
    expect(stored.rows).toEqual([{ enabled: false }]);
    await rt.supervisor.enable('toggled');
    await until(() => calls > frozen, 'running again');
    expect(rt.supervisor.status('toggled')).toBe('running');
    await rt.supervisor.stop('toggled');
  });

  it('record: true keeps a run record of each call that worked; runs() pages newest first; lastRun()', async () => {
    let calls = 0;
    rt.supervisor.add(
      'recorded',
      () => {
        calls += 1;
        if (calls <= 11) return done();
        if (calls === 12) return fail(new Error('bad row'), 10);
        return none('1h');
      },
      { record: true },
    );
    rt.supervisor.start('recorded');
    await until(() => calls === 13, '13 calls');
    await rt.supervisor.stop('recorded');
    // Pages of 5 over 12 records: ids cross a digit boundary, so a text sort would show.
    const pages = [];
    let before: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof rt.supervisor.runs>> = await rt.supervisor.runs('recorded', { limit: 5, before });
      pages.push(page.items);
      before = page.next;
    } while (before !== null);
    expect(pages.map((p) => p.length)).toEqual([5, 5, 2]);
    const all = pages.flat();
    expect(all).toHaveLength(12); // the none() call left no record
    expect(all[0]).toMatchObject({ status: 'failed', kind: 'call', error: { message: 'bad row' }, node: rt.node });
    expect(all.slice(1).every((r) => r.status === 'succeeded' && r.finishedAt !== null)).toBe(true);
    const ids = all.map((r) => Number(r.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect((await rt.supervisor.lastRun('recorded'))?.id).toBe(all[0]?.id);
    expect(await rt.supervisor.lastRun('never-ran')).toBeNull();
    await expect(rt.supervisor.runs('recorded', { before: 'x' })).rejects.toThrow(InvalidArgumentError);
    await expect(rt.supervisor.runs('recorded', { limit: 0 })).rejects.toThrow(InvalidArgumentError);
  });

  it('the supervisor is an XState actor whose children are the pollers and workers', () => {
    const snapshot = rt.supervisor.actor.getSnapshot();
    expect(rt.supervisor.state).toBe('running');
    expect(Object.keys(snapshot.children)).toEqual(
      expect.arrayContaining(['drover.poller.lamp', 'drover.control', 'drover.heartbeat', 'drover.reaper', 'dup', 'panicky']),
    );
  });

  it('nodes() lists this node through its heartbeat', async () => {
    const nodes = await rt.nodes();
    expect(nodes.map((n) => n.id)).toContain(rt.node);
    expect(nodes.find((n) => n.id === rt.node)).toMatchObject({ pid: process.pid });
  });
});
