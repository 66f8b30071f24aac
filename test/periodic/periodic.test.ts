import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, DuplicateWorkerError, durable, InvalidArgumentError, type Runtime } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// Periodic actors on real PostgreSQL: catch-up, retries within a tick, overlap, timeouts,
// machine starts, and runs left behind by a dead node.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schema = uniqueSchema('per');
let rt: Runtime;

const report = durable(
  setup({ types: { input: {} as { day: string }, context: {} as { day: string } } }).createMachine({
    id: 'report',
    initial: 'queued',
    context: ({ input }) => ({ day: input.day }),
    states: { queued: {} },
  }),
);

const runsOf = async (name: string) =>
  (
    await admin.query<{ scheduled_for: Date; status: string; attempt: number; debug: string | null; error: { message: string } | null }>(
      `SELECT scheduled_for, status, attempt, debug, error FROM "${schema}".runs WHERE worker = $1 ORDER BY scheduled_for`,
      [name],
    )
  ).rows;

/** Stores a run record as if a node had handled that tick long ago (then every node went down). */
const seedTick = (name: string, at: number) =>
  admin.query(
    `INSERT INTO "${schema}".runs (worker, kind, scheduled_for, started_at, finished_at, status, node)
     VALUES ($1, 'tick', $2, $2, $2, 'succeeded', 'old-node')`,
    [name, new Date(at)],
  );

beforeAll(async () => {
  rt = await createRuntime({ database: DATABASE_URL, schema, machines: [report], controlInterval: 50, heartbeatInterval: 100, reaperInterval: 50 });
  await rt.start();
});
afterAll(async () => {
  await rt?.stop();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

describe('catch-up of ticks missed while every node was down', () => {
  const minute = 60_000;
  const lastTick = () => Math.floor(Date.now() / minute) * minute;

  it.each([
    ['none', 0],
    ['one', 1],
    ['all', 5],
  ] as const)('catchUp %s runs %i of 5 missed ticks', async (catchUp, expected) => {
    const name = `catch-${catchUp}`;
    const newest = lastTick();
    await seedTick(name, newest - 5 * minute); // ticks newest-4m … newest were missed
    const seen: number[] = [];
    rt.periodic(name, { every: '1m' }, ({ scheduledFor }) => {
      seen.push(scheduledFor.getTime());
    }, { catchUp });
    // The periodic's first call decides; its handle event marks that call done.
    await until(() => rt.supervisor.worker(name).lastMetric()?.kind === 'handle', 'first call');
    await rt.supervisor.stop(name);
    const minutes = [4, 3, 2, 1, 0].map((m) => newest - m * minute);
    // 'none' may still run the newest tick when it fell due within the grace of this start.
    const expectedTicks = catchUp === 'all' ? minutes : catchUp === 'one' ? [newest] : [];
    if (catchUp === 'none' && Date.now() - newest < 2000) return; // too close to a minute boundary to tell
    expect(seen).toEqual(expectedTicks);
    expect(seen).toHaveLength(expected);
    const rows = await runsOf(name);
    expect(rows).toHaveLength(1 + expected);
  });
});

describe('a failing run', () => {
  it('backs off exponentially and retries the same tick; the run record shows the attempt that succeeded', async () => {
    const attempts: Array<{ at: number; attempt: number; tick: number }> = [];
    await seedTick('flaky', Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
    rt.periodic('flaky', { every: '1m' }, ({ attempt, scheduledFor }) => {
      attempts.push({ at: Date.now(), attempt, tick: scheduledFor.getTime() });
      if (attempt < 3) throw new Error(`flake ${attempt}`);
      return 'third time lucky';
    }, { catchUp: 'one', backoff: { base: '100ms', max: '1s' }, maxAttempts: 5 });
    await until(() => attempts.length === 3, 'three attempts');
    await until(async () => (await runsOf('flaky')).some((r) => r.status === 'succeeded' && r.attempt === 3), 'succeeded on attempt 3');
    await rt.supervisor.stop('flaky');
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(new Set(attempts.map((a) => a.tick)).size).toBe(1);
    const gaps = [(attempts[1]?.at ?? 0) - (attempts[0]?.at ?? 0), (attempts[2]?.at ?? 0) - (attempts[1]?.at ?? 0)];
    expect(gaps[0]).toBeGreaterThanOrEqual(45); // backoff 1: 50-100 ms (full jitter above half)
    expect(gaps[1]).toBeGreaterThanOrEqual(95); // backoff 2: 100-200 ms
    const run = (await runsOf('flaky')).find((r) => r.attempt === 3);
    expect(run).toMatchObject({ status: 'succeeded', debug: 'third time lucky', error: null });
  });

  it('gives up after maxAttempts and records the error', async () => {
    let calls = 0;
    await seedTick('broken', Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
    rt.periodic('broken', { every: '1m' }, () => {
      calls += 1;
      throw new Error('always');
    }, { catchUp: 'one', backoff: { base: 10, max: 10 }, maxAttempts: 2 });
    await until(async () => (await runsOf('broken')).some((r) => r.status === 'failed' && r.attempt === 2), 'failed twice');
    await new Promise((resolve) => setTimeout(resolve, 100)); // ten backoffs long: a third attempt would show
    await rt.supervisor.stop('broken');
    expect(calls).toBe(2);
    const failed = (await runsOf('broken')).find((r) => r.status === 'failed');
    expect(failed).toMatchObject({ attempt: 2, error: { message: 'always' } });
  });

  it('a run past its timeout is aborted and recorded as failed', async () => {
    let aborted = false;
    await seedTick('sluggish', Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
    rt.periodic('sluggish', { every: '1m' }, ({ signal }) =>
      new Promise<string>((resolve) => {
        signal.addEventListener('abort', () => {
          aborted = true;
          resolve('late');
        });
      }),
    { catchUp: 'one', timeout: '100ms', maxAttempts: 1 });
    await until(async () => (await runsOf('sluggish')).some((r) => r.status === 'failed'), 'failed by timeout');
    await rt.supervisor.stop('sluggish');
    expect(aborted).toBe(true);
    expect((await runsOf('sluggish')).find((r) => r.status === 'failed')?.error?.message).toMatch(/timeout of 100 ms/);
  });
});

describe('overlap', () => {
  it("'skip': ticks that fall due while a run is still running are recorded as skipped, never run", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    rt.periodic('long-skip', { every: '1s' }, async () => {
      running += 1;
      runs += 1;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((resolve) => setTimeout(resolve, 2300));
      running -= 1;
    });
    await until(async () => (await runsOf('long-skip')).filter((r) => r.status === 'skipped').length >= 2, 'two skipped ticks', 15_000);
    await rt.supervisor.stop('long-skip');
    expect(maxRunning).toBe(1);
    const rows = await runsOf('long-skip');
    expect(rows.filter((r) => r.status === 'succeeded').length).toBe(runs);
    expect(rows.find((r) => r.status === 'skipped')?.debug).toBe('an earlier run was still running');
  }, 20_000);

  it("'allow': runs overlap; stop() aborts every one of them (not only the newest) and waits for them", async () => {
    let running = 0;
    let maxRunning = 0;
    let aborted = 0;
    rt.periodic('long-allow', { every: '1s' }, async ({ signal }) => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10_000);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          aborted += 1;
          resolve();
        });
      });
      running -= 1;
    }, { overlap: 'allow' });
    await until(() => maxRunning >= 2, 'two runs at once', 10_000);
    const t0 = Date.now();
    await rt.supervisor.stop('long-allow');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(running).toBe(0);
    expect(aborted).toBe(maxRunning);
    const rows = await runsOf('long-allow');
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows.every((r) => r.status === 'succeeded')).toBe(true);
  }, 20_000);

  it('re-enabling does not catch up the ticks that fell while it was disabled', async () => {
    const ran: number[] = [];
    rt.periodic('switched', { every: '1s' }, ({ scheduledFor }) => {
      ran.push(scheduledFor.getTime());
    }, { catchUp: 'all', overlap: 'allow' });
    await until(() => ran.length >= 1, 'a first run', 5000);
    await rt.supervisor.disable('switched');
    await until(() => rt.supervisor.status('switched') === 'disabled', 'disabled');
    const disabledAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 2500)); // two or three ticks fall meanwhile
    await rt.supervisor.enable('switched');
    const enabledAt = Date.now();
    await until(() => ran.some((t) => t > enabledAt), 'a run after enabling', 5000);
    await rt.supervisor.stop('switched');
    const during = (await runsOf('switched')).filter((r) => r.scheduled_for.getTime() > disabledAt && r.scheduled_for.getTime() < enabledAt);
    expect(during).toEqual([]);
    expect(ran.filter((t) => t > disabledAt && t < enabledAt)).toEqual([]);
  }, 20_000);
});

describe('a periodic that starts a machine instance per tick', () => {
  it('creates one record per tick with a tick-derived id, and says so in the run record', async () => {
    rt.periodic('daily-report', { every: '1s' }, ({ scheduledFor }) => ({ start: 'report', input: { day: scheduledFor.toISOString() } }));
    await until(async () => (await runsOf('daily-report')).some((r) => r.status === 'succeeded'), 'one run');
    await rt.supervisor.stop('daily-report');
    const run = (await runsOf('daily-report')).find((r) => r.status === 'succeeded');
    const id = `daily-report:${run?.scheduled_for.toISOString()}`;
    expect(run?.debug).toBe(`started report ${id}`);
    const record = await rt.get('report', id);
    expect(record).toMatchObject({ state: 'queued', context: { day: run?.scheduled_for.toISOString() } });
  });
});

describe('housekeeping and bad input', () => {
  it('a run left running by a node that stopped heartbeating is marked failed', async () => {
    const res = await admin.query<{ id: string }>(
      `INSERT INTO "${schema}".runs (worker, kind, scheduled_for, started_at, status, node)
       VALUES ('orphan', 'tick', now(), now(), 'running', 'dead-node') RETURNING id::text AS id`,
    );
    await until(async () => (await runsOf('orphan'))[0]?.status === 'failed', 'orphan failed');
    expect((await runsOf('orphan'))[0]?.error?.message).toMatch(/stopped heartbeating/);
    expect(res.rowCount).toBe(1);
  });

  it('prunes run records older than runRetention', async () => {
    const other = await createRuntime({ database: DATABASE_URL, schema, runRetention: '1h', reaperInterval: 50, node: 'pruner' });
    const old = new Date(Date.now() - 2 * 3_600_000);
    await admin.query(
      `INSERT INTO "${schema}".runs (worker, kind, scheduled_for, started_at, finished_at, status, node)
       VALUES ('ancient', 'tick', $1, $1, $1, 'succeeded', 'x'), ('ancient', 'tick', now(), now(), now(), 'succeeded', 'x')`,
      [old],
    );
    await other.start();
    try {
      await until(async () => (await runsOf('ancient')).length === 1, 'the old record pruned');
      expect((await runsOf('ancient'))[0]?.scheduled_for.getTime()).toBeGreaterThan(old.getTime());
    } finally {
      await other.stop();
    }
  });

  it('rejects bad schedules and options with typed errors, and duplicate names', () => {
    const run = () => undefined;
    expect(() => rt.periodic('p1', {} as never, run)).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: 'soon' }, run)).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { cron: 'not a cron' }, run)).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { cron: '0 3 * * *', timezone: 'Mars/Olympus' }, run)).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: '1m' }, run, { overlap: 'maybe' as never })).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: '1m' }, run, { catchUp: 'some' as never })).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: '1m' }, run, { tags: ['has space'] })).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: '1m' }, run, { maxAttempts: 0 })).toThrow(InvalidArgumentError);
    expect(() => rt.periodic('p1', { every: '1m' }, 'run' as never)).toThrow(InvalidArgumentError);
    rt.periodic('p1', { cron: '0 3 * * *', timezone: 'Europe/London' }, run);
    expect(() => rt.periodic('p1', { every: '1m' }, run)).toThrow(DuplicateWorkerError);
    expect(rt.supervisor.workers().find((w) => w.name === 'p1')).toMatchObject({ kind: 'periodic', status: 'running' });
  });
});
