// `npm run example:actors`: records as actors on the embedded default (docs/actors.md). Each
// `fulfilment` record invokes a `shipment` machine, which becomes a child record of its own;
// the shipment books a courier, reports to its parent with sendParent, waits for its pickup
// (an event, or its durable `after` timer) and hands its tracking number back as its output;
// the fulfilment then emits `order.receipt`, heard here with runtime.on().

import { createRuntime } from '../src/index.js';
import { fulfilment, shipment } from './actors/order-shipment.js';

const drover = await createRuntime({ machines: [fulfilment, shipment], pollInterval: '100ms' });
const started = Date.now();
const elapsed = () => `${String(Date.now() - started).padStart(5)} ms`;

for (const machine of ['fulfilment', 'shipment'] as const) {
  drover.subscribe({ machine }, (t) => {
    console.log(`${elapsed()}  ${`${machine} ${t.id}`.padEnd(22)} ${(t.from ?? '(created)').padEnd(16)} → ${t.to.padEnd(16)} on ${t.event.type}`);
  });
}
const receipts = drover.on('fulfilment', 'order.receipt', (e) => {
  console.log(`${elapsed()}  receipt for ${e.event.order_id}: tracking ${e.event.tracking}`);
});
await receipts.ready;
await drover.start();

// o-1's courier calls in; o-2's pickup window (a timer of the child record) runs out; o-3 is
// cancelled while shipping, which cancels its shipment record.
for (const id of ['o-1', 'o-2', 'o-3']) {
  await drover.create('fulfilment', { id, input: { order_id: id } });
  await drover.send('fulfilment', id, { type: 'pay' });
}
// A child record is created in its parent's step: once the parent is `shipping`, it exists.
for (const id of ['o-1', 'o-3']) await drover.waitFor('fulfilment', id, { state: 'shipping' }, { timeoutMs: 10_000 });
await drover.waitFor('shipment', 'o-1.ship', { state: 'awaiting_pickup' }, { timeoutMs: 10_000 });
await drover.send('shipment', 'o-1.ship', { type: 'picked_up' });
await drover.waitFor('shipment', 'o-3.ship', { state: 'awaiting_pickup' }, { timeoutMs: 10_000 });
await drover.cancel('fulfilment', 'o-3');

for (const id of ['o-1', 'o-2']) await drover.waitFor('fulfilment', id, { state: 'completed' }, { timeoutMs: 10_000 });

const child = await drover.get('shipment', 'o-1.ship');
console.log(`\nshipment o-1.ship: ${child?.status}, parent ${JSON.stringify(child?.parent)}`);
const children = await drover.list('shipment', { parent: { machine: 'fulfilment', id: 'o-3' } });
console.log(`children of fulfilment o-3: ${children.items.map((r) => `${r.id} (${r.status})`).join(', ')}`);
console.log('history of fulfilment o-1:');
for (const h of await drover.history('fulfilment', 'o-1')) {
  const what = h.kind ? `${h.kind.padEnd(8)} ${h.event.type}${h.peer ? ` (${h.peer.machine} ${h.peer.id})` : ''}` : `${h.from ?? '(created)'} → ${h.to}`;
  console.log(`  ${what}`);
}
receipts();
await drover.stop();
