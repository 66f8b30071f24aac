import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMachine, fromPromise, setup } from 'xstate';
import {
  createRuntime,
  DroverError,
  DuplicateRecordError,
  type DurableMachine,
  durable,
  EventNotAcceptedError,
  InvalidArgumentError,
  parseDuration,
  RecordNotFoundError,
  type Runtime,
  SnapshotRestoreError,
  UnknownMachineError,
  UnknownVersionError,
} from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { dump, lifecycle, rejection, row, withRuntime } from './machines.js';

// Every typed error, and for each: nothing stored changed.

const verV1 = durable(
  setup({}).createMachine({ id: 'ver', initial: 'one', states: { one: { on: { go: 'two' } }, two: { type: 'final' } } }),
  { version: 1 },
);
const verV2 = durable(
  setup({}).createMachine({ id: 'ver', initial: 'alpha', states: { alpha: { on: { go: 'omega' } }, omega: { type: 'final' } } }),
  { version: 2 },
);

describe.each(BACKENDS)('typed errors on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  const open = (machines: readonly DurableMachine[] = [lifecycle]) =>
    createRuntime({ database: backend.database, schema: backend.schema, machines, pollInterval: 50 });

  /** Runs `call`, expects it to reject with `type`, and checks that every stored table is unchanged. */
  async function rejectsWithNothingStored<E extends Error>(call: () => Promise<unknown>, type: abstract new (...args: never[]) => E) {
    const before = await dump(backend);
    const err = await rejection(call());
    expect(err).toBeInstanceOf(type);
    expect(err).toBeInstanceOf(DroverError);
    expect(await dump(backend)).toEqual(before);
    return err as E;
  }

  beforeAll(async () => {
    backend = await make();
    rt = await open();
    await rt.start();
    await rt.create('lc', { id: 'base' });
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('UnknownMachineError from create, send, get, list, history, cancel, waitFor: the message names the machine', async () => {
    const calls: Array<() => Promise<unknown>> = [
      () => rt.create('nosuch', { id: 'x' }),
      () => rt.send('nosuch', 'base', { type: 'go' }),
      () => rt.get('nosuch', 'base'),
      () => rt.list('nosuch'),
      () => rt.history('nosuch', 'base'),
      () => rt.cancel('nosuch', 'base'),
      () => rt.waitFor('nosuch', 'base', { status: 'done' }, { timeoutMs: 500 }),
    ];
    for (const call of calls) {
      const err = await rejectsWithNothingStored(call, UnknownMachineError);
      expect(err.message).toContain('"nosuch"');
      expect((err as unknown as DroverError).code).toBe('UNKNOWN_MACHINE');
    }
  });

  it('UnknownVersionError: sending to a version-1 record through a runtime that only has version 2', async () => {
    await withRuntime(
      () => open([verV1]),
      async (v1) => {
        expect(await v1.create('ver', { id: 'v-old' })).toMatchObject({ version: 1, state: 'one' });
      },
    );
    await withRuntime(
      () => open([verV1, verV2]),
      async (both) => {
        expect(await both.create('ver', { id: 'v-new' })).toMatchObject({ version: 2, state: 'alpha' });
      },
    );
    await withRuntime(
      () => open([verV2]),
      async (v2only) => {
        const err = await rejectsWithNothingStored(() => v2only.send('ver', 'v-old', { type: 'go' }), UnknownVersionError);
        expect(err.message).toContain('"ver"');
        expect(err.message).toMatch(/version 1/);
        // The v2 record is fine.
        await v2only.send('ver', 'v-new', { type: 'go' });
      },
    );
    expect((await row(backend, 'ver', 'v-old'))?.state).toBe('one');
  });

  it('DuplicateRecordError for the same id: the first record is untouched', async () => {
    await rt.create('lc', { id: 'dup-1', input: { label: 'first' } });
    const err = await rejectsWithNothingStored(() => rt.create('lc', { id: 'dup-1', input: { label: 'second' } }), DuplicateRecordError);
    expect(err.message).toContain('dup-1');
    expect(err.message).toMatch(/\bid\b/);
    expect((await rt.get('lc', 'dup-1'))?.context.label).toBe('first');
  });

  it('DuplicateRecordError for the same uniqueKey: the second record is not stored', async () => {
    await rt.create('lc', { id: 'uk-1', uniqueKey: 'customer-7' });
    const err = await rejectsWithNothingStored(() => rt.create('lc', { id: 'uk-2', uniqueKey: 'customer-7' }), DuplicateRecordError);
    expect(err.message).toContain('customer-7');
    expect(await rt.get('lc', 'uk-2')).toBeNull();
    // Another key is fine.
    await rt.create('lc', { id: 'uk-3', uniqueKey: 'customer-8' });
  });

  it('RecordNotFoundError from send, cancel and waitFor', async () => {
    for (const call of [
      () => rt.send('lc', 'ghost', { type: 'go' }),
      () => rt.cancel('lc', 'ghost'),
      () => rt.waitFor('lc', 'ghost', { status: 'done' }, { timeoutMs: 500 }),
    ]) {
      const err = await rejectsWithNothingStored(call, RecordNotFoundError);
      expect(err.message).toContain('ghost');
    }
  });

  it('EventNotAcceptedError for an event the current state has no transition for', async () => {
    await rt.create('lc', { id: 'ena-1' });
    const err = await rejectsWithNothingStored(() => rt.send('lc', 'ena-1', { type: 'next' }), EventNotAcceptedError);
    expect(err.message).toContain('next');
    expect((await rt.get('lc', 'ena-1'))?.state).toBe('idle');
  });

  it('EventNotAcceptedError for an event sent to a finished (done or cancelled) record', async () => {
    await rt.create('lc', { id: 'ena-2' });
    await rt.send('lc', 'ena-2', { type: 'finish' });
    await rt.waitFor('lc', 'ena-2', { status: 'done' }, { timeoutMs: 10_000 });
    await rejectsWithNothingStored(() => rt.send('lc', 'ena-2', { type: 'go' }), EventNotAcceptedError);
    await rt.create('lc', { id: 'ena-3' });
    await rt.cancel('lc', 'ena-3');
    await rejectsWithNothingStored(() => rt.send('lc', 'ena-3', { type: 'go' }), EventNotAcceptedError);
  });

  it('InvalidArgumentError for an invalid schema name; nothing is created', async () => {
    for (const schema of ['Bad-Schema', 'x;drop', '1abc', '']) {
      const err = await rejection(createRuntime({ database: backend.database, schema, machines: [lifecycle] }));
      expect(err).toBeInstanceOf(InvalidArgumentError);
    }
    const schemas = await backend.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name IN ('Bad-Schema', 'x;drop', '1abc')`,
    );
    expect(schemas[0]?.n).toBe(0);
  });

  it('InvalidArgumentError from durable() for an inline invoke', () => {
    const inline = createMachine({
      id: 'inline',
      initial: 'a',
      states: { a: { invoke: { src: fromPromise(async () => 1), onDone: 'b' } }, b: {} },
    });
    expect(() => durable(inline)).toThrow(InvalidArgumentError);
    const nested = createMachine({
      id: 'inline2',
      initial: 'a',
      states: { a: { initial: 'deep', states: { deep: { invoke: { src: fromPromise(async () => 1) } } } } },
    });
    expect(() => durable(nested)).toThrow(InvalidArgumentError);
    const missing = createMachine({ id: 'inline3', initial: 'a', states: { a: { invoke: { src: 'notRegistered' } } } });
    expect(() => durable(missing)).toThrow(InvalidArgumentError);
  });

  it('InvalidArgumentError for a bad duration', async () => {
    expect(() => parseDuration('soon')).toThrow(InvalidArgumentError);
    expect(() => parseDuration(-5)).toThrow(InvalidArgumentError);
    expect(() => parseDuration('P')).toThrow(InvalidArgumentError);
    const m = setup({}).createMachine({ id: 'dur', initial: 'a', states: { a: {} } });
    expect(() => durable(m, { backoff: 'forever' })).toThrow(InvalidArgumentError);
    expect(() => durable(m, { backoff: { base: '1s', max: 'never' } })).toThrow(InvalidArgumentError);
    expect(() => durable(m, { residency: { a: { sla: 'tomorrow' } } })).toThrow(InvalidArgumentError);
    for (const options of [{ pollInterval: 'soon' }, { lease: '5 parsecs' }, { shutdownGrace: Number.NaN }]) {
      const err = await rejection(createRuntime({ database: backend.database, schema: backend.schema, machines: [lifecycle], ...options }));
      expect(err).toBeInstanceOf(InvalidArgumentError);
    }
  });

  it('InvalidArgumentError for a bad event or bad list options; nothing stored', async () => {
    await rejectsWithNothingStored(() => rt.send('lc', 'base', { type: '' }), InvalidArgumentError);
    await rejectsWithNothingStored(() => rt.send('lc', 'base', { type: 'xstate.init' }), InvalidArgumentError);
    await rejectsWithNothingStored(() => rt.list('lc', { limit: 0 }), InvalidArgumentError);
    await rejectsWithNothingStored(() => rt.list('lc', { status: 'sleeping' as never }), InvalidArgumentError);
  });

  it('SnapshotRestoreError when the stored snapshot names a state the machine does not have; the row is kept as is', async () => {
    await rt.create('lc', { id: 'corrupt-1' });
    await backend.query(
      `UPDATE "${backend.schema}".instances SET snapshot = jsonb_set(snapshot, '{value}', '"nowhere"') WHERE machine = 'lc' AND id = 'corrupt-1'`,
    );
    const before = await row(backend, 'lc', 'corrupt-1');
    const err = await rejectsWithNothingStored(() => rt.send('lc', 'corrupt-1', { type: 'go' }), SnapshotRestoreError);
    expect(err.message).toContain('corrupt-1');
    const after = await row(backend, 'lc', 'corrupt-1');
    expect(after).toEqual(before);
    expect((after?.snapshot as { value: unknown } | undefined)?.value).toBe('nowhere');
    expect(after?.status).toBe('active');
  });
});
