import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { z } from 'zod';
import { createRuntime, durable, InvalidInputError, MachineDefinitionError, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// Input checked by a Standard Schema validator (zod here) at create(), createMany() and over NATS.
const OrderInput = z.object({
  order_id: z.string().min(1),
  lines: z.array(z.object({ sku: z.string(), qty: z.number().int().positive() })).min(1),
  // A transform: what the machine starts from is the validator's output.
  note: z
    .string()
    .optional()
    .transform((s) => s ?? 'none'),
});

const order = durable(
  setup({ types: { context: {} as z.output<typeof OrderInput>, input: {} as z.output<typeof OrderInput> } }).createMachine({
    id: 'order',
    initial: 'open',
    context: ({ input }) => input,
    states: { open: {} },
  }),
  { input: OrderInput },
);

// A context factory that keeps a Date: it would come back as a string after the first step.
const dated = durable(
  setup({ types: { input: {} as { at?: string } } }).createMachine({
    id: 'dated',
    initial: 'waiting',
    context: ({ input }) => ({ due: input.at ? new Date(input.at) : null }),
    states: { waiting: {} },
  }),
);

describe.each(BACKENDS)('input validation on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const count = async () =>
    (await backend.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${backend.schema}".instances`))[0]?.n ?? 0;

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [order, dated] });
  });
  afterAll(async () => {
    await rt.stop();
    await backend.close();
  });

  it('create() starts from the validated output', async () => {
    const record = await rt.create('order', { id: 'o-1', input: { order_id: 'o-1', lines: [{ sku: 'a', qty: 2 }] } });
    expect(record.context).toEqual({ order_id: 'o-1', lines: [{ sku: 'a', qty: 2 }], note: 'none' });
  });

  it('create() with input the validator refuses rejects with its issues and paths, and stores nothing', async () => {
    const before = await count();
    const err = (await rt
      .create('order', { id: 'o-2', input: { order_id: '', lines: [{ sku: 'a', qty: 0 }] } })
      .catch((e: unknown) => e)) as InvalidInputError;
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.issues.map((i) => i.path)).toEqual([['order_id'], ['lines', 0, 'qty']]);
    expect(err.message).toMatch(/order_id: .*; lines\.0\.qty: /);
    expect(await count()).toBe(before);
    expect(await rt.get('order', 'o-2')).toBeNull();
  });

  it('createMany() validates every item first: one bad item stores none, and the error names it', async () => {
    const before = await count();
    const err = (await rt
      .createMany('order', [
        { id: 'm-1', input: { order_id: 'm-1', lines: [{ sku: 'a', qty: 1 }] } },
        { id: 'm-2', input: { order_id: 'm-2', lines: [] } },
      ])
      .catch((e: unknown) => e)) as InvalidInputError;
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toMatch(/^items\[1\]: /);
    expect(err.issues.map((i) => i.path)).toEqual([['lines']]);
    expect(await count()).toBe(before);
    const made = await rt.createMany('order', [{ id: 'm-3', input: { order_id: 'm-3', lines: [{ sku: 'b', qty: 1 }], note: 'gift' } }]);
    expect(made[0]?.context).toMatchObject({ note: 'gift' });
  });

  it('an initial context that is not JSON-safe is refused, naming the field, and stores nothing', async () => {
    const before = await count();
    const err = await rt.create('dated', { id: 'd-1', input: { at: '2026-12-24T00:00:00Z' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MachineDefinitionError);
    expect((err as Error).message).toMatch(/context\.due/);
    expect((err as Error).message).toMatch(/Date/);
    expect(await count()).toBe(before);
    expect(await rt.create('dated', { id: 'd-2', input: {} })).toMatchObject({ context: { due: null } });
  });
});
