import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JsMsg,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import {
  connect,
  headers,
  InvalidArgumentError as NatsInvalidArgumentError,
  InvalidSubjectError as NatsInvalidSubjectError,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  nanos,
  type Subscription,
} from '@nats-io/transport-node';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  type Breach,
  type Bus,
  type BusHandlers,
  type ControlOp,
  type EmittedFilter,
  type EmittedMessage,
  statePrefixMatch,
  type TransitionFilter,
  type TransitionMessage,
  type Unsubscribe,
} from './bus.js';

/** What the runtime's `nats` option takes: servers, connection options, or a connection the application holds. */
export type NatsSource = string | string[] | NodeConnectionOptions | NatsConnection;

/** Subjects and stream settings, resolved once. */
export interface NatsSettings {
  /** Subject prefix, default `drover`. */
  prefix: string;
  /** JetStream stream name, default `DROVER`. */
  stream: string;
  duplicateWindowMs: number;
  maxAgeMs: number;
}

/** A published transition: the JSON payload on `<prefix>.transition.<machine>.<to>`. */
export interface PublishedTransition extends TransitionMessage {
  traceparent: string | null;
}

/** An emitted event for {@link NatsBus.publishEmits}: the message, and the `Nats-Msg-Id` that deduplicates it. */
export interface PublishedEmit {
  message: EmittedMessage;
  msgId: string;
}

/**
 * What became of one transition given to {@link NatsBus.publishTransitions}. Not `ok`:
 * `refused` when the client refused the message itself before sending it (a header value with
 * CR/LF, a subject it cannot carry), so publishing it again fails again; `streamMissing` when
 * nothing answered on the subject (no stream takes it: deleted, or a server with an empty store).
 */
export type PublishResult = { ok: true } | { ok: false; refused: boolean; streamMissing: boolean; error: unknown };

/** One state string as one subject token: `.`, `*`, `>` and white space become `_`. */
export function subjectToken(state: string): string {
  return state.replace(/[.*>\s]/g, '_') || '_';
}

const isConnection = (v: unknown): v is NatsConnection =>
  typeof v === 'object' && v !== null && typeof (v as NatsConnection).publish === 'function' && typeof (v as NatsConnection).drain === 'function';

const encoder = new TextEncoder();

/**
 * drover on NATS: transitions and emitted events into a JetStream stream (deduplicated by `Nats-Msg-Id`), durable
 * or live subscriptions, request/reply `send`, control and wake-up messages between nodes.
 */
export class NatsBus implements Bus {
  /** Transitions go out through the outbox relay, not at once. */
  readonly outbox = true;
  private readonly subs: Subscription[] = [];
  private readonly consumers = new Set<{ stop(): Promise<void> }>();
  /** False while the client is disconnected: the relay then waits instead of holding a transaction open on a publish that cannot succeed. */
  connected = true;

  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly owned: boolean,
    readonly settings: NatsSettings,
    private readonly logger: Logger,
  ) {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect' || status.type === 'close') this.connected = false;
        else if (status.type === 'reconnect') this.connected = true;
        if (status.type === 'disconnect' || status.type === 'reconnect') logger.warn({ nats: status.type }, `drover: NATS ${status.type}`);
      }
    })();
  }

  /** Connects (or adopts a connection) and makes sure JetStream answers. */
  static async open(source: NatsSource, settings: NatsSettings, logger: Logger): Promise<NatsBus> {
    const owned = !isConnection(source);
    const nc = isConnection(source)
      ? source
      : await connect({
          name: 'drover',
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          ...(typeof source === 'string' || Array.isArray(source) ? { servers: source } : source),
        });
    try {
      const jsm = await jetstreamManager(nc);
      return new NatsBus(nc, jetstream(nc), jsm, owned, settings, logger);
    } catch (err) {
      if (owned) await nc.close();
      throw err;
    }
  }

  /** The stream, `send` request/reply, control and wake notices from other nodes. */
  async start(handlers: BusHandlers): Promise<void> {
    await this.ensureStream();
    this.serveRequests('send', handlers.send);
    this.serveRequests('create', handlers.create);
    this.listen(this.subject('control', '*'), (subject, data) => {
      const { value, node } = data as { value: string; node: string };
      handlers.control(subject.split('.').at(-1) as string, value, node);
    });
    this.listen(this.subject('wake', '*'), (subject, data) => {
      const { node, queue, at } = data as { node: string; queue?: string; at?: number | null };
      handlers.wake(queue ?? (subject.split('.').at(-1) as string), node, typeof at === 'number' ? at : null);
    });
  }

  /** Nothing to do: the relay publishes committed transitions from the outbox. */
  publish(_messages: TransitionMessage[]): void {}

  /** Nothing to do: the relay publishes committed emitted events from the outbox. */
  publishEmitted(_events: EmittedMessage[]): void {}

  subject(kind: 'transition' | 'emit' | 'send' | 'create' | 'control' | 'wake' | 'sla', ...tokens: string[]): string {
    return [this.settings.prefix, kind, ...tokens].join('.');
  }

  /** Creates the stream, or updates its subjects and limits to these settings. */
  async ensureStream(): Promise<void> {
    const { stream, duplicateWindowMs, maxAgeMs } = this.settings;
    const config = {
      name: stream,
      subjects: [this.subject('transition', '>'), this.subject('emit', '>'), this.subject('sla', '>')],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      duplicate_window: nanos(duplicateWindowMs),
      max_age: nanos(maxAgeMs),
    };
    try {
      await this.jsm.streams.info(stream);
      await this.jsm.streams.update(stream, config);
    } catch (err) {
      if (!/stream not found/i.test(errorMessage(err))) throw err;
      await this.jsm.streams.add(config);
    }
  }

  /**
   * Re-creates the stream if it is gone (deleted, or the server restarted with an empty store);
   * true when it did, and then it logs so once. A stream that exists is left as it is.
   */
  async restoreStream(): Promise<boolean> {
    try {
      await this.jsm.streams.info(this.settings.stream);
      return false;
    } catch (err) {
      if (!/stream not found/i.test(errorMessage(err))) throw err;
    }
    await this.ensureStream();
    this.logger.warn({ stream: this.settings.stream }, `drover: stream ${this.settings.stream} was missing, re-created`);
    return true;
  }

  /**
   * Publishes transitions in the given order and waits for every ack; resolves to one
   * {@link PublishResult} per transition, in the same order, and never rejects. `Nats-Msg-Id`
   * is `<machine>:<id>:<seq>`, so a re-publish after a crash is dropped by the stream.
   */
  async publishTransitions(rows: PublishedTransition[], timeoutMs = 2000): Promise<PublishResult[]> {
    return Promise.all(
      rows.map((t) => {
        const h = headers();
        if (t.traceparent) h.set('traceparent', t.traceparent);
        return this.publishOne(this.subject('transition', t.machine, subjectToken(t.to)), t, `${t.machine}:${t.id}:${t.seq}`, h, timeoutMs);
      }),
    );
  }

  /**
   * Publishes emitted events on `<prefix>.emit.<machine>.<type>` in the given order and waits
   * for every ack, like {@link publishTransitions}; each with its own `Nats-Msg-Id`.
   */
  async publishEmits(rows: PublishedEmit[], timeoutMs = 2000): Promise<PublishResult[]> {
    return Promise.all(
      rows.map(({ message: e, msgId }) =>
        this.publishOne(this.subject('emit', e.machine, subjectToken(e.event.type)), e, msgId, headers(), timeoutMs),
      ),
    );
  }

  private async publishOne(
    subject: string,
    m: TransitionMessage | EmittedMessage,
    msgID: string,
    h: ReturnType<typeof headers>,
    timeoutMs: number,
  ): Promise<PublishResult> {
    const max = this.nc.info?.max_payload ?? 1024 * 1024;
    try {
      let payload = JSON.stringify(m);
      // A message larger than the server takes would block the outbox forever: publish it
      // without the event's fields and ids (marked `truncated`); the full row stays in history().
      if (Buffer.byteLength(payload) > max - 4096) {
        payload = JSON.stringify({ ...m, event: { type: m.event.type }, ids: {}, truncated: true });
        this.logger.warn({ machine: m.machine, id: m.id, seq: m.seq, subject }, 'drover: message too large for NATS, published without its event fields');
      }
      await this.js.publish(subject, payload, { msgID, headers: h, timeout: timeoutMs });
      return { ok: true };
    } catch (error) {
      // The client checks headers, subject and size before anything is sent: those depend on
      // the message alone. Anything else (timeout, disconnect, a stream error) may pass.
      const refused = error instanceof NatsInvalidArgumentError || error instanceof NatsInvalidSubjectError;
      // The client reports "no responders" on a JetStream subject as JetStreamNotEnabled
      // (@nats-io/jetstream 3.4), which does not export the class: match its name.
      const streamMissing = error instanceof Error && error.name === 'JetStreamNotEnabled';
      return { ok: false, refused, streamMissing, error };
    }
  }

  /**
   * Consumes transitions from the stream. With `durable`, a durable consumer of that name: a
   * restarted subscriber resumes after the last message it acknowledged. Without, only
   * transitions published from now on. A message is acknowledged once the handler resolves;
   * a handler that throws gets it again after a pause.
   */
  subscribe(
    filter: TransitionFilter,
    handler: (t: PublishedTransition) => void | Promise<void>,
    durable?: string,
  ): Unsubscribe {
    return this.consume(this.subject('transition', filter.machine ?? '*', '*'), durable, async (m) => {
      const t = m.json<PublishedTransition>();
      if (!statePrefixMatch(filter.to, t.to) || !statePrefixMatch(filter.from, t.from)) {
        m.ack();
        return;
      }
      try {
        await handler({ ...t, at: new Date(t.at) });
        m.ack();
      } catch (err) {
        this.logger.error({ err: errorMessage(err), machine: t.machine, id: t.id, seq: t.seq }, 'drover: subscriber failed, redelivering');
        m.nak(1000);
      }
    });
  }

  /**
   * Consumes emitted events from the stream, from now on (an ephemeral consumer on
   * `<prefix>.emit.<machine>.<type>`): every node's. A handler that throws is logged and the
   * event acknowledged, as on the in-process bus: it is not delivered again.
   */
  onEmitted(filter: EmittedFilter, handler: (e: EmittedMessage) => void | Promise<void>): Unsubscribe {
    const subject = this.subject('emit', filter.machine, filter.type === '*' ? '*' : subjectToken(filter.type));
    return this.consume(subject, undefined, async (m) => {
      const e = m.json<EmittedMessage>();
      // Subject tokens escape `.`: `a.b` and `a_b` share one, the type itself tells them apart.
      if (filter.type === '*' || e.event.type === filter.type) {
        try {
          await handler({ ...e, at: new Date(e.at) });
        } catch (err) {
          this.logger.error({ err: errorMessage(err), machine: e.machine, id: e.id, type: e.event.type }, 'drover: emitted event listener failed');
        }
      }
      m.ack();
    });
  }

  /**
   * Runs a JetStream consumer on `subject`, one message at a time through `onMessage` (which
   * acks or naks it). With `durable`, a named consumer that resumes; without, an ephemeral one
   * from new messages on, deleted when stopped.
   */
  private consume(subject: string, durable: string | undefined, onMessage: (m: JsMsg) => Promise<void>): Unsubscribe {
    let stopped = false;
    let stopConsumer: (() => Promise<void>) | undefined;
    const entry = {
      stop: async () => {
        stopped = true;
        await stopConsumer?.();
      },
    };
    this.consumers.add(entry);
    let markReady!: () => void;
    let failReady!: (err: unknown) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    ready.catch(() => {}); // a caller that never awaits `ready` sees the error in the log only
    const run = async () => {
      // A subscriber may come before any node has started: make sure the stream is there.
      await this.ensureStream();
      const config = {
        ack_policy: AckPolicy.Explicit,
        filter_subject: subject,
        ack_wait: nanos(30_000),
        ...(durable
          ? { durable_name: durable, deliver_policy: DeliverPolicy.All }
          : { deliver_policy: DeliverPolicy.New, inactive_threshold: nanos(60_000) }),
      };
      const info = await this.jsm.consumers.add(this.settings.stream, config);
      const consumer = await this.js.consumers.get(this.settings.stream, info.name);
      const messages = await consumer.consume({ max_messages: 256 });
      stopConsumer = async () => {
        await messages.close();
        if (!durable) await this.jsm.consumers.delete(this.settings.stream, info.name).catch(() => {});
      };
      markReady();
      if (stopped) return stopConsumer();
      for await (const m of messages) await onMessage(m);
    };
    run().catch((err: unknown) => {
      failReady(err);
      if (!stopped) this.logger.error({ err: errorMessage(err), subject }, 'drover: subscription failed');
    });
    const unsubscribe = () => {
      this.consumers.delete(entry);
      void entry.stop();
    };
    return Object.assign(unsubscribe, { ready });
  }

  /** Answers requests on `<prefix>.<kind>.<machine>`, one node per request (a queue group). */
  private serveRequests(kind: 'send' | 'create', answer: (machine: string, body: unknown) => Promise<unknown>): void {
    const sub = this.nc.subscribe(this.subject(kind, '*'), { queue: `${this.settings.prefix}.${kind}` });
    this.subs.push(sub);
    const handle = async (m: Msg) => {
      const machine = m.subject.slice(this.subject(kind).length + 1);
      let body: unknown;
      try {
        body = m.json();
      } catch {
        body = undefined;
      }
      const reply = await answer(machine, body);
      try {
        if (m.reply) m.respond(encoder.encode(JSON.stringify(reply)));
      } catch (err) {
        this.logger.warn({ err: errorMessage(err), machine }, `drover: could not reply to a ${kind} request`);
      }
    };
    void (async () => {
      // Requests are answered concurrently: one slow request does not hold up the others.
      for await (const m of sub) void handle(m);
    })();
  }

  /** Publishes an SLA breach on `<prefix>.sla.<machine>.<state>` (into the stream, once per stay). */
  async publishBreach(b: Breach): Promise<void> {
    await this.js.publish(this.subject('sla', b.machine, subjectToken(b.state)), JSON.stringify(b), {
      msgID: `sla:${b.machine}:${b.id}:${b.state}:${b.enteredAt.getTime()}`,
      timeout: 2000,
    });
  }

  /** Tells every node about a control change (the database stays the source of truth). */
  announceControl(op: ControlOp, value: string, node: string): void {
    this.bestEffort(this.subject('control', op), { value, node });
  }

  /** A core NATS publish that never throws: the change is already stored, and polling finds it anyway. */
  private bestEffort(subject: string, data: unknown): void {
    try {
      this.nc.publish(subject, JSON.stringify(data));
    } catch (err) {
      this.logger.debug({ err: errorMessage(err), subject }, 'drover: NATS notice not sent (the database has it)');
    }
  }

  /** Wakes the pollers of a queue on every other node. */
  announceWork(queue: string, node: string, at: number | null): void {
    this.bestEffort(this.subject('wake', subjectToken(queue)), { node, queue, at });
  }

  private listen(subject: string, listener: (subject: string, data: unknown) => void): void {
    const sub = this.nc.subscribe(subject);
    this.subs.push(sub);
    void (async () => {
      for await (const m of sub) {
        try {
          listener(m.subject, m.json());
        } catch (err) {
          this.logger.warn({ err: errorMessage(err), subject: m.subject }, 'drover: bad NATS message ignored');
        }
      }
    })();
  }

  /** Stops every subscription; drains and closes the connection if drover opened it. */
  async close(): Promise<void> {
    for (const sub of this.subs.splice(0)) sub.unsubscribe();
    await Promise.all([...this.consumers].map((c) => c.stop().catch(() => {})));
    this.consumers.clear();
    if (this.owned && !this.nc.isClosed()) {
      try {
        await this.nc.drain();
      } catch {
        await this.nc.close();
      }
    }
  }
}
