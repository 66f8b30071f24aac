// Scenario (t), drover only: how late durable timers fire. Each record of `bench_timer` waits
// in its initial state on `after: { wait: 'fired' }`, the delay read from its own context
// (XState `delays`), spread evenly over 100–3000 ms; the entry action of `fired` notes the time
// it ran. Lateness = that time − the due time, where the due time is `Date.now() + delayMs`
// taken just before the record's create call and stored in its input (drover takes its own
// clock inside the call, so its due time is a little later: the lateness is an upper bound,
// and an early timer is early for sure).
// - (t1) one runtime throughout;
// - (t2) the runtime is stopped ~1 s after the records were created, and a new runtime on the
//   same schema is started at once: the timers that fire after that are reported separately
//   (those due before the new one was up, overdue when it started, and those due after).
import { performance } from 'node:perf_hooks';
import { setup } from 'xstate';
import { durable, type Runtime } from '../src/index.js';
import { config, dropSchema, errorText, now, parallelFor, percentile, schemaName, settle, sleep, type TimerResult, until } from './common.js';
import { type BulkItem, createManyOf, describeSettings, open, tunedSuffix } from './drover.js';
import type { ProfiledPool } from './profile.js';

interface TimerInput {
  key: string;
  delayMs: number;
  /** Epoch ms (Date.now() just before the create call) + delayMs. */
  dueAt: number;
}

/** When each record's `fired` entry action first ran (epoch ms, performance clock), and in which epoch. */
const fired = new Map<string, { at: number; epoch: number }>();
/** Which runtime is live: 1, then 2 after the restart of (t2). */
let epoch = 1;
const wallNow = () => performance.timeOrigin + performance.now();

export const timerMachine = durable(
  setup({
    types: { context: {} as TimerInput, input: {} as TimerInput },
    delays: { wait: ({ context }) => context.delayMs },
    actions: {
      noteFired: ({ context }) => {
        if (!fired.has(context.key)) fired.set(context.key, { at: wallNow(), epoch });
      },
    },
  }).createMachine({
    id: 'bench_timer',
    initial: 'waiting',
    context: ({ input }) => ({ key: input.key, delayMs: input.delayMs, dueAt: input.dueAt }),
    states: {
      waiting: { after: { wait: 'fired' } },
      fired: { type: 'final', entry: 'noteFired' },
    },
  }),
);

/** Delays spread evenly over 100–3000 ms. */
const delayOf = (i: number, n: number) => 100 + Math.round((2900 * i) / Math.max(1, n - 1));

/**
 * Creates the records, dueAt taken right before each call: createMany in calls of 1,000, or
 * (without createMany) create() per record, 8 in flight. Returns each record's due time as
 * drover stored it (wakeAt), to show how far its clock is behind the bench's.
 */
async function createTimers(rt: Runtime, prefix: string, n: number): Promise<{ inputs: TimerInput[]; wakeAt: Map<string, number>; how: string }> {
  const inputs: TimerInput[] = [];
  const wakeAt = new Map<string, number>();
  const createMany = createManyOf(rt);
  if (createMany) {
    for (let c = 0; c < n; c += 1000) {
      const items: BulkItem[] = [];
      const t = Date.now();
      for (let i = c; i < Math.min(n, c + 1000); i++) {
        const input = { key: `${prefix}${i}`, delayMs: delayOf(i, n), dueAt: t + delayOf(i, n) };
        inputs.push(input);
        items.push({ id: input.key, input });
      }
      const views = await createMany(timerMachine.name, items);
      for (const v of views) if (v.wakeAt) wakeAt.set(v.id, v.wakeAt.getTime());
    }
    return { inputs, wakeAt, how: 'createMany(), 1000 per call' };
  }
  await parallelFor(n, 8, async (i) => {
    const input = { key: `${prefix}${i}`, delayMs: delayOf(i, n), dueAt: Date.now() + delayOf(i, n) };
    inputs.push(input);
    const v = await rt.create(timerMachine.name, { id: input.key, input });
    if (v.wakeAt) wakeAt.set(v.id, v.wakeAt.getTime());
  });
  return { inputs, wakeAt, how: 'no createMany(): create() per record, 8 in flight' };
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–');

/** One result row for the records of `group`. */
function row(variant: string, settings: string, group: TimerInput[], info: string[] = [], notes: string[] = []): TimerResult {
  const samples: number[] = [];
  for (const r of group) {
    const f = fired.get(r.key);
    if (f) samples.push(f.at - r.dueAt);
  }
  samples.sort((a, b) => a - b);
  const result: TimerResult = { scenario: 't', system: 'drover', variant, settings, records: group.length, fired: samples.length, samples, info, notes };
  if (samples.length < group.length) result.error = `${group.length - samples.length} of ${group.length} timers never fired`;
  return result;
}

/** How far drover's own due time (the wakeAt create returned) is after the bench's dueAt, and the clocks' offset. */
function skewNotes(inputs: TimerInput[], wakeAt: Map<string, number>, clockOffset: number[]): string[] {
  const skew = inputs
    .map((r) => (wakeAt.get(r.key) ?? Number.NaN) - r.dueAt)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  return [
    `drover's own due time (the \`wakeAt\` create returned) − the bench's dueAt: p50 ${fmt(percentile(skew, 50))} ms, max ${fmt(skew[skew.length - 1] ?? Number.NaN)} ms (the create call's own time; the lateness above includes it)`,
    `Date.now() − (performance.timeOrigin + performance.now()) at start / end: ${clockOffset.map((x) => fmt(x)).join(' / ')} ms (the action's clock against the due time's)`,
  ];
}

const clockOffset = () => Date.now() - wallNow();

/** (t1) one runtime throughout. */
async function oneRuntime(n: number): Promise<TimerResult[]> {
  const schema = schemaName('timer');
  const variant = `t1: one runtime${tunedSuffix()}`;
  let opened: { rt: Runtime; profile: ProfiledPool } | undefined;
  try {
    opened = await open(schema, [timerMachine]);
    const { rt, profile } = opened;
    await rt.start();
    await sleep(200);
    epoch = 1;
    const offsets = [clockOffset()];
    profile.reset();
    const t0 = now();
    const { inputs, wakeAt, how } = await createTimers(rt, 'a', n);
    await until(async () => inputs.every((r) => fired.has(r.key)), 3000 + 10_000, '(t1) timers').catch(() => {});
    const wall = now() - t0;
    offsets.push(clockOffset());
    return [row(variant, `${describeSettings()}; ${how}`, inputs, skewNotes(inputs, wakeAt, offsets), profile.report(wall))];
  } catch (err) {
    return [{ scenario: 't', system: 'drover', variant, settings: describeSettings(), records: n, fired: 0, samples: [], error: errorText(err) }];
  } finally {
    await opened?.rt.stop().catch(() => {});
    await opened?.profile.close();
    await dropSchema(schema);
    await settle();
  }
}

/** (t2) stopped ~1 s after the creates, a new runtime on the same schema started at once. */
async function restart(n: number): Promise<TimerResult[]> {
  const schema = schemaName('timer');
  const tuned = tunedSuffix();
  let first: { rt: Runtime; profile: ProfiledPool } | undefined;
  let second: { rt: Runtime; profile: ProfiledPool } | undefined;
  try {
    first = await open(schema, [timerMachine]);
    await first.rt.start();
    await sleep(200);
    epoch = 1;
    const offsets = [clockOffset()];
    const createdAt = Date.now();
    const { inputs, wakeAt, how } = await createTimers(first.rt, 'b', n);
    await sleep(1000);
    const stopAt = Date.now();
    let t = now();
    await first.rt.stop();
    const stopMs = now() - t;
    await first.profile.close();
    first = undefined;
    t = now();
    epoch = 2;
    second = await open(schema, [timerMachine]);
    await second.rt.start();
    const upAt = Date.now();
    const startMs = now() - t;
    await until(async () => inputs.every((r) => fired.has(r.key)), 3000 + 10_000, '(t2) timers').catch(() => {});
    offsets.push(clockOffset());
    const settings = `${describeSettings()}; ${how}`;
    const before = inputs.filter((r) => fired.get(r.key)?.epoch === 1);
    const after = inputs.filter((r) => fired.get(r.key)?.epoch !== 1);
    const gap = after.filter((r) => r.dueAt < upAt);
    const live = after.filter((r) => r.dueAt >= upAt);
    const restartNote = `stop() of the first runtime took ${fmt(stopMs)} ms (called ${fmt(stopAt - createdAt)} ms after the first create call), createRuntime() + start() of the second ${fmt(startMs)} ms`;
    return [
      row(`t2: before the restart (first runtime)${tuned}`, settings, before, [restartNote, ...skewNotes(inputs, wakeAt, offsets)]),
      row(`t2: after the restart, due before the second runtime was up${tuned}`, settings, gap),
      row(`t2: after the restart, due once the second runtime was up${tuned}`, settings, live),
    ];
  } catch (err) {
    return [{ scenario: 't', system: 'drover', variant: `t2: restart${tuned}`, settings: describeSettings(), records: n, fired: 0, samples: [], error: errorText(err) }];
  } finally {
    epoch = 1;
    await first?.rt.stop().catch(() => {});
    await first?.profile.close();
    await second?.rt.stop().catch(() => {});
    await second?.profile.close();
    await dropSchema(schema);
    await settle();
  }
}

/** (t): t1, then t2. */
export async function droverTimers(n = config.timers): Promise<TimerResult[]> {
  return [...(await oneRuntime(n)), ...(await restart(n))];
}
