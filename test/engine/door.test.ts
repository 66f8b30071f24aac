import type { StandardSchemaV1 } from '@standard-schema/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, durable, InvalidArgumentError, type Runtime } from '../../src/index.js';
import { BACKENDS, DATABASE_URL, type TestBackend } from '../helpers/backends.js';

// Validation at the door: what create/createMany/send are given is serialised once; what JSON
// cannot carry faithfully, what PostgreSQL cannot store, and bad arguments are typed errors
// that store nothing.

const door = durable(
  setup({ types: { context: {} as { input: unknown }, input: {} as unknown } }).createMachine({
    id: 'door',
    initial: 'open',
    context: ({ input }) => ({ input: input ?? null }),
    states: { open: { on: { PING: { target: 'open' }, BIG: { target: 'open' } } } },
  }),
);

// A Standard Schema validator that keeps what it was given: it must be the serialised input.
const seen: unknown[] = [];
const recorder: StandardSchemaV1 = {
  '~standard': {
    version: 1,
    vendor: 'door-test',
    validate: (value) => {
      seen.push(value);
      return { value };
    },
  },
};
const checked = durable(
  setup({ types: { context: {} as { input: unknown }, input: {} as unknown } }).createMachine({
    id: 'checked',
    initial: 'open',
    context: ({ input }) => ({ input }),
    states: { open: {} },
  }),
  { input: recorder },
);

class Ping {
  readonly type = 'PING';
}

const deep = (levels: number): unknown => {
  let v: unknown = 'bottom';
  for (let i = 0; i < levels; i++) v = { v };
  return v;
};
const cyclic = () => {
  const o: Record<string, unknown> = { type: 'PING' };
  o.self = o;
  return o;
};

/** Every bad event, with what the error must say. */
const BAD_EVENTS: Array<[string, () => unknown, RegExp]> = [
  ['a prototype getter `type`', () => Object.create({ get type() { return 'PING'; } }) as unknown, /plain object/],
  ['an own getter `type`', () => Object.defineProperty({}, 'type', { get: () => 'PING', enumerable: true }), /own non-empty string `type`/],
  ['toJSON', () => ({ type: 'PING', toJSON: () => 5 }), /event\.toJSON is a function/],
  ['an array with .type', () => Object.assign([1], { type: 'PING' }), /plain object/],
  ['a class instance', () => new Ping(), /class instance/],
  ['no type', () => ({ kind: 'PING' }), /`type`/],
  ['null', () => null, /plain object/],
  ['an xstate. type', () => ({ type: 'xstate.init' }), /reserved for XState/],
  ['a BigInt', () => ({ type: 'PING', data: { n: 1n } }), /event\.data\.n is a BigInt/],
  ['a cycle', cyclic, /event\.self refers back to event \(a cycle\)/],
  ['NUL in a string', () => ({ type: 'PING', text: 'a\u0000b' }), /event\.text contains NUL/],
  ['NUL in a key', () => ({ type: 'PING', ['k\u0000']: 1 }), /event\["k\\u0000"\]: the key contains NUL/],
  ['a lone surrogate', () => ({ type: 'PING', text: 'x\uD800' }), /event\.text contains a lone UTF-16 surrogate/],
  ['5,000-deep nesting', () => ({ type: 'PING', data: deep(5000) }), /event\.data(\.v)+ is nested 65 levels deep, beyond the limit of 64/],
  ['a function', () => ({ type: 'PING', fn: () => 1 }), /event\.fn is a function/],
  ['a symbol', () => ({ type: 'PING', s: Symbol('s') }), /event\.s is a symbol/],
  ['a Date', () => ({ type: 'PING', at: new Date() }), /event\.at is a Date/],
];

describe.each(BACKENDS)('validation at the door on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  /** Everything stored that a call could change. */
  const stored = async () =>
    (
      await backend.query<{ s: string }>(
        `SELECT (SELECT count(*) FROM "${backend.schema}".instances) || '/' ||
                (SELECT count(*) FROM "${backend.schema}".events) || '/' ||
                (SELECT count(*) FROM "${backend.schema}".transitions) || '/' ||
                coalesce((SELECT string_agg(id || ':' || status || ':' || md5(snapshot::text), ',' ORDER BY id) FROM "${backend.schema}".instances), '') AS s`,
      )
    )[0]?.s;

  /** Runs `call`, expects an InvalidArgumentError matching `message`, and that nothing stored changed. */
  const refused = async (call: () => Promise<unknown>, message: RegExp) => {
    const before = await stored();
    const err = await call().then(
      () => new Error('resolved'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(message);
    expect(await stored()).toBe(before);
  };

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, machines: [door, checked] });
    await rt.create('door', { id: 'd-1' });
  });
  afterAll(async () => {
    await rt.stop();
    await backend.close();
  });

  it.each(BAD_EVENTS)('send() refuses an event with %s, naming the path, and stores nothing', async (_what, event, message) => {
    await refused(() => rt.send('door', 'd-1', event() as never), message);
  });

  it('send() stores the serialised event: undefined fields dropped, a large allowed one whole', async () => {
    await rt.send('door', 'd-1', { type: 'PING', gone: undefined, n: 1 });
    const big = 'x'.repeat(1_000_000);
    await rt.send('door', 'd-1', { type: 'BIG', big });
    const rows = await backend.query<{ event: Record<string, unknown> }>(
      `SELECT event FROM "${backend.schema}".events WHERE instance_id = 'd-1' ORDER BY id`,
    );
    expect(rows.map((r) => r.event.type)).toEqual(['PING', 'BIG']);
    expect(rows[0]?.event).toEqual({ type: 'PING', n: 1 });
    expect(Object.keys(rows[0]?.event ?? {})).not.toContain('gone');
    expect((rows[1]?.event.big as string).length).toBe(1_000_000);
  });

  it('send() refuses an event over 1 MiB with its size and the limit', async () => {
    await refused(
      () => rt.send('door', 'd-1', { type: 'BIG', big: 'x'.repeat(1_048_576) }),
      /^event is 1048599 bytes as JSON, over the limit of 1048576 \(the runtime option maxPayload\)/,
    );
    // Bytes, not characters: 400,000 three-byte characters are 1.2 MB.
    await refused(() => rt.send('door', 'd-1', { type: 'BIG', big: '€'.repeat(400_000) }), /over the limit of 1048576/);
  });

  it.each([
    ['a BigInt', { n: 1n }, /^input\.n is a BigInt/],
    ['NUL', { s: 'a\u0000' }, /^input\.s contains NUL/],
    ['a cycle', cyclic(), /^input\.self refers back to /],
    ['deep nesting', deep(100), /^input(\.v)+ is nested 65 levels deep/],
    ['a Map', { m: new Map() }, /^input\.m is a Map/],
  ])('create() and createMany() refuse an input with %s, naming the path', async (_what, input, message) => {
    await refused(() => rt.create('door', { id: 'bad-in', input }), message);
    const itemMessage = new RegExp(message.source.replace('^input', '^items\\[1\\]\\.input'));
    await refused(() => rt.createMany('door', [{ id: 'ok-1' }, { id: 'bad-in', input }]), itemMessage);
  });

  it('create() refuses an input over maxPayload and stores a large allowed one', async () => {
    await refused(() => rt.create('door', { id: 'huge', input: { big: 'x'.repeat(1_100_000) } }), /^input is \d+ bytes as JSON, over the limit of 1048576/);
    const record = await rt.create('door', { id: 'large', input: { big: 'y'.repeat(900_000) } });
    expect(((record.context.input as { big: string }).big).length).toBe(900_000);
    expect((await rt.get('door', 'large'))?.context).toEqual({ input: { big: 'y'.repeat(900_000) } });
  });

  it("the machine's input validator runs on the serialised input", async () => {
    seen.length = 0;
    const given = { n: 1, gone: undefined, nested: { a: [1, 2] } };
    await rt.create('checked', { id: 'c-1', input: given });
    await rt.createMany('checked', [{ id: 'c-2', input: given }]);
    expect(seen).toHaveLength(2);
    for (const value of seen) {
      expect(value).not.toBe(given);
      expect(value).toEqual({ n: 1, nested: { a: [1, 2] } });
      expect(Object.keys(value as object)).not.toContain('gone');
    }
  });

  it.each([
    ['an id with \\n', { id: 'a\nb' }, /^id "a\\nb" contains a control character/],
    ['an id with \\r', { id: 'a\rb' }, /control character/],
    ['an id with NUL', { id: 'a\u0000' }, /control character/],
    ['an id with DEL', { id: 'a\u007f' }, /control character/],
    ['a non-string id', { id: 5 }, /^id must be a non-empty string/],
    ['a unique key with \\n', { uniqueKey: 'k\n' }, /^uniqueKey "k\\n" contains a control character/],
    ['priority outside int4', { priority: 1e12 }, /^priority must be an integer from -2147483648 to 2147483647/],
    ['a runAt that is an object', { runAt: {} }, /^runAt must be a Date/],
  ])('create() and createMany() refuse %s', async (_what, item, message) => {
    await refused(() => rt.create('door', item as never), message);
    await refused(() => rt.createMany('door', [item as never]), new RegExp(message.source.replace('^', '^items\\[0\\]: ')));
  });

  it.each([
    ['get', (r: Runtime) => r.get('door', 'a\u0000'), /^id contains NUL/],
    ['get, a number id', (r: Runtime) => r.get('door', 5 as never), /^id must be a non-empty string \(got 5\)/],
    ['get, a number machine', (r: Runtime) => r.get(5 as never, 'd-1'), /^machine must be a non-empty string/],
    ['send, a null id', (r: Runtime) => r.send('door', null as never, { type: 'PING' }), /^id must be a non-empty string/],
    ['send, an object machine', (r: Runtime) => r.send({} as never, 'd-1', { type: 'PING' }), /^machine must be/],
    ['history', (r: Runtime) => r.history('door', {} as never), /^id must be a non-empty string/],
    ['cancel', (r: Runtime) => r.cancel('door', 7 as never), /^id must be/],
    ['cancel, NUL reason', (r: Runtime) => r.cancel('door', 'd-1', 'x\u0000'), /^cancel\(\): reason contains NUL/],
    ['cancel, a number reason', (r: Runtime) => r.cancel('door', 'd-1', 5 as never), /^cancel\(\): reason must be a string/],
    ['retry', (r: Runtime) => r.retry('door', [] as never), /^id must be/],
    ['retry, options not an object', (r: Runtime) => r.retry('door', 'd-1', 'x' as never), /options must be an object/],
    ['list, a number state', (r: Runtime) => r.list('door', { state: 123 as never }), /^list\(\): state must be a string/],
    ['list, a number after', (r: Runtime) => r.list('door', { after: 5 as never }), /^list\(\): after must be a record id/],
    ['list, NUL after', (r: Runtime) => r.list('door', { after: 'a\u0000' }), /^list\(\): after contains NUL/],
    ['list, a bad status', (r: Runtime) => r.list('door', { status: 'gone' as never }), /^status must be one of/],
    ['waitFor, null condition', (r: Runtime) => r.waitFor('door', 'd-1', null as never), /^waitFor\(\): condition must be/],
    ['waitFor, {} condition', (r: Runtime) => r.waitFor('door', 'd-1', {} as never), /^waitFor\(\): condition must be/],
    ['waitFor, a bad status', (r: Runtime) => r.waitFor('door', 'd-1', { status: 'gone' as never }), /condition\.status must be one of/],
    ['waitFor, NaN timeout', (r: Runtime) => r.waitFor('door', 'd-1', { status: 'done' }, { timeoutMs: NaN }), /timeoutMs must be a number/],
    ['waitFor, negative timeout', (r: Runtime) => r.waitFor('door', 'd-1', { status: 'done' }, { timeoutMs: -1 }), /timeoutMs must be/],
    ['waitFor, 1e15 timeout', (r: Runtime) => r.waitFor('door', 'd-1', { status: 'done' }, { timeoutMs: 1e15 }), /timeoutMs must be/],
    ['waitFor, an id with NUL', (r: Runtime) => r.waitFor('door', '\u0000', { status: 'done' }), /^id contains NUL/],
  ])('%s: a bad argument is an InvalidArgumentError and changes nothing', async (_what, call, message) => {
    await refused(() => call(rt), message);
  });

  it('createMany() refuses a non-object item before storing any', async () => {
    await refused(() => rt.createMany('door', [{ id: 'fine' }, null as never]), /^items\[1\] must be an object/);
  });

  it('a smaller maxPayload is honoured', async () => {
    const small = await createRuntime({ database: backend.database, schema: backend.schema, machines: [door, checked], maxPayload: 1024 });
    try {
      await refused(() => small.send('door', 'd-1', { type: 'PING', text: 'x'.repeat(2000) }), /over the limit of 1024/);
      await refused(() => small.create('door', { input: { text: 'x'.repeat(2000) } }), /^input is 2011 bytes as JSON, over the limit of 1024/);
    } finally {
      await small.stop().catch(() => {});
    }
  });
});

describe('option ranges', () => {
  it.each([
    ['pollInterval 0', { pollInterval: 0 }, /^pollInterval must be at least 10 ms/],
    ['pollInterval 5ms', { pollInterval: '5ms' }, /^pollInterval must be at least 10 ms/],
    ['shutdownGrace 1e15', { shutdownGrace: 1e15 }, /^shutdownGrace must be at most 2147483647 ms/],
    ['lease 30d', { lease: '30d' }, /^lease must be at most 2147483647 ms/],
    ['maxRunTime 1e12', { maxRunTime: 1e12 }, /^maxRunTime must be at most/],
    ['relayInterval 1e12', { relayInterval: 1e12 }, /^relayInterval must be at most/],
    ['heartbeatInterval NaN', { heartbeatInterval: NaN }, /finite number/],
    ['batchSize 1e6', { batchSize: 1e6 }, /^batchSize must be an integer from 1 to 10000/],
    ['concurrency 0.5', { concurrency: 0.5 }, /^concurrency must be an integer from 1 to 10000/],
    ['maxPayload 0', { maxPayload: 0 }, /^maxPayload must be an integer from 1 to 268435455/],
    ['maxPayload "1MB"', { maxPayload: '1MB' }, /^maxPayload must be an integer/],
    ['maxPayload 1e12', { maxPayload: 1e12 }, /^maxPayload must be an integer/],
  ])('createRuntime() refuses %s before opening anything', async (_what, options, message) => {
    const started = createRuntime({ database: DATABASE_URL, ...(options as object) });
    await expect(started).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(started).rejects.toThrow(message);
  });
});
