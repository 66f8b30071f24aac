import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type HistoryEntry, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { drained, row, sleep, tNested, tParallel, tRaise, tRestart, tSimple } from './machines.js';

// Upper bounds only catch a timer that never fires or fires far too late; a slow 2-core
// machine gets seconds of slack. Lower bounds are exact: a timer never fires early.
const SLACK_MS = 3000;

type StoredTimer = { id: string; at: number; event: { type: string } };

const at = (h: HistoryEntry[], to: string) => {
  const entry = h.find((e) => e.to === to);
  if (!entry) throw new Error(`no history entry to "${to}" in ${JSON.stringify(h.map((e) => e.to))}`);
  return entry.at.getTime();
};

describe.each(BACKENDS)('durable timers on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const timers = async (machine: string, id: string) => ((await row(backend, machine, id))?.timers ?? []) as StoredTimer[];

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      machines: [tSimple, tNested, tParallel, tRaise],
      pollInterval: 50,
    });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('after on a simple state fires at its due time, not before', async () => {
    const created = await rt.create('t_simple', { id: 's-1' });
    expect(created.wakeAt).not.toBeNull();
    expect(created.wakeAt!.getTime() - created.enteredAt.getTime()).toBe(500);
    const done = await rt.waitFor('t_simple', 's-1', { status: 'done' }, { timeoutMs: 10_000 });
    expect(done.state).toBe('expired');
    expect(done.wakeAt).toBeNull();
    const h = await rt.history('t_simple', 's-1');
    expect(h.map((e) => [e.from, e.to, e.event.type])).toEqual([
      [null, 'waiting', 'xstate.init'],
      ['waiting', 'expired', 'xstate.after.500.t_simple.waiting'],
    ]);
    const elapsed = at(h, 'expired') - at(h, 'waiting');
    expect(elapsed).toBeGreaterThanOrEqual(500);
    expect(elapsed).toBeLessThan(500 + SLACK_MS);
  });

  it('leaving the state cancels its after timer; coming back starts a new one', async () => {
    await rt.create('t_simple', { id: 's-2' });
    await rt.send('t_simple', 's-2', { type: 'go' });
    await rt.waitFor('t_simple', 's-2', { state: 'away' }, { timeoutMs: 10_000 });
    await drained(backend, 't_simple', 's-2');
    expect(await timers('t_simple', 's-2')).toEqual([]);
    expect((await rt.get('t_simple', 's-2'))?.wakeAt).toBeNull();
    await sleep(800); // past the cancelled timer's due time
    expect((await rt.get('t_simple', 's-2'))?.state).toBe('away');
    await rt.send('t_simple', 's-2', { type: 'back' });
    await rt.waitFor('t_simple', 's-2', { status: 'done' }, { timeoutMs: 10_000 });
    const h = await rt.history('t_simple', 's-2');
    expect(h.map((e) => e.to)).toEqual(['waiting', 'away', 'waiting', 'expired']);
    const backAt = h[2]!.at.getTime();
    expect(h[3]!.at.getTime() - backAt).toBeGreaterThanOrEqual(500);
  });

  it('after on nested states: child timers chain, the parent timer keeps its original due time', async () => {
    await rt.create('t_nested', { id: 'n-1' });
    const parentTimer = (list: StoredTimer[]) => list.find((t) => t.event.type === 'xstate.after.900.t_nested.outer');
    const initial = await timers('t_nested', 'n-1');
    expect(initial.map((t) => t.event.type).sort()).toEqual(['xstate.after.200.t_nested.outer.a', 'xstate.after.900.t_nested.outer']);
    await rt.waitFor('t_nested', 'n-1', { state: 'outer.c' }, { timeoutMs: 10_000 });
    // Child transitions do not exit the parent: its timer is not restarted.
    expect(parentTimer(await timers('t_nested', 'n-1'))?.at).toBe(parentTimer(initial)?.at);
    await rt.waitFor('t_nested', 'n-1', { status: 'done' }, { timeoutMs: 10_000 });
    const h = await rt.history('t_nested', 'n-1');
    expect(h.map((e) => e.to)).toEqual(['outer.a', 'outer.b', 'outer.c', 'late']);
    const t0 = at(h, 'outer.a');
    expect(at(h, 'outer.b') - t0).toBeGreaterThanOrEqual(200);
    expect(at(h, 'outer.c') - at(h, 'outer.b')).toBeGreaterThanOrEqual(200);
    expect(at(h, 'late') - t0).toBeGreaterThanOrEqual(900);
    expect(at(h, 'late') - t0).toBeLessThan(900 + SLACK_MS);
  });

  it('after on parallel regions: each region keeps its own timer', async () => {
    await rt.create('t_parallel', { id: 'p-1' });
    const right = (list: StoredTimer[]) => list.find((t) => t.event.type === 'xstate.after.600.t_parallel.p.r.r1');
    const initial = await timers('t_parallel', 'p-1');
    expect(initial).toHaveLength(2);
    await rt.waitFor('t_parallel', 'p-1', { state: 'p.l.l2' }, { timeoutMs: 10_000 });
    expect(right(await timers('t_parallel', 'p-1'))?.at).toBe(right(initial)?.at);
    await rt.waitFor('t_parallel', 'p-1', { state: { p: { l: 'l2', r: 'r2' } } }, { timeoutMs: 10_000 });
    const h = await rt.history('t_parallel', 'p-1');
    expect(h.map((e) => e.to)).toEqual(['p.l.l1,p.r.r1', 'p.l.l2,p.r.r1', 'p.l.l2,p.r.r2']);
    const t0 = h[0]!.at.getTime();
    expect(h[1]!.at.getTime() - t0).toBeGreaterThanOrEqual(200);
    expect(h[2]!.at.getTime() - t0).toBeGreaterThanOrEqual(600);
    expect(h[2]!.at.getTime() - t0).toBeLessThan(600 + SLACK_MS);
    const got = await rt.get('t_parallel', 'p-1');
    expect(got?.wakeAt).toBeNull();
    expect(await timers('t_parallel', 'p-1')).toEqual([]);
  });

  it('a delayed raise with an id (named delay) is a stored timer that fires on time', async () => {
    await rt.create('t_raise', { id: 'r-1' });
    const stored = await timers('t_raise', 'r-1');
    expect(stored.map((t) => [t.id, t.event.type])).toEqual([['ping-timer', 'ping']]);
    await rt.waitFor('t_raise', 'r-1', { status: 'done' }, { timeoutMs: 10_000 });
    const h = await rt.history('t_raise', 'r-1');
    expect(h.map((e) => [e.to, e.event.type])).toEqual([
      ['idle', 'xstate.init'],
      ['pinged', 'ping'],
    ]);
    expect(at(h, 'pinged') - at(h, 'idle')).toBeGreaterThanOrEqual(500);
  });

  it('cancel(id) removes the delayed raise: it never fires', async () => {
    await rt.create('t_raise', { id: 'r-2' });
    await rt.send('t_raise', 'r-2', { type: 'hush' });
    await drained(backend, 't_raise', 'r-2');
    expect(await timers('t_raise', 'r-2')).toEqual([]);
    await sleep(900); // past the cancelled timer's due time
    const got = await rt.get('t_raise', 'r-2');
    expect(got?.state).toBe('idle');
    expect(got?.status).toBe('active');
    expect((await rt.history('t_raise', 'r-2')).map((e) => e.to)).toEqual(['idle']);
  });

  describe('across a restart', () => {
    const open = () => createRuntime({ database: backend.database, schema: backend.schema, machines: [tRestart], pollInterval: 50 });
    const storedState = async (id: string) => (await row(backend, 't_restart', id)) as { state: string; status: string };

    it('a timer pending when the runtime stopped fires at its original due time on the next runtime', async () => {
      const first = await open();
      await first.start();
      await first.create('t_restart', { id: 'restart-1' });
      await first.stop();
      await sleep(1000); // nothing runs this record now
      expect(await storedState('restart-1')).toMatchObject({ state: 'waiting', status: 'active' });
      const restartAt = Date.now();
      const second = await open();
      try {
        await second.start();
        await second.waitFor('t_restart', 'restart-1', { status: 'done' }, { timeoutMs: 10_000 });
        const h = await second.history('t_restart', 'restart-1');
        const created = at(h, 'waiting');
        const expired = at(h, 'expired');
        expect(restartAt - created).toBeGreaterThanOrEqual(900); // the test's premise
        expect(expired - created).toBeGreaterThanOrEqual(1500); // never early
        expect(expired).toBeLessThan(restartAt + 1500); // not restarted from zero
      } finally {
        await second.stop();
      }
    });

    it('a timer that fell due while no runtime ran fires at once on the next one', async () => {
      const first = await open();
      await first.start();
      await first.create('t_restart', { id: 'restart-2' });
      await first.stop();
      await sleep(1800); // past the due time
      expect(await storedState('restart-2')).toMatchObject({ state: 'waiting', status: 'active' });
      const second = await open();
      // Measured once the schema is open: migrations on a loaded machine are not the timer's delay.
      const restartAt = Date.now();
      try {
        await second.start();
        await second.waitFor('t_restart', 'restart-2', { status: 'done' }, { timeoutMs: 10_000 });
        const h = await second.history('t_restart', 'restart-2');
        expect(at(h, 'expired') - at(h, 'waiting')).toBeGreaterThanOrEqual(1500);
        expect(at(h, 'expired')).toBeLessThan(restartAt + 1500);
      } finally {
        await second.stop();
      }
    });
  });
});
