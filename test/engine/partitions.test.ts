import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, InvalidArgumentError, partitionHistory, type RuntimeOptions, TestClock } from '../../src/index.js';
import { BACKENDS, postgresBackend, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

const job = durable(
  setup({}).createMachine({
    id: 'job',
    initial: 'waiting',
    states: {
      waiting: { on: { go: 'finished', poke: 'poked' } },
      poked: { on: { go: 'finished', poke: 'waiting' } },
      finished: { type: 'final' },
    },
  }),
);

const KEEP_ALL = { finished: false, failed: false, history: false } as const;
const HISTORY_30D = { finished: false, failed: false, history: '30d' } as const;

// The same story on a plain schema and on a partitioned one: the partitioned history must
// end up with exactly the rows the plain one keeps (times are chosen so that no row of a
// partition still kept is older than the cutoff, the one place the two rules differ).
describe.each(BACKENDS)('history partitioned by month on $name', ({ make }) => {
  let backend: TestBackend;
  let plain: string;
  let parted: string;
  const clocks = new Map<string, TestClock>();
  const at = (month: number, day: number) => Date.UTC(2026, month - 1, day, 12);

  const open = (schema: string, retention: RuntimeOptions['retention']) =>
    createRuntime({ database: backend.database, schema, clock: clocks.get(schema) as TestClock, machines: [job], retention });
  const partitions = async (schema: string) =>
    (
      await backend.query<{ name: string }>(
        `SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = '"${schema}".transitions'::regclass ORDER BY 1`,
      )
    ).map((r) => r.name);
  const rowsOf = async (schema: string) =>
    (
      await backend.query<{ id: string; machine: string; instance_id: string; seq: number; from_state: string | null; to_state: string; at: Date }>(
        `SELECT id::text, instance_id, seq, from_state, to_state, at, published_at FROM "${schema}".transitions ORDER BY id`,
      )
    ).map((r) => ({ ...r, at: new Date(r.at).toISOString() }));

  /** Runs one phase of the story on a schema at a time: each `[id, event]` sent (or created), all waited for. */
  async function phase(schema: string, when: number, steps: Array<[string, 'create' | 'poke' | 'go']>) {
    (clocks.get(schema) as TestClock).set(when);
    const rt = await open(schema, KEEP_ALL);
    await rt.start();
    try {
      for (const [id, what] of steps) {
        if (what === 'create') await rt.create('job', { id });
        else {
          const before = (await rt.history('job', id)).length;
          await rt.send('job', id, { type: what });
          await until(async () => (await rt.history('job', id)).length > before, `${id} to take ${what}`);
        }
      }
    } finally {
      await rt.stop();
    }
  }

  beforeAll(async () => {
    backend = await make();
    parted = backend.schema;
    plain = `${backend.schema}_plain`;
    clocks.set(parted, new TestClock(at(1, 10)));
    clocks.set(plain, new TestClock(at(1, 10)));
  });
  afterAll(async () => {
    if (backend.name === 'postgres') await backend.query(`DROP SCHEMA IF EXISTS "${plain}" CASCADE`);
    await backend.close();
  });

  it('refuses bad options with InvalidArgumentError', async () => {
    await expect(partitionHistory({ database: backend.database, schema: 'Bad-Name' })).rejects.toThrow(InvalidArgumentError);
    await expect(partitionHistory({ database: backend.database, interval: 'week' as never })).rejects.toThrow(/'month' or 'day'/);
    await expect(partitionHistory({ database: backend.database, intreval: 'day' } as never)).rejects.toThrow(/did you mean "interval"/);
  });

  it('converts a schema with history, steps records on it, and prunes by dropping whole partitions', async () => {
    for (const schema of [plain, parted]) {
      await phase(schema, at(1, 10), [
        ['old-live', 'create'],
        ['old-live', 'poke'],
        ['jan-idle', 'create'],
        ['jan-idle', 'poke'],
      ]);
    }
    const before = await rowsOf(parted);
    expect(before).toHaveLength(4);

    const result = await partitionHistory({ database: backend.database, schema: parted, clock: clocks.get(parted) as TestClock });
    expect(result).toEqual({ converted: true, partitions: ['transitions_m202601', 'transitions_m202602', 'transitions_m202603', 'transitions_m202604'] });
    expect(await partitions(parted)).toEqual([...result.partitions, 'transitions_kept'].sort());
    const kind = await backend.query<{ kind: string }>(`SELECT relkind::text AS kind FROM pg_class WHERE oid = '"${parted}".transitions'::regclass`);
    expect(kind[0]?.kind).toBe('p');
    // Every row is still there, ids and times unchanged, in the January partition.
    expect(await rowsOf(parted)).toEqual(before);
    const where = await backend.query<{ part: string; n: number }>(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM "${parted}".transitions GROUP BY 1`,
    );
    expect(where).toEqual([{ part: expect.stringContaining('transitions_m202601') as string, n: 4 }]);
    // The indexes the queries read through are there again, by name.
    const indexes = (await backend.query<{ name: string }>(`SELECT indexname::text AS name FROM pg_indexes WHERE schemaname = $1 AND tablename = 'transitions' ORDER BY 1`, [parted])).map((r) => r.name);
    expect(indexes).toEqual(
      expect.arrayContaining(['transitions_at', 'transitions_outbox', 'transitions_parked', 'transitions_pkey', 'transitions_prunable', 'transitions_machine_instance_id_seq_key']),
    );
    // A second run changes nothing.
    expect(await partitionHistory({ database: backend.database, schema: parted, clock: clocks.get(parted) as TestClock })).toEqual({ ...result, converted: false });

    // February and March on both schemas: new rows land in their month's partition.
    for (const schema of [plain, parted]) {
      await phase(schema, at(2, 15), [
        ['old-live', 'poke'],
        ['feb-live', 'create'],
        ['feb-done', 'create'],
        ['feb-done', 'go'],
      ]);
      await phase(schema, at(3, 20), [
        ['old-live', 'poke'],
        ['feb-live', 'poke'],
      ]);
    }
    const spread = await backend.query<{ part: string; n: number }>(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM "${parted}".transitions GROUP BY 1 ORDER BY 1`,
    );
    expect(spread.map((r) => [r.part.replace(/^.*\./, ''), r.n])).toEqual([
      ['transitions_m202601', 4],
      ['transitions_m202602', 4],
      ['transitions_m202603', 2],
    ]);
    // New ids continue after the copied ones.
    const ids = (await rowsOf(parted)).map((r) => BigInt(r.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.slice(4).every((id) => id > (ids[3] as bigint))).toBe(true);
    // A transition the relay has not published, in a partition about to go: it is kept.
    for (const schema of [plain, parted]) {
      await backend.query(`UPDATE "${schema}".transitions SET published_at = NULL WHERE instance_id = 'feb-live' AND from_state IS NULL`);
    }

    // April 5: the cutoff of 30 days is March 6, so January and February go whole.
    for (const schema of [plain, parted]) (clocks.get(schema) as TestClock).set(at(4, 5));
    const p = await open(plain, HISTORY_30D);
    const q = await open(parted, HISTORY_30D);
    try {
      const fromPlain = await p.prune();
      const fromParted = await q.prune();
      // old-live's January and February pokes; the rest is a creation entry, a latest entry or unpublished.
      expect(fromPlain).toEqual({ records: 0, transitions: 2 });
      expect(fromParted).toEqual({ records: 0, transitions: 2, partitions: 2 });
      expect(await partitions(parted)).toEqual([
        'transitions_kept',
        'transitions_m202603',
        'transitions_m202604',
        'transitions_m202605',
        'transitions_m202606',
        'transitions_m202607',
      ]);
      // The same history through the API on both, record by record.
      for (const id of ['old-live', 'jan-idle', 'feb-live', 'feb-done']) {
        const a = (await p.history('job', id)).map((h) => [h.from, h.to, h.status, h.at.getTime()]);
        expect((await q.history('job', id)).map((h) => [h.from, h.to, h.status, h.at.getTime()])).toEqual(a);
        expect(a.length).toBeGreaterThan(0);
      }
      expect((await q.history('job', 'old-live')).map((h) => [h.from, h.to])).toEqual([
        [null, 'waiting'],
        ['waiting', 'poked'],
      ]);
      const kept = await backend.query<{ instance_id: string; seq: number }>(
        `SELECT instance_id, seq FROM "${parted}".transitions_kept ORDER BY instance_id, seq`,
      );
      expect(kept.map((r) => `${r.instance_id}#${r.seq}`)).toEqual(['feb-done#1', 'feb-done#2', 'feb-live#1', 'jan-idle#1', 'jan-idle#2', 'old-live#1']);
      // Nothing left: a second prune drops nothing and deletes nothing.
      expect(await q.prune()).toEqual({ records: 0, transitions: 0, partitions: 0 });
    } finally {
      await p.stop();
      await q.stop();
    }

    // Records go on stepping after the drop; jan-idle's kept latest entry then becomes old
    // history and goes by the row rule, from the default partition.
    for (const schema of [plain, parted]) await phase(schema, at(4, 5), [['jan-idle', 'poke'], ['old-live', 'go']]);
    const p2 = await open(plain, HISTORY_30D);
    const q2 = await open(parted, HISTORY_30D);
    try {
      expect(await p2.prune()).toEqual({ records: 0, transitions: 1 });
      expect(await q2.prune()).toEqual({ records: 0, transitions: 1, partitions: 0 });
      for (const id of ['old-live', 'jan-idle', 'feb-live', 'feb-done']) {
        expect((await q2.history('job', id)).map((h) => [h.from, h.to, h.status, h.at.getTime()])).toEqual(
          (await p2.history('job', id)).map((h) => [h.from, h.to, h.status, h.at.getTime()]),
        );
      }
      expect((await q2.get('job', 'old-live'))?.status).toBe('done');
    } finally {
      await p2.stop();
      await q2.stop();
    }

    // A finished record goes with all its rows, whichever partition holds them.
    for (const schema of [plain, parted]) (clocks.get(schema) as TestClock).set(at(4, 10));
    const finished = { finished: '1d', failed: false, history: '30d' } as const;
    const p3 = await open(plain, finished);
    const q3 = await open(parted, finished);
    try {
      // feb-done (done in February: its creation and done entries) and old-live (creation, March poke, April go).
      expect(await p3.prune()).toEqual({ records: 2, transitions: 5 });
      expect(await q3.prune()).toEqual({ records: 2, transitions: 5, partitions: 0 });
      const left = await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${parted}".transitions WHERE instance_id IN ('old-live', 'feb-done')`);
      expect(left[0]?.n).toBe(0);
      expect(await rowsOf(parted)).toHaveLength((await rowsOf(plain)).length);
    } finally {
      await p3.stop();
      await q3.stop();
    }
  });
});

describe('a partition drop on postgres', () => {
  let backend: TestBackend;
  beforeAll(async () => {
    backend = await postgresBackend();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('gives up for this round when sessions hold the history table past the lock timeout, and drops on the next', async () => {
    const clock = new TestClock(Date.UTC(2026, 0, 10));
    const rt = await createRuntime({ database: backend.database, schema: backend.schema, clock, machines: [job], retention: KEEP_ALL });
    await rt.start();
    try {
      await rt.create('job', { id: 'r' });
      await rt.send('job', 'r', { type: 'poke' });
      await rt.waitFor('job', 'r', { state: 'poked' });
      await rt.send('job', 'r', { type: 'poke' });
      await rt.waitFor('job', 'r', { state: 'waiting' });
    } finally {
      await rt.stop();
    }
    await partitionHistory({ database: backend.database, schema: backend.schema, clock });
    clock.set(Date.UTC(2026, 3, 5));
    const pruner = await createRuntime({ database: backend.database, schema: backend.schema, clock, machines: [job], retention: HISTORY_30D });
    try {
      const names = async () =>
        (
          await backend.query<{ name: string }>(
            `SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = '"${backend.schema}".transitions'::regclass AND c.relname LIKE 'transitions_m%' ORDER BY 1`,
          )
        ).map((r) => r.name);
      const before = await names();
      expect(before.slice(0, 2)).toEqual(['transitions_m202601', 'transitions_m202602']);
      // A session in the middle of a write holds the table: the detach cannot get its lock.
      let busy: Promise<void> | undefined;
      const held = new Promise<void>((resolve) => {
        busy = backend.inTransaction(async (tx) => {
          await tx.query(`LOCK TABLE "${backend.schema}".transitions IN ROW EXCLUSIVE MODE`);
          resolve();
          // Held while the prune below tries (its lock timeout is 2 s): no event to wait on from here.
          await new Promise((r) => setTimeout(r, 6000));
        }, 'commit');
      });
      await held;
      const t0 = Date.now();
      expect(await pruner.prune()).toEqual({ records: 0, transitions: 0, partitions: 0 });
      // Two waits of at most 2 s (making the next partitions, detaching), not the 6 s the lock is held.
      expect(Date.now() - t0).toBeLessThan(5500);
      expect((await names()).slice(0, 2)).toEqual(before.slice(0, 2));
      await busy;
      // The next round drops both: r's first poke goes; its creation and latest entries are kept.
      expect(await pruner.prune()).toEqual({ records: 0, transitions: 1, partitions: 2 });
      expect((await names())[0]).toBe('transitions_m202603');
      expect((await pruner.history('job', 'r')).map((h) => [h.from, h.to])).toEqual([
        [null, 'waiting'],
        ['poked', 'waiting'],
      ]);
    } finally {
      await pruner.stop();
    }
  });
});
