import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type InspectionEvent, setup } from 'xstate';
import { createRuntime, durable, none, RuntimeStoppedError } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// Process life on real PostgreSQL: SIGTERM drains a child process; maxRunTime drains by itself.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schemas: string[] = [];
afterAll(async () => {
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

const SERVICE = fileURLToPath(new URL('./fixtures/service.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function service(schema: string, node: string) {
  const lines: string[] = [];
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', SERVICE], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL, DROVER_SCHEMA: schema, DROVER_NODE: node, INVOKE_MS: '600', HANDLER_MS: '600' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, stderr, exited };
}

describe('graceful drain', () => {
  it('SIGTERM: stop claiming and ticking, let the handler and the invocation finish, release every lease, exit 0', async () => {
    const schema = uniqueSchema('sig');
    schemas.push(schema);
    const node = `sig-node-${process.pid}`;
    const svc = service(schema, node);
    await until(() => svc.lines.some((l) => l.startsWith('ready')) && svc.lines.includes('invoke-start j1') && svc.lines.includes('handler-start'), 'busy', 30_000);
    expect(svc.lines).not.toContain('handler-return');
    svc.child.kill('SIGTERM');
    const exit = await svc.exited;
    expect({ exit, stderr: svc.stderr.join('\n') }).toMatchObject({ exit: { code: 0, signal: null } });
    // The handler in flight returned before the process exited.
    expect(svc.lines).toContain('handler-return');
    const q = (sql: string) => admin.query(sql.replaceAll("{s}", `"${schema}"`));
    const locked = await q(`SELECT count(*)::int AS n FROM {s}.instances WHERE locked_by IS NOT NULL AND locked_until > now()`);
    expect(locked.rows[0].n).toBe(0);
    const invocations = await q(`SELECT count(*)::int AS n FROM {s}.invocations WHERE locked_by IS NOT NULL`);
    expect(invocations.rows[0].n).toBe(0);
    const running = await q(`SELECT count(*)::int AS n FROM {s}.runs WHERE status = 'running'`);
    expect(running.rows[0].n).toBe(0);
    const nodes = await q(`SELECT count(*)::int AS n FROM {s}.nodes`);
    expect(nodes.rows[0].n).toBe(0);
    // The invocation that was running finished within the grace: its result is stored, nothing is lost.
    const job = await q(`SELECT status, state FROM {s}.instances WHERE id = 'j1'`);
    const inbox = await q(`SELECT count(*)::int AS n FROM {s}.events`);
    expect(job.rows[0].status === 'done' || inbox.rows[0].n === 1).toBe(true);
  }, 60_000);

  it('maxRunTime drains the runtime by itself and resolves done; calls afterwards are refused', async () => {
    const schema = uniqueSchema('maxrun');
    schemas.push(schema);
    const rt = await createRuntime({ database: DATABASE_URL, schema, maxRunTime: '300ms' });
    let calls = 0;
    rt.periodic('every-second', { every: '1s' }, () => {
      calls += 1;
    });
    const t0 = Date.now();
    await rt.start();
    await rt.done;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(rt.supervisor.state).toBe('stopped');
    expect(calls).toBeLessThanOrEqual(1);
    await expect(rt.get('nothing', 'x')).rejects.toThrow(RuntimeStoppedError);
    expect(() => rt.supervisor.add('late', () => ({ kind: 'done' }))).toThrow(RuntimeStoppedError);
  });

  it('an inspect observer sees the supervisor, its pollers, workers and housekeeping, and their transitions', async () => {
    const schema = uniqueSchema('insp');
    schemas.push(schema);
    const events: InspectionEvent[] = [];
    const m = durable(setup({}).createMachine({ id: 'm', initial: 'a', states: { a: {} } }));
    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [m], inspect: (e) => events.push(e) });
    rt.supervisor.add('inspected', () => none('1h'));
    await rt.start();
    await rt.stop();
    const ids = new Set(events.map((e) => (e.actorRef as { id?: string }).id));
    for (const id of ['drover.poller.m', 'inspected', 'drover.control', 'drover.heartbeat', 'drover.reaper']) expect(ids).toContain(id);
    const supervisorStates = events
      .filter((e): e is Extract<InspectionEvent, { type: '@xstate.snapshot' }> => e.type === '@xstate.snapshot' && (e.actorRef as { id?: string }).id === rt.supervisor.actor.id)
      .map((e) => (e.snapshot as { value?: unknown }).value);
    expect([...new Set(supervisorStates)]).toEqual(['idle', 'starting', 'running', 'draining', 'stopped']);
    const workerStates = events
      .filter((e): e is Extract<InspectionEvent, { type: '@xstate.snapshot' }> => e.type === '@xstate.snapshot' && (e.actorRef as { id?: string }).id === 'inspected')
      .map((e) => JSON.stringify((e.snapshot as { value?: unknown }).value));
    expect(workerStates).toEqual(expect.arrayContaining(['{"running":"calling"}', '{"running":"idle"}', '"stopped"']));
  });
});
