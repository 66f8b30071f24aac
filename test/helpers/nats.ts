import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

let counter = 0;
/** A subject prefix and stream name of this test's own, so files run in parallel. */
export function uniqueNats(): { natsPrefix: string; stream: { name: string } } {
  counter += 1;
  const tag = `${process.pid}x${Date.now().toString(36)}x${counter}`;
  return { natsPrefix: `t${tag}`, stream: { name: `T${tag}` } };
}

/** Every message in a stream, oldest first, as parsed JSON with its headers. */
export async function streamMessages<T = Record<string, unknown>>(
  nc: NatsConnection,
  stream: string,
): Promise<Array<{ subject: string; data: T; msgId: string | undefined; seq: number }>> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const total = info.state.messages;
  if (total === 0) return [];
  const js = jetstream(nc);
  const ci = await jsm.consumers.add(stream, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: 10_000_000_000 });
  const consumer = await js.consumers.get(stream, ci.name);
  const out: Array<{ subject: string; data: T; msgId: string | undefined; seq: number }> = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: Math.min(1000, total - out.length), expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got += 1;
      out.push({ subject: m.subject, data: m.json<T>(), msgId: m.headers?.get('Nats-Msg-Id'), seq: m.seq });
    }
    if (got === 0) break;
  }
  await jsm.consumers.delete(stream, ci.name).catch(() => {});
  return out;
}

export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(stream).catch(() => {});
}

export function openNats(url = NATS_URL): Promise<NatsConnection> {
  return connect({ servers: url });
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** A nats-server of the test's own (JetStream, its own store), that the test can stop and start again. */
export class OwnNatsServer {
  private child: ChildProcess | undefined;
  readonly storeDir = mkdtempSync(join(tmpdir(), 'drover-nats-'));
  constructor(readonly port: number) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const nc = await connect({ servers: this.url, reconnect: false, timeout: 500 });
        const jsm = await jetstreamManager(nc);
        await jsm.getAccountInfo();
        await nc.close();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
