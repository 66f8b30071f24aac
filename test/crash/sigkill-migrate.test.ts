import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../../src/index.js';
import { DATABASE_URL, postgresBackend, type TestBackend, uniqueSchema } from '../helpers/backends.js';
import { MOVER_MAP, mover1, mover2 } from './fixtures/migration-machines.js';
import { waitUntil } from './helpers.js';

// A migrate() is SIGKILLed in the middle, in a child process; running it again moves what is
// left. Every record must end on the new version, moved exactly once, with one history entry.

const MIGRATOR = fileURLToPath(new URL('./fixtures/migrator.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TOTAL = 120;

/** The migrator child process and the lines it printed. */
function startMigrator(schema: string, env: Record<string, string>) {
  const lines: string[] = [];
  const stderr: string[] = [];
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', MIGRATOR], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL, DROVER_SCHEMA: schema, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((e) => (exit = e));
  return {
    lines,
    /** Resolves once `predicate` holds over the lines; rejects if the child exits first. */
    async until(what: string, predicate: (lines: string[]) => boolean): Promise<void> {
      await waitUntil(
        what,
        async () => {
          if (predicate(lines)) return true;
          if (exit !== undefined) throw new Error(`migrator exited (${JSON.stringify(exit)}) before: ${what}\n${[...lines, ...stderr].slice(-20).join('\n')}`);
          return false;
        },
        20_000,
        5,
      );
    },
    async kill(): Promise<void> {
      child.kill('SIGKILL');
      const e = await exited;
      expect(e.signal).toBe('SIGKILL');
    },
  };
}

describe('SIGKILL in the middle of migrate() (PostgreSQL)', () => {
  let backend: TestBackend;
  let schema: string;
  const runtimes: Runtime[] = [];
  const kills: Array<() => Promise<void>> = [];
  const open = async (machines = [mover1, mover2]) => {
    const rt = await createRuntime({ database: backend.database, schema, machines });
    runtimes.push(rt);
    return rt;
  };
  const ids = Array.from({ length: TOTAL }, (_, i) => `m${String(i).padStart(3, '0')}`);
  const versions = async () =>
    (await backend.query<{ version: number; n: number }>(`SELECT version, count(*)::int AS n FROM "${schema}".instances GROUP BY version`)).reduce(
      (acc, r) => ({ ...acc, [r.version]: r.n }),
      {} as Record<number, number>,
    );

  /** Everything wrong with the records after the migration (empty when all is well). */
  const problems = async (): Promise<string[]> => {
    const rows = await backend.query<{
      id: string;
      version: number;
      state: string;
      start: string;
      moved: boolean | null;
      timers: Array<{ id: string }>;
      seqs: number[];
      moves: number;
      last: { from_state: string; to_state: string; version: number } | null;
    }>(
      `SELECT i.id, i.version, i.state, i.snapshot->'context'->>'start' AS start, (i.snapshot->'context'->>'moved')::boolean AS moved, i.timers,
              (SELECT array_agg(t.seq ORDER BY t.seq) FROM "${schema}".transitions t WHERE t.instance_id = i.id) AS seqs,
              (SELECT count(*)::int FROM "${schema}".transitions t WHERE t.instance_id = i.id AND t.event->>'type' = 'drover.migrate') AS moves,
              (SELECT jsonb_build_object('from_state', t.from_state, 'to_state', t.to_state, 'version', t.version)
                 FROM "${schema}".transitions t WHERE t.instance_id = i.id AND t.event->>'type' = 'drover.migrate' LIMIT 1) AS last
       FROM "${schema}".instances i ORDER BY i.id`,
    );
    const out: string[] = [];
    if (rows.length !== TOTAL) out.push(`${rows.length} records`);
    for (const r of rows) {
      const from = r.start === 'b' ? 'b' : 'a';
      const to = from === 'b' ? 'y' : 'x';
      if (r.version !== 2 || r.state !== to) out.push(`${r.id}: version ${r.version} in ${r.state}`);
      if (r.moves !== 1) out.push(`${r.id}: moved ${r.moves} times`);
      if (JSON.stringify(r.seqs) !== '[1,2]') out.push(`${r.id}: transition seqs ${JSON.stringify(r.seqs)}`);
      if (r.last?.from_state !== from || r.last?.to_state !== to || r.last?.version !== 2) out.push(`${r.id}: history ${JSON.stringify(r.last)}`);
      if (r.moved !== true) out.push(`${r.id}: context not mapped`);
      const timers = (r.timers ?? []).map((t) => t.id);
      if (JSON.stringify(timers) !== JSON.stringify(to === 'y' ? ['xstate.after.7200000.mover.y'] : [])) out.push(`${r.id}: timers ${JSON.stringify(timers)}`);
    }
    return out;
  };

  beforeAll(async () => {
    backend = await postgresBackend();
  });
  afterEach(async () => {
    for (const kill of kills.splice(0)) await kill().catch(() => {});
    for (const rt of runtimes.splice(0)) await rt.stop();
  });
  afterAll(async () => {
    await backend?.close();
  });

  /** A fresh schema with TOTAL records on version 1, every third one in `b`. */
  const seed = async () => {
    schema = uniqueSchema('mcrash');
    const rt = await open([mover1]); // create() starts the newest version registered

    await rt.createMany(
      'mover',
      ids.map((id, i) => ({ id, input: { id, start: i % 3 === 0 ? 'b' : 'a' } })),
    );
  };
  afterAll(async () => {
    // The schemas of this file besides the backend's own.
    const extra = await backend?.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mcrash_${process.pid}_%'`);
    for (const { nspname } of extra ?? []) await backend.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
  });

  it('killed inside a batch: the batches before it stay moved, a second run moves the rest, each record once', async () => {
    await seed();
    // Batches of 10: the hold is in the mapping of the 35th record, so three batches committed.
    const m = startMigrator(schema, { BATCH: '10', HOLD_AT: '35' });
    kills.push(() => m.kill());
    await m.until('the migration is held', (lines) => lines.some((l) => l.startsWith('hold ')));
    await m.kill();
    expect(await versions()).toEqual({ 1: TOTAL - 30, 2: 30 });

    const rt = await open();
    const result = await rt.migrate('mover', { from: 1, to: 2, states: MOVER_MAP, context: (c) => ({ ...c, moved: true }) });
    expect(result.moved).toBe(TOTAL - 30);
    expect(result.left.count).toBe(0);
    expect(await problems()).toEqual([]);
  });

  it('killed at an arbitrary point (possibly inside a write): a second run moves exactly what is left', async () => {
    await seed();
    const m = startMigrator(schema, { BATCH: '7' });
    kills.push(() => m.kill());
    const at = 20 + Math.floor(Math.random() * 60);
    await m.until(`${at} records mapped`, (lines) => lines.filter((l) => l.startsWith('ctx ')).length >= at);
    await m.kill();
    // A COMMIT the migrator sent just before it died still completes on the server after the
    // process is gone (seen once: a batch of 7 counted as moved by the second run, not before
    // it): read the versions once its backends have ended.
    await waitUntil(
      "the killed migrator's backends ended",
      async () => (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'migrator'`))[0]?.n === 0,
    );
    const before = await versions();
    expect(before[2] ?? 0).toBeGreaterThan(0);
    expect(before[2] ?? 0).toBeLessThan(TOTAL);

    const rt = await open();
    const result = await rt.migrate('mover', { from: 1, to: 2, states: MOVER_MAP, context: (c) => ({ ...c, moved: true }) });
    expect(result.moved).toBe(TOTAL - (before[2] ?? 0));
    expect(await problems()).toEqual([]);
  });
});
