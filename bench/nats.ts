// Scenario (n): drover publishing every committed transition to NATS JetStream through its
// transactional outbox (the relay), against the in-process bus, on the same machine and run.
// - latency: spaced send()s to idle records, each a one-step toggle; the subscriber's
//   handler notes when each transition arrives;
// - throughput: (b)'s records through three steps with a subscriber on every transition;
//   also how long the outbox takes to drain after the last step, and whether every
//   transition reached the subscriber exactly once.
// Each run: its own schema, and with NATS its own subject prefix and stream (deleted afterwards).
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setup } from 'xstate';
import { createRuntime, durable, type Runtime, type RuntimeOptions, type TransitionMessage } from '../src/index.js';
import {
  admin,
  analyze,
  config,
  coresSince,
  cpuMark,
  DATABASE_URL,
  dropSchema,
  errorText,
  NATS_URL,
  type NatsBusKind,
  type NatsLatencyResult,
  type NatsThroughputResult,
  now,
  parallelFor,
  schemaName,
  settle,
  sleep,
  spaced,
  until,
  within,
} from './common.js';
import { chain, describeSettings, enqueue, open, tunedSuffix } from './drover.js';
import type { ProfiledPool } from './profile.js';

/** The relay's look interval when no commit wakes it: drover's default (1s) unless BENCH_RELAY_INTERVAL is set. */
const relayInterval = process.env.BENCH_RELAY_INTERVAL;

// The latency machine: one event, one step, no invocation.
const toggle = durable(
  setup({ types: { events: {} as { type: 'toggle' } } }).createMachine({
    id: 'bench_toggle',
    initial: 'off',
    states: { off: { on: { toggle: 'on' } }, on: { on: { toggle: 'off' } } },
  }),
);

let natsCounter = 0;
/** A subject prefix and stream name of this run's own. */
function uniqueNats(): { natsPrefix: string; stream: { name: string } } {
  natsCounter += 1;
  const tag = `${process.pid}x${Date.now().toString(36)}x${natsCounter}`;
  return { natsPrefix: `bench${tag}`, stream: { name: `BENCH${tag}` } };
}

/** What a row changed from drover's defaults, for its label ('' on defaults). */
const tunedOf = (bus: NatsBusKind) => {
  const t = tunedSuffix();
  if (bus !== 'NATS JetStream' || !relayInterval) return t;
  return t ? t.replace(/\)$/, `, relayInterval ${relayInterval})`) : ` (tuned: relayInterval ${relayInterval})`;
};

const settingsOf = (bus: NatsBusKind, enqueues = false) =>
  `${describeSettings()}${
    bus === 'NATS JetStream'
      ? ` + nats, a natsPrefix and stream of the run's own${relayInterval ? `, relayInterval ${relayInterval}` : ''} (the relay is woken by each commit; relay batch 256)`
      : ''
  }${enqueues ? '; enqueue: createMany() in caller transactions of 1000 when available, else create() in caller transactions' : ''}`;

/**
 * A runtime on the given bus. With NATS the stream is created here, before drover's own
 * `ensureStream()` at `start()` (which then updates it to drover's settings), so that a
 * subscriber can be in place before the runtime starts and nothing published is missed.
 */
async function openOn(
  bus: NatsBusKind,
  schema: string,
  machine: Parameters<typeof open>[1][number],
): Promise<{ rt: Runtime; profile: ProfiledPool; extra: Partial<RuntimeOptions>; cleanup: () => Promise<void> }> {
  if (bus === 'in-process bus') {
    const { rt, profile } = await open(schema, [machine]);
    return { rt, profile, extra: {}, cleanup: async () => {} };
  }
  const ids = uniqueNats();
  const nc: NatsConnection = await connect({ servers: NATS_URL, name: 'drover-bench-admin' });
  const jsm = await jetstreamManager(nc);
  const cleanup = async () => {
    await jsm.streams.delete(ids.stream.name).catch((err: unknown) => console.error(`bench: could not delete stream ${ids.stream.name}: ${errorText(err)}`));
    await nc.close();
  };
  try {
    await jsm.streams.add({
      name: ids.stream.name,
      subjects: [`${ids.natsPrefix}.transition.>`, `${ids.natsPrefix}.sla.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
    });
    const extra: Partial<RuntimeOptions> = { nats: NATS_URL, ...ids, ...(relayInterval ? { relayInterval } : {}) };
    const { rt, profile } = await open(schema, [machine], extra);
    return { rt, profile, extra, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Stops a run's runtime, its profiled pool and its stream, drops its schema, and lets the machine settle. */
async function closeRun(opened: Awaited<ReturnType<typeof openOn>> | undefined, schema: string): Promise<void> {
  await opened?.rt.stop().catch(() => {});
  await opened?.profile.close();
  await opened?.cleanup();
  await dropSchema(schema);
  await settle();
}

/** What the relay did after start(), from the rows it marked (see NatsThroughputResult.relay). */
async function relayPasses(schema: string, startAt: Date, doneAt: Date): Promise<NonNullable<NatsThroughputResult['relay']>> {
  const { rows } = await admin.query<NonNullable<NatsThroughputResult['relay']>>(
    `WITH pass AS (
       SELECT published_at, count(*)::int AS n FROM "${schema}".transitions WHERE published_at > $1 GROUP BY published_at),
     gap AS (
       SELECT extract(epoch FROM published_at - lag(published_at) OVER (ORDER BY published_at)) * 1000 AS ms,
              lag(n) OVER (ORDER BY published_at) AS prev, published_at <= $2 AS during FROM pass),
     lag AS (
       SELECT extract(epoch FROM published_at - at) * 1000 AS ms FROM "${schema}".transitions WHERE from_state IS NOT NULL)
     SELECT (SELECT count(*)::int FROM pass) AS passes,
            (SELECT avg(n)::float8 FROM pass) AS "meanRows",
            (SELECT max(n) FROM pass) AS "maxRows",
            (SELECT count(*)::int FROM pass WHERE n = 256) AS "fullPasses",
            (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 FROM gap WHERE prev = 256 AND during) AS "gapDuring",
            (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 FROM gap WHERE prev = 256 AND NOT during) AS "gapAfter",
            (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 FROM lag) AS "lagP50",
            (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float8 FROM lag) AS "lagP99",
            (SELECT max(ms)::float8 FROM lag) AS "lagMax"`,
    [startAt, doneAt],
  );
  return rows[0] as NonNullable<NatsThroughputResult['relay']>;
}

const count = async (sql: string) => (await admin.query<{ n: number }>(sql)).rows[0]?.n ?? 0;

/**
 * (n) latency: `config.latencyEvents` idle records of a two-state toggle, one `send()` each,
 * `config.latencySpacingMs` apart. A sample is the transition's `at` (drover's clock,
 * Date.now(), taken when the poller starts the cycle that claims the record, so it includes
 * the claim, the fold and the commit) to the subscriber's handler, Date.now().
 */
export async function natsLatency(bus: NatsBusKind): Promise<NatsLatencyResult> {
  const schema = schemaName('nats');
  const n = config.latencyEvents;
  const result: NatsLatencyResult = {
    scenario: 'n',
    kind: 'latency',
    system: 'drover',
    variant: bus,
    tuned: tunedOf(bus),
    settings: settingsOf(bus),
    samples: [],
    sendToReceived: [],
    callMs: [],
  };
  let opened: Awaited<ReturnType<typeof openOn>> | undefined;
  try {
    opened = await openOn(bus, schema, toggle);
    const { rt } = opened;
    const created = new Set<string>();
    const atToReceived = new Map<string, number>();
    const receivedAt = new Map<string, number>();
    const off = rt.subscribe({ machine: toggle.name }, (t: TransitionMessage) => {
      if (t.seq === 1) created.add(t.id);
      else if (!atToReceived.has(t.id)) {
        atToReceived.set(t.id, Date.now() - t.at.getTime());
        receivedAt.set(t.id, now());
      }
    });
    await within(off.ready, 10_000, `(n) ${bus}: subscribe`);
    await rt.start();
    await parallelFor(n, 8, async (i) => {
      await rt.create(toggle.name, { id: `w${i}` });
    });
    await until(async () => created.size >= n, 30_000, `(n) ${bus}: ${created.size}/${n} creations received`);
    await analyze(schema);
    await sleep(500);
    const sentAt = new Map<string, number>();
    result.callMs = await spaced(n, config.latencySpacingMs, async (i) => {
      sentAt.set(`w${i}`, now());
      await rt.send(toggle.name, `w${i}`, { type: 'toggle' });
    });
    await until(async () => atToReceived.size >= n, 30_000, `(n) ${bus}: latency, ${atToReceived.size}/${n} received`);
    off();
    result.samples = [...atToReceived.values()].sort((a, b) => a - b);
    result.sendToReceived = [...receivedAt.entries()].map(([id, t]) => t - (sentAt.get(id) as number)).sort((a, b) => a - b);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeRun(opened, schema);
  }
  return result;
}

/**
 * (n) throughput: (b)'s `n` records through s1 → s2 → s3 → done, created in caller
 * transactions before the runtime starts, with one subscriber on every transition of the
 * machine. Timed from `start()`: until every record is committed in `done` (a database check
 * every 10 ms, the same on both buses), until the outbox is empty, and until the subscriber
 * has had every transition. With NATS all 4 transitions of each record (its creation and three
 * steps) go through the outbox; the creations are published during the enqueue by a second,
 * relay-only runtime (no machines, so no pollers), as a running fleet would, so that the timed
 * phase starts with an empty outbox. The in-process bus carries only the 3 steps (a create in
 * a caller's transaction is not on it: drover does not see that commit).
 */
export async function natsThroughput(bus: NatsBusKind, n = config.chains): Promise<NatsThroughputResult> {
  const schema = schemaName('nats');
  const result: NatsThroughputResult = {
    scenario: 'n',
    kind: 'throughput',
    system: 'drover',
    variant: bus,
    tuned: tunedOf(bus),
    settings: settingsOf(bus, true),
    items: n,
    stepsPerItem: 3,
    enqueueMs: 0,
    runMs: 0,
    drainMs: 0,
    backlogAtDone: 0,
    expected: 0,
    received: 0,
    receivedAfterStart: 0,
    duplicates: 0,
    receivedMs: 0,
  };
  let opened: Awaited<ReturnType<typeof openOn>> | undefined;
  const s = `"${schema}"`;
  const unpublished = `SELECT count(*)::int AS n FROM ${s}.transitions WHERE published_at IS NULL`;
  try {
    opened = await openOn(bus, schema, chain);
    const { rt, profile, extra } = opened;
    const seen = new Set<string>();
    let duplicates = 0;
    let lastAt = 0;
    let t1 = Number.POSITIVE_INFINITY;
    const off = rt.subscribe({ machine: chain.name }, (t: TransitionMessage) => {
      const key = `${t.id}:${t.seq}`;
      if (seen.has(key)) duplicates += 1;
      else seen.add(key);
      lastAt = now();
      if (lastAt >= t1) result.receivedAfterStart += 1;
    });
    await within(off.ready, 10_000, `(n) ${bus}: subscribe`);

    const relayOnly = bus === 'NATS JetStream' ? await createRuntime({ database: DATABASE_URL, schema, machines: [], ...extra }) : undefined;
    try {
      await relayOnly?.start();
      const t0 = now();
      // In caller transactions, as before createMany: the in-process bus does not carry those creations.
      await enqueue(rt, profile, chain.name, n, (i) => ({ n: i }), { tx: true });
      result.enqueueMs = now() - t0;
      if (relayOnly) {
        await until(async () => (await count(unpublished)) === 0 && seen.size >= n, config.timeoutMs, `(n) ${bus}: creations published`);
      }
    } finally {
      await relayOnly?.stop();
    }
    await analyze(schema);

    profile.reset();
    t1 = now();
    const startAt = new Date();
    const cpuAt = cpuMark();
    await rt.start();
    await until(
      async () => (await count(`SELECT count(*)::int AS n FROM ${s}.instances WHERE status = 'done'`)) >= n,
      config.timeoutMs,
      `(n) ${bus}: ${n} records done`,
    );
    result.runMs = now() - t1;
    const doneAt = new Date();
    result.backlogAtDone = await count(unpublished);
    await until(async () => (await count(unpublished)) === 0, config.timeoutMs, `(n) ${bus}: outbox drained`);
    result.drainMs = now() - t1 - result.runMs;
    result.expected = await count(
      bus === 'NATS JetStream'
        ? `SELECT count(*)::int AS n FROM ${s}.transitions`
        : `SELECT count(*)::int AS n FROM ${s}.transitions WHERE from_state IS NOT NULL`,
    );
    await until(async () => seen.size >= result.expected, 60_000, 'all received').catch(() => {});
    result.receivedMs = lastAt - t1;
    result.cores = coresSince(cpuAt);
    if (bus === 'NATS JetStream') result.relay = await relayPasses(schema, startAt, doneAt);
    result.notes = profile.report(result.runMs);
    await sleep(300); // late redeliveries would show up as duplicates
    off();
    result.received = seen.size;
    result.duplicates = duplicates;
    if (result.received !== result.expected || duplicates > 0) {
      throw new Error(`subscriber received ${result.received} distinct transitions of ${result.expected}, ${duplicates} duplicates`);
    }
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeRun(opened, schema);
  }
  return result;
}
