import { afterEach, expect, it } from 'vitest';
import { ChaosEnv, expectClean, report, scale } from './harness.js';

let env: ChaosEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

it('poison: one record among many gets a NUL string from an invocation; the healthy ones finish, the culprit fails alone with its error', async () => {
  env = await ChaosEnv.create({ nodes: 2 });
  const e = env;
  const records = scale(1000, 5000);
  const culprit = `poison-${Math.floor(records / 2)}`;
  const start = Date.now();
  const ids = await e.create('poison', records, (i) => (i === Math.floor(records / 2) ? { poison: true } : {}));
  const settleMs = await e.settle(scale(60_000, 120_000));
  const audit = await e.audit(ids, new Set([culprit]));
  const bad = await e.client.get('chain', culprit);
  const warned = e.workers.some((w) => w.lines.some((l) => l.startsWith('log warn') && l.includes(culprit)));
  report(e, 'poison-nul', audit, {
    culprit: `${bad?.status} in ${bad?.state}: ${bad?.error?.name ?? 'no error'}`,
    warnNamesRecord: warned,
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
  });
  expectClean(e, audit, expect);
  expect(bad?.status).toBe('failed');
  expect(bad?.error).toMatchObject({ name: expect.any(String), message: expect.any(String) });
  expect(warned).toBe(true);
});
