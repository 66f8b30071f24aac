// `npm start`: four orders on the embedded default (in-memory PGlite, in-process bus, no
// servers), driven by events, an invoked promise and a durable timer to their final states.

import { order } from '../machines/order.js';
import { createRuntime } from '../src/index.js';
import { openEmbedded } from './embedded.js';

// Boot progress, so the few seconds PGlite takes are not silence (createRuntime() with no
// database does the same boot, without the lines and the saved cluster).
const booting = Date.now();
const pglite = await openEmbedded((line) => console.log(line));
console.log("applying drover's migrations…");
const drover = await createRuntime({ database: pglite, machines: [order], pollInterval: '100ms' });
console.log(`ready in ${Date.now() - booting} ms\n`);
const started = Date.now();
const elapsed = () => `${String(Date.now() - started).padStart(5)} ms`;

drover.subscribe({ machine: 'order' }, (t) => {
  const from = t.from ?? '(created)';
  console.log(`${elapsed()}  ${t.id.padEnd(6)} ${from.padEnd(17)} → ${t.to.padEnd(15)} on ${t.event.type}`);
});
await drover.start();

// o-1 pays and ships; o-2 pays but the card is declined; o-3 is cancelled; o-4 never pays
// and its 1.5 s payment window (a durable timer) expires it.
await drover.create('order', { id: 'o-1', input: { order_id: 'o-1', amount: 50 } });
await drover.create('order', { id: 'o-2', input: { order_id: 'o-2', amount: 5000 } });
await drover.create('order', { id: 'o-3', input: { order_id: 'o-3', amount: 20 } });
await drover.create('order', { id: 'o-4', input: { order_id: 'o-4', amount: 75, paymentWindowMs: 1500 } });

await drover.send('order', 'o-1', { type: 'payment.confirmed' });
await drover.send('order', 'o-2', { type: 'payment.confirmed' });
await drover.send('order', 'o-3', { type: 'cancel' });

const finals = await Promise.all(
  ['o-1', 'o-2', 'o-3', 'o-4'].map((id) => drover.waitFor('order', id, { status: 'done' }, { timeoutMs: 10_000 })),
);
console.log('\nfinal states:');
for (const r of finals) console.log(`  ${r.id}: ${r.state}${r.context.receipt ? ` (receipt ${r.context.receipt})` : ''}`);
console.log(`\nhistory of o-1: ${(await drover.history('order', 'o-1')).map((h) => h.to).join(' → ')}`);

await drover.stop();
await pglite.close(); // the caller's PGlite: stop() leaves it open
