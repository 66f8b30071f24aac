import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// A worker that polls once an hour can only react quickly if create()/send() wake it: from
// another runtime (a client that never starts), through NOTIFY at commit.

const door = durable(
  setup({}).createMachine({
    id: 'door',
    initial: 'closed',
    states: { closed: { on: { open: 'opened' } }, opened: { on: { close: 'closed' } } },
  }),
);

describe.each(BACKENDS)('wake-ups on $name', ({ make }) => {
  let backend: TestBackend;
  let worker: Runtime;
  let client: Runtime;
  beforeAll(async () => {
    backend = await make();
    worker = await createRuntime({
      database: backend.database,
      schema: backend.schema,
      machines: [door],
      pollInterval: '1h',
      node: 'worker',
    });
    client = await createRuntime({ database: backend.database, schema: backend.schema, machines: [door], node: 'client' });
    await worker.start();
  });
  afterAll(async () => {
    await client?.stop();
    await worker?.stop();
    await backend?.close();
  });

  const stepped = (id: string, state: string) => {
    const seen = new Promise<number>((resolve) => {
      const off = worker.subscribe({ machine: 'door', to: state }, (t) => {
        if (t.id !== id) return;
        off();
        resolve(Date.now());
      });
    });
    return seen;
  };

  it('a send() from a client runtime wakes the idle worker at once, not at its poll interval', async () => {
    await client.create('door', { id: 'd1' });
    for (const [event, state] of [
      ['open', 'opened'],
      ['close', 'closed'],
      ['open', 'opened'],
    ] as const) {
      const seen = stepped('d1', state);
      const sent = Date.now();
      await client.send('door', 'd1', { type: event });
      expect((await seen) - sent).toBeLessThan(2000); // the poll interval is an hour
    }
    expect((await worker.history('door', 'd1')).map((h) => h.to)).toEqual(['closed', 'opened', 'closed', 'opened']);
  });

  it('a send() inside a caller transaction wakes the worker when it commits', async () => {
    await client.create('door', { id: 'd2' });
    const seen = stepped('d2', 'opened');
    await backend.inTransaction((tx) => client.send('door', 'd2', { type: 'open' }, { tx }), 'commit');
    const committed = Date.now();
    expect((await seen) - committed).toBeLessThan(2000);
  });
});
