import pg from 'pg';
import { setup } from 'xstate';
import { afterAll, describe, expect, it } from 'vitest';
import { createRuntime, durable, InvalidArgumentError, RuntimeStoppedError } from '../src/index.js';
import { DATABASE_URL, uniqueSchema } from './helpers/backends.js';

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
const schemas: string[] = [];
afterAll(async () => {
  for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await pool.end();
});

const lamp = durable(setup({}).createMachine({ id: 'lamp', initial: 'off', states: { off: { on: { on: 'lit' } }, lit: {} } }));

describe('createRuntime options', () => {
  it('runs on a pg.Pool the caller owns and leaves it open on stop()', async () => {
    const schema = uniqueSchema('opt');
    schemas.push(schema);
    const rt = await createRuntime({ database: pool, schema, machines: [lamp], pollInterval: 50 });
    await rt.start();
    await rt.create('lamp', { id: 'l1' });
    await rt.send('lamp', 'l1', { type: 'on' });
    await rt.waitFor('lamp', 'l1', { state: 'lit' }, { timeoutMs: 5000 });
    await rt.stop();
    const rows = await pool.query(`SELECT state FROM "${schema}".instances WHERE id = 'l1'`);
    expect(rows.rows).toEqual([{ state: 'lit' }]);
  });

  it('loads the durable machines a folder exports (machinesDir)', async () => {
    const schema = uniqueSchema('dir');
    schemas.push(schema);
    const rt = await createRuntime({ database: DATABASE_URL, schema, machinesDir: new URL('../machines', import.meta.url).pathname });
    try {
      const order = await rt.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 5 } });
      expect(order).toMatchObject({ machine: 'order', state: 'awaiting_payment', status: 'active' });
    } finally {
      await rt.stop();
    }
  });

  it.each([
    ['a schema that is not an identifier', { schema: 'Drover-1' }],
    ['a schema with SQL in it', { schema: 'x"; drop table y; --' }],
    ['batchSize 0', { batchSize: 0 }],
    ['a fractional concurrency', { concurrency: 1.5 }],
    ['a lease under 100 ms', { lease: 50 }],
    ['a poll interval that is not a duration', { pollInterval: 'often' }],
    ['a NATS prefix that is not one subject token', { natsPrefix: 'a.b' }],
    ['a stream name with a dot', { stream: { name: 'DROVER.X' } }],
    ['a database that is neither string, pool nor PGlite', { database: 42 }],
    ['a machine not made by durable()', { machines: [{ id: 'raw' }] }],
  ])('rejects %s with InvalidArgumentError', async (_what, options) => {
    await expect(createRuntime({ database: DATABASE_URL, ...(options as object) })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('takes no calls after stop()', async () => {
    const schema = uniqueSchema('stop');
    schemas.push(schema);
    const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [lamp] });
    await rt.stop();
    await expect(rt.create('lamp', {})).rejects.toBeInstanceOf(RuntimeStoppedError);
    await expect(rt.get('lamp', 'x')).rejects.toBeInstanceOf(RuntimeStoppedError);
    await rt.stop(); // a second stop is a no-op
  });
});
