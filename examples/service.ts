// `npm run example:service`: a service that embeds the supervisor, on the embedded default
// (in-memory PGlite, in-process bus, no servers). It has three parts:
//   - the queue poller `drover.poller.orders`, which runs the durable `order` machine;
//   - a custom worker, `intake`, which turns items of an in-memory inbox into orders;
//   - a cron job, `feed`, which puts one item in the inbox every 2 seconds.
// It drains by itself after `maxRunTime` (8 s) and prints the workers and the cron job's runs.

import { order } from '../machines/order.js';
import { createRuntime, done, type Logger, none } from '../src/index.js';

let started = Date.now();
const elapsed = () => `${String(Date.now() - started).padStart(5)} ms`;

// Prints drover's info lines (start, maxRunTime, stop) and its warnings and errors.
const print = (obj: object, msg?: string) => console.log(`${elapsed()}  ${msg ?? ''} ${JSON.stringify(obj)}`);
const logger: Logger = { debug: () => {}, info: print, warn: print, error: print };

const drover = await createRuntime({ machines: [order], logger, maxRunTime: '8s' });
started = Date.now();
drover.handleSignals(); // Ctrl-C drains the same way, then exits 0

// Stands in for an external queue (SQS, a webhook inbox…).
const inbox: Array<{ id: string; amount: number }> = [];

// A worker: one item per call. done() calls it again at once; none('200ms') sleeps first.
const intake = drover.supervisor.add(
  'intake',
  async () => {
    const item = inbox.shift();
    if (!item) return none('200ms');
    await drover.create('order', { id: item.id, input: { order_id: item.id, amount: item.amount } });
    await drover.send('order', item.id, { type: 'payment.confirmed' });
    return done();
  },
  { maxPanicAttempts: 5, record: true },
);

// A cron job with a seconds field: at every even second (UTC). Exactly one run per tick,
// whatever the number of nodes. The string it returns is the run record's `debug` text.
let fed = 0;
drover.periodic('feed', { cron: '*/2 * * * * *' }, ({ scheduledFor }) => {
  fed += 1;
  const item = { id: `o-${fed}`, amount: fed === 2 ? 5000 : 40 * fed }; // o-2 is declined
  inbox.push(item);
  return `queued ${item.id} for the tick of ${scheduledFor.toISOString()}`;
});

// The worker's metric stream: one event per call (and on start, stop, panics). It ends when
// the worker stops; a reader that falls 256 events behind loses the oldest.
const calls = { none: 0, done: 0, fail: 0 };
const counted = (async () => {
  for await (const m of intake.metrics()) if (m.kind === 'handle') calls[m.status] += 1;
})();

drover.subscribe({ machine: 'order' }, (t) => {
  console.log(`${elapsed()}  ${t.id.padEnd(4)} ${(t.from ?? '(created)').padEnd(16)} → ${t.to.padEnd(14)} on ${t.event.type}`);
});

const printWorkers = (when: string) => {
  console.log(`\nworkers (${when}):`);
  for (const w of drover.supervisor.workers()) {
    const m = w.lastMetric;
    const last = !m ? '-' : m.kind === 'handle' ? `handle ${m.status}` : m.kind === 'panic' ? `panic ${m.attempt}` : m.event;
    console.log(`  ${w.name.padEnd(7)} ${w.kind.padEnd(9)} ${w.status.padEnd(8)} panics ${w.panics}  last metric: ${last}`);
  }
};

// stop() closes the database, so the run records are read as the supervisor starts to drain
// (maxRunTime, a signal or stop()). Both reads are queued at once, ahead of the drain's own
// statements, so they finish before the database closes.
let report: Promise<void> | undefined;
drover.supervisor.actor.subscribe((snapshot) => {
  if (!snapshot.matches('draining') || report) return;
  printWorkers('draining');
  report = Promise.all([drover.supervisor.runs('feed', { limit: 10 }), drover.supervisor.runs('intake', { limit: 1000 })]).then(
    ([feed, intakeRuns]) => {
      console.log('\nruns of feed (newest first):');
      for (const r of feed.items) {
        console.log(`  #${r.id} ${r.scheduledFor.toISOString()} ${r.status.padEnd(9)} attempt ${r.attempt}  ${r.debug ?? r.error?.message ?? ''}`);
      }
      console.log(`\nintake: ${intakeRuns.items.length} run records (calls that return none() leave none)`);
    },
  );
});

await drover.start();
// Resolves after maxRunTime. On a signal, handleSignals() exits the process once drained, so
// the lines below print only when maxRunTime (or stop()) ends it.
await drover.done;
await report;
await counted;
console.log(`intake metrics: ${calls.done} done, ${calls.none} none, ${calls.fail} fail`);
printWorkers('after done');
