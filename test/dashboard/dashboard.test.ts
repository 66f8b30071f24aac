import { mkdir } from 'node:fs/promises';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromPromise, sendParent, setup } from 'xstate';
import { createRuntime, durable, type HttpServer, none, type Runtime } from '../../src/index.js';
import { postgresBackend, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// The dashboard in headless Chromium (Debian's, driven by playwright-core) against a runtime
// on PostgreSQL: the counts on the chart, a live update, a state's records, a record's
// timeline, and a worker disabled from the page. Screenshots go to test-results/dashboard/.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = new URL('../../test-results/dashboard/', import.meta.url);

const ticket = durable(
  setup({
    types: { context: {} as { ticket_id: string; owner: string | null }, input: {} as { ticket_id: string } },
    guards: { hasOwner: ({ event }) => typeof (event as { owner?: unknown }).owner === 'string' },
    actors: { remind: fromPromise(async () => 'reminded') },
  }).createMachine({
    id: 'ticket',
    initial: 'open',
    context: ({ input }) => ({ ticket_id: input.ticket_id, owner: null }),
    states: {
      open: { on: { assign: { target: 'working', guard: 'hasOwner' }, close: 'closed' }, after: { 3_600_000: 'stale' } },
      working: {
        type: 'parallel',
        on: { close: 'closed' },
        states: {
          code: { initial: 'writing', states: { writing: { on: { push: 'review' } }, review: {} } },
          docs: { initial: 'todo', states: { todo: { on: { write: 'written' } }, written: {} } },
        },
      },
      stale: { invoke: { src: 'remind', onDone: 'closed' }, on: { close: 'closed' } },
      closed: { type: 'final' },
    },
  }),
  { residency: { open: { sla: '1h' } } },
);

// Records as actors: an escalation invokes a `callback` child machine, which becomes a child record.
const callback = setup({}).createMachine({
  id: 'callback',
  initial: 'dialling',
  states: { dialling: { entry: sendParent({ type: 'dialling' }), on: { answered: 'done' } }, done: { type: 'final' } },
});
const escalation = durable(
  setup({ actors: { callback } }).createMachine({
    id: 'escalation',
    initial: 'calling',
    states: { calling: { invoke: { id: 'call', src: 'callback', onDone: 'resolved' }, on: { dialling: {} } }, resolved: { type: 'final' } },
  }),
);

let backend: TestBackend;
let rt: Runtime;
let server: HttpServer;
let browser: Browser;
let page: Page;

const OPEN = ['t-o-1', 't-o-2', 't-o-3'];
const WORKING = ['t-w-1', 't-w-2'];
const CLOSED = ['t-c-1'];

async function stateOf(id: string): Promise<string | undefined> {
  return (await rt.get('ticket', id))?.state;
}

beforeAll(async () => {
  backend = await postgresBackend();
  rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [ticket, escalation], controlInterval: 50, heartbeatInterval: 100 });
  rt.supervisor.add('mailer', () => none('1h'));
  rt.periodic('nightly-report', { cron: '0 3 * * *' }, async () => 'sent', { tags: ['reports'] });
  await rt.start();
  for (const id of [...OPEN, ...WORKING, ...CLOSED]) await rt.create('ticket', { id, input: { ticket_id: id } });
  for (const id of WORKING) await rt.send('ticket', id, { type: 'assign', owner: 'ana' });
  for (const id of CLOSED) await rt.send('ticket', id, { type: 'close' });
  await until(async () => (await Promise.all(WORKING.map(stateOf))).every((s) => s?.startsWith('working.')), 'the working tickets to be assigned');
  await until(async () => (await stateOf('t-c-1')) === 'closed', 'the closed ticket to close');
  server = await rt.serve({ port: 0 });
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  // A step that does not happen fails with what it waited for, before the test's timeout.
  page.setDefaultTimeout(10_000);
});

afterAll(async () => {
  await browser?.close();
  await rt?.stop();
  await backend?.close();
});

const count = (state: string) => page.locator(`svg.chart [data-state="${state}"]`).getAttribute('data-count');
const shot = (name: string) => page.screenshot({ path: new URL(`${name}.png`, SHOTS).pathname, fullPage: true });

describe('dashboard', () => {
  it('lists every machine with its records per status', async () => {
    await page.goto(`${server.url}/`);
    const row = page.locator('tr[data-machine="ticket"]');
    await row.waitFor();
    await expect.poll(() => row.locator('td.count-active').textContent()).toBe('5');
    expect(await row.locator('td.count-done').textContent()).toBe('1');
    await shot('machines');
  });

  it('draws each state of the statechart with its count, and moves a count live when a transition commits', async () => {
    await page.goto(`${server.url}/machines/ticket`);
    await page.locator('.chart-scroll[data-ready="true"]').waitFor();
    await page.locator('.live.on').waitFor();
    const expected: Record<string, string> = {
      open: '3',
      working: '2',
      'working.code': '2',
      'working.code.writing': '2',
      'working.code.review': '0',
      'working.docs': '2',
      'working.docs.todo': '2',
      'working.docs.written': '0',
      stale: '0',
      closed: '1',
    };
    for (const [state, n] of Object.entries(expected)) expect([state, await count(state)]).toEqual([state, n]);
    // The number drawn in the box, not only the attribute.
    expect(await page.locator('svg.chart [data-state="open"] text.count').textContent()).toBe('3');
    // The open state's SLA is drawn (no record is near its 1 h budget).
    expect(await page.locator('svg.chart [data-state="open"]').getAttribute('class')).toContain('sla-ok');
    // The delay and the invoke are marked.
    expect(await page.locator('svg.chart .edge.delayed .edge-label').allTextContents()).toEqual(['after 1h']);
    expect(await page.locator('svg.chart [data-state="stale"] text.invoke').textContent()).toBe('invokes remind');
    await shot('statechart');

    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    await rt.send('ticket', 't-o-1', { type: 'assign', owner: 'bo' });
    await page.locator('svg.chart [data-state="working"][data-count="3"]').waitFor();
    expect(await count('open')).toBe('2');
    expect(await count('working.docs.todo')).toBe('3');
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
  });

  it('lists the records of a clicked state, and shows a record whose timeline matches history()', async () => {
    // By keyboard: a state is focusable and Enter selects it.
    await page.locator('svg.chart [data-state="stale"]').focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/machines\/ticket\?state=stale$/);
    await page.getByText('No records in this state.').waitFor();
    // On its name: the middle of a parallel state is one of its regions.
    await page.locator('svg.chart [data-state="working"] > text.name').click();
    await page.waitForURL(/\/machines\/ticket\?state=working$/);
    const links = page.locator('table.records tbody a');
    await expect.poll(() => links.allTextContents()).toEqual(['t-o-1', ...WORKING].sort());
    await shot('statechart-records');

    await rt.send('ticket', 't-w-1', { type: 'push' });
    await until(async () => (await stateOf('t-w-1')) === 'working.code.review,working.docs.todo', 't-w-1 to reach review');
    await links.filter({ hasText: 't-w-1' }).click();
    await page.waitForURL(/\/machines\/ticket\/records\/t-w-1$/);
    const history = await rt.history('ticket', 't-w-1');
    const steps = page.locator('ol.timeline > li');
    await expect.poll(() => steps.count()).toBe(history.length);
    const shown = await steps.evaluateAll((items) => items.map((li) => [li.getAttribute('data-to'), li.querySelector('.event code')?.textContent]));
    expect(shown).toEqual(history.map((h) => [h.to, h.event.type]));
    expect(JSON.parse((await page.locator('pre.json').textContent()) ?? '')).toEqual({ ticket_id: 't-w-1', owner: null });
    await shot('record');

    // A confirmed action: cancel, through the dialog.
    await page.getByRole('button', { name: 'Cancel record' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
    await until(async () => (await rt.get('ticket', 't-w-1'))?.status === 'cancelled', 't-w-1 to be cancelled');
    await page.locator('header .badge-cancelled').waitFor();
  });

  it("links a child record and its parent both ways, and shows what the parent started and received in its timeline", async () => {
    await rt.create('escalation', { id: 'e-1' });
    await until(async () => (await rt.history('escalation', 'e-1')).some((h) => h.kind === 'received'), 'e-1 to hear from its child');
    await page.goto(`${server.url}/machines/escalation/records/e-1`);
    const child = page.locator('ul.children a');
    await expect.poll(() => child.textContent()).toBe('callback e-1.call');
    const effects = page.locator('ol.timeline > li.step-effect');
    await expect.poll(() => effects.evaluateAll((items) => items.map((li) => [li.getAttribute('data-kind'), li.querySelector('a')?.getAttribute('href')]))).toEqual([
      ['spawned', '/machines/callback/records/e-1.call'],
      ['received', '/machines/callback/records/e-1.call'],
    ]);
    await expect.poll(() => effects.nth(1).locator('.event code.type').textContent()).toBe('dialling');
    await shot('record-children');

    await child.click();
    await page.waitForURL(/\/machines\/callback\/records\/e-1\.call$/);
    const parent = page.locator('dd.parent a');
    await expect.poll(() => parent.getAttribute('href')).toBe('/machines/escalation/records/e-1');
    await expect.poll(() => page.locator('ol.timeline > li.effect-sent .event code.type').textContent()).toBe('dialling');
    // The child's own page lists no child records.
    expect(await page.locator('ul.children').count()).toBe(0);
  });

  it('disables a worker from the workers page (stored in the database), and lists the nodes', async () => {
    await page.getByRole('link', { name: 'Workers' }).click();
    await page.waitForURL(/\/workers$/);
    await page.locator('tr[data-worker="mailer"]').waitFor();
    await page.getByRole('button', { name: 'Runs of nightly-report' }).click();
    await page.locator('.runs').waitFor();
    await shot('workers');
    await page.getByRole('button', { name: 'Disable mailer' }).click();
    await until(async () => {
      const rows = await backend.query(`SELECT enabled FROM "${backend.schema}".workers WHERE name = 'mailer'`);
      return (rows[0] as { enabled?: boolean } | undefined)?.enabled === false;
    }, 'mailer to be disabled in the database');
    await page.getByRole('button', { name: 'Enable mailer' }).waitFor();

    await page.getByRole('link', { name: 'Nodes' }).click();
    await page.waitForURL(/\/nodes$/);
    const nodes = await rt.nodes();
    await expect.poll(() => page.locator('table.nodes tbody th code').allTextContents()).toEqual(nodes.map((n) => n.id));
    await shot('nodes');

    await page.emulateMedia({ colorScheme: 'dark' });
    await page.goto(`${server.url}/machines/ticket?state=open`);
    await page.locator('table.records tbody a').first().waitFor();
    await shot('statechart-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('with a token: takes it once from ?token=, drops it from the URL, and follows events through the cookie', async () => {
    const guarded = await rt.serve({ port: 0, token: 's3cret' });
    const context = await browser.newContext();
    try {
      const api = `${guarded.url}/api/events?machine=ticket`;
      expect((await fetch(api)).status).toBe(401);
      const withCookie = new AbortController();
      expect((await fetch(api, { headers: { cookie: 'drover_token=s3cret' }, signal: withCookie.signal })).status).toBe(200);
      withCookie.abort();
      expect((await fetch(api, { headers: { cookie: 'drover_token=wrong' } })).status).toBe(401);
      // The cookie is good for the event stream alone.
      expect((await fetch(`${guarded.url}/api/machines`, { headers: { cookie: 'drover_token=s3cret' } })).status).toBe(401);

      const tab = await context.newPage();
      await tab.goto(`${guarded.url}/machines/ticket?token=s3cret`);
      await tab.locator('.chart-scroll[data-ready="true"]').waitFor();
      expect(tab.url()).toBe(`${guarded.url}/machines/ticket`);
      expect(await tab.evaluate(() => sessionStorage.getItem('drover.token'))).toBe('s3cret');
      await tab.locator('.live.on').waitFor();
      const before = Number(await tab.locator('svg.chart [data-state="open"]').getAttribute('data-count'));
      await rt.send('ticket', 't-o-2', { type: 'close' });
      await tab.locator(`svg.chart [data-state="open"][data-count="${before - 1}"]`).waitFor();

      // Without a token the page asks for one.
      const other = await context.newPage();
      await other.goto(`${guarded.url}/workers`);
      await other.getByRole('heading', { name: 'This server needs a token' }).waitFor();
    } finally {
      await context.close();
      await guarded.close();
    }
  });
});
