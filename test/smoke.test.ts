import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, type Runtime } from '../src/index.js';
import { BACKENDS, type TestBackend } from './helpers/backends.js';

const toggle = durable(
  setup({}).createMachine({ id: 'toggle', initial: 'off', states: { off: { on: { flip: 'on' } }, on: { on: { flip: 'off' } } } }),
);

describe.each(BACKENDS)('smoke on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [toggle], pollInterval: 50 });
    await rt.start();
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('steps a record through events', async () => {
    await rt.create('toggle', { id: 't1' });
    await rt.send('toggle', 't1', { type: 'flip' });
    const r = await rt.waitFor('toggle', 't1', { state: 'on' }, { timeoutMs: 5000 });
    expect(r.state).toBe('on');
    expect((await rt.history('toggle', 't1')).map((h) => h.to)).toEqual(['off', 'on']);
  });
});
