import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createRuntime, none, type Runtime } from '../../src/index.js';
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
});
