import { describe, expect, it } from 'vitest';
import { fromPromise, setup, transition } from 'xstate';
import { durable, InvalidArgumentError } from '../../src/index.js';
import { diffFingerprints, fingerprint, missingLeaves } from '../../src/record/fingerprint.js';
import { land, StateMap } from '../../src/record/migration.js';
import { restoreSnapshot } from '../../src/record/state.js';

// The pure halves of safe machine changes: a machine's structure and what changed in it, and
// where a migrated record lands (snapshot, timers, invocations) without running anything.

const base = () =>
  setup({
    types: { context: {} as { ms: number; id?: string } },
    delays: { window: ({ context }) => context.ms },
    actors: { check: fromPromise(async ({ input }: { input: { id?: string } }) => `ok:${input.id}`) },
    guards: { big: () => true },
  });

const v1 = durable(
  base().createMachine({
    id: 'fp',
    initial: 'draft',
    context: { ms: 5000 },
    states: {
      draft: { on: { submit: [{ guard: 'big', target: 'review' }, { target: 'p' }] } },
      review: { after: { 60000: 'draft' }, on: { approve: 'done' } },
      p: {
        type: 'parallel',
        states: {
          l: { initial: 'l1', states: { l1: { on: { L: 'l2' } }, l2: {} } },
          r: { initial: 'r1', states: { r1: {}, r2: {}, hist: { type: 'history' } } },
        },
      },
      done: { type: 'final' },
    },
  }),
);

describe('fingerprint', () => {
  it('names every state with its type, transition targets per event, after keys and invokes', () => {
    const m = durable(
      base().createMachine({
        id: 'm',
        initial: 'a',
        context: { ms: 1 },
        states: {
          a: { on: { go: 'b', stay: {} }, after: { 100: 'b', window: [{ guard: 'big', target: 'c' }, { target: 'b' }] } },
          b: { invoke: { id: 'chk', src: 'check', input: {}, onDone: 'c' }, always: [{ guard: 'big', target: 'c' }] },
          c: { type: 'final' },
        },
      }),
    );
    const fp = fingerprint(m.machine);
    expect(Object.keys(fp.states)).toEqual(['', 'a', 'b', 'c']);
    expect(fp.states['']).toMatchObject({ type: 'compound', initial: 'a' });
    expect(fp.states.a).toEqual({
      type: 'atomic',
      on: { go: [['b']], stay: [[]] },
      always: [],
      after: { '100': [['b']], window: [['c'], ['b']] },
      invoke: [],
    });
    expect(fp.states.b).toEqual({
      type: 'atomic',
      on: { 'xstate.done.actor.chk': [['c']] },
      always: [['c']],
      after: {},
      invoke: [{ id: 'chk', src: 'check' }],
    });
    expect(fp.states.c?.type).toBe('final');
    expect(fingerprint(v1.machine).states['p.r.hist']).toMatchObject({ type: 'history', history: 'shallow' });
    expect(fingerprint(v1.machine).states.p?.type).toBe('parallel');
  });

  it('the same machine built twice, and a fingerprint read back with its keys reordered, show no difference', () => {
    const again = durable(
      base().createMachine({
        id: 'fp',
        initial: 'draft',
        context: { ms: 1 },
        states: {
          draft: { on: { submit: [{ guard: 'big', target: 'review' }, { target: 'p' }] } },
          review: { after: { 60000: 'draft' }, on: { approve: 'done' } },
          p: {
            type: 'parallel',
            states: {
              l: { initial: 'l1', states: { l1: { on: { L: 'l2' } }, l2: {} } },
              r: { initial: 'r1', states: { r1: {}, r2: {}, hist: { type: 'history' } } },
            },
          },
          done: { type: 'final' },
        },
      }),
    );
    const fp = fingerprint(v1.machine);
    expect(diffFingerprints(fp, fingerprint(again.machine))).toEqual([]);
    // JSONB gives object keys back sorted by length, then bytes.
    const reorder = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(reorder)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.keys(v)
                .sort((a, b) => a.length - b.length || (a < b ? -1 : 1))
                .reverse()
                .map((k) => [k, reorder((v as Record<string, unknown>)[k])]),
            )
          : v;
    expect(diffFingerprints(reorder(JSON.parse(JSON.stringify(fp))) as typeof fp, fp)).toEqual([]);
  });

  it('lists each kind of difference', () => {
    const changed = durable(
      base().createMachine({
        id: 'fp',
        initial: 'draft',
        context: { ms: 1 },
        states: {
          draft: { on: { submit: 'checking' } },
          checking: { after: { window: 'draft' }, invoke: { id: 'c', src: 'check', input: {} }, on: { approve: 'done' } },
          p: {
            type: 'parallel',
            states: {
              l: { initial: 'l2', states: { l1: { on: { L: 'l2' } }, l2: {} } },
              r: { initial: 'r1', states: { r1: {}, r2: { initial: 'x', states: { x: {} } }, hist: { type: 'history', history: 'deep' } } },
            },
          },
          done: { type: 'final' },
        },
      }),
    );
    expect(diffFingerprints(fingerprint(v1.machine), fingerprint(changed.machine))).toEqual([
      'state "review" removed',
      'state "checking" added',
      'state "p.r.r2.x" added',
      'state "draft": event "submit" targets checking (was review | p)',
      'state "p.l" starts in "l2" (was "l1")',
      'state "p.r.r2" is compound (was atomic)',
      'state "p.r.hist" keeps deep history (was shallow)',
    ]);
  });

  it('missingLeaves: paths that are gone or no longer leaves, per parallel leaf', () => {
    const fp = fingerprint(v1.machine);
    expect(missingLeaves('review', fp)).toEqual([]);
    expect(missingLeaves('p.l.l1,p.r.r2', fp)).toEqual([]);
    expect(missingLeaves('p.l.l9,p.r.r2', fp)).toEqual(['p.l.l9']);
    expect(missingLeaves('p', fp)).toEqual(['p']);
    expect(missingLeaves('gone', fp)).toEqual(['gone']);
  });
});

const v2 = durable(
  base().createMachine({
    id: 'fp',
    initial: 'editing',
    context: { ms: 1 },
    states: {
      editing: { initial: 'text', states: { text: { after: { 1000: 'media' } }, media: {} }, after: { 9000: 'checking' } },
      checking: {
        after: { window: 'editing', 30000: 'editing' },
        invoke: { id: 'chk', src: 'check', input: ({ context, event }) => ({ id: `${context.id}/${event.type}` }), onDone: 'done' },
        on: { back: 'editing' },
      },
      q: {
        type: 'parallel',
        states: {
          a: { initial: 'a1', states: { a1: { after: { 500: 'a2' } }, a2: {} } },
          b: { initial: 'b1', states: { b1: {}, b2: {} } },
        },
      },
      done: { type: 'final' },
    },
  }),
  { version: 2 },
);
const migrateEvent = { type: 'drover.migrate', from: 1, to: 2 };

describe('StateMap', () => {
  const map = new StateMap(v1, v2, {
    draft: 'editing',
    review: 'checking',
    'p.l.l1': 'q.a.a1',
    'p.l.l2': 'q.a.a2',
    'p.r.r1': 'q.b.b1',
    'p.l.l1,p.r.r2': 'editing.media',
  });

  it('maps a state, a compound target to its initial child, parallel leaves one by one, and a whole state string first', () => {
    expect(map.target('draft')).toEqual({ value: 'editing' });
    expect(map.target('p.l.l2,p.r.r1')).toEqual({ value: { q: { a: 'a2', b: 'b1' } } });
    expect(map.target('p.l.l1,p.r.r2')).toEqual({ value: { editing: 'media' } });
  });

  it('names the leaves without a mapping', () => {
    expect(map.target('p.l.l2,p.r.r2')).toEqual({ unmapped: ['p.r.r2'] });
    expect(map.target('done')).toEqual({ unmapped: ['done'] });
  });

  it('refuses keys and targets that are not states, final targets, and targets that cannot hold together', () => {
    expect(() => new StateMap(v1, v2, { reviw: 'checking' })).toThrow(/"reviw" is not a state of machine "fp" version 1/);
    expect(() => new StateMap(v1, v2, { p: 'checking' })).toThrow(/map its leaf states instead: p\.l\.l1, p\.l\.l2, p\.r\.r1, p\.r\.r2/);
    expect(() => new StateMap(v1, v2, { review: 'chekcing' })).toThrow(InvalidArgumentError);
    expect(() => new StateMap(v1, v2, { review: 'chekcing' })).toThrow(/target "chekcing" of "review" is not a state of machine "fp" version 2/);
    expect(() => new StateMap(v1, v2, { review: 'done' })).toThrow(/is a final state/);
    const split = new StateMap(v1, v2, { 'p.l.l1': 'editing', 'p.r.r1': 'checking' });
    expect(() => split.target('p.l.l1,p.r.r1')).toThrow(/the machine root is not parallel.*map the whole state string "p\.l\.l1,p\.r\.r1"/);
  });
});

describe('land', () => {
  it('enters the target without entry actions: after timers of every state it is in (ancestors too), from now, as XState ids them', () => {
    const now = 1_000_000;
    const kept = [
      { id: 'xstate.after.60000.fp.review', at: now + 5, event: { type: 'xstate.after.60000.fp.review' } },
      { id: 'reminder', at: now + 7, event: { type: 'remind' } },
    ];
    const landed = land(v2, 'editing', { ms: 5000 }, migrateEvent, now, kept);
    expect(landed.state).toBe('editing.text');
    expect(landed.timers).toEqual([
      { id: 'reminder', at: now + 7, event: { type: 'remind' } },
      { id: 'xstate.after.9000.fp.editing', at: now + 9000, event: { type: 'xstate.after.9000.fp.editing' } },
      { id: 'xstate.after.1000.fp.editing.text', at: now + 1000, event: { type: 'xstate.after.1000.fp.editing.text' } },
    ]);
    expect(landed.spawns).toEqual([]);
  });

  it('resolves named delays from the context, starts the invokes with their input, and a later exit cancels the timers and stops the child', () => {
    const now = 2_000_000;
    const landed = land(v2, 'checking', { ms: 4321, id: 'r-1' }, migrateEvent, now, []);
    expect(landed.state).toBe('checking');
    // In XState's own order: integer-like `after` keys first, as JavaScript orders keys.
    expect(landed.timers).toEqual([
      { id: 'xstate.after.30000.fp.checking', at: now + 30000, event: { type: 'xstate.after.30000.fp.checking' } },
      { id: 'xstate.after.window.fp.checking', at: now + 4321, event: { type: 'xstate.after.window.fp.checking' } },
    ]);
    expect(landed.spawns).toEqual([{ id: 'chk', src: 'check', input: { id: 'r-1/drover.migrate' } }]);
    // XState on its own, leaving the state: cancels exactly these timer ids and stops the child.
    const restored = restoreSnapshot(v2.machine, landed.snapshot);
    expect(Object.keys(restored.children)).toEqual(['chk']);
    const [next, result] = transition(v2.machine, restored, { type: 'back' });
    const actions = result as Array<{ type: string; params?: unknown }>;
    expect(next.value).toEqual({ editing: 'text' });
    const cancelled = actions.filter((a) => a.type === 'xstate.cancel').map((a) => (a.params as { sendId: string }).sendId);
    expect(cancelled.sort()).toEqual(landed.timers.map((t) => t.id).sort());
    expect(actions.filter((a) => a.type === 'xstate.stopChild').map((a) => (a.params as { id: string }).id)).toEqual(['chk']);
  });

  it('gives what XState itself gives a record entering the state: the same timer ids and delays, the same child in the snapshot', () => {
    const context = { ms: 777, id: 'r-2' };
    const at = restoreSnapshot(v2.machine, land(v2, 'editing', context, migrateEvent, 0, []).snapshot);
    const afterEvent = { type: 'xstate.after.9000.fp.editing' };
    const [entered, result] = transition(v2.machine, at, afterEvent);
    const actions = result as Array<{ type: string; params?: unknown }>;
    const raised = actions
      .filter((a) => a.type === 'xstate.raise')
      .map((a) => a.params as { id: string; delay: number; event: { type: string } })
      .map((p) => ({ id: p.id, at: p.delay, event: p.event }));
    const landed = land(v2, 'checking', context, afterEvent, 0, []);
    expect(landed.timers).toEqual(raised);
    const spawned = actions.filter((a) => a.type === 'xstate.spawnChild').map((a) => a.params as { id: string; src: string; input: unknown });
    expect(landed.spawns).toEqual(spawned.map((p) => ({ id: p.id, src: p.src, input: p.input })));
    expect(JSON.parse(JSON.stringify(landed.snapshot))).toEqual(JSON.parse(JSON.stringify(v2.machine.getPersistedSnapshot(entered))));
  });

  it('lands parallel regions in machine order, each region with its own timers', () => {
    const landed = land(v2, { q: { b: 'b2', a: 'a1' } }, { ms: 1 }, migrateEvent, 0, []);
    expect(landed.state).toBe('q.a.a1,q.b.b2');
    expect(landed.timers.map((t) => t.id)).toEqual(['xstate.after.500.fp.q.a.a1']);
  });
});
