import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createRuntime, type DurableMachine, durable, MachineChangedError, type Runtime } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// The start check of machine versions: each registered version's structure is stored; a
// version changed under its live records refuses to start, naming what changed and who is
// stranded; `allowChange` accepts a change that strands nobody.

type Review = 'review' | 'checking';

/** draft → <review> → published; `extra` adds a state no record is in. */
function flow(options: { review?: Review; extra?: boolean; version?: number; allowChange?: boolean } = {}): DurableMachine {
  const review = options.review ?? 'review';
  const def = durable(
    setup({}).createMachine({
      id: 'flow',
      initial: 'draft',
      states: {
        draft: { on: { submit: review } },
        [review]: { on: { approve: 'published' }, after: { 60000: 'draft' } },
        ...(options.extra ? { archived: { type: 'final' as const } } : {}),
        published: { type: 'final' },
      },
    }),
    { version: options.version ?? 1 },
  );
  // `allowChange` is an option of durable(); set on the result so this test does not depend on its typing.
  return options.allowChange ? ({ ...def, allowChange: true } as DurableMachine) : def;
}

describe.each(BACKENDS)('machine version check at start on $name', ({ make }) => {
  let backend: TestBackend;
  const open = (machines: readonly DurableMachine[]) => createRuntime({ database: backend.database, schema: backend.schema, machines });
  const stored = async () =>
    backend.query<{ machine: string; version: number; fingerprint: { states: Record<string, unknown> } }>(
      `SELECT machine, version, fingerprint FROM "${backend.schema}".machine_versions ORDER BY machine, version`,
    );
  const refusal = async (machines: readonly DurableMachine[]): Promise<MachineChangedError> => {
    try {
      const rt = await open(machines);
      await rt.stop();
    } catch (err) {
      expect(err).toBeInstanceOf(MachineChangedError);
      return err as MachineChangedError;
    }
    throw new Error('the runtime started');
  };

  beforeAll(async () => {
    backend = await make();
    const rt = await open([flow()]);
    try {
      for (const id of ['r-2', 'r-1', 'd-1']) await rt.create('flow', { id });
      await rt.send('flow', 'r-1', { type: 'submit' });
      await rt.send('flow', 'r-2', { type: 'submit' });
      await rt.start();
      await rt.waitFor('flow', 'r-1', { state: 'review' });
      await rt.waitFor('flow', 'r-2', { state: 'review' });
    } finally {
      await rt.stop();
    }
  });
  afterAll(async () => {
    await backend?.close();
  });

  it('stores the structure of a registered version once; the same machine restarts fine', async () => {
    const rows = await stored();
    expect(rows.map((r) => [r.machine, r.version])).toEqual([['flow', 1]]);
    expect(Object.keys(rows[0]?.fingerprint.states ?? {}).sort()).toEqual(['', 'draft', 'published', 'review']);
    const again = await open([flow()]);
    await again.stop();
    expect(await stored()).toEqual(rows);
  });

  it('a renamed state without a version bump refuses to start, naming the difference and the stranded records', async () => {
    const err = await refusal([flow({ review: 'checking' })]);
    expect(err.code).toBe('MACHINE_CHANGED');
    expect(err.message).toContain('machine "flow" version 1 is not the version 1 stored in the database');
    expect(err.message).toContain('state "review" removed');
    expect(err.message).toContain('state "checking" added');
    expect(err.message).toContain('state "draft": event "submit" targets checking (was review)');
    expect(err.message).toContain('2 live record(s) are in states this version no longer has: "review" (2); ids: r-1, r-2');
    expect(err.message).toContain('Bump `version`');
    // Nothing stored changed.
    expect(Object.keys((await stored())[0]?.fingerprint.states ?? {})).toContain('review');
  });

  it('allowChange still refuses a change that strands live records', async () => {
    const err = await refusal([flow({ review: 'checking', allowChange: true })]);
    expect(err.message).toContain('ids: r-1, r-2');
    expect(err.message).toContain('allowChange cannot accept this change: it would strand live records');
  });

  it('a change that strands nobody refuses without allowChange (saying allowChange would do) and is accepted with it', async () => {
    const err = await refusal([flow({ extra: true })]);
    expect(err.message).toContain('state "archived" added');
    expect(err.message).not.toContain('live record(s)');
    expect(err.message).toContain('pass `allowChange: true`');

    const rt = await open([flow({ extra: true, allowChange: true })]);
    await rt.stop();
    expect(Object.keys((await stored())[0]?.fingerprint.states ?? {})).toContain('archived');
    // Now that is the stored structure: it starts without allowChange, and the old one is the change.
    await (await open([flow({ extra: true })])).stop();
    expect((await refusal([flow()])).message).toContain('state "archived" removed');
  });

  it('a new version registers beside the old one; both are stored', async () => {
    const rt: Runtime = await open([flow({ extra: true }), flow({ review: 'checking', version: 2 })]);
    await rt.stop();
    expect((await stored()).map((r) => [r.machine, r.version])).toEqual([
      ['flow', 1],
      ['flow', 2],
    ]);
  });

  it('runtimes starting together register a new version once, without a race', async () => {
    const v3 = flow({ version: 3 });
    const runtimes = await Promise.all([0, 1, 2].map(() => open([flow({ extra: true }), v3])));
    await Promise.all(runtimes.map((r) => r.stop()));
    expect((await stored()).filter((r) => r.version === 3)).toHaveLength(1);
  });
});
