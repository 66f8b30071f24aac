import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, done, InvalidArgumentError, none, type RunRecord, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';
import { until } from '../helpers/until.js';

// supervisor.runs() pages run records by keyset (`before`) and by offset, as the scheduler's
// trigger history does.

const RECORDS = 12;

describe.each(BACKENDS)('supervisor.runs() on $name', ({ make }) => {
  let backend: TestBackend;
  let rt: Runtime;
  let all: RunRecord[];

  beforeAll(async () => {
    backend = await make();
    rt = await createRuntime({ database: backend.database, schema: backend.schema, controlInterval: 50 });
    await rt.start();
    // 12 recorded calls of one worker, and some of another that must never show up.
    const recordedWorker = (name: string, count: number) => {
      let calls = 0;
      rt.supervisor.add(name, () => (++calls <= count ? done() : none('1h')), { record: true });
      rt.supervisor.start(name);
      return () => calls > count;
    };
    const paged = recordedWorker('paged', RECORDS);
    const other = recordedWorker('other', 3);
    await until(() => paged() && other(), 'every recorded call');
    await rt.supervisor.stop('paged');
    await rt.supervisor.stop('other');
    all = (await rt.supervisor.runs('paged', { limit: 1000 })).items;
  });
  afterAll(async () => {
    await rt?.stop();
    await backend?.close();
  });

  it('holds every recorded call, newest first', () => {
    expect(all).toHaveLength(RECORDS);
    expect(all.every((r) => r.worker === 'paged')).toBe(true);
    const ids = all.map((r) => Number(r.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
  });

  it('offset skips that many runs: numbered pages cover every run once, in order', async () => {
    const pages: RunRecord[][] = [];
    for (let page = 0; page < 10; page++) {
      const { items } = await rt.supervisor.runs('paged', { limit: 5, offset: page * 5 });
      if (items.length === 0) break;
      pages.push(items);
    }
    expect(pages.map((p) => p.length)).toEqual([5, 5, 2]);
    expect(pages.flat()).toEqual(all);
    expect(await rt.supervisor.runs('paged', { limit: 5, offset: 7 })).toEqual({ items: all.slice(7, 12), next: all[11]?.id });
    expect(await rt.supervisor.runs('paged', { limit: 5, offset: 10 })).toEqual({ items: all.slice(10), next: null });
    expect(await rt.supervisor.runs('paged', { offset: RECORDS })).toEqual({ items: [], next: null });
    expect(await rt.supervisor.runs('paged', { offset: 10_000 })).toEqual({ items: [], next: null });
  });

  it('offset 0 is the default; offset combines with before (skipped after the keyset)', async () => {
    expect(await rt.supervisor.runs('paged', { limit: 4, offset: 0 })).toEqual(await rt.supervisor.runs('paged', { limit: 4 }));
    const before = all[2]?.id as string;
    expect((await rt.supervisor.runs('paged', { before, offset: 3, limit: 4 })).items).toEqual(all.slice(6, 10));
  });

  it.each([
    ['negative', -1],
    ['fractional', 1.5],
    ['not a number', '3'],
    ['NaN', Number.NaN],
    ['infinite', Number.POSITIVE_INFINITY],
  ])('rejects a %s offset with InvalidArgumentError', async (_what, offset) => {
    await expect(rt.supervisor.runs('paged', { offset: offset as number })).rejects.toThrow(InvalidArgumentError);
    await expect(rt.supervisor.runs('paged', { offset: offset as number })).rejects.toThrow('offset must be an integer >= 0');
  });

  it('rejects an unknown option key, naming the nearest valid one', async () => {
    await expect(rt.supervisor.runs('paged', { ofset: 5 } as never)).rejects.toThrow(
      'supervisor.runs(): unknown option "ofset" (did you mean "offset"?)',
    );
  });
});
