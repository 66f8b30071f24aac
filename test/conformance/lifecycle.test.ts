import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Page, type RecordView, type Runtime, RecordNotFoundError, WaitTimeoutError, WaitUnreachableError } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { add, CHAIN_LENGTH, chain, drained, lifecycle, pager, probe, rejection, row, within } from './machines.js';

describe.each(BACKENDS)('lifecycle on $name', ({ name, make }) => {
  // Probes live in this process: key them by backend so the two runs do not share one.
  const key = (label: string) => `${name}/${label}`;
  let backend: TestBackend;
  let rt: Runtime;
  const s = () => `"${backend.schema}"`;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [lifecycle, pager, chain], pollInterval: 50 });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('create returns the record at its initial state and stores it', async () => {
    const before = Date.now();
    const created = await rt.create('lc', { id: 'c-1', input: { label: 'c-1' } });
    expect(created).toMatchObject({
      id: 'c-1',
      machine: 'lc',
      version: 1,
      state: 'idle',
      value: 'idle',
      status: 'active',
      context: { label: 'c-1', items: [], result: null },
      wakeAt: null,
      error: null,
    });
    expect(created.enteredAt.getTime()).toBeGreaterThanOrEqual(before - 5);
    const got = await rt.get('lc', 'c-1');
    expect(got).toMatchObject({ id: 'c-1', state: 'idle', status: 'active', context: { label: 'c-1', items: [], result: null } });
    expect(got?.enteredAt.getTime()).toBe(created.enteredAt.getTime());
  });

  it('create without an id makes a fresh one; get of a missing id is null', async () => {
    const a = await rt.create('lc');
    const b = await rt.create('lc');
    expect(a.id).toMatch(/\S/);
    expect(a.id).not.toBe(b.id);
    expect(await rt.get('lc', a.id)).not.toBeNull();
    expect(await rt.get('lc', 'never-created')).toBeNull();
  });

  it('send moves the record; nested states read as dotted paths', async () => {
    await rt.create('lc', { id: 's-1' });
    await rt.send('lc', 's-1', { type: 'go' });
    const atX = await rt.waitFor('lc', 's-1', { state: 'b.x' }, { timeoutMs: 10_000 });
    expect(atX.state).toBe('b.x');
    expect(atX.value).toEqual({ b: 'x' });
    await rt.send('lc', 's-1', { type: 'next' });
    const atY = await rt.waitFor('lc', 's-1', { state: { b: 'y' } }, { timeoutMs: 10_000 });
    expect(atY.state).toBe('b.y');
    expect(atY.enteredAt.getTime()).toBeGreaterThanOrEqual(atX.enteredAt.getTime());
  });

  it('history lists every transition: creation from null, then from/to/event/at in order', async () => {
    await rt.create('lc', { id: 'h-1' });
    await rt.send('lc', 'h-1', { type: 'go' });
    await rt.waitFor('lc', 'h-1', { state: 'b.x' }, { timeoutMs: 10_000 });
    await rt.send('lc', 'h-1', { type: 'next' });
    await rt.waitFor('lc', 'h-1', { state: 'b.y' }, { timeoutMs: 10_000 });
    await rt.send('lc', 'h-1', { type: 'finish' });
    await rt.waitFor('lc', 'h-1', { status: 'done' }, { timeoutMs: 10_000 });
    const h = await rt.history('lc', 'h-1');
    expect(h.map(({ from, to, event }) => ({ from, to, event: event.type }))).toEqual([
      { from: null, to: 'idle', event: 'xstate.init' },
      { from: 'idle', to: 'b.x', event: 'go' },
      { from: 'b.x', to: 'b.y', event: 'next' },
      { from: 'b.y', to: 'finished', event: 'finish' },
    ]);
    for (const entry of h) expect(entry.at).toBeInstanceOf(Date);
    for (let i = 1; i < h.length; i++) expect(h[i]!.at.getTime()).toBeGreaterThanOrEqual(h[i - 1]!.at.getTime());
    expect(h.at(-1)?.status).toBe('done');
    await expect(rt.history('lc', 'no-such-record')).rejects.toBeInstanceOf(RecordNotFoundError);
  });

  it('list pages by id with next/after', async () => {
    const ids = ['pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5'];
    for (const id of [...ids].reverse()) await rt.create('pager', { id });
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      // Annotated: `after` comes from the previous page, so TypeScript cannot infer this call's type on its own.
      const page: Page<RecordView> = await rt.list('pager', { limit: 2, after });
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((r) => r.id));
      after = page.next;
      pages += 1;
      expect(pages).toBeLessThan(10);
    } while (after !== null);
    expect(seen.filter((id) => id.startsWith('pg-'))).toEqual(ids);
    const first = await rt.list('pager', { limit: 2 });
    expect(first.items.map((r) => r.id)).toEqual(['pg-1', 'pg-2']);
    expect(first.next).not.toBeNull();
    const second = await rt.list('pager', { limit: 2, after: first.next });
    expect(second.items.map((r) => r.id)).toEqual(['pg-3', 'pg-4']);
    const all = await rt.list('pager', { limit: 1000 });
    expect(all.next).toBeNull();
  });

  it('list filters by state (exact, nested prefix, parallel region) and by status', async () => {
    const plan: Array<[string, Array<{ type: string }>, string]> = [
      ['f-bx', [{ type: 'go' }], 'b.x'],
      ['f-by', [{ type: 'go' }, { type: 'next' }], 'b.y'],
      ['f-bb', [{ type: 'bb' }], 'bb'],
      ['f-p1', [{ type: 'par' }], 'p.l.l1,p.r.r1'],
      ['f-p2', [{ type: 'par' }, { type: 'right' }], 'p.l.l1,p.r.r2'],
      ['f-done', [{ type: 'finish' }], 'finished'],
      ['f-idle', [], 'idle'],
    ];
    for (const [id, events, state] of plan) {
      await rt.create('pager', { id });
      for (const e of events) {
        await rt.send('pager', id, e);
        await drained(backend, 'pager', id);
      }
      expect((await rt.get('pager', id))?.state).toBe(state);
    }
    const ids = async (options: Parameters<Runtime['list']>[1]) =>
      (await rt.list('pager', { limit: 1000, ...options })).items.map((r) => r.id).filter((id) => id.startsWith('f-'));
    expect(await ids({ state: 'b' })).toEqual(['f-bx', 'f-by']);
    expect(await ids({ state: 'b.x' })).toEqual(['f-bx']);
    expect(await ids({ state: 'bb' })).toEqual(['f-bb']);
    expect(await ids({ state: 'p' })).toEqual(['f-p1', 'f-p2']);
    expect(await ids({ state: 'p.r' })).toEqual(['f-p1', 'f-p2']);
    expect(await ids({ state: 'p.r.r2' })).toEqual(['f-p2']);
    expect(await ids({ state: 'p.l.l1' })).toEqual(['f-p1', 'f-p2']);
    expect(await ids({ state: 'finished' })).toEqual(['f-done']);
    expect(await ids({ status: 'done' })).toEqual(['f-done']);
    expect(await ids({ status: 'active', state: 'b' })).toEqual(['f-bx', 'f-by']);
    expect(await ids({ status: 'cancelled' })).toEqual([]);
    // Filtered pages still page.
    const page = await rt.list('pager', { state: 'p', limit: 1 });
    expect(page.items.map((r) => r.id)).toEqual(['f-p1']);
    const rest = await rt.list('pager', { state: 'p', limit: 1, after: page.next });
    expect(rest.items.map((r) => r.id)).toEqual(['f-p2']);
  });

  it('cancel: status cancelled, running invocation aborted through its AbortSignal, history entry', async () => {
    const p = probe(key('cancel-1'));
    await rt.create('lc', { id: 'cancel-1', input: { label: key('cancel-1') } });
    await rt.send('lc', 'cancel-1', { type: 'work' });
    await within(p.started.promise, 10_000, 'the invoked promise to start');
    expect(p.aborted.settled).toBe(false);
    expect(await rt.cancel('lc', 'cancel-1', 'no longer needed')).toBe(true);
    await within(p.aborted.promise, 5000, "the invoked promise's AbortSignal to fire");
    const got = await rt.get('lc', 'cancel-1');
    expect(got?.status).toBe('cancelled');
    expect(got?.wakeAt).toBeNull();
    const h = await rt.history('lc', 'cancel-1');
    expect(h.at(-1)).toMatchObject({ status: 'cancelled', from: 'working', to: 'working' });
    const invocations = await backend.query(`SELECT * FROM ${s()}.invocations WHERE instance_id = 'cancel-1'`);
    expect(invocations).toEqual([]);
    // Already finished: false, and nothing changes.
    const before = await row(backend, 'lc', 'cancel-1');
    expect(await rt.cancel('lc', 'cancel-1')).toBe(false);
    expect(await row(backend, 'lc', 'cancel-1')).toEqual(before);
    expect(p.runs).toBe(1);
  });

  it('cancel of an idle record; a cancelled record waits for nothing', async () => {
    await rt.create('lc', { id: 'cancel-2' });
    expect(await rt.cancel('lc', 'cancel-2')).toBe(true);
    expect((await rt.get('lc', 'cancel-2'))?.status).toBe('cancelled');
    expect(await rt.waitFor('lc', 'cancel-2', { status: 'cancelled' }, { timeoutMs: 1000 })).toMatchObject({ status: 'cancelled' });
  });

  it('waitFor matches a state, a parent state, a status and a predicate', async () => {
    await rt.create('lc', { id: 'w-1' });
    const waiting = rt.waitFor('lc', 'w-1', { state: 'b' }, { timeoutMs: 10_000 });
    const byPredicate = rt.waitFor('lc', 'w-1', (r) => r.state === 'b.y', { timeoutMs: 10_000 });
    await rt.send('lc', 'w-1', { type: 'go' });
    expect((await waiting).state).toMatch(/^b\./);
    await rt.send('lc', 'w-1', { type: 'next' });
    expect((await byPredicate).state).toBe('b.y');
    const done = rt.waitFor('lc', 'w-1', { status: 'done' }, { timeoutMs: 10_000 });
    await rt.send('lc', 'w-1', { type: 'finish' });
    expect((await done).state).toBe('finished');
  });

  it('waitFor times out with WaitTimeoutError', async () => {
    await rt.create('lc', { id: 'w-2' });
    const started = Date.now();
    const err = await rejection(rt.waitFor('lc', 'w-2', { state: 'b' }, { timeoutMs: 300 }));
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(err.message).toContain('w-2');
  });

  it('waitFor rejects at once with WaitUnreachableError when the record finished without matching', async () => {
    await rt.create('lc', { id: 'w-3' });
    await rt.send('lc', 'w-3', { type: 'finish' });
    await rt.waitFor('lc', 'w-3', { status: 'done' }, { timeoutMs: 10_000 });
    for (const condition of [{ state: 'b' }, { status: 'failed' as const }]) {
      const started = Date.now();
      const err = await rejection(rt.waitFor('lc', 'w-3', condition, { timeoutMs: 20_000 }));
      expect(err).toBeInstanceOf(WaitUnreachableError);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });

  it('waitFor with a predicate rejects at once with WaitUnreachableError when the record finished without matching', async () => {
    // A finished record never changes again, so a predicate it fails can never match either.
    await rt.create('lc', { id: 'w-4' });
    await rt.send('lc', 'w-4', { type: 'finish' });
    await rt.waitFor('lc', 'w-4', { status: 'done' }, { timeoutMs: 10_000 });
    const started = Date.now();
    const err = await rejection(rt.waitFor('lc', 'w-4', (r) => r.state === 'b.y', { timeoutMs: 3000 }));
    expect(err).toBeInstanceOf(WaitUnreachableError);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('events sent in order arrive in order (50 back to back)', async () => {
    await rt.create('lc', { id: 'order-1' });
    for (let i = 0; i < 50; i++) await rt.send('lc', 'order-1', add(i));
    const got = await rt.waitFor('lc', 'order-1', (r) => (r.context.items as number[]).length >= 50, { timeoutMs: 20_000 });
    expect(got.context.items).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await drained(backend, 'lc', 'order-1');
    expect((await rt.get('lc', 'order-1'))?.context.items).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // Context-only changes do not change state, so history holds the creation entry only.
    expect((await rt.history('lc', 'order-1')).map((h) => h.to)).toEqual(['idle']);
  });

  it('events each valid only after the previous one, sent back to back, are all accepted and taken in order', async () => {
    // send() checks the event against the stored state when nothing is queued ahead of it;
    // a step committing in between must not make a valid event look unacceptable.
    await rt.create('chain', { id: 'chain-1' });
    for (let i = 0; i < CHAIN_LENGTH; i++) await rt.send('chain', 'chain-1', { type: `next${i}` });
    const done = await rt.waitFor('chain', 'chain-1', { status: 'done' }, { timeoutMs: 20_000 });
    expect(done.state).toBe(`s${CHAIN_LENGTH}`);
    expect((await rt.history('chain', 'chain-1')).map((h) => h.to)).toEqual(Array.from({ length: CHAIN_LENGTH + 1 }, (_, i) => `s${i}`));
  });

  it("an invoked promise's output reaches onDone and the context through assign", async () => {
    const p = probe(key('out-1'));
    await rt.create('lc', { id: 'out-1', input: { label: key('out-1') } });
    for (const n of [1, 2, 3]) await rt.send('lc', 'out-1', add(n));
    await rt.send('lc', 'out-1', { type: 'compute' });
    const got = await rt.waitFor('lc', 'out-1', { state: 'computed' }, { timeoutMs: 10_000 });
    expect(got.context.result).toEqual({ doubled: 6, tag: 't-3', nested: { list: [3, 4] } });
    expect(p.runs).toBe(1);
    const h = await rt.history('lc', 'out-1');
    const last = h.at(-1)!;
    expect(last.from).toBe('computing');
    expect(last.to).toBe('computed');
    expect(last.event.type).toMatch(/^xstate\.done\.actor\./);
    expect(await backend.query(`SELECT * FROM ${s()}.invocations WHERE instance_id = 'out-1'`)).toEqual([]);
  });
});
