import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../../src/index.js';
import { postgresBackend, type TestBackend } from '../helpers/backends.js';
import { shipOrder } from './fixtures/child-machines.js';
import { commitsOf, waitUntil, type Worker, workerPool } from './helpers.js';

// Records as actors across a SIGKILL: a parent record's step creates its child record in the
// same transaction. A node killed after that commit, while the child's first step (its invoked
// promise) runs, or before it, inside the parent's step, must leave one child record per parent,
// each child created once, each parent done once, and nothing in an inbox.

const MACHINES = pathToFileURL(fileURLToPath(new URL('./fixtures/child-machines.ts', import.meta.url))).href;

const CHILD_PATH = ['packing', 'shipped'];
const PARENT_PATH = ['new', 'shipping', 'done'];

describe('SIGKILL around a child record (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();
  const s = () => `"${backend.schema}"`;

  beforeAll(async () => {
    backend = await postgresBackend();
    // Never started: a client that creates and sends (and applies the migrations).
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [shipOrder] });
  });
  // Each test's nodes end with it: a live node would take the next test's records.
  afterEach(() => workers.killAll());
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
  });

  const start = (node: string, holdId?: string): Worker =>
    workers.start({ schema: backend.schema, node, env: { DROVER_MACHINES: MACHINES }, ...(holdId ? { holdId } : {}) });

  async function allDone(ids: readonly string[]): Promise<boolean> {
    const [r] = await backend.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${s()}.instances WHERE machine = 'crash_order' AND id = ANY($1) AND status <> 'active'`,
      [ids],
    );
    return r?.n === ids.length;
  }

  /** Everything wrong with the parents `ids` and their child records, as readable lines (empty when all is well). */
  async function problems(ids: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) {
      const childId = `${id}.ship`;
      const parent = await backend.query<{ status: string; state: string; shipment: unknown }>(
        `SELECT status, state, snapshot->'context'->'shipment' AS shipment FROM ${s()}.instances WHERE machine = 'crash_order' AND id = $1`,
        [id],
      );
      if (parent[0]?.status !== 'done' || parent[0].state !== 'done') out.push(`${id}: parent ${JSON.stringify(parent[0] ?? null)}`);
      if (JSON.stringify(parent[0]?.shipment) !== JSON.stringify({ id: childId, label: `packed:${childId}` }))
        out.push(`${id}: shipment ${JSON.stringify(parent[0]?.shipment)}`);
      const children = await backend.query<{ machine: string; id: string; status: string; state: string }>(
        `SELECT machine, id, status, state FROM ${s()}.instances WHERE parent_machine = 'crash_order' AND parent_id = $1`,
        [id],
      );
      if (JSON.stringify(children) !== JSON.stringify([{ machine: 'crash_ship', id: childId, status: 'done', state: 'shipped' }]))
        out.push(`${id}: child records ${JSON.stringify(children)}`);
      const history = async (machine: string, rid: string) =>
        backend.query<{ seq: number; from_state: string | null; to_state: string; event: { type: string } }>(
          `SELECT seq, from_state, to_state, event FROM ${s()}.transitions WHERE machine = $1 AND instance_id = $2 ORDER BY seq, id`,
          [machine, rid],
        );
      const ch = await history('crash_ship', childId);
      if (ch.filter((h) => h.from_state === null).length !== 1) out.push(`${childId}: ${ch.filter((h) => h.from_state === null).length} creation rows`);
      if (JSON.stringify(ch.map((h) => h.seq)) !== JSON.stringify(CHILD_PATH.map((_, i) => i + 1))) out.push(`${childId}: seqs ${JSON.stringify(ch.map((h) => h.seq))}`);
      if (JSON.stringify(ch.map((h) => h.to_state)) !== JSON.stringify(CHILD_PATH)) out.push(`${childId}: path ${JSON.stringify(ch.map((h) => h.to_state))}`);
      const ph = await history('crash_order', id);
      if (JSON.stringify(ph.map((h) => h.seq)) !== JSON.stringify(PARENT_PATH.map((_, i) => i + 1))) out.push(`${id}: seqs ${JSON.stringify(ph.map((h) => h.seq))}`);
      if (JSON.stringify(ph.map((h) => h.to_state)) !== JSON.stringify(PARENT_PATH)) out.push(`${id}: path ${JSON.stringify(ph.map((h) => h.to_state))}`);
      const onDone = ph.filter((h) => h.event.type === 'xstate.done.actor.ship');
      if (onDone.length !== 1 || onDone[0]?.to_state !== 'done') out.push(`${id}: onDone transitions ${JSON.stringify(onDone)}`);
      const [spawned] = await backend.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${s()}.effects WHERE machine = 'crash_order' AND instance_id = $1 AND kind = 'spawned'`,
        [id],
      );
      if (spawned?.n !== 1) out.push(`${id}: ${spawned?.n} 'spawned' effects`);
    }
    const inbox = await backend.query<{ machine: string; instance_id: string }>(`SELECT machine, instance_id FROM ${s()}.events`);
    for (const e of inbox) out.push(`${e.machine}/${e.instance_id}: an event left in the inbox`);
    const inv = await backend.query<{ machine: string; instance_id: string }>(`SELECT machine, instance_id FROM ${s()}.invocations`);
    for (const v of inv) out.push(`${v.machine}/${v.instance_id}: an invocation left`);
    return out;
  }

  /** The parent's stored state and its child records, read while a node holds or after it died. */
  async function stored(id: string) {
    const [p] = await backend.query<{ state: string; seq: number }>(`SELECT state, seq FROM ${s()}.instances WHERE machine = 'crash_order' AND id = $1`, [id]);
    const children = await backend.query<{ id: string; state: string; status: string }>(
      `SELECT id, state, status FROM ${s()}.instances WHERE machine = 'crash_ship' AND id LIKE $1 || '.%'`,
      [id],
    );
    return { parent: p, children };
  }

  it("killed after the parent's step committed, while the child's first step runs: one child, created once, the parent done once", async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `after${i}`);
    const held = 'after2';
    for (const id of ids) await client.create('crash_order', { id, input: { id } });
    const a = start('child-a', `${held}.ship:pack`);
    await a.ready();
    for (const id of ids) await client.send('crash_order', id, { type: 'ship' });
    await a.line('hold', 20_000);

    // The child's promise runs: the parent's step, with the child record, is committed.
    const during = await stored(held);
    expect(during.parent).toMatchObject({ state: 'shipping', seq: 2 });
    expect(during.children).toEqual([{ id: `${held}.ship`, state: 'packing', status: 'active' }]);
    await a.kill();
    expect(await stored(held)).toEqual(during);

    const b = start('child-b');
    await b.ready();
    await waitUntil('every order done', () => allDone(ids), 30_000);
    expect(await problems(ids)).toEqual([]);
    // The promise of the killed node ran again on B (at least once), the child record was not made again.
    expect(b.words('invoke-start').map(([id]) => id)).toContain(`${held}.ship`);
    for (const machine of ['crash_order', 'crash_ship']) expect(commitsOf([a, b], machine).duplicates, machine).toEqual([]);
    const [count] = await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s()}.instances WHERE id LIKE 'after%'`);
    expect(count?.n).toBe(ids.length * 2);
  });

  it.each([
    ['in its own transition action', 'in-action', (id: string) => id],
    ["in the child's entry action (run inside the parent's step)", 'in-entry', (id: string) => `${id}.ship:entry`],
  ])("killed inside the parent's step, %s: no child record without the parent's step; the next node does it once", async (_, id, holdOf) => {
    await client.create('crash_order', { id, input: { id } });
    const a = start(`inside-a-${id}`, holdOf(id));
    await a.ready();
    await client.send('crash_order', id, { type: 'ship' });
    await a.line('hold', 20_000);

    // Held before the commit: the parent has not moved, and there is no child record.
    const before = await stored(id);
    expect(before).toEqual({ parent: { state: 'new', seq: 1 }, children: [] });
    await a.kill();
    // The killed backend's transaction is rolled back, never committed.
    await waitUntil(
      "the killed node's backends to end",
      async () => (await backend.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1`, [`inside-a-${id}`])).length === 0,
      10_000,
    );
    expect(await stored(id)).toEqual(before);

    const b = start(`inside-b-${id}`);
    await b.ready();
    await waitUntil('the order done', () => allDone([id]), 30_000);
    expect(await problems([id])).toEqual([]);
    for (const machine of ['crash_order', 'crash_ship']) expect(commitsOf([a, b], machine).duplicates, machine).toEqual([]);
    expect(commitsOf([a], 'crash_order').commits.size).toBe(0);
    expect(commitsOf([a], 'crash_ship').commits.size).toBe(0);
  });
});
