import { afterEach, expect, it } from 'vitest';
import { ChaosEnv, expectClean, report, scale, sleep } from './harness.js';

let env: ChaosEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

it('SIGKILL of one of 3 nodes under load: every record finishes once', async () => {
  env = await ChaosEnv.create({ nodes: 3 });
  const records = scale(1500, 6000);
  const start = Date.now();
  const ids = await env.create('k', records, () => ({ ms: 20 }));
  // Under load: wait until the nodes are well into it, so the victim holds claims and invocations.
  while ((await env.pending()) > records * 0.7) await sleep(50);
  const victim = env.workers[0]!;
  const held = await env.heldBy(victim.options.node);
  const killedAt = Date.now();
  await env.kill(victim);
  const settleMs = await env.settle(scale(60_000, 180_000));
  const audit = await env.audit(ids);
  const recoverMs = await env.movedOn(held, killedAt);
  report(env, 'sigkill-1-of-3', audit, { held: held.size, recoverMs, ...(await env.latency()), wallMs: Date.now() - start, settleMs });
  expectClean(env!, audit, expect);
  expect(held.size).toBeGreaterThan(0);
  expect(recoverMs).toBeGreaterThanOrEqual(0);
});

it('a node SIGKILLed every 2 s (and replaced) while records keep coming: every record finishes once', async () => {
  env = await ChaosEnv.create({ nodes: 3 });
  const e = env;
  const kills = scale(4, 30);
  const start = Date.now();
  let recoverMs = 0;
  let stuck = 0;
  let killing = true;
  const killsDone: { node: string; held: Map<string, number>; at: number }[] = [];
  const replacements: Promise<unknown>[] = [];
  const killer = (async () => {
    for (let k = 0; k < kills; k += 1) {
      // The fault's cadence is the scenario: one kill every 2 s, whether or not the last
      // replacement is up yet.
      await sleep(2000);
      // The victim: of the nodes that are up, the one holding the most work.
      let victim = e.workers[0]!;
      let held = new Map<string, number>();
      for (const w of e.workers.filter((x) => x.lines.some((l) => l.startsWith('ready')))) {
        const h = await e.heldBy(w.options.node);
        if (h.size >= held.size) [victim, held] = [w, h];
      }
      const at = Date.now();
      await e.kill(victim);
      killsDone.push({ node: victim.options.node, held, at });
      replacements.push(e.startNode().ready(60_000));
    }
    killing = false;
  })();
  // Each invocation takes 50 ms, so a killed node always has work in flight.
  const ids = await e.feed('r', 200, () => killing, undefined, () => ({ ms: 50 }));
  await killer;
  await Promise.all(replacements);
  const settleMs = await e.settle(scale(60_000, 180_000));
  for (const { held, at } of killsDone) {
    const ms = await e.movedOn(held, at);
    if (ms < 0) stuck += 1;
    recoverMs = Math.max(recoverMs, ms);
  }
  const audit = await e.audit(ids);
  const held = killsDone.reduce((n, k) => n + k.held.size, 0);
  const hit = killsDone.filter((k) => k.held.size > 0).length;
  report(e, 'sigkill-every-2s', audit, {
    kills,
    killsWithWorkInFlight: hit,
    held,
    stuck,
    recoverMs,
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
  });
  expectClean(e, audit, expect);
  expect(stuck).toBe(0);
  expect(hit).toBeGreaterThanOrEqual(kills / 2);
});
