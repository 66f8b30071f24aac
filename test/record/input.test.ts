import type { StandardSchemaV1 } from '@standard-schema/spec';
import { describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { z } from 'zod';
import { durable, InvalidArgumentError } from '../../src/index.js';
import { validateInput } from '../../src/record/input.js';

const machine = setup({}).createMachine({ id: 'order', initial: 'a', states: { a: {} } });

const orderInput = z.object({
  order_id: z.string().min(1),
  qty: z.coerce.number().int().positive(),
  lines: z.array(z.object({ sku: z.string() })).default([]),
});

describe('durable({ input }) with a Standard Schema validator', () => {
  const order = durable(machine, { input: orderInput });

  it('stores the validator on the machine', () => {
    expect(order.input).toBe(orderInput);
    expect(durable(machine).input).toBeUndefined();
  });

  it('passes valid input, as the validator outputs it (coerced, defaulted)', async () => {
    expect(await validateInput(order, { order_id: 'o-1', qty: '3' })).toEqual({ ok: true, value: { order_id: 'o-1', qty: 3, lines: [] } });
  });

  it('uses the transformed value', async () => {
    const upper = durable(machine, { input: z.object({ code: z.string().transform((s) => s.toUpperCase()) }) });
    expect(await validateInput(upper, { code: 'abc' })).toEqual({ ok: true, value: { code: 'ABC' } });
  });

  it('returns every issue with its path as keys and indexes', async () => {
    const result = await validateInput(order, { order_id: '', qty: 'many', lines: [{ sku: 'a' }, { sku: 7 }] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issues.map((i) => i.path)).toEqual([['order_id'], ['qty'], ['lines', 1, 'sku']]);
    for (const issue of result.issues) expect(typeof issue.message).toBe('string');
    expect(result.issues[2]?.message).toMatch(/string/i);
  });

  it('gives a root issue an empty path', async () => {
    const result = await validateInput(order, 'not an object');
    expect(result).toMatchObject({ ok: false, issues: [{ path: [] }] });
  });

  it('awaits async validators (zod refinements that return promises)', async () => {
    const taken = new Set(['o-taken']);
    const unique = durable(machine, {
      input: z.object({ order_id: z.string().refine(async (id) => !taken.has(id), 'order id taken') }),
    });
    expect(await validateInput(unique, { order_id: 'o-new' })).toEqual({ ok: true, value: { order_id: 'o-new' } });
    expect(await validateInput(unique, { order_id: 'o-taken' })).toEqual({ ok: false, issues: [{ message: 'order id taken', path: ['order_id'] }] });
  });

  it('takes any Standard Schema: a hand-written async one with path segments and symbol keys', async () => {
    const key = Symbol('secret');
    const schema: StandardSchemaV1<unknown, { n: number }> = {
      '~standard': {
        version: 1,
        vendor: 'hand',
        validate: async (value) => {
          await Promise.resolve();
          const n = (value as { n?: unknown })?.n;
          if (typeof n === 'number') return { value: { n: n * 2 } };
          return { issues: [{ message: 'n must be a number', path: [{ key: 'wrap' }, { key: 0 }, key, 'n'] }, { message: 'bad' }] };
        },
      },
    };
    const def = durable(machine, { input: schema });
    expect(await validateInput(def, { n: 2 })).toEqual({ ok: true, value: { n: 4 } });
    expect(await validateInput(def, {})).toEqual({
      ok: false,
      issues: [
        { message: 'n must be a number', path: ['wrap', 0, 'secret', 'n'] },
        { message: 'bad', path: [] },
      ],
    });
  });

  it('without a validator the input passes as it is', async () => {
    const input = { anything: [1] };
    const result = await validateInput(durable(machine), input);
    expect(result).toEqual({ ok: true, value: input });
    expect(result.ok && result.value).toBe(input);
  });

  it('refuses a validator that is not a Standard Schema with InvalidArgumentError', () => {
    for (const bad of [{}, (x: unknown) => x, { '~standard': { version: 2, validate: () => ({ value: 1 }) } }, { '~standard': { version: 1 } }, 'z.object']) {
      let err: unknown;
      try {
        durable(machine, { input: bad as never });
      } catch (e) {
        err = e;
      }
      expect(err, String(bad)).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toContain('machine "order": input must be a Standard Schema validator');
    }
  });
});
