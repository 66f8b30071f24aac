import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { ChaosEnv, expectClean, FULL, report, scale, sleep } from './harness.js';

let env: ChaosEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

const p99 = (xs: number[]): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number);
};

it('an idle-in-transaction session holds some records FOR UPDATE: the others keep flowing, the held ones finish after', async () => {
  env = await ChaosEnv.create({ nodes: 3 });
  const e = env;
  const records = scale(1500, 6000);
  const holdMs = scale(5000, 60_000);
  const start = Date.now();
  const ids = await e.create('idle', records, () => ({ ms: 5 }));
  while ((await e.pending()) > records * 0.9) await sleep(50);
  const session = new pg.Client({ connectionString: e.pg.adminUrl, application_name: 'chaos-idle-tx' });
  await session.connect();
  await session.query('BEGIN');
  const locked = await session.query<{ id: string; seq: number }>(
    `SELECT id, seq FROM chaos.instances WHERE status = 'active' ORDER BY id DESC LIMIT 20 FOR UPDATE`,
  );
  const lockedIds = new Set(locked.rows.map((r) => r.id));
  const heldAt = Date.now();
  // The others must all finish while the session sits idle holding its locks.
  let othersDoneMs = -1;
  const waiting = new Map<string, number>();
  while (Date.now() - heldAt < holdMs) {
    // Who waits on a lock (the held rows) and with what statement: what a stall is made of.
    for (const w of await e.query<{ q: string }>(
      `SELECT application_name || ': ' || regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS q FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
    ))
      waiting.set(w.q, (waiting.get(w.q) ?? 0) + 1);
    const [r] = await e.query<{ n: number }>(`SELECT count(*)::int AS n FROM chaos.instances WHERE status = 'active' AND NOT (id = ANY($1))`, [
      [...lockedIds],
    ]);
    if (r?.n === 0 && othersDoneMs < 0) othersDoneMs = Date.now() - heldAt;
    // Sampling from outside while the session stays idle for its whole hold.
    await sleep(200);
  }
  const [othersStalled] = await e.query<{ n: number }>(`SELECT count(*)::int AS n FROM chaos.instances WHERE status = 'active' AND NOT (id = ANY($1))`, [
    [...lockedIds],
  ]);
  await session.query('COMMIT');
  await session.end();
  const releasedAt = Date.now();
  const settleMs = await e.settle(scale(60_000, 120_000));
  const audit = await e.audit(ids);
  const recoverMs = await e.movedOn(new Map(locked.rows.map((r) => [r.id, r.seq])), releasedAt);
  report(e, 'idle-in-transaction', audit, {
    locked: lockedIds.size,
    holdMs,
    othersDoneMs,
    othersStalledAtRelease: othersStalled?.n ?? 0,
    lockWaits: [...waiting.entries()].map(([q, n]) => `${n}x ${q}`),
    recoverMs,
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
  });
  expectClean(e, audit, expect);
  expect(lockedIds.size).toBe(20);
  // The held rows stop nobody else: every other record finished while the session held them.
  expect({ othersStalledAtRelease: othersStalled?.n ?? 0 }).toEqual({ othersStalledAtRelease: 0 });
});

it('sustained 1.5x measured capacity: queue depth and latency over time, then everything drains once', async () => {
  env = await ChaosEnv.create({ nodes: 3 });
  const e = env;
  // Capacity: how fast 3 nodes step a burst of records (3 steps each) on this machine now,
  // from the first step taken to the last record done (the database's timestamps).
  const burst = scale(4000, 10_000);
  const t0 = Date.now();
  const burstIds = await e.create('cap', burst);
  await e.settle(120_000);
  const [span] = await e.query<{ ms: number }>(
    `SELECT extract(epoch FROM max(at) - min(at)) * 1000 AS ms FROM chaos.transitions WHERE machine = 'chain' AND seq > 1`,
  );
  const capacity = Math.round((burst / Math.max(1, Number(span?.ms ?? 1))) * 1000);
  const rate = Math.round(capacity * 1.5);
  const seconds = scale(20, 300);
  const fedFrom = new Date();
  const ids = await e.feed('load', rate, seconds * 1000);
  const fedAt = Date.now();
  const drainMs = await e.settle(scale(120_000, 900_000));
  // Over time, afterwards from the history (no sampling load during the run), per bucket:
  // queue depth (created so far minus done so far, at the bucket's end) and the p99 of a
  // record's whole latency, created to done, of the records finished in it.
  const bucket = scale(2, 15);
  const rows = await e.query<{ b: number; created: number; done: number; p99: number | null }>(
    `WITH c AS (SELECT instance_id, at FROM chaos.transitions WHERE machine = 'chain' AND seq = 1 AND instance_id LIKE 'load-%'),
          d AS (SELECT t.instance_id, t.at, t.at - c.at AS took FROM chaos.transitions t JOIN c USING (instance_id)
                WHERE t.machine = 'chain' AND t.to_state = 'done'),
          b AS (SELECT floor(extract(epoch FROM at - $1) / $2)::int AS b, 1 AS created, 0 AS done, NULL::float AS ms FROM c
                UNION ALL SELECT floor(extract(epoch FROM at - $1) / $2)::int, 0, 1, extract(epoch FROM took) * 1000 FROM d)
     SELECT b, sum(created)::int AS created, sum(done)::int AS done, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float AS p99
     FROM b GROUP BY b ORDER BY b`,
    [fedFrom, bucket],
  );
  let created = 0;
  let done = 0;
  const series = rows.map((r) => {
    created += r.created;
    done += r.done;
    return { t: (r.b + 1) * bucket, depth: created - done, p99: Math.round(r.p99 ?? 0) };
  });
  const audit = await e.audit([...burstIds, ...ids]);
  const depthMax = Math.max(0, ...series.map((x) => x.depth));
  report(e, 'sustained-1.5x', audit, {
    capacity,
    rate,
    seconds,
    fed: ids.length,
    fedPerSec: Math.round(ids.length / seconds),
    depthMax,
    series: series.map((x) => `${x.t}s:${x.depth}/${x.p99}ms`).join(','),
    drainMs,
    recoverMs: drainMs,
    ...(await e.latency()),
    wallMs: Date.now() - t0,
    drainedAfterFeedMs: Date.now() - fedAt,
  });
  expectClean(e, audit, expect);
  // 1.5x capacity must actually be over capacity: the queue grew. Only the full run can tell:
  // the short form's 4,000-record burst includes the nodes' warm-up, so it measures capacity
  // low, and 20 s at 1.5x that may well be within what the nodes manage once warm (CI saw
  // capacity 1,835/s, fed 2,733/s, queue never above 860).
  if (FULL) expect(depthMax).toBeGreaterThan(capacity);
});

it('list/history readers hammering during load: reads keep answering, the work still finishes once', async () => {
  env = await ChaosEnv.create({ nodes: 3 });
  const e = env;
  const records = scale(2000, 8000);
  const start = Date.now();
  const ids = await e.create('read', records, () => ({ ms: 2 }));
  let reading = true;
  const lat: number[] = [];
  const errors: string[] = [];
  const reader = async (kind: 'list' | 'history' | 'get') => {
    let after: string | undefined;
    while (reading) {
      const t = performance.now();
      try {
        if (kind === 'list') {
          const page = await e.client.list('chain', { limit: 50, ...(after ? { after } : {}) });
          after = page.next ?? undefined;
        } else if (kind === 'history') await e.client.history('chain', ids[Math.floor(Math.random() * ids.length)] as string);
        else await e.client.get('chain', ids[Math.floor(Math.random() * ids.length)] as string);
        lat.push(performance.now() - t);
      } catch (err) {
        errors.push(`${kind}: ${(err as Error).message}`);
      }
    }
  };
  const readers = [reader('list'), reader('list'), reader('history'), reader('history'), reader('get'), reader('get')];
  const settleMs = await e.settle(scale(90_000, 240_000));
  reading = false;
  await Promise.all(readers);
  const audit = await e.audit(ids);
  report(e, 'readers-hammering', audit, {
    reads: lat.length,
    readsPerSec: Math.round((lat.length / settleMs) * 1000),
    readP99: p99(lat),
    readErrors: errors.length,
    recordsPerSec: Math.round((records / settleMs) * 1000),
    ...(await e.latency()),
    wallMs: Date.now() - start,
    settleMs,
  });
  expectClean(e, audit, expect);
  expect(errors.slice(0, 5)).toEqual([]);
  expect(lat.length).toBeGreaterThan(100);
});
