import { afterEach, expect, it } from 'vitest';
import { ChaosEnv, expectClean, report, scale, sleep } from './harness.js';

let env: ChaosEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

it('NATS down under load with the outbox relay on: steps go on, and after it is back every transition reaches JetStream exactly once', async () => {
  env = await ChaosEnv.create({ nodes: 3, nats: true });
  const e = env;
  const nats = e.nats!;
  const records = scale(1000, 4000);
  const downMs = scale(4000, 30_000);
  const start = Date.now();
  const ids = await e.create('n', records, () => ({ ms: 5 }));
  while ((await e.pending()) > records * 0.8) await sleep(50);
  await nats.stop();
  const downAt = Date.now();
  // While NATS is down: records keep being created and stepped, the outbox grows.
  let outboxMax = 0;
  const more = await e.feed('down', 100, downMs, async () => {
    const [r] = await e.query<{ n: number }>(`SELECT count(*)::int AS n FROM chaos.transitions WHERE published_at IS NULL`);
    outboxMax = Math.max(outboxMax, r?.n ?? 0);
  });
  const [doneDuring] = await e.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM chaos.transitions WHERE to_state = 'done' AND at >= $1`,
    [new Date(downAt)],
  );
  const [backlog] = await e.query<{ last: string | null }>(`SELECT max(id)::text AS last FROM chaos.transitions WHERE published_at IS NULL`);
  await nats.start();
  const backAt = Date.now();
  // Recovered: every transition that waited in the outbox during the outage is published.
  let recoverMs = -1;
  while (Date.now() - backAt < scale(60_000, 180_000)) {
    const [r] = await e.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM chaos.transitions WHERE published_at IS NULL AND parked_at IS NULL AND id <= $1`,
      [backlog?.last ?? '0'],
    );
    if (r?.n === 0) {
      recoverMs = Date.now() - backAt;
      break;
    }
    await sleep(100);
  }
  const settleMs = await e.settle(scale(60_000, 180_000));
  const drainMs = await e.drainOutbox(scale(60_000, 180_000));
  const audit = await e.audit([...ids, ...more]);
  report(e, 'nats-down', audit, {
    downMs: backAt - downAt,
    finishedWhileDown: doneDuring?.n ?? 0,
    outboxMax,
    recoverMs,
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
    drainMs,
  });
  expectClean(e, audit, expect);
  expect(doneDuring?.n ?? 0).toBeGreaterThan(0);
  expect(outboxMax).toBeGreaterThan(0);
  expect(recoverMs).toBeGreaterThanOrEqual(0);
});
