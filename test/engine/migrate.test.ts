import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import {
  createRuntime,
  type DurableMachine,
  durable,
  type HistoryEntry,
  InvalidArgumentError,
  type Runtime,
  TestClock,
  UnknownVersionError,
  UnmappedStatesError,
} from '../../src/index.js';
import { BACKENDS, type TestBackend, uniqueSchema } from '../helpers/backends.js';
import { gate, until } from '../helpers/until.js';

// runtime.migrate(): live records of one version moved to another, a batch at a time.

const started = new Map<string, ReturnType<typeof gate<void>>>();
const aborted = new Set<string>();
const verified: string[] = [];

const v1 = durable(
  setup({
    types: { context: {} as { id: string; n: number }, input: {} as { id: string } },
    actors: {
      // Runs until aborted.
      slow: fromPromise(async ({ input, signal }: { input: { id: string }; signal: AbortSignal }) => {
        started.get(input.id)?.open();
        await new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            aborted.add(input.id);
            reject(new Error('aborted'));
          }),
        );
      }),
    },
  }).createMachine({
    id: 'mig',
    initial: 'draft',
    context: ({ input }) => ({ id: input.id, n: 0 }),
    states: {
      draft: { on: { submit: 'review', work: 'working', split: 'p' } },
      review: { after: { 60000: 'draft' }, on: { approve: 'done', wait: 'waiting' } },
      waiting: { on: { ok: 'done' } },
      working: { invoke: { id: 'slow', src: 'slow', input: ({ context }) => ({ id: context.id }) }, on: { ok: 'done' } },
      p: {
        type: 'parallel',
        states: {
          l: { initial: 'l1', states: { l1: { on: { L: 'l2' } }, l2: {} } },
          r: { initial: 'r1', states: { r1: { on: { R: 'r2' } }, r2: {} } },
        },
      },
      done: { type: 'final' },
    },
  }),
  { version: 1 },
);

type V2Context = { id: string; n: number; windowMs?: number; migrated?: boolean; result?: string };
const v2 = durable(
  setup({
    types: { context: {} as V2Context, input: {} as { id: string } },
    delays: { reviewWindow: ({ context }) => context.windowMs ?? 45_000 },
    actors: {
      verify: fromPromise(async ({ input }: { input: { id: string } }) => {
        verified.push(input.id);
        return `ok:${input.id}`;
      }),
    },
  }).createMachine({
    id: 'mig',
    initial: 'editing',
    context: ({ input }) => ({ id: input.id, n: 0 }),
    states: {
      editing: { initial: 'text', states: { text: { on: { submit: '#mig.checking' } } } },
      checking: {
        after: { reviewWindow: 'editing' },
        on: {
          back: 'editing',
          approve: 'approved',
          // Only here so that the timer of version 1's `review`, had it survived the move, would show.
          'xstate.after.60000.mig.review': 'approved',
        },
      },
      verifying: {
        invoke: {
          id: 'verify',
          src: 'verify',
          input: ({ context }) => ({ id: context.id }),
          onDone: { target: 'approved', actions: assign({ result: ({ event }) => event.output as string }) },
        },
      },
      q: {
        type: 'parallel',
        states: {
          a: { initial: 'a1', states: { a1: { on: { A: 'a2' } }, a2: {} } },
          b: { initial: 'b1', states: { b1: {}, b2: {} } },
        },
      },
      approved: { type: 'final' },
    },
  }),
  { version: 2 },
);

const MAP = {
  draft: 'editing',
  review: 'checking',
  waiting: 'verifying',
  working: 'editing',
  'p.l.l1': 'q.a.a1',
  'p.l.l2': 'q.a.a2',
  'p.r.r1': 'q.b.b1',
  'p.r.r2': 'q.b.b2',
};
const MIGRATE = { type: 'drover.migrate', from: 1, to: 2 };
const entries = (h: HistoryEntry[]) => h.map(({ from, to, event, status }) => ({ from, to, event, status }));

describe.each(BACKENDS)('migrate() on $name', ({ make }) => {
  let backend: TestBackend;
  const runtimes: Runtime[] = [];
  const open = async (machines: readonly DurableMachine[], extra: Record<string, unknown> = {}) => {
    const rt = await createRuntime({ database: backend.database, schema, machines, pollInterval: 50, ...extra });
    runtimes.push(rt);
    return rt;
  };
  /** Records on version 1, each taken through `events` to a state; returns when every one is there. */
  const seed = async (records: Record<string, string[]>, extra: Record<string, unknown> = {}) => {
    const rt = await open([v1], { shutdownGrace: '50ms', ...extra });
    await rt.start();
    for (const [id, events] of Object.entries(records)) {
      await rt.create('mig', { id, input: { id } });
      for (const type of events) await rt.send('mig', id, { type });
      await until(async () => (await backend.query(`SELECT 1 FROM "${schema}".events WHERE instance_id = $1`, [id])).length === 0, `${id} took its events`);
    }
    await rt.stop();
  };
  const rows = () =>
    backend.query<{ id: string; version: number; state: string; row_version: number; snapshot: unknown; timers: unknown; seq: number }>(
      `SELECT id, version, state, row_version, snapshot, timers, seq FROM "${schema}".instances ORDER BY id`,
    );
  const migrations = () =>
    backend.query<{ instance_id: string; version: number; seq: number }>(
      `SELECT instance_id, version, seq FROM "${schema}".transitions WHERE event->>'type' = 'drover.migrate' ORDER BY instance_id`,
    );

  // One database per backend, a fresh schema per test: a migration moves every live record of a version.
  let schema = '';
  const schemas: string[] = [];
  beforeAll(async () => {
    backend = await make();
  });
  beforeEach(() => {
    schema = uniqueSchema('mig');
    schemas.push(schema);
  });
  afterEach(async () => {
    for (const rt of runtimes.splice(0)) await rt.stop();
  });
  afterAll(async () => {
    for (const s of schemas) await backend?.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await backend?.close();
  });

  it('moves live records with a state map: version, state, context kept, one history entry each; they go on stepping on the new version', async () => {
    await seed({ d: [], r: ['submit'], p: ['split', 'L'], f: ['submit', 'approve'] });
    const rt = await open([v1, v2]);
    const result = await rt.migrate('mig', { from: 1, to: 2, states: MAP });
    expect(result).toEqual({
      machine: 'mig',
      from: 1,
      to: 2,
      dryRun: false,
      moved: 3,
      moves: [
        { from: 'draft', to: 'editing.text', count: 1, ids: ['d'] },
        { from: 'p.l.l2,p.r.r1', to: 'q.a.a2,q.b.b1', count: 1, ids: ['p'] },
        { from: 'review', to: 'checking', count: 1, ids: ['r'] },
      ],
      left: { count: 0, ids: [], states: [] },
    });
    expect(await rt.get('mig', 'd')).toMatchObject({ version: 2, state: 'editing.text', value: { editing: 'text' }, context: { id: 'd', n: 0 } });
    expect(await rt.get('mig', 'p')).toMatchObject({ version: 2, state: 'q.a.a2,q.b.b1', status: 'active' });
    // A finished record stays as it was.
    expect(await rt.get('mig', 'f')).toMatchObject({ version: 1, state: 'done', status: 'done' });
    expect(entries(await rt.history('mig', 'r'))).toEqual([
      { from: null, to: 'draft', event: { type: 'xstate.init' }, status: 'active' },
      { from: 'draft', to: 'review', event: { type: 'submit' }, status: 'active' },
      { from: 'review', to: 'checking', event: MIGRATE, status: 'active' },
    ]);
    expect(entries(await rt.history('mig', 'p')).slice(-1)).toEqual([{ from: 'p.l.l2,p.r.r1', to: 'q.a.a2,q.b.b1', event: MIGRATE, status: 'active' }]);
    expect(await migrations()).toEqual([
      { instance_id: 'd', version: 2, seq: 2 },
      { instance_id: 'p', version: 2, seq: 4 },
      { instance_id: 'r', version: 2, seq: 3 },
    ]);

    // Nothing is left to move.
    expect((await rt.migrate('mig', { from: 1, to: 2, states: MAP })).moved).toBe(0);

    await rt.start();
    await rt.send('mig', 'r', { type: 'approve' });
    await rt.send('mig', 'd', { type: 'submit' });
    expect(await rt.waitFor('mig', 'r', { status: 'done' })).toMatchObject({ version: 2, state: 'approved' });
    expect(await rt.waitFor('mig', 'd', { state: 'checking' })).toMatchObject({ version: 2 });
  });

  it('refuses when a live state has no mapping, listing each with its count, and moves nothing', async () => {
    await seed({ d1: [], d2: [], r: ['submit'], p: ['split'] });
    const rt = await open([v1, v2]);
    const before = await rows();
    const err = await rt.migrate('mig', { from: 1, to: 2, states: { draft: 'editing', 'p.l.l1': 'q.a.a1' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnmappedStatesError);
    expect((err as UnmappedStatesError).states).toEqual([
      { state: 'p.r.r1', count: 1 },
      { state: 'review', count: 1 },
    ]);
    expect((err as Error).message).toBe(
      'machine "mig" version 1 has live records in states the map does not name: "p.r.r1" (1), "review" (1); add them to `states`',
    );
    expect(await rows()).toEqual(before);
    expect(await migrations()).toEqual([]);

    // Bad maps and options are refused before anything is read.
    await expect(rt.migrate('mig', { from: 1, to: 2, states: { ...MAP, review: 'chekcing' } })).rejects.toThrow(InvalidArgumentError);
    await expect(rt.migrate('mig', { from: 1, to: 2, states: { ...MAP, reviw: 'checking' } })).rejects.toThrow(/"reviw" is not a state/);
    await expect(rt.migrate('mig', { from: 1, to: 3, states: MAP })).rejects.toThrow(UnknownVersionError);
    await expect(rt.migrate('mig', { from: 1, to: 2, stats: MAP } as never)).rejects.toThrow(/unknown option "stats" \(did you mean "states"\?\)/);
    expect(await rows()).toEqual(before);
  });

  it('dryRun returns what would move, per state, and writes nothing', async () => {
    await seed({ d1: [], d2: [], r: ['submit'] });
    const rt = await open([v1, v2]);
    const before = await rows();
    const [{ n: transitionsBefore }] = (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".transitions`)) as [
      { n: number },
    ];
    const result = await rt.migrate('mig', { from: 1, to: 2, states: MAP, dryRun: true, context: (c) => ({ ...c, migrated: true }) });
    expect(result).toMatchObject({
      dryRun: true,
      moved: 3,
      moves: [
        { from: 'draft', to: 'editing.text', count: 2, ids: ['d1', 'd2'] },
        { from: 'review', to: 'checking', count: 1, ids: ['r'] },
      ],
    });
    expect(await rows()).toEqual(before);
    const [{ n }] = (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".transitions`)) as [{ n: number }];
    expect(n).toBe(transitionsBefore);
    // dryRun checks the context mapping too.
    await expect(
      rt.migrate('mig', { from: 1, to: 2, states: MAP, dryRun: true, context: (c) => ({ ...c, at: new Date(0) }) }),
    ).rejects.toThrow(/context\(\) for record "d1" is not JSON: context\.at is a Date/);
  });

  it('maps the context (given a copy); a mapping that is not JSON moves nothing', async () => {
    await seed({ a: [], b: ['submit'] });
    const rt = await open([v1, v2]);
    await expect(rt.migrate('mig', { from: 1, to: 2, states: MAP, context: () => ({ big: 10n }) as never })).rejects.toThrow(
      /not JSON: context\.big is a BigInt/,
    );
    expect((await rows()).map((r) => r.version)).toEqual([1, 1]);
    const result = await rt.migrate<{ id: string; n: number }, V2Context>('mig', {
      from: 1,
      to: 2,
      states: MAP,
      batchSize: 1,
      context: (c) => {
        c.n += 10; // a copy: changing it in place is fine
        return { ...c, migrated: true, windowMs: 1000 };
      },
    });
    expect(result.moved).toBe(2);
    expect((await rt.get('mig', 'a'))?.context).toEqual({ id: 'a', n: 10, migrated: true, windowMs: 1000 });
    expect((await rt.get('mig', 'b'))?.context).toEqual({ id: 'b', n: 10, migrated: true, windowMs: 1000 });
  });

  it("timers: the landed state's after timers run from the migration time, the left state's timer is gone, an exit cancels them", async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const clock = new TestClock(t0);
    await seed({ r: ['submit'], s: ['submit'] }, { clock });
    const before = (await rows()).find((r) => r.id === 'r');
    expect(before?.timers).toEqual([{ id: 'xstate.after.60000.mig.review', at: t0 + 60_000, event: { type: 'xstate.after.60000.mig.review' } }]);

    clock.advance('30s');
    const t1 = clock.now();
    const rt = await open([v1, v2], { clock });
    await rt.start();
    await rt.migrate('mig', { from: 1, to: 2, states: MAP, context: (c) => ({ ...c, windowMs: 45_000 }) });
    const timer = { id: 'xstate.after.reviewWindow.mig.checking', at: t1 + 45_000, event: { type: 'xstate.after.reviewWindow.mig.checking' } };
    const moved = await backend.query<{ id: string; timers: unknown; wake_at: Date; entered_at: Date }>(
      `SELECT id, timers, wake_at, entered_at FROM "${schema}".instances ORDER BY id`,
    );
    for (const row of moved) {
      expect(row.timers).toEqual([timer]);
      expect(row.wake_at.getTime()).toBe(t1 + 45_000);
      expect(row.entered_at.getTime()).toBe(t1);
    }

    // s leaves `checking` by an event: XState's exit cancels the timer by its id.
    await rt.send('mig', 's', { type: 'back' });
    await rt.waitFor('mig', 's', { state: 'editing' });
    expect((await backend.query<{ timers: unknown }>(`SELECT timers FROM "${schema}".instances WHERE id = 's'`))[0]?.timers).toEqual([]);

    // Past version 1's due time nothing fires (had the old timer survived, r would be approved);
    // at the new due time the landed state's timer fires.
    clock.set(t0 + 60_000);
    clock.set(t1 + 45_000);
    const r = await rt.waitFor('mig', 'r', { state: 'editing' });
    expect(r.status).toBe('active');
    const history = await rt.history('mig', 'r');
    expect(entries(history)).toEqual([
      { from: null, to: 'draft', event: { type: 'xstate.init' }, status: 'active' },
      { from: 'draft', to: 'review', event: { type: 'submit' }, status: 'active' },
      { from: 'review', to: 'checking', event: MIGRATE, status: 'active' },
      { from: 'checking', to: 'editing.text', event: { type: timer.event.type }, status: 'active' },
    ]);
    expect(history.map((h) => h.at.getTime()).slice(2)).toEqual([t1, t1 + 45_000]);
  });

  it("invocations: the landed state's invoke starts; the left state's invocation is stopped and its row removed", async () => {
    await seed({ w: ['work'], v: ['submit', 'wait'] });
    // The seeding runtime ran the slow invocation and aborted it when it stopped; from here on, this runtime's.
    aborted.clear();
    started.set('w', gate());
    const rt = await open([v1, v2], { lease: '1s', shutdownGrace: '50ms' });
    await rt.start();
    await started.get('w')?.promise; // the slow invocation of `working` runs (again, on this runtime)
    await rt.migrate('mig', { from: 1, to: 2, states: MAP });

    const done = await rt.waitFor('mig', 'v', { status: 'done' });
    expect(done).toMatchObject({ version: 2, state: 'approved', context: { result: 'ok:v' } });
    expect(verified).toContain('v');
    expect(entries(await rt.history('mig', 'v')).slice(-2)).toEqual([
      { from: 'waiting', to: 'verifying', event: MIGRATE, status: 'active' },
      { from: 'verifying', to: 'approved', event: expect.objectContaining({ type: 'xstate.done.actor.verify', output: 'ok:v' }), status: 'done' },
    ]);

    expect(await rt.get('mig', 'w')).toMatchObject({ version: 2, state: 'editing.text' });
    const left = await backend.query(`SELECT invoke_id FROM "${schema}".invocations WHERE instance_id = 'w'`);
    expect(left).toEqual([]);
    await until(() => aborted.has('w'), 'the invocation of the state left is aborted');
  });

  it('records stepping while they migrate: each moves exactly once, no event is lost or taken twice', async () => {
    const pp = (version: 1 | 2) =>
      durable(
        setup({ types: { context: {} as { n: number; v: number[] }, events: {} as { type: 'tick' } } }).createMachine({
          id: 'pp',
          initial: version === 1 ? 'a' : 'x',
          context: { n: 0, v: [] },
          states: Object.fromEntries(
            (version === 1 ? ['a', 'b'] : ['x', 'y']).map((s, i, all) => [
              s,
              { on: { tick: { target: all[1 - i] as string, actions: assign({ n: ({ context }) => context.n + 1, v: ({ context }) => [...context.v, version] }) } } },
            ]),
          ),
        }),
        { version },
      );
    const [pp1, pp2] = [pp(1), pp(2)];
    const client = await open([pp1]);
    const ids = Array.from({ length: 60 }, (_, i) => `pp${String(i).padStart(2, '0')}`);
    await client.createMany('pp', ids.map((id) => ({ id })));
    const rt = await open([pp1, pp2], { batchSize: 5 });
    await rt.start();
    const ROUNDS = 6;
    const sending = (async () => {
      for (let round = 0; round < ROUNDS; round++) for (const id of ids) await rt.send('pp', id, { type: 'tick' });
    })();
    await until(async () => (await rt.get('pp', 'pp59'))?.context.n !== 0, 'the first round is being stepped');
    let moved = 0;
    for (let run = 0; run < 5; run++) {
      const result = await rt.migrate('pp', { from: 1, to: 2, states: { a: 'x', b: 'y' }, batchSize: 7 });
      moved += result.moved;
      if (result.left.count === 0) break;
    }
    await sending;
    expect(moved).toBe(ids.length);
    for (const id of ids) {
      const r = await rt.waitFor('pp', id, (x) => (x.context as { n: number }).n === ROUNDS);
      expect(r).toMatchObject({ version: 2, state: 'x' });
    }
    const history = await backend.query<{ id: string; seqs: number[]; tos: string[]; migrations: number }>(
      `SELECT instance_id AS id, array_agg(seq ORDER BY seq) AS seqs, array_agg(to_state ORDER BY seq) AS tos,
              count(*) FILTER (WHERE event->>'type' = 'drover.migrate')::int AS migrations
       FROM "${schema}".transitions WHERE machine = 'pp' GROUP BY instance_id ORDER BY instance_id`,
    );
    expect(history).toHaveLength(ids.length);
    for (const h of history) {
      expect(h.migrations).toBe(1);
      // Creation, ROUNDS ticks, one move: every event taken once, in order, on one version or the other.
      expect(h.seqs).toEqual(Array.from({ length: ROUNDS + 2 }, (_, i) => i + 1));
      const at = h.tos.findIndex((s) => s === 'x' || s === 'y');
      const expected = [...h.tos.slice(0, at).map((_, i) => (i % 2 === 0 ? 'a' : 'b'))];
      const moveTo = expected.length % 2 === 1 ? 'x' : 'y';
      const after = h.tos.slice(at).map((_, i) => ((i % 2 === 0) === (moveTo === 'x') ? 'x' : 'y'));
      expect(h.tos).toEqual([...expected, ...after]);
    }
    const contexts = await backend.query<{ v: number[] }>(`SELECT snapshot->'context'->'v' AS v FROM "${schema}".instances WHERE machine = 'pp'`);
    for (const { v } of contexts) expect([...v].sort()).toEqual(v); // version 1 ticks, then version 2 ticks
  });
});
