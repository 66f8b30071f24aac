// `tsx bench/dashboard.ts`: the dashboard at scale, the numbers of docs/dashboard.md. A
// 51-state machine (4 compound groups of 9 states, a parallel state of two regions, a router
// and a final state) with DASHBOARD_RECORDS records (default 100,000, created by createMany()
// in calls of 1,000, spread over the 36 group states) on PostgreSQL in a fresh schema, dropped
// afterwards. Headless Chromium (CHROMIUM_PATH, default /usr/bin/chromium) opens the
// statechart: time to first render (navigation start to the chart drawn with its counts, the
// `drover:chart` mark) in a new tab and on a reload (layout cached in sessionStorage), and to a
// live count update (send() of an event to the count changing on the page), each the median
// of a few runs.
import { chromium, type Page } from 'playwright-core';
import { type AnyStateMachine, setup } from 'xstate';
import { createRuntime, durable } from '../src/index.js';
import { DATABASE_URL, dropSchema, schemaName } from './common.js';

const N = Number(process.env.DASHBOARD_RECORDS ?? 100_000);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const GROUPS = 4;
const PER_GROUP = 9;
const SLOTS = GROUPS * PER_GROUP;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function bigMachine() {
  const guards = Object.fromEntries(Array.from({ length: SLOTS }, (_, k) => [`slot${k}`, ({ context }: { context: { slot: number } }) => context.slot === k]));
  const states: Record<string, object> = {
    route: { always: Array.from({ length: SLOTS }, (_, k) => ({ target: `g${Math.floor(k / PER_GROUP)}.s${k % PER_GROUP}`, guard: `slot${k}` })) },
  };
  for (let g = 0; g < GROUPS; g++) {
    const children: Record<string, object> = {};
    for (let s = 0; s < PER_GROUP; s++) {
      const next = s + 1 < PER_GROUP ? `s${s + 1}` : g + 1 < GROUPS ? `#flow.g${g + 1}` : '#flow.review';
      children[`s${s}`] = s === 4 ? { on: { next }, after: { 86_400_000: next } } : { on: { next } };
    }
    states[`g${g}`] = { initial: 's0', states: children, on: { abandon: 'done' } };
  }
  const region = { initial: 'x', states: { x: { on: { step: 'y' } }, y: { on: { step: 'z' } }, z: {} } };
  states.review = { type: 'parallel', states: { legal: region, finance: region }, on: { approve: 'done' } };
  states.done = { type: 'final' };
  // Generated states are beyond XState's config types: the machine is typed as any machine.
  const machine = setup({ types: { context: {} as { slot: number }, input: {} as { slot: number } }, guards }).createMachine({
    id: 'flow',
    initial: 'route',
    context: ({ input }: { input: { slot: number } }) => ({ slot: input.slot }),
    states: states as Record<string, object>,
  } as never) as unknown as AnyStateMachine;
  return durable(machine, { residency: { 'g0.s0': { sla: '1h' }, g1: { sla: '1h' } } });
}

const schema = schemaName('dash');
const flow = bigMachine();
const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [flow] });
try {
  await rt.start();
  const t0 = performance.now();
  for (let c = 0; c < N; c += 1000) {
    const items = [];
    for (let i = c; i < Math.min(N, c + 1000); i++) items.push({ id: `r${String(i).padStart(6, '0')}`, input: { slot: i % SLOTS } });
    await rt.createMany('flow', items);
  }
  console.log(`created ${N} records in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const server = await rt.serve({ port: 0 });
  const api = async (path: string) => {
    const a = performance.now();
    await (await fetch(`${server.url}${path}`)).arrayBuffer();
    return performance.now() - a;
  };
  await api('/assets/dashboard.js'); // bundled once (from src/), outside the timings
  const countsMs = median([await api('/api/machines/flow/counts'), await api('/api/machines/flow/counts'), await api('/api/machines/flow/counts')]);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const firstRender: number[] = [];
    const layoutMs: number[] = [];
    const fetchedMs: number[] = [];
    const warmRender: number[] = [];
    const open = async (page: Page) => {
      await page.goto(`${server.url}/machines/flow`);
      await page.locator('.chart-scroll[data-ready="true"]').waitFor({ timeout: 60_000 });
      return page.evaluate(() => performance.getEntriesByName('drover:chart')[0]?.startTime ?? NaN);
    };
    // Cold: a new tab each time (nothing cached); warm: reloads of one tab (the layout kept in
    // sessionStorage).
    let page: Page | undefined;
    for (let run = 0; run < 5; run++) {
      await page?.close();
      page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
      firstRender.push(await open(page));
      layoutMs.push(await page.evaluate(() => performance.getEntriesByName('drover:layout')[0]?.duration ?? NaN));
      fetchedMs.push(await page.evaluate(() => performance.getEntriesByName('drover:layout-start')[0]?.startTime ?? NaN));
    }
    if (!page) throw new Error('no page');
    for (let run = 0; run < 5; run++) warmRender.push(await open(page));
    await page.locator('.live.on').waitFor();
    const live: number[] = [];
    for (let run = 0; run < 7; run++) {
      const id = `r${String(run * SLOTS).padStart(6, '0')}`; // slot 0: g0.s0 → g0.s1
      const before = Number(await page.locator('svg.chart [data-state="g0.s1"]').getAttribute('data-count'));
      const a = performance.now();
      await rt.send('flow', id, { type: 'next' });
      await page.locator(`svg.chart [data-state="g0.s1"][data-count="${before + 1}"]`).waitFor({ timeout: 30_000 });
      live.push(performance.now() - a);
    }
    const states = await page.locator('svg.chart [data-state]').count();
    await page.screenshot({ path: process.env.DASHBOARD_SHOT ?? 'test-results/dashboard/scale.png' });
    console.log(`states drawn: ${states}; records: ${N}`);
    console.log(`GET /api/machines/flow/counts: median ${countsMs.toFixed(0)} ms`);
    console.log(`time to first render, reloaded (layout cached): median ${median(warmRender).toFixed(0)} ms (runs: ${warmRender.map((x) => x.toFixed(0)).join(', ')})`);
    console.log(`time to first render, new tab: median ${median(firstRender).toFixed(0)} ms (runs: ${firstRender.map((x) => x.toFixed(0)).join(', ')})`);
    console.log(`  of which: page, bundle and machine graph loaded at ${median(fetchedMs).toFixed(0)} ms; the elkjs layout ${median(layoutMs).toFixed(0)} ms`);
    console.log(`send() to the count on the page: median ${median(live).toFixed(0)} ms (runs: ${live.map((x) => x.toFixed(0)).join(', ')})`);
  } finally {
    await browser.close();
  }
} finally {
  await rt.stop();
  await dropSchema(schema);
}
process.exit(0);
