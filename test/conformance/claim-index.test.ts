import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQueries } from '../../src/db/queries.js';
import { createRuntime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { lifecycle } from './machines.js';

// "Every query that a poller runs in a loop is served by an index; claim cost must not grow
// with the number of idle rows." The claim statement over 20k idle records must use the
// partial index `instances_due` and never scan the instances table.

const IDLE = 20_000;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

// PostgreSQL is the contract; PGlite is the same planner, checked too.
describe.each(BACKENDS)('the claim query on $name', ({ make }) => {
  let backend: TestBackend;

  beforeAll(async () => {
    backend = await make();
    // Migrate the schema through a runtime, then fill it with raw SQL.
    const rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [lifecycle] });
    await rt.create('lc', { id: 'template' });
    await rt.stop();
    const s = `"${backend.schema}"`;
    // Idle records: half finished, half active with nothing due (wake_at NULL).
    await backend.query(
      `INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers, seq,
                                  created_at, updated_at)
       SELECT 'lc', 'idle-' || g, 1, 'lc', t.state, t.snapshot, CASE WHEN g % 2 = 0 THEN 'done' ELSE 'active' END,
              now(), NULL, '[]', 1, now(), now()
       FROM generate_series(1, ${IDLE}) AS g, (SELECT state, snapshot FROM ${s}.instances WHERE id = 'template') AS t`,
    );
    // A few records that are due, and some due in the far future.
    await backend.query(
      `INSERT INTO ${s}.instances (machine, id, version, queue, state, snapshot, status, entered_at, wake_at, timers, seq,
                                  created_at, updated_at)
       SELECT 'lc', 'due-' || g, 1, 'lc', t.state, t.snapshot, 'active', now(),
              CASE WHEN g <= 5 THEN now() - interval '1 minute' ELSE now() + interval '1 day' END, '[]', 1, now(), now()
       FROM generate_series(1, 20) AS g, (SELECT state, snapshot FROM ${s}.instances WHERE id = 'template') AS t`,
    );
    await backend.query(`ANALYZE ${s}.instances`);
  }, 120_000);
  afterAll(async () => {
    await backend?.close();
  });

  it(`uses index instances_due and no Seq Scan on instances, with ${IDLE} idle rows`, async () => {
    const { sql } = createQueries(backend.schema);
    const now = new Date();
    const params = ['lc', now, 50, 'explain-node', new Date(now.getTime() + 30_000), true];
    const [result] = await backend.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> | string }>(
      `EXPLAIN (FORMAT JSON) ${sql.claimInstances}`,
      params,
    );
    const raw = result?.['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: PlanNode }>;
    const all = nodes(plan[0]!.Plan);
    const described = all.map(
      (n) =>
        `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}`,
    );
    expect(
      all.some((n) => n['Index Name'] === 'instances_due'),
      `plan: ${described.join(' | ')}`,
    ).toBe(true);
    expect(
      all.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'instances'),
      `plan: ${described.join(' | ')}`,
    ).toEqual([]);
  });

  it('claims exactly the due records', async () => {
    const { claimInstances } = createQueries(backend.schema);
    const now = new Date();
    const db = { query: async (text: string, params?: unknown[]) => ({ rows: await backend.query(text, params), rowCount: 0 }) };
    const claim = (node: string) =>
      claimInstances(db as never, { queue: 'lc', now, limit: 50, node, leaseUntil: new Date(now.getTime() + 30_000), retakeOwn: true });
    const rows = await claim('test-node');
    expect(rows.map((r) => r.id).sort()).toEqual(['due-1', 'due-2', 'due-3', 'due-4', 'due-5']);
    // Claimed rows are leased: a second claim finds nothing.
    expect(await claim('other-node')).toEqual([]);
  });
});
