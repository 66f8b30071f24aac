import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { createRuntime, durable, type FleetWorker, InvalidArgumentError, none, type Runtime, UnknownMachineError } from '../../src/index.js';
import { DATABASE_URL, uniqueSchema } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// Two runtimes (nodes) on one PostgreSQL schema: control and periodic ticks are fleet wide.

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const runtimes: Runtime[] = [];
const schemas: string[] = [];
afterAll(async () => {
  for (const rt of runtimes) await rt.stop();
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

async function pair(prefix: string) {
  const schema = uniqueSchema(prefix);
  schemas.push(schema);
  const make = async (node: string) => {
    const rt = await createRuntime({ database: DATABASE_URL, schema, node, controlInterval: 50, heartbeatInterval: 100 });
    runtimes.push(rt);
    return rt;
  };
  return { schema, a: await make(`${prefix}-a`), b: await make(`${prefix}-b`) };
}

const toggle = durable(createMachine({ id: 'toggle', initial: 'off', states: { off: { on: { flip: 'on' } }, on: { on: { flip: 'off' } } } }));

describe('two nodes on one database', () => {
  it('run each periodic tick exactly once over 20 ticks: one run record and one call per tick', async () => {
    const { schema, a, b } = await pair('tick');
    const calls = new Map<number, string[]>();
    for (const rt of [a, b]) {
      rt.periodic('heartbeat-report', { every: '1s' }, ({ scheduledFor }) => {
        const at = scheduledFor.getTime();
        calls.set(at, [...(calls.get(at) ?? []), rt.node]);
        return `ran on ${rt.node}`;
      });
    }
    await Promise.all([a.start(), b.start()]);
    await until(() => calls.size >= 21, '21 ticks', 40_000);
    await Promise.all([a.supervisor.stop('heartbeat-report'), b.supervisor.stop('heartbeat-report')]);
    const rows = (
      await admin.query<{ scheduled_for: Date; status: string; node: string; debug: string }>(
        `SELECT scheduled_for, status, node, debug FROM "${schema}".runs WHERE worker = 'heartbeat-report' ORDER BY scheduled_for`,
      )
    ).rows;
    expect(rows.length).toBe(calls.size);
    for (const row of rows) {
      expect(row.status).toBe('succeeded');
      expect(calls.get(row.scheduled_for.getTime())).toEqual([row.node]);
      expect(row.debug).toBe(`ran on ${row.node}`);
      expect(row.scheduled_for.getTime() % 1000).toBe(0); // epoch-aligned, the same on every node
    }
    // Consecutive ticks: none lost while both nodes ran.
    const times = rows.map((r) => r.scheduled_for.getTime());
    for (let i = 1; i < times.length; i++) expect((times[i] as number) - (times[i - 1] as number)).toBe(1000);
    expect(new Set(rows.map((r) => r.node)).size).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('disable on one node stops the worker on the other; enable starts it again; the setting survives a restart', async () => {
    const { schema, a, b } = await pair('ctl');
    let callsB = 0;
    a.supervisor.add('mailer', () => none(20));
    b.supervisor.add('mailer', () => {
      callsB += 1;
      return none(20);
    });
    await Promise.all([a.start(), b.start()]);
    await until(() => callsB >= 2, 'b running');
    await a.supervisor.disable('mailer');
    // A call in flight finishes first; then both nodes show it disabled.
    await until(() => a.supervisor.status('mailer') === 'disabled' && b.supervisor.status('mailer') === 'disabled', 'disabled on both');
    const frozen = callsB;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(callsB).toBe(frozen);

    // A node started later reads the stored setting before it runs anything.
    const c = await createRuntime({ database: DATABASE_URL, schema, node: 'ctl-c', controlInterval: 50 });
    runtimes.push(c);
    let callsC = 0;
    c.supervisor.add('mailer', () => {
      callsC += 1;
      return none(20);
    });
    await c.start();
    expect(c.supervisor.status('mailer')).toBe('disabled');

    await b.supervisor.enable('mailer');
    await until(() => a.supervisor.status('mailer') === 'running' && c.supervisor.status('mailer') === 'running', 'enabled everywhere');
    await until(() => callsB > frozen && callsC > 0, 'calls again');
    await c.stop();
  });

  it('pause(tag) stops every periodic with the tag on every node (no run, no record); resume(tag) runs them again', async () => {
    const { schema, a, b } = await pair('tag');
    const ran: string[] = [];
    for (const rt of [a, b]) {
      rt.periodic('acme-sync', { every: '1s' }, () => {
        ran.push('acme-sync');
      }, { tags: ['org:acme'] });
      rt.periodic('globex-sync', { every: '1s' }, () => {
        ran.push('globex-sync');
      }, { tags: ['org:globex'] });
    }
    await Promise.all([a.start(), b.start()]);
    await until(() => ran.includes('acme-sync'), 'acme ran once');
    await b.supervisor.pause('org:acme');
    const pausedAt = new Date();
    const before = ran.length;
    await until(() => ran.slice(before).filter((n) => n === 'globex-sync').length >= 2, 'globex keeps running', 10_000);
    expect(ran.slice(before)).not.toContain('acme-sync');
    const during = await admin.query(
      `SELECT count(*)::int AS n FROM "${schema}".runs WHERE worker = 'acme-sync' AND scheduled_for > $1`,
      [new Date(pausedAt.getTime() + 1000)],
    );
    expect(during.rows[0].n).toBe(0);
    expect(a.supervisor.isPaused('org:acme')).toBe(true);
    await a.supervisor.resume('org:acme');
    const resumedAt = ran.length;
    await until(() => ran.slice(resumedAt).includes('acme-sync'), 'acme runs again', 10_000);
  }, 30_000);

  it('nodes() lists both live nodes; a stopped node removes itself', async () => {
    const { a, b } = await pair('nodes');
    await Promise.all([a.start(), b.start()]);
    expect((await a.nodes()).map((n) => n.id).sort()).toEqual([a.node, b.node].sort());
    await b.stop();
    expect((await a.nodes()).map((n) => n.id)).toEqual([a.node]);
  });

  it('supervisor.fleet() lists every node\'s workers and periodics, also on a client runtime', async () => {
    const { schema, a, b } = await pair('fleet');
    a.supervisor.add('mailer', async () => none('50ms'));
    b.supervisor.add('mailer', async () => none('50ms'));
    b.periodic('nightly', { every: '1h' }, async () => 'ok', { tags: ['org:acme'] });
    await Promise.all([a.start(), b.start()]);
    await a.supervisor.disable('ghost'); // stored only: no node registers it
    const client = await createRuntime({ database: DATABASE_URL, schema, node: 'fleet-client', heartbeatInterval: 100 });
    runtimes.push(client);
    // b's workers reach a and the client through b's heartbeat.
    await until(async () => (await client.supervisor.fleet()).some((w) => w.name === 'nightly'), 'b heartbeats its periodic', 5_000);
    const fleet = await client.supervisor.fleet();
    expect(fleet.map((w) => w.name)).toEqual(['ghost', 'mailer', 'nightly']);
    const [ghost, mailer, nightly] = fleet as [FleetWorker, FleetWorker, FleetWorker];
    expect(ghost).toMatchObject({ enabled: false, status: 'disabled', nodes: [] });
    expect(mailer.status).toBe('running');
    expect(mailer.nodes.map((n) => n.node).sort()).toEqual([a.node, b.node].sort());
    expect(nightly).toMatchObject({ kind: 'periodic', schedule: 'every 1h', tags: ['org:acme'], enabled: true, status: 'running' });
    expect(nightly.nodes.map((n) => n.node)).toEqual([b.node]);
    // The next tick is the next whole hour after now.
    expect(nightly.nextRun?.getTime()).toBe((Math.floor(Date.now() / 3_600_000) + 1) * 3_600_000);
    await b.supervisor.disable('mailer');
    await until(async () => {
      const m = (await a.supervisor.fleet()).find((w) => w.name === 'mailer');
      return m?.enabled === false && m.nodes.every((n) => n.status === 'disabled');
    }, 'both nodes report mailer disabled', 5_000);
    expect((await a.supervisor.fleet()).find((w) => w.name === 'mailer')?.status).toBe('disabled');
  });

  it('counts() gives records per machine, state and status with the oldest entry', async () => {
    const schema = uniqueSchema('counts');
    schemas.push(schema);
    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [toggle] });
    runtimes.push(rt);
    await rt.create('toggle', { id: 'a' });
    await rt.create('toggle', { id: 'b' });
    await rt.create('toggle', { id: 'c' });
    await rt.cancel('toggle', 'c');
    const counts = await rt.counts();
    expect(counts.map(({ machine, state, status, count }) => ({ machine, state, status, count }))).toEqual([
      { machine: 'toggle', state: 'off', status: 'active', count: 2 },
      { machine: 'toggle', state: 'off', status: 'cancelled', count: 1 },
    ]);
    const [rows] = [await admin.query(`SELECT min(entered_at) AS m FROM "${schema}".instances WHERE status = 'active'`)];
    expect(counts[0]?.oldestEnteredAt.getTime()).toBe((rows.rows[0] as { m: Date }).m.getTime());
    await expect(rt.counts({ machine: 'nope' })).rejects.toThrow(UnknownMachineError);
  });

  it('stopEverywhere() and startEverywhere() from a client runtime reach the worker on every node, in order', async () => {
    const { schema, a, b } = await pair('cmd');
    a.supervisor.add('mailer', async () => none('50ms'));
    b.supervisor.add('mailer', async () => none('50ms'));
    await Promise.all([a.start(), b.start()]);
    const client = await createRuntime({ database: DATABASE_URL, schema, node: 'cmd-client' });
    runtimes.push(client);
    await client.supervisor.stopEverywhere('mailer');
    await until(() => a.supervisor.status('mailer') === 'stopped' && b.supervisor.status('mailer') === 'stopped', 'both stop', 5_000);
    // Stop then start, stored back to back: every node ends running.
    await client.supervisor.stopEverywhere('mailer');
    await client.supervisor.startEverywhere('mailer');
    await until(() => a.supervisor.status('mailer') === 'running' && b.supervisor.status('mailer') === 'running', 'both run again', 5_000);
    // Nothing is kept: the enable flag is untouched and a node started later runs its worker.
    expect((await client.supervisor.fleet()).find((w) => w.name === 'mailer')?.enabled).toBe(true);
    await client.supervisor.stopEverywhere('mailer');
    await until(() => a.supervisor.status('mailer') === 'stopped', 'a stops', 5_000);
    const c = await createRuntime({ database: DATABASE_URL, schema, node: 'cmd-c', controlInterval: 50 });
    runtimes.push(c);
    c.supervisor.add('mailer', async () => none('50ms'));
    await c.start();
    expect(c.supervisor.status('mailer')).toBe('running');
    await expect(client.supervisor.stopEverywhere('drover.poller')).rejects.toThrow(InvalidArgumentError);
  });
});
