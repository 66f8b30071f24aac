import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { pgDatabase } from '../../src/db/pg.js';
import { pgliteDatabase } from '../../src/db/pglite.js';
import { createPruneQueries } from '../../src/db/prune-queries.js';
import { prune } from '../../src/engine/prune.js';
import { createRuntime, durable, InvalidArgumentError, type RuntimeOptions, TestClock } from '../../src/index.js';
import { silentLogger } from '../../src/log.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

const job = durable(
  setup({
    actions: {
      explode: () => {
        throw new Error('boom');
      },
    },
  }).createMachine({
    id: 'job',
    initial: 'waiting',
    states: {
      waiting: { on: { go: 'finished', poke: 'poked', boom: { actions: 'explode' } } },
      poked: { on: { go: 'finished', poke: 'waiting' } },
      finished: { type: 'final' },
    },
  }),
);

const DAY = 86_400_000;

describe.each(BACKENDS)('retention on $name', ({ make }) => {
  let backend: TestBackend;
  const t0 = Date.UTC(2026, 0, 1);
  const clock = new TestClock(t0);
  const open = (retention?: RuntimeOptions['retention'], more: RuntimeOptions = {}) =>
    createRuntime({ database: backend.database, schema: backend.schema, clock, machines: [job], ...(retention ? { retention } : {}), ...more });
  // A runtime that steps records but prunes nothing by itself.
  const KEEP_ALL = { finished: false, failed: false, history: false } as const;
  const rows = async (table: string, id: string) =>
    (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${backend.schema}".${table} WHERE ${table === 'instances' ? 'id' : 'instance_id'} = $1`, [id]))[0]?.n;
  const history = async (id: string) =>
    (await backend.query<{ seq: number }>(`SELECT seq FROM "${backend.schema}".transitions WHERE instance_id = $1 ORDER BY seq`, [id])).map((r) => r.seq);

  beforeAll(async () => {
    backend = await make();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('refuses a bad retention option with InvalidArgumentError, before opening anything', async () => {
    await expect(createRuntime({ retention: { finished: 'soon' } })).rejects.toThrow(InvalidArgumentError);
    await expect(createRuntime({ retention: { history: -5 } })).rejects.toThrow(InvalidArgumentError);
    await expect(createRuntime({ retention: { finished: '10ms' } })).rejects.toThrow(/retention\.finished must be at least 1000 ms/);
    await expect(createRuntime({ retention: { finished: {} as never } })).rejects.toThrow(/retention\.finished must be a duration/);
    await expect(createRuntime({ retention: { finshed: '1d' } as never })).rejects.toThrow(/unknown option "finshed" \(did you mean "finished"\?\)/);
    await expect(createRuntime({ retention: '7d' as never })).rejects.toThrow(/retention must be an object/);
    await expect(createRuntime({ retentoin: {} } as never)).rejects.toThrow(/did you mean "retention"/);
  });

  it('prunes records finished longer ago than `finished` with their history, inbox, invocations and breaches; keeps the rest', async () => {
    const a = await open(KEEP_ALL);
    await a.start();
    try {
      for (const id of ['old-done', 'unpublished', 'live']) await a.create('job', { id });
      await a.create('job', { id: 'old-cancelled' });
      await a.create('job', { id: 'old-failed' });
      await a.send('job', 'old-done', { type: 'go' });
      await a.send('job', 'unpublished', { type: 'go' });
      await a.send('job', 'live', { type: 'poke' });
      await a.send('job', 'old-failed', { type: 'boom' });
      await a.cancel('job', 'old-cancelled');
      await a.waitFor('job', 'old-done', { status: 'done' });
      await a.waitFor('job', 'unpublished', { status: 'done' });
      await a.waitFor('job', 'live', { state: 'poked' });
      await a.waitFor('job', 'old-failed', { status: 'failed' });
      clock.set(t0 + 25 * DAY);
      await a.create('job', { id: 'new-done' });
      await a.send('job', 'new-done', { type: 'go' });
      await a.send('job', 'live', { type: 'poke' });
      await a.waitFor('job', 'new-done', { status: 'done' });
      await a.waitFor('job', 'live', { state: 'waiting' });
    } finally {
      await a.stop();
    }
    const s = `"${backend.schema}"`;
    const at = new Date(t0);
    // What a done record may leave behind: an event that came after its last step, an
    // invocation row, an SLA breach.
    await backend.query(`INSERT INTO ${s}.events (machine, instance_id, event, created_at) VALUES ('job', 'old-done', '{"type":"late"}', $1)`, [at]);
    await backend.query(
      `INSERT INTO ${s}.invocations (machine, instance_id, invoke_id, token, version, queue, src, locked_until, created_at)
       VALUES ('job', 'old-done', 'x', 't', 1, 'default', 'charge', $1, $1)`,
      [at],
    );
    await backend.query(`INSERT INTO ${s}.sla_breaches VALUES ('job', 'old-done', 'waiting', $1, $1, 'n')`, [at]);
    // A transition the NATS relay has not published yet.
    await backend.query(`UPDATE ${s}.transitions SET published_at = NULL WHERE instance_id = 'unpublished' AND status = 'done'`);
    expect(await history('old-done')).toHaveLength(2);
    expect(await history('live')).toHaveLength(3);

    clock.set(t0 + 31 * DAY);
    const b = await open();
    try {
      // finished 7d: before t0+24d; history 30d: before t0+1d.
      // old-done and old-cancelled go with 2 history rows each; live loses its first poke.
      expect(await b.prune()).toEqual({ records: 2, transitions: 5 });
      for (const id of ['old-done', 'old-cancelled']) {
        expect(await b.get('job', id)).toBeNull();
        for (const table of ['instances', 'transitions', 'events', 'invocations', 'sla_breaches']) expect(await rows(table, id)).toBe(0);
      }
      expect((await b.get('job', 'new-done'))?.status).toBe('done');
      expect(await history('new-done')).toHaveLength(2);
      // The unpublished transition and so its record stay.
      expect((await b.get('job', 'unpublished'))?.status).toBe('done');
      expect(await history('unpublished')).toHaveLength(2);
      // A failed record stays for retry(), with its creation and its failure.
      const failed = await b.get('job', 'old-failed');
      expect(failed?.status).toBe('failed');
      expect((await b.history('job', 'old-failed')).map((h) => h.status)).toEqual(['active', 'failed']);
      // The live record keeps its creation entry and its latest entry; the old poke is gone.
      const live = await b.history('job', 'live');
      expect(live.map((h) => [h.from, h.to])).toEqual([
        [null, 'waiting'],
        ['poked', 'waiting'],
      ]);
      expect((await b.get('job', 'live'))?.state).toBe('waiting');
      // Nothing left to do.
      expect(await b.prune()).toEqual({ records: 0, transitions: 0 });
      // Once published, the record goes.
      await backend.query(`UPDATE ${s}.transitions SET published_at = at WHERE instance_id = 'unpublished'`);
      expect(await b.prune()).toEqual({ records: 1, transitions: 2 });
    } finally {
      await b.stop();
    }

    // Failed records go only when asked for; live records never do.
    const c = await open({ failed: '1d', finished: false, history: false });
    try {
      expect(await c.prune()).toEqual({ records: 1, transitions: 2 });
      expect(await c.get('job', 'old-failed')).toBeNull();
      expect((await c.get('job', 'live'))?.status).toBe('active');
      expect((await c.get('job', 'new-done'))?.status).toBe('done');
    } finally {
      await c.stop();
    }
  });

  it('deletes in batches, looping until a batch comes back short', async () => {
    const s = `"${backend.schema}"`;
    for (const table of ['instances', 'transitions', 'events', 'invocations']) await backend.query(`DELETE FROM ${s}.${table}`);
    const r = await open(KEEP_ALL);
    try {
      for (let i = 0; i < 5; i++) {
        await r.create('job', { id: `batch-${i}` });
        await r.cancel('job', `batch-${i}`);
      }
    } finally {
      await r.stop();
    }
    const db = backend.name === 'pglite' ? pgliteDatabase(backend.database as never, false) : pgDatabase(backend.database as string, silentLogger);
    try {
      const counts: number[] = [];
      const sql = createPruneQueries(backend.schema);
      const counting = {
        ...sql,
        finishedRecords: async (...args: Parameters<typeof sql.finishedRecords>) => {
          const n = await sql.finishedRecords(...args);
          counts.push(n.records);
          return n;
        },
      };
      const result = await prune({
        db,
        sql: counting,
        now: clock.now() + 2 * DAY,
        retention: { finishedMs: DAY, failedMs: null, historyMs: null },
        batch: 2,
      });
      expect(result).toEqual({ records: 5, transitions: 10 });
      // done: one short batch; cancelled: 2, 2, 1.
      expect(counts).toEqual([0, 2, 2, 1]);
      // A stopping runtime's prune ends after the batch in hand.
      for (const id of ['stop-1', 'stop-2', 'stop-3']) {
        await backend.query(
          `INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, created_at, updated_at)
           VALUES ('job', $1, 1, 'default', 'finished', '{}', 'cancelled', $2, $2, $2)`,
          [id, new Date(clock.now())],
        );
      }
      const stopping = new AbortController();
      stopping.abort();
      const retention = { finishedMs: DAY, failedMs: null, historyMs: null };
      expect(await prune({ db, sql, now: clock.now() + 2 * DAY, retention, batch: 2, signal: stopping.signal })).toEqual({ records: 2, transitions: 0 });
      expect(await prune({ db, sql, now: clock.now() + 2 * DAY, retention, batch: 2 })).toEqual({ records: 1, transitions: 0 });
    } finally {
      await db.close();
    }
  });

  it('housekeeping prunes on a started runtime every reaperInterval', async () => {
    // The supervisor's actors sleep on the runtime's clock too: each look moves it past one reaperInterval.
    const r = await open({ finished: '1d', history: false }, { reaperInterval: 10 });
    await r.start();
    try {
      await r.create('job', { id: 'hk' });
      await r.cancel('job', 'hk');
      expect(await rows('instances', 'hk')).toBe(1);
      clock.advance('2d');
      await until(async () => {
        clock.advance(10);
        return (await rows('instances', 'hk')) === 0;
      }, 'housekeeping pruned the cancelled record');
      expect(await rows('transitions', 'hk')).toBe(0);
    } finally {
      await r.stop();
    }
  });
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}
const planNodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(planNodes)];

// Housekeeping runs these on every node every minute: what they pick to delete must be read
// through their indexes, oldest first, however many rows are kept. (How the deletes then join
// is the planner's choice by size: at 20,000 rows a hash join; at 200,000 records and 600,000
// transitions index lookups throughout, see docs/concepts.md#retention.)
describe.each(BACKENDS)('the prune statements on $name', ({ make }) => {
  let backend: TestBackend;
  const ROWS = 20_000;

  beforeAll(async () => {
    backend = await make();
    const rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [job] });
    await rt.stop();
    const s = `"${backend.schema}"`;
    await backend.query(
      `INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, created_at, updated_at)
       SELECT 'job', 'r' || g, 1, 'default', 'waiting', '{}', (ARRAY['active', 'done', 'failed', 'cancelled'])[1 + g % 4],
              now(), now(), now() - g * interval '1 minute'
       FROM generate_series(1, ${ROWS}) AS g`,
    );
    await backend.query(
      `INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, at, published_at)
       SELECT 'job', 'r' || (g / 3), 1, g % 3, CASE WHEN g % 3 = 0 THEN NULL ELSE 'waiting' END, 'waiting', 'active', '{}',
              now() - g * interval '1 minute', now()
       FROM generate_series(1, ${ROWS * 3}) AS g`,
    );
    await backend.query(`ANALYZE ${s}.instances`);
    await backend.query(`ANALYZE ${s}.transitions`);
  }, 120_000);
  afterAll(async () => {
    await backend?.close();
  });

  const plan = async (run: (q: { query: (text: string) => Promise<{ rows: never[]; rowCount: number }> }) => Promise<unknown>, params: unknown[]) => {
    let text = '';
    await run({
      query: async (t: string) => {
        text = t;
        return { rows: [], rowCount: 0 };
      },
    });
    const rows = await backend.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${text}`, params);
    return planNodes((rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan);
  };

  it('the record prune picks its records through instances_finished', async () => {
    const sql = createPruneQueries(backend.schema);
    const before = new Date(Date.now() - 7 * DAY);
    const used = await plan((q) => sql.finishedRecords(q as never, { status: 'done', before, limit: 1000 }), ['done', before, 1000]);
    expect(used.map((n) => n['Index Name'])).toContain('instances_finished');
  });

  it('the history prune picks its rows through transitions_prunable', async () => {
    const sql = createPruneQueries(backend.schema);
    const before = new Date(Date.now() - 30 * DAY);
    const used = await plan((q) => sql.oldHistory(q as never, { before, limit: 1000 }), [before, 1000]);
    expect(used.map((n) => n['Index Name'])).toContain('transitions_prunable');
  });
});
