import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../../src/index.js';
import { postgresBackend, type TestBackend } from '../helpers/backends.js';
import { hooks, next, STEPPER_PATH, slowjob, stepper } from './fixtures/machines.js';
import { commitsOf, eachLimit, stepperProblems, storedTransitions, type Worker, waitUntil, workerPool } from './helpers.js';

// A node is SIGKILLed while it has records claimed and a step half done; another node with a
// short lease takes over. Nothing committed may run again, nothing uncommitted may be lost.

const idsOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

/** Sends `next` 1, 2, 3 to every record, round by round; resolves to the first error, if any. */
function sendAll(client: Runtime, ids: readonly string[]): Promise<unknown> {
  return (async () => {
    for (const n of [1, 2, 3]) await eachLimit(ids, 8, (id) => client.send('stepper', id, next(n)));
  })().then(
    () => undefined,
    (err: unknown) => err,
  );
}

async function allDone(backend: TestBackend, ids: readonly string[]): Promise<boolean> {
  const [row] = await backend.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${backend.schema}".instances WHERE machine = 'stepper' AND id = ANY($1) AND status <> 'active'`,
    [ids],
  );
  return row?.n === ids.length;
}

describe('SIGKILL inside a step (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();
  const runtimes: Runtime[] = [];

  beforeAll(async () => {
    backend = await postgresBackend();
    // Never started: a client that creates and sends (and applies the migrations).
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob] });
  });
  afterAll(async () => {
    await workers.killAll();
    for (const rt of runtimes) await rt.stop();
    await client?.stop();
    await backend?.close();
  });

  it('a node killed mid-step: the next node redoes that step once, re-runs nothing committed, loses no event', async () => {
    const ids = idsOf('k', 200);
    // Each custom action busy-waits 2 ms; the 250th never returns: the node is stuck inside a
    // step of a claimed, uncommitted batch when it is killed.
    const a = workers.start({ schema: backend.schema, node: 'crash-a', busyMs: 2, holdAfter: 250, batch: 20 });
    await a.ready();
    await eachLimit(ids, 8, async (id) => {
      await client.create('stepper', { id, input: { id } });
    });
    const sending = sendAll(client, ids); // goes on while A works, dies and B takes over

    const [heldId, heldN] = (await a.line('hold', 30_000)) as [string, string];
    await a.kill();

    // The batch A had in hand is still claimed by it: the kill landed inside a step.
    const claimed = await backend.query<{ id: string; locked_until: Date }>(
      `SELECT id, locked_until FROM "${backend.schema}".instances WHERE locked_by = 'crash-a'`,
    );
    expect(claimed.map((r) => r.id)).toContain(heldId);
    const committedByA = commitsOf([a], 'stepper');
    expect(committedByA.commits.size).toBeGreaterThan(0);

    // B: a fresh node in this process; it must wait out A's leases (1 s), then finish everything.
    const redone: string[] = [];
    const redoneAt = new Map<string, number>();
    hooks.onWork = (id, n) => {
      redone.push(`${id}:${n}`);
      if (!redoneAt.has(id)) redoneAt.set(id, Date.now());
    };
    const b = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      node: 'crash-b',
      machines: [stepper, slowjob],
      lease: '1s',
      pollInterval: 20,
    });
    runtimes.push(b);
    await b.start();
    expect(await sending).toBeUndefined();
    await waitUntil('every record finished', () => allDone(backend, ids), 30_000);

    expect(await stepperProblems(backend, backend.schema, ids, STEPPER_PATH)).toEqual([]);
    const stored = await storedTransitions(backend, backend.schema, 'stepper');
    expect(stored.size).toBe(ids.length * STEPPER_PATH.length);

    // What A committed agrees with the store, and B never ran any of it again.
    expect(committedByA.duplicates).toEqual([]);
    const mismatched = [...committedByA.commits].filter(([key, to]) => stored.get(key) !== to);
    expect(mismatched).toEqual([]);
    const committedSteps = new Set(
      [...committedByA.commits.keys()].map((key) => key.replace(/:(\d+)$/, (_, seq) => `:${Number(seq) - 1}`)),
    );
    expect(redone.filter((step) => committedSteps.has(step))).toEqual([]);
    // The step A died in was run again by B (at-least-once for custom actions), once.
    expect(redone.filter((step) => step === `${heldId}:${heldN}`)).toHaveLength(1);
    // B did not take A's claimed records before their leases ran out.
    for (const { id, locked_until } of claimed) {
      const at = redoneAt.get(id);
      if (at !== undefined) expect(at).toBeGreaterThanOrEqual(locked_until.getTime());
    }
  });
});

describe('repeated SIGKILLs at arbitrary points (PostgreSQL)', () => {
  let backend: TestBackend;
  let client: Runtime;
  const workers = workerPool();

  beforeAll(async () => {
    backend = await postgresBackend();
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [stepper, slowjob] });
  });
  afterAll(async () => {
    await workers.killAll();
    await client?.stop();
    await backend?.close();
  });

  it('three nodes killed one after another wherever they are; a fourth finishes; every step committed once', async () => {
    const ids = idsOf('r', 150);
    await eachLimit(ids, 8, async (id) => {
      await client.create('stepper', { id, input: { id } });
    });
    const sending = sendAll(client, ids);
    const nodes: Worker[] = [];
    for (let round = 1; round <= 3; round++) {
      const w = workers.start({ schema: backend.schema, node: `rnd-${round}`, busyMs: 1, batch: 10 });
      nodes.push(w);
      await w.ready();
      // Killed wherever it happens to be: inside a step, just after a commit, or a moment later.
      if (round === 1) await w.until('40 custom actions', (x) => x.words('work').length >= 40, 20_000);
      else await w.until('40 commits', (x) => x.words('commit').length >= 40, 20_000);
      if (round === 3) await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 30)));
      await w.kill();
    }
    const last = workers.start({ schema: backend.schema, node: 'rnd-last', batch: 10 });
    nodes.push(last);
    await last.ready();
    expect(await sending).toBeUndefined();
    await waitUntil('every record finished', () => allDone(backend, ids), 30_000);

    expect(await stepperProblems(backend, backend.schema, ids, STEPPER_PATH)).toEqual([]);
    const stored = await storedTransitions(backend, backend.schema, 'stepper');
    expect(stored.size).toBe(ids.length * STEPPER_PATH.length);
    const { commits, duplicates } = commitsOf(nodes, 'stepper');
    expect(duplicates).toEqual([]);
    expect([...commits].filter(([key, to]) => stored.get(key) !== to)).toEqual([]);
  });
});
