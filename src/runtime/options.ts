import { hostname } from 'node:os';
import type { MeterProvider, TracerProvider } from '@opentelemetry/api';
import type pg from 'pg';
import type { InspectionEvent, Observer } from 'xstate';
import type { NatsSettings, NatsSource } from '../bus/nats.js';
import type { Database } from '../db/database.js';
import { quoteSchema } from '../db/database.js';
import { pgDatabase } from '../db/pg.js';
import { isPGlite, openPGlite, type PGliteLike, pgliteDatabase } from '../db/pglite.js';
import { InvalidArgumentError } from '../errors.js';
import { optionKeys, rejectUnknownKeys } from '../keys.js';
import { type Logger, silentLogger } from '../log.js';
import type { Retention } from '../engine/prune.js';
import { type DurableMachine, isDurableMachine } from '../record/durable.js';
import { DEFAULT_MAX_PAYLOAD } from '../record/payload.js';
import { type Clock, type Duration, parseDuration, systemClock, withTimers } from '../time.js';
import { loadMachinesDir } from './machines-dir.js';

/** Options of {@link createRuntime}. */
export interface RuntimeOptions {
  /** A connection string, a `pg.Pool` or a PGlite instance. Omitted: an in-memory PGlite. */
  database?: string | pg.Pool | PGliteLike;
  /** The schema drover keeps its tables in. Default `drover`. */
  schema?: string;
  /**
   * NATS: servers (`'nats://127.0.0.1:4222'` or a list), connection options (servers,
   * credentials, TLS, name…), or a connection the application already holds. `false` or
   * omitted: the in-process bus, no outbox.
   */
  nats?: NatsSource | false;
  /** The subject prefix on NATS (`<prefix>.transition.…`). Default `drover`. */
  natsPrefix?: string;
  /** The JetStream stream of transitions: name (default `DROVER`), duplicate window (default 2m), max age (default 7d). */
  stream?: { name?: string; duplicateWindow?: Duration; maxAge?: Duration };
  /** How often the outbox relay looks for unpublished transitions when no commit wakes it. Default 1s. */
  relayInterval?: Duration;
  /** Where spans go. Default: the global tracer provider (a no-op until the application registers an SDK). */
  tracerProvider?: TracerProvider;
  /** Where the gauges and the breach counter go. Default: the global meter provider. */
  meterProvider?: MeterProvider;
  /** How often the SLA watch looks for records past a state's `residency` budget. Default 30s. */
  slaInterval?: Duration;
  /** The durable machines this runtime knows (every version still running). */
  machines?: readonly DurableMachine[];
  /**
   * A folder whose `.js`/`.mjs`/`.ts` modules export durable machines; added to `machines`. A
   * missing folder, a module that fails to import, a `.ts` file without a TypeScript loader or
   * a folder with no durable machine is a `MachinesLoadError` (docs/machines.md).
   */
  machinesDir?: string;
  /** This node's id (what `locked_by` shows). Default: host:pid:random. */
  node?: string;
  logger?: Logger;
  clock?: Clock;
  /** The safety net: how often an idle poller asks when work is next due (commits, NOTIFY, freed room and local timers wake it at once). Default 1s. */
  pollInterval?: Duration;
  /** Records claimed and persisted per batch; a node also holds up to twice this many invocations beyond `concurrency`. Default 100. */
  batchSize?: number;
  /** Invoked promises running at once on this node. Default 10. */
  concurrency?: number;
  /** How long a claim or a running invocation is held without a heartbeat. Default 30s. */
  lease?: Duration;
  /** How long `stop()` waits for running invocations and worker handlers. Default 10s. */
  shutdownGrace?: Duration;
  /** An XState inspection observer (e.g. the Stately inspector's `inspect`): sees the supervisor and every child, and each committed step of a record as an actor `<machine>:<id>`. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** How often each node re-reads enable/disable and paused tags from the database. Default 1s. */
  controlInterval?: Duration;
  /** How often each node writes its heartbeat; a node silent for 3 intervals is dead. Default 5s. */
  heartbeatInterval?: Duration;
  /** How often housekeeping runs (runs of dead nodes failed, old run records pruned). Default 1m. */
  reaperInterval?: Duration;
  /** How long run records are kept. Default 7d. */
  runRetention?: Duration;
  /**
   * How long finished records and history are kept; housekeeping prunes the rest every
   * `reaperInterval` (see `prune()`). `false` or `null` keeps that kind forever.
   * - `finished` (default 7d): done and cancelled records, counted from when they finished,
   *   deleted with their history, inbox, invocations and SLA breaches.
   * - `failed` (default `false`, kept for `retry()`): failed records, the same way.
   * - `history` (default 30d): history rows of any record, its creation and latest entries excepted.
   * A transition not yet published to NATS is never pruned.
   */
  retention?: { finished?: Duration | false | null; failed?: Duration | false | null; history?: Duration | false | null };
  /** After this long the runtime drains by itself and `done` resolves (for process managers that recycle workers). */
  maxRunTime?: Duration;
  /**
   * The largest event or input, in bytes of its JSON, that `create()`, `createMany()` and
   * `send()` (and their NATS requests) accept; a bigger one is an `InvalidArgumentError` with
   * the size and the limit. Default 1 MiB (1048576); at most 256 MiB − 1 (PostgreSQL's jsonb).
   */
  maxPayload?: number;
}

/** Options with every default applied. */
export interface ResolvedOptions {
  db: Database;
  schema: string;
  machines: DurableMachine[];
  node: string;
  logger: Logger;
  clock: Required<Clock>;
  pollIntervalMs: number;
  batchSize: number;
  concurrency: number;
  leaseMs: number;
  shutdownGraceMs: number;
  inspect: RuntimeOptions['inspect'];
  controlIntervalMs: number;
  heartbeatIntervalMs: number;
  reaperIntervalMs: number;
  runRetentionMs: number;
  retention: Retention;
  maxRunTimeMs: number | undefined;
  maxPayload: number;
  nats: NatsSource | undefined;
  natsSettings: NatsSettings;
  relayIntervalMs: number;
  tracerProvider: TracerProvider | undefined;
  meterProvider: MeterProvider | undefined;
  slaIntervalMs: number;
}

const positiveInt = (name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER) => {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > max) throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max} (got ${String(value)})`);
  return v;
};

/** setTimeout's largest delay (2^31 − 1 ms, about 24.8 days): a longer one overflows and fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** The largest `maxPayload`: PostgreSQL's jsonb holds at most 256 MiB − 1 bytes. */
const MAX_PAYLOAD_LIMIT = 268_435_455;

const atLeast = (name: string, value: Duration, min: number, max = Infinity) => {
  const ms = parseDuration(value);
  if (ms < min) throw new InvalidArgumentError(`${name} must be at least ${min} ms (got ${ms})`);
  if (ms > max) throw new InvalidArgumentError(`${name} must be at most ${max} ms (got ${ms}): it is a timer, and setTimeout overflows beyond that`);
  return ms;
};

/** A duration a timer waits: from `min` to {@link MAX_TIMER_MS}. */
const timer = (name: string, value: Duration, min: number) => atLeast(name, value, min, MAX_TIMER_MS);

const RUNTIME_KEYS = optionKeys<RuntimeOptions>()([
  'database',
  'schema',
  'nats',
  'natsPrefix',
  'stream',
  'relayInterval',
  'tracerProvider',
  'meterProvider',
  'slaInterval',
  'machines',
  'machinesDir',
  'node',
  'logger',
  'clock',
  'pollInterval',
  'batchSize',
  'concurrency',
  'lease',
  'shutdownGrace',
  'inspect',
  'controlInterval',
  'heartbeatInterval',
  'reaperInterval',
  'runRetention',
  'retention',
  'maxRunTime',
  'maxPayload',
]);
const STREAM_KEYS = optionKeys<NonNullable<RuntimeOptions['stream']>>()(['name', 'duplicateWindow', 'maxAge']);
const RETENTION_KEYS = optionKeys<NonNullable<RuntimeOptions['retention']>>()(['finished', 'failed', 'history']);

/** One retention period: `false`/`null` keeps forever, `undefined` takes the default. */
const keptFor = (name: string, value: Duration | false | null | undefined, fallback: Duration | null): number | null => {
  if (value === false || value === null) return null;
  if (value === undefined) return fallback === null ? null : parseDuration(fallback);
  if (typeof value !== 'number' && typeof value !== 'string') {
    throw new InvalidArgumentError(`${name} must be a duration (30s, 7d, PT1H or milliseconds), false or null`);
  }
  return atLeast(name, value, 1000);
};

function resolveRetention(retention: RuntimeOptions['retention']): Retention {
  if (retention !== undefined && (retention === null || typeof retention !== 'object' || Array.isArray(retention))) {
    throw new InvalidArgumentError('retention must be an object { finished?, failed?, history? }');
  }
  rejectUnknownKeys(retention, RETENTION_KEYS, 'createRuntime() retention');
  return {
    finishedMs: keptFor('retention.finished', retention?.finished, '7d'),
    failedMs: keptFor('retention.failed', retention?.failed, null),
    historyMs: keptFor('retention.history', retention?.history, '30d'),
  };
}

/** Resolves every default in one place; an unknown option key is an `InvalidArgumentError` naming the nearest valid one. */
export async function resolveOptions(options: RuntimeOptions): Promise<ResolvedOptions> {
  rejectUnknownKeys(options, RUNTIME_KEYS, 'createRuntime()');
  rejectUnknownKeys(options.stream, STREAM_KEYS, 'createRuntime() stream');
  const schema = options.schema ?? 'drover';
  quoteSchema(schema);
  const prefix = options.natsPrefix ?? 'drover';
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(prefix)) {
    throw new InvalidArgumentError(`natsPrefix "${String(prefix)}" must be 1-64 letters, digits, "_" or "-" (one subject token)`);
  }
  const streamName = options.stream?.name ?? 'DROVER';
  if (typeof streamName !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(streamName)) {
    throw new InvalidArgumentError(`stream.name "${String(streamName)}" must be 1-64 letters, digits, "_" or "-"`);
  }
  const nats = options.nats === false || options.nats === undefined || options.nats === null ? undefined : options.nats;
  const logger = options.logger ?? silentLogger;
  const machines = [...(options.machines ?? [])];
  if (options.machinesDir !== undefined) {
    if (typeof options.machinesDir !== 'string' || options.machinesDir === '') throw new InvalidArgumentError('machinesDir must be a folder path');
    machines.push(...(await loadMachinesDir(options.machinesDir, { required: true })).machines);
  }
  for (const m of machines) {
    if (!isDurableMachine(m)) throw new InvalidArgumentError('machines: every entry must come from durable() or defineJob()');
  }
  const leaseMs = timer('lease', options.lease ?? '30s', 100);
  const resolved: Omit<ResolvedOptions, 'db'> = {
    schema,
    machines,
    node: options.node ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
    logger,
    clock: options.clock ? withTimers(options.clock) : systemClock,
    pollIntervalMs: timer('pollInterval', options.pollInterval ?? '1s', 10),
    batchSize: positiveInt('batchSize', options.batchSize, 100, 10_000),
    concurrency: positiveInt('concurrency', options.concurrency, 10, 10_000),
    leaseMs,
    shutdownGraceMs: timer('shutdownGrace', options.shutdownGrace ?? '10s', 0),
    inspect: options.inspect,
    controlIntervalMs: timer('controlInterval', options.controlInterval ?? '1s', 10),
    heartbeatIntervalMs: timer('heartbeatInterval', options.heartbeatInterval ?? '5s', 10),
    reaperIntervalMs: timer('reaperInterval', options.reaperInterval ?? '1m', 10),
    runRetentionMs: atLeast('runRetention', options.runRetention ?? '7d', 1000),
    retention: resolveRetention(options.retention),
    maxRunTimeMs: options.maxRunTime === undefined ? undefined : timer('maxRunTime', options.maxRunTime, 1),
    maxPayload: positiveInt('maxPayload', options.maxPayload, DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT),
    nats,
    natsSettings: {
      prefix,
      stream: streamName,
      duplicateWindowMs: atLeast('stream.duplicateWindow', options.stream?.duplicateWindow ?? '2m', 1000),
      maxAgeMs: atLeast('stream.maxAge', options.stream?.maxAge ?? '7d', 1000),
    },
    relayIntervalMs: timer('relayInterval', options.relayInterval ?? '1s', 10),
    tracerProvider: options.tracerProvider,
    meterProvider: options.meterProvider,
    slaIntervalMs: timer('slaInterval', options.slaInterval ?? '30s', 10),
  };
  const source = options.database;
  let db: Database;
  if (source === undefined) db = pgliteDatabase(await openPGlite(), true);
  else if (isPGlite(source)) db = pgliteDatabase(source, false);
  else if (typeof source === 'string' || (typeof source === 'object' && source !== null && 'connect' in source))
    db = pgDatabase(source, logger);
  else throw new InvalidArgumentError('database must be a connection string, a pg.Pool or a PGlite instance');
  return { ...resolved, db };
}
