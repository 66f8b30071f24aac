import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, type Runtime, stateString } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// JSONB stores object keys shortest first: `usage` comes back before `billing`, `tax` before
// `receipts`. The machine defines them the other way round, so a state string built from the
// stored value's key order would change after every round trip.
const account = durable(
  setup({}).createMachine({
    id: 'account',
    initial: 'active',
    states: {
      active: {
        type: 'parallel',
        states: {
          billing: {
            initial: 'waiting',
            states: {
              waiting: { on: { pay: 'paid' } },
              paid: {
                type: 'parallel',
                states: {
                  receipts: { initial: 'pending', states: { pending: { on: { mail: 'sent' } }, sent: {} } },
                  tax: { initial: 'open', states: { open: {} } },
                },
              },
            },
          },
          usage: { initial: 'normal', states: { normal: { on: { spike: 'high' } }, high: {} } },
        },
      },
    },
  }),
);

describe('stateString', () => {
  it('orders regions as the machine defines them, at every depth, whatever the key order of the value', () => {
    const value = { active: { usage: 'high', billing: { paid: { tax: 'open', receipts: 'sent' } } } };
    expect(stateString(value, account.machine)).toBe('active.billing.paid.receipts.sent,active.billing.paid.tax.open,active.usage.high');
    // Without the machine: the value's own key order.
    expect(stateString(value)).toBe('active.usage.high,active.billing.paid.tax.open,active.billing.paid.receipts.sent');
  });
});

describe.each(BACKENDS)('canonical state strings on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const open = () => createRuntime({ database: backend.database, schema: backend.schema, machines: [account], pollInterval: 50 });

  beforeAll(async () => {
    backend = await make();
    rt = await open();
    await rt.start();
  });
  afterAll(async () => {
    await rt.stop();
    await backend.close();
  });

  it('a parallel state keeps one name through JSONB round trips: state column, history, list, residency', async () => {
    await rt.create('account', { id: 'a-1' });
    await rt.send('account', 'a-1', { type: 'spike' });
    await rt.waitFor('account', 'a-1', { state: { active: { usage: 'high' } } }, { timeoutMs: 10_000 });
    await rt.send('account', 'a-1', { type: 'pay' });
    await rt.waitFor('account', 'a-1', { state: { active: { billing: 'paid' } } }, { timeoutMs: 10_000 });
    await rt.send('account', 'a-1', { type: 'mail' });
    const record = await rt.waitFor('account', 'a-1', { state: { active: { billing: { paid: { receipts: 'sent' } } } } }, { timeoutMs: 10_000 });

    const final = 'active.billing.paid.receipts.sent,active.billing.paid.tax.open,active.usage.high';
    expect(record.state).toBe(final);
    // The stored value does come back in the other key order: what the old naming followed.
    expect(Object.keys((record.value as { active: object }).active)).toEqual(['usage', 'billing']);
    expect((await rt.history('account', 'a-1')).map((h) => [h.from, h.to])).toEqual([
      [null, 'active.billing.waiting,active.usage.normal'],
      ['active.billing.waiting,active.usage.normal', 'active.billing.waiting,active.usage.high'],
      ['active.billing.waiting,active.usage.high', 'active.billing.paid.receipts.pending,active.billing.paid.tax.open,active.usage.high'],
      ['active.billing.paid.receipts.pending,active.billing.paid.tax.open,active.usage.high', final],
    ]);
    expect((await rt.list('account', { state: 'active.usage.high' })).items.map((r) => r.id)).toEqual(['a-1']);
    // A filter written in another order names the same state.
    expect((await rt.list('account', { state: 'active.usage.high,active.billing.paid.tax.open,active.billing.paid.receipts.sent' })).items.map((r) => r.id)).toEqual(['a-1']);
    const residency = await rt.residency('account');
    expect(residency.map((r) => r.state)).toEqual([...new Set(residency.map((r) => r.state))]);
    expect(residency.find((r) => r.state === final)?.count).toBe(1);
  });

  it('records stored in another order are repaired on start, and the history rows of a mere reorder are dropped', async () => {
    await rt.create('account', { id: 'a-2' });
    await rt.send('account', 'a-2', { type: 'spike' });
    await rt.waitFor('account', 'a-2', { state: { active: { usage: 'high' } } }, { timeoutMs: 10_000 });
    await rt.stop();
    // What an older drover stored: the reordered name, and a spurious A,B → B,A entry.
    const s = `"${backend.schema}"`;
    await backend.query(`UPDATE ${s}.instances SET state = 'active.usage.high,active.billing.waiting' WHERE id = 'a-2'`);
    await backend.query(
      `UPDATE ${s}.transitions SET to_state = 'active.usage.normal,active.billing.waiting' WHERE instance_id = 'a-2' AND seq = 1`,
    );
    await backend.query(
      `UPDATE ${s}.transitions SET from_state = 'active.usage.normal,active.billing.waiting', to_state = 'active.usage.high,active.billing.waiting' WHERE instance_id = 'a-2' AND seq = 2`,
    );
    await backend.query(
      `INSERT INTO ${s}.transitions (machine, instance_id, version, seq, from_state, to_state, status, event, at, published_at)
       VALUES ('account', 'a-2', 1, 3, 'active.usage.high,active.billing.waiting', 'active.billing.waiting,active.usage.high', 'active', '{"type":"tick"}', now(), now())`,
    );
    await backend.query(`UPDATE ${s}.instances SET seq = 3 WHERE id = 'a-2'`);
    await backend.query(`DELETE FROM ${s}.repairs`);

    rt = await open();
    await rt.start();
    expect((await rt.get('account', 'a-2'))?.state).toBe('active.billing.waiting,active.usage.high');
    expect((await rt.history('account', 'a-2')).map((h) => [h.from, h.to])).toEqual([
      [null, 'active.billing.waiting,active.usage.normal'],
      ['active.billing.waiting,active.usage.normal', 'active.billing.waiting,active.usage.high'],
    ]);
    // The repaired record still steps, and its next entry continues the history.
    await rt.send('account', 'a-2', { type: 'pay' });
    await rt.waitFor('account', 'a-2', { state: { active: { billing: 'paid' } } }, { timeoutMs: 10_000 });
    const history = await rt.history('account', 'a-2');
    expect(history.at(-1)).toMatchObject({
      from: 'active.billing.waiting,active.usage.high',
      to: 'active.billing.paid.receipts.pending,active.billing.paid.tax.open,active.usage.high',
    });
  });
});
