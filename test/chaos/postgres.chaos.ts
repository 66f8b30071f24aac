import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { ChaosEnv, expectClean, report, scale, sleep } from './harness.js';

let env: ChaosEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

/** Waits until fewer than `fraction` of the records are still active: the nodes are in the middle of it. */
async function underway(e: ChaosEnv, records: number, fraction: number): Promise<void> {
  while ((await e.pending()) > records * fraction) await sleep(50);
}

for (const mode of ['immediate', 'fast'] as const) {
  it(`PostgreSQL restart -m ${mode} under load, NATS outbox on: nothing lost, nothing twice, every transition in JetStream once`, async () => {
    env = await ChaosEnv.create({ nodes: 3, nats: true });
    const records = scale(1000, 5000);
    const downMs = scale(2000, 10_000);
    const start = Date.now();
    const ids = await env.create(`pg-${mode}`, records, () => ({ ms: 5 }));
    await underway(env, records, 0.7);
    const downAt = Date.now();
    env.pg.stop(mode);
    // The outage's length is the scenario: the database stays down this long.
    await sleep(downMs);
    env.pg.start();
    const backAt = Date.now();
    const settleMs = await env.settle(scale(90_000, 180_000));
    const drainMs = await env.drainOutbox(60_000);
    const audit = await env.audit(ids);
    const recoverMs = await env.firstCommitAfter(backAt);
    report(env, `pg-restart-${mode}`, audit, {
      downMs: backAt - downAt,
      recoverMs,
      ...(await env.latency()),
      wallMs: Date.now() - start,
      settleMs,
      drainMs,
    });
    expectClean(env!, audit, expect);
    expect(recoverMs).toBeGreaterThanOrEqual(0);
  });
}

it('pg_terminate_backend of every drover connection, again and again under load: nothing lost, nothing twice', async () => {
  env = await ChaosEnv.create({ nodes: 3, nats: true });
  const e = env;
  const records = scale(1500, 6000);
  const rounds = scale(3, 10);
  const start = Date.now();
  const ids = await e.create('term', records, () => ({ ms: 5 }));
  await underway(e, records, 0.8);
  const at: number[] = [];
  let terminated = 0;
  for (let i = 0; i < rounds; i += 1) {
    at.push(Date.now());
    const rows = await e.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE usename = 'drover' AND pid <> pg_backend_pid()`,
    );
    terminated += rows.length;
    // One round a second: the nodes reconnect in between, and are cut again.
    await sleep(1000);
  }
  const settleMs = await e.settle(scale(90_000, 180_000));
  const drainMs = await e.drainOutbox(60_000);
  const audit = await e.audit(ids);
  let recoverMs = 0;
  for (const t of at) recoverMs = Math.max(recoverMs, await e.firstCommitAfter(t));
  report(e, 'pg-terminate-backend', audit, { rounds, terminated, recoverMs, ...(await e.latency()), wallMs: Date.now() - start, settleMs, drainMs });
  expectClean(env!, audit, expect);
  expect(terminated).toBeGreaterThan(rounds);
});

it('pool exhaustion: tiny node pools, and other clients take every connection the server has left: work resumes when they let go', async () => {
  env = await ChaosEnv.create({ nodes: 3, poolMax: 3, maxConnections: 30 });
  const e = env;
  const records = scale(1500, 6000);
  const holdMs = scale(3000, 20_000);
  const start = Date.now();
  const ids = await e.create('pool', records, () => ({ ms: 5 }));
  await underway(e, records, 0.8);
  // Other clients (another application, the same role) take every free slot and keep trying
  // for more, and the nodes' own connections are cut every 500 ms: the nodes come back to a
  // server with no room, and win a slot only now and then in the race with the holders.
  const holders: pg.Client[] = [];
  let holding = true;
  const lane = async () => {
    while (holding) {
      const c = new pg.Client({ connectionString: e.pg.url, application_name: 'chaos-holder' });
      c.on('error', () => {});
      try {
        await c.connect();
        if (holding) holders.push(c);
        else await c.end();
      } catch {
        // The server is full: try again at once, to take the next slot that frees up.
      }
    }
  };
  const lanes = Array.from({ length: 6 }, lane);
  while (holders.length < 10) await sleep(20);
  const heldAt = Date.now();
  const pendingAtHold = await e.pending();
  let nodeConnections = 0;
  let cuts = 0;
  while (Date.now() - heldAt < holdMs) {
    const [r] = await e.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE usename = 'drover' AND application_name LIKE 'node-%'`,
    );
    nodeConnections += r?.n ?? 0;
    cuts += 1;
    // The cadence of the cuts: often enough that the nodes hardly hold a connection.
    await sleep(500);
  }
  const pendingAtRelease = await e.pending();
  holding = false;
  await Promise.all(lanes);
  await Promise.all(holders.map((c) => c.end().catch(() => {})));
  const releasedAt = Date.now();
  const settleMs = await e.settle(scale(90_000, 180_000));
  const audit = await e.audit(ids);
  const recoverMs = await e.firstCommitAfter(releasedAt);
  report(e, 'pool-exhaustion', audit, {
    holders: holders.length,
    cuts,
    nodeConnectionsCut: nodeConnections,
    pendingAtHold,
    pendingAtRelease,
    heldMs: releasedAt - heldAt,
    recoverMs,
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
  });
  expectClean(env!, audit, expect);
  expect(holders.length).toBeGreaterThan(10);
});
