import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AnyStateMachine, createMachine } from 'xstate';
import { machineGraph } from '../../src/graph/graph.js';
import { createRuntime, type DurableMachine, type Runtime } from '../../src/index.js';
import { DATABASE_URL, postgresBackend, type TestBackend } from '../helpers/backends.js';
import { type CliResult, MAIN, ROOT, runDrover } from '../helpers/cli.js';
import { until } from '../helpers/until.js';
import { register, toggle } from './fixtures/machines/toggle.js';

// The `drover` CLI as a child process against real PostgreSQL: --json output parsed and
// checked, exit codes checked. A node runs in this process (the fixture machines and its
// register hook) to step what the CLI stores.

const MACHINES = fileURLToPath(new URL('./fixtures/machines', import.meta.url));
const MACHINES_V2 = fileURLToPath(new URL('./fixtures/machines-v2', import.meta.url));

let backend: TestBackend;
let node: Runtime;

/** Runs `drover ...args` from source (tsx) with the test schema; `env` adds or (undefined) removes variables. */
const drover = (args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> =>
  runDrover(args, { DATABASE_URL, DROVER_SCHEMA: backend.schema, NO_COLOR: undefined, FORCE_COLOR: undefined, ...env });

/** `drover ...args --json` that must succeed: its stdout parsed. */
async function ok<T = unknown>(args: string[], env?: Record<string, string | undefined>): Promise<T> {
  const r = await drover([...args, '--json'], env);
  expect(r.stderr, `drover ${args.join(' ')}`).toBe('');
  expect(r.code, `drover ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

const withFolder = (args: string[], dir = MACHINES) => ['--machines', dir, ...args];

beforeAll(async () => {
  backend = await postgresBackend();
  node = await createRuntime({ database: DATABASE_URL, schema: backend.schema, machines: [toggle], controlInterval: 50, heartbeatInterval: 100, pollInterval: 50 });
  register(node);
  await node.start();
});

afterAll(async () => {
  await node?.stop();
  await backend?.close();
});

describe('drover CLI: usage and exit codes', () => {
  it('exits 2 on wrong usage and says why; 0 for --help and --version', async () => {
    const [none, unknown, badLimit, noDb, help, version, missingArg] = await Promise.all([
      drover([]),
      drover(['lst']),
      drover(withFolder(['list', 'toggle', '--limit', 'ten'])),
      drover(['status'], { DATABASE_URL: undefined }),
      drover(['--help']),
      drover(['--version']),
      drover(['get', 'toggle']),
    ]);
    expect(none.code).toBe(2);
    expect(unknown).toMatchObject({ code: 2 });
    expect(unknown.stderr).toContain('(Did you mean list?)');
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain('--limit must be a whole number');
    expect(noDb.code).toBe(2);
    expect(noDb.stderr).toContain('DATABASE_URL');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes: 0 ok, 1 error');
    expect(version).toMatchObject({ code: 0, stdout: '0.1.0\n' });
    expect(missingArg.code).toBe(2);
    expect(missingArg.stderr).toContain("missing required argument 'id'");
  });

  it('a missing machines folder is a usage error naming the folder', async () => {
    const r = await drover(['--machines', '/nonexistent/machines', 'list', 'toggle']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/nonexistent/machines does not exist');
  });
});

describe('drover CLI: records', () => {
  it('create, get, send, list, history and cancel, with --json', async () => {
    const created = await ok<{ id: string; state: string; status: string }>(withFolder(['create', 'toggle', '--id', 'r1']));
    expect(created).toMatchObject({ id: 'r1', state: 'off', status: 'active' });
    await ok(withFolder(['create', 'toggle', '--id', 'r2']));
    const sent = await ok<{ sent: boolean }>(withFolder(['send', 'toggle', 'r1', '{"type":"flip"}']));
    expect(sent.sent).toBe(true);
    await node.waitFor('toggle', 'r1', { state: 'on' });
    const got = await ok<{ state: string; value: unknown; wakeAt: string }>(withFolder(['get', 'toggle', 'r1']));
    expect(got).toMatchObject({ state: 'on', value: 'on' });
    expect(new Date(got.wakeAt).getTime()).toBeGreaterThan(Date.now() + 3_000_000);

    const page1 = await ok<{ items: Array<{ id: string }>; next: string | null }>(withFolder(['list', 'toggle', '--limit', '1']));
    expect(page1.items.map((r) => r.id)).toEqual(['r1']);
    const page2 = await ok<{ items: Array<{ id: string }>; next: string | null }>(withFolder(['list', 'toggle', '--limit', '1', '--after', page1.next as string]));
    expect(page2.items.map((r) => r.id)).toEqual(['r2']);
    const inState = await ok<{ items: Array<{ id: string }> }>(withFolder(['list', 'toggle', '--state', 'on']));
    expect(inState.items.map((r) => r.id)).toEqual(['r1']);

    const history = await ok<Array<{ from: string | null; to: string; event: { type: string } }>>(withFolder(['history', 'toggle', 'r1']));
    expect(history.map((h) => [h.from, h.to, h.event.type])).toEqual([
      [null, 'off', 'xstate.init'],
      ['off', 'on', 'flip'],
    ]);
    expect(await node.history('toggle', 'r1')).toHaveLength(2);

    expect(await ok(withFolder(['cancel', 'toggle', 'r2', '--reason', 'test']))).toEqual({ cancelled: true });
    expect((await node.get('toggle', 'r2'))?.status).toBe('cancelled');
    expect(await ok(withFolder(['cancel', 'toggle', 'r2']))).toEqual({ cancelled: false });

    // Human output: a table with the records, no colour off a terminal.
    const table = await drover(withFolder(['list', 'toggle']));
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+STATE\s+STATUS/);
    expect(table.stdout).toMatch(/r2\s+off\s+cancelled/);
    expect(table.stdout).not.toContain('\u001b[');
  });

  it('errors exit 1 with their code; bad input exits 2; nothing is stored', async () => {
    const [missing, duplicate, badJson, badEvent, unknownMachine] = await Promise.all([
      drover(withFolder(['get', 'toggle', 'nope', '--json'])),
      (async () => {
        await ok(withFolder(['create', 'toggle', '--id', 'dup']));
        return drover(withFolder(['create', 'toggle', '--id', 'dup']));
      })(),
      drover(withFolder(['create', 'toggle', '--id', 'bad', '--input', '{not json'])),
      drover(withFolder(['send', 'toggle', 'dup', '{"kind":"flip"}'])),
      drover(withFolder(['list', 'ordr'])),
    ]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr)).toEqual({ error: { code: 'RECORD_NOT_FOUND', message: 'machine "toggle" has no record "nope"' } });
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('error [DUPLICATE_RECORD]');
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain('--input is not valid JSON');
    expect(badEvent.code).toBe(2);
    expect(unknownMachine.code).toBe(1);
    expect(unknownMachine.stderr).toContain('UNKNOWN_MACHINE');
    expect(await node.get('toggle', 'bad')).toBeNull();
    expect(await backend.query(`SELECT 1 FROM "${backend.schema}".events WHERE instance_id = 'dup'`)).toEqual([]);
  });

  it('retry takes a failed record back (the event read from @file)', async () => {
    await ok(withFolder(['create', 'toggle', '--id', 'f1']));
    await ok(withFolder(['send', 'toggle', 'f1', `@${fileURLToPath(new URL('./fixtures/explode.json', import.meta.url))}`]));
    await node.waitFor('toggle', 'f1', { status: 'failed' });
    const failed = await ok<{ status: string; error: { message: string } }>(withFolder(['get', 'toggle', 'f1']));
    expect(failed.status).toBe('failed');
    expect(failed.error.message).toContain('boom');
    const retried = await ok<{ status: string; state: string }>(withFolder(['retry', 'toggle', 'f1', '--skip-event']));
    expect(retried).toMatchObject({ status: 'active', state: 'off' });
    const again = await drover(withFolder(['retry', 'toggle', 'f1']));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('NOT_FAILED');
  });
});

describe('drover CLI: operators', () => {
  it('status, nodes, workers and runs show what the node runs', async () => {
    await node.create('toggle', { id: 'st1' });
    await until(async () => (await node.supervisor.runs('report')).items.filter((r) => r.status === 'succeeded').length >= 3, 'the periodic ran three ticks', 10_000);
    const status = await ok<{ nodes: Array<{ id: string }>; workers: Array<{ name: string; status: string }>; records: Array<{ machine: string; state: string; status: string; count: number }> }>(['status']);
    expect(status.nodes.map((n) => n.id)).toContain(node.node);
    expect(status.workers.map((w) => [w.name, w.status])).toEqual([
      ['report', 'running'],
      ['sweeper', 'running'],
    ]);
    const counts = await node.counts({ machine: 'toggle' });
    expect(status.records.filter((r) => r.machine === 'toggle').map(({ state, status: s, count }) => ({ state, status: s, count }))).toEqual(
      counts.map(({ state, status: s, count }) => ({ state, status: s, count })),
    );
    const workers = await ok<Array<{ name: string; schedule: string | null; tags: string[]; nodes: Array<{ node: string }> }>>(['workers']);
    expect(workers.find((w) => w.name === 'report')).toMatchObject({ schedule: 'every 1s', tags: ['org:acme'], nodes: [{ node: node.node }] });
    const runs = await ok<{ items: Array<{ id: string; worker: string; status: string; debug: string }> }>(['runs', 'report', '--limit', '5']);
    expect(runs.items.find((r) => r.status === 'succeeded')).toMatchObject({ worker: 'report', debug: 'reported' });
    // Keyset and offset combine: after the newest, skip one, take one = the third newest.
    const third = await ok<{ items: Array<{ id: string }> }>(['runs', 'report', '--after', runs.items[0]?.id as string, '--offset', '1', '--limit', '1']);
    expect(third.items.map((r) => r.id)).toEqual([runs.items[2]?.id]);
    const nodes = await ok<Array<{ id: string }>>(['nodes']);
    expect(nodes.map((n) => n.id)).toContain(node.node);

    const human = await drover(['status']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^Nodes\n/);
    expect(human.stdout).toMatch(/toggle\s+off\s+active/);
  });

  it('disable/enable, stop/start and pause/resume reach the node', async () => {
    await ok(['disable', 'sweeper']);
    expect(await backend.query(`SELECT enabled FROM "${backend.schema}".workers WHERE name = 'sweeper'`)).toEqual([{ enabled: false }]);
    await until(() => node.supervisor.status('sweeper') === 'disabled', 'the node disables it', 5_000);
    await ok(['enable', 'sweeper']);
    await until(() => node.supervisor.status('sweeper') === 'running', 'the node runs it again', 5_000);

    await ok(['stop', 'sweeper']);
    await until(() => node.supervisor.status('sweeper') === 'stopped', 'the node stops it', 5_000);
    const started = await drover(['start', 'sweeper']);
    expect(started.code).toBe(0);
    await until(() => node.supervisor.status('sweeper') === 'running', 'the node starts it', 5_000);

    await ok(['pause', 'org:acme']);
    await until(() => node.supervisor.isPaused('org:acme'), 'the node sees the pause', 5_000);
    await ok(['resume', 'org:acme']);
    await until(() => !node.supervisor.isPaused('org:acme'), 'the node sees the resume', 5_000);

    const bad = await drover(['pause', 'no spaces']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('INVALID_ARGUMENT');
  });

  it('residency per state; migrate --status lists every migration applied with its checksum', async () => {
    const rows = await ok<Array<{ state: string; count: number }>>(withFolder(['residency', 'toggle', '--since', '1h']));
    const expected = await node.residency('toggle', { since: Date.now() - 3_600_000 });
    expect(rows.map((r) => [r.state, r.count])).toEqual(expected.map((r) => [r.state, r.count]));
    const status = await ok<Array<{ id: number; state: string; checksum: string; storedChecksum: string }>>(['migrate', '--status']);
    expect(status.length).toBeGreaterThanOrEqual(10);
    for (const m of status) expect(m).toMatchObject({ state: 'applied', storedChecksum: m.checksum });
    expect(await ok(['migrate'])).toEqual({ schema: backend.schema, applied: [] });
    const fresh = await ok<Array<{ state: string }>>(['migrate', '--status'], { DROVER_SCHEMA: `${backend.schema}_none` });
    expect(new Set(fresh.map((m) => m.state))).toEqual(new Set(['pending']));
  });

  it('migrate-records moves v1 records to v2 with progress lines', async () => {
    for (let i = 0; i < 5; i++) await node.create('toggle', { id: `m${i}` });
    const dry = await ok<{ moved: number }>(withFolder(['migrate-records', 'toggle', '--from', '1', '--to', '2', '--map', 'off=idle', '--map', 'on=lit', '--dry-run'], MACHINES_V2));
    const active = (await node.counts({ machine: 'toggle' })).filter((c) => c.status === 'active').reduce((n, c) => n + c.count, 0);
    expect(dry.moved).toBe(active);
    const r = await drover(withFolder(['migrate-records', 'toggle', '--from', '1', '--to', '2', '--map', 'off=idle', '--map', 'on=lit', '--batch-size', '2'], MACHINES_V2));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`moved ${active} record(s) of toggle from version 1 to 2`);
    // Off a terminal: plain progress lines on stderr, ending with the total.
    expect(r.stderr.trim().split('\n').at(-1)).toBe(`moving toggle v1 → v2: ${active}/${active}`);
    const moved = await backend.query<{ version: number; state: string }>(`SELECT version, state FROM "${backend.schema}".instances WHERE id = 'm0'`);
    expect(moved).toEqual([{ version: 2, state: 'idle' }]);
    const unmapped = await drover(withFolder(['migrate-records', 'toggle', '--from', '1', '--to', '2'], MACHINES_V2));
    expect(unmapped.code).toBe(2);
  });

  it('colour only when asked on a pipe, and NO_COLOR wins', async () => {
    const [forced, off] = await Promise.all([drover(['nodes'], { FORCE_COLOR: '1' }), drover(['nodes'], { FORCE_COLOR: '1', NO_COLOR: '1' })]);
    expect(forced.stdout).toContain('\u001b[1m');
    expect(off.stdout).not.toContain('\u001b[');
  });
});

describe('drover CLI: export and start', () => {
  it('export prints createMachine code that evaluates to the same machine', async () => {
    const r = await drover(withFolder(['export', 'toggle']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("import { createMachine } from 'xstate';");
    const copy = evaluate(r.stdout);
    expect(machineGraph({ ...toggle, machine: copy } as DurableMachine)).toEqual(machineGraph(toggle));
    const [missing, badVersion] = await Promise.all([drover(withFolder(['export', 'nope'])), drover(withFolder(['export', 'toggle', '--version', '7']))]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('UNKNOWN_MACHINE');
    expect(badVersion.code).toBe(1);
    expect(badVersion.stderr).toContain('UNKNOWN_VERSION');
  });

  it('start runs a node for the folder (machines and its register hook) and drains on SIGTERM', async () => {
    const merged = { ...process.env, DATABASE_URL, DROVER_SCHEMA: backend.schema };
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--machines', MACHINES, 'start'], { cwd: ROOT, env: merged });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until(() => stderr.includes('running on schema'), 'the node starts', 20_000);
    expect(stderr).toContain('machines toggle; workers sweeper, report');
    const id = /node (\S+) running/.exec(stderr)?.[1] as string;
    // Its register hook's workers run there: the fleet view shows them on the child's node.
    await until(
      async () => (await node.supervisor.fleet()).find((w) => w.name === 'sweeper')?.nodes.some((n) => n.node === id && n.status === 'running') === true,
      'the child heartbeats its workers',
      10_000,
    );
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('draining on signal');
    expect((await node.nodes()).some((n) => n.id === id)).toBe(false);
  });
});

describe('drover CLI: serve', () => {
  it('serves the HTTP API with the folder\'s machines; off loopback it refuses to start without a token', async () => {
    const env = { ...process.env, DATABASE_URL, DROVER_SCHEMA: backend.schema };
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--machines', MACHINES, 'serve', '--port', '0'], { cwd: ROOT, env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until(() => /HTTP API on (\S+)\/api /.test(stderr), 'the server listens', 20_000);
    const url = (/HTTP API on (\S+)\/api /.exec(stderr) as RegExpExecArray)[1] as string;
    const res = await fetch(`${url}/api/machines`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as Array<{ name: string }>).map((m) => m.name)).toEqual(['toggle']);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const open = await drover(withFolder(['serve', '--host', '0.0.0.0', '--port', '0']), { DROVER_TOKEN: undefined });
    expect(open.code).toBe(1);
    expect(open.stderr).toContain('INVALID_ARGUMENT');
  });
});

function evaluate(code: string): AnyStateMachine {
  const out = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
  const exports: Record<string, unknown> = {};
  new Function('exports', 'require', out.outputText)(exports, () => ({ createMachine }));
  return exports.machine as AnyStateMachine;
}
