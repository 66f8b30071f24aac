// The example of docs/testing.md, run. The last test keeps the page's block and this file the
// same code (the page imports from 'drover/testing' and sits one folder up).
import { readFileSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import { createTestRuntime, type TestRuntime } from '../../src/testing/index.js';
import { order } from '../../machines/order.js';

let t: TestRuntime | undefined;
afterEach(async () => {
  await t?.stop();
});

it('an unpaid order expires when its payment window passes', async () => {
  const rt = await createTestRuntime({ machines: [order] });
  t = rt;
  await rt.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 20, paymentWindowMs: 3_600_000 } });
  await rt.clock.advance('59m');
  expect((await rt.get('order', 'o-1'))?.state).toBe('awaiting_payment');
  await rt.clock.advance('1m');
  expect(await rt.states('order', 'o-1')).toEqual(['awaiting_payment', 'expired']);
});

it('a paid order is charged and shipped', async () => {
  const rt = await createTestRuntime({ machines: [order] });
  t = rt;
  await rt.create('order', { id: 'o-2', input: { order_id: 'o-2', amount: 20 } });
  await rt.send('order', 'o-2', { type: 'payment.confirmed' });
  const { transitions } = await rt.drain(); // the charge promise runs, its result is stepped
  expect(transitions.map((x) => x.to)).toEqual(['charging', 'shipped']);
  expect((await rt.get('order', 'o-2'))?.context.receipt).toBe('rcpt-o-2');
});

it('docs/testing.md shows this file', () => {
  const page = readFileSync(new URL('../../docs/testing.md', import.meta.url), 'utf8');
  const block = /<!-- check: at test\/docs-testing-example\.test\.ts -->\n```ts\n([\s\S]*?)```/.exec(page)?.[1];
  const code = (text: string) =>
    text
      .split('\n')
      .filter((line) => !line.startsWith('import ') && !line.startsWith('//'))
      .join('\n')
      .split('\nit(\'docs/testing.md shows this file\'')[0]
      ?.trim();
  expect(block && code(block)).toBe(code(readFileSync(new URL(import.meta.url), 'utf8')));
});
