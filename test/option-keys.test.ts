import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, InvalidArgumentError, none, type Runtime, WorkerNotFoundError } from '../src/index.js';
import { optionKeys } from '../src/keys.js';
import { pgliteBackend, type TestBackend } from './helpers/backends.js';

// A typo in an option key fails loudly, naming the nearest valid key, instead of being ignored.

describe('createRuntime()', () => {
  it('rejects an unknown key with the nearest valid one, before opening anything', async () => {
    const started = createRuntime({ pollIntervall: 50 } as never);
    await expect(started).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(started).rejects.toThrow('createRuntime(): unknown option "pollIntervall" (did you mean "pollInterval"?)');
  });

  it('names no key when none is close, and lists the valid ones', async () => {
    const started = createRuntime({ frobnicate: true } as never);
    await expect(started).rejects.toThrow(/^createRuntime\(\): unknown option "frobnicate"; valid options: batchSize, clock, concurrency, /);
  });

  it('rejects an unknown key of stream', async () => {
    await expect(createRuntime({ stream: { nmae: 'X' } } as never)).rejects.toThrow(
      'createRuntime() stream: unknown option "nmae" (did you mean "name"?)',
    );
  });
});

describe('supervisor.add() and periodic()', () => {
  let backend: TestBackend;
  let rt: Runtime;
  beforeAll(async () => {
    backend = await pgliteBackend();
    rt = await createRuntime({ database: backend.database, schema: backend.schema });
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('add() rejects an unknown config key and registers nothing', () => {
    const add = () => rt.supervisor.add('typo', () => none('1h'), { maxPanicAttempt: 3 } as never);
    expect(add).toThrow(InvalidArgumentError);
    expect(add).toThrow('supervisor.add("typo"): unknown option "maxPanicAttempt" (did you mean "maxPanicAttempts"?)');
    expect(() => rt.supervisor.status('typo')).toThrow(WorkerNotFoundError);
    // The name is still free: the same worker with the right key registers.
    rt.supervisor.add('typo', () => none('1h'), { maxPanicAttempts: 3 });
    expect(rt.supervisor.status('typo')).toBe('stopped');
  });

  it('periodic() rejects an unknown option key, also inside backoff, and registers nothing', () => {
    const run = () => undefined;
    const periodic = (options: object) => () => rt.periodic('nightly', { every: '1h' }, run, options as never);
    expect(periodic({ jiter: '5s' })).toThrow(InvalidArgumentError);
    expect(periodic({ jiter: '5s' })).toThrow('periodic("nightly"): unknown option "jiter" (did you mean "jitter"?)');
    expect(periodic({ catchup: 'one' })).toThrow('(did you mean "catchUp"?)');
    expect(periodic({ backoff: { bse: '1s' } })).toThrow('periodic("nightly") backoff: unknown option "bse" (did you mean "base"?)');
    expect(() => rt.supervisor.status('nightly')).toThrow(WorkerNotFoundError);
    rt.periodic('nightly', { every: '1h' }, run, { jitter: '5s', catchUp: 'one', backoff: { base: '1s' } });
    expect(rt.supervisor.status('nightly')).toBe('stopped');
  });
});

describe('optionKeys()', () => {
  it('lists keys checked against the interface at compile time', () => {
    interface Options {
      alpha?: number;
      beta?: string;
    }
    expect(optionKeys<Options>()(['alpha', 'beta'])).toEqual(['alpha', 'beta']);
    // @ts-expect-error a list that misses a key of the interface does not compile
    optionKeys<Options>()(['alpha']);
    // @ts-expect-error nor does one with a key the interface does not have
    optionKeys<Options>()(['alpha', 'beta', 'gamma']);
  });
});
