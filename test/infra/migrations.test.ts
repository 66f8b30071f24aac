import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, MigrationChangedError } from '../../src/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// Landed migrations never change: each applied migration is stored with the sha256 of its
// file, and a runtime that finds one changed refuses to start.

const DIR = new URL('../../src/db/migrations/', import.meta.url);
const FILES = readdirSync(DIR)
  .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
  .sort();
const sha256 = (file: string) => createHash('sha256').update(readFileSync(new URL(file, DIR), 'utf8')).digest('hex');
const EXPECTED = FILES.map((file) => ({ id: Number(file.slice(0, 3)), checksum: sha256(file) }));

// 001_core.sql as it first landed (6bc1c91), before commit 2a255c1 edited it; databases that applied it exist.
const ORIGINAL_001 = '0c7cce5ab3890ec39f6c9bc4e38cdbe668a04b443bd2eb843c8686b173a8226f';
const NEW_INDEX = /^CREATE INDEX invocations_due ON \S+\.invocations USING btree \(queue, priority DESC, locked_until\)$/;
const OLD_INDEX = /^CREATE INDEX invocations_due ON \S+\.invocations USING btree \(queue, locked_until\)$/;

describe.each(BACKENDS)('SQL migrations on $name', ({ make }) => {
  let backend: TestBackend;
  let n = 0;
  const schemas: string[] = [];
  /** A schema of its own for each test, migrated by a runtime that is then stopped. */
  const freshSchema = async () => {
    const schema = `${backend.schema}_m${++n}`;
    schemas.push(schema);
    await (await createRuntime({ database: backend.database, schema })).stop();
    return schema;
  };
  const stored = (schema: string) =>
    backend.query<{ id: number; checksum: string | null }>(`SELECT id, checksum FROM "${schema}".migrations ORDER BY id`);
  const indexdef = async (schema: string) =>
    (
      await backend.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'invocations_due'`, [
        schema,
      ])
    ).map((r) => r.indexdef);

  beforeAll(async () => {
    backend = await make();
  });
  afterAll(async () => {
    for (const s of schemas) await backend.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await backend.close();
  });

  it('a fresh schema records every migration with the sha256 of its file', async () => {
    const schema = await freshSchema();
    expect(FILES).toContain('005_invocations_due.sql');
    expect(await stored(schema)).toEqual(EXPECTED);
    expect(await indexdef(schema)).toEqual([expect.stringMatching(NEW_INDEX)]);
  });

  it('an applied migration whose file changed makes createRuntime reject with MigrationChangedError naming the file', async () => {
    const schema = await freshSchema();
    const other = 'f'.repeat(64);
    await backend.query(`UPDATE "${schema}".migrations SET checksum = $1 WHERE id = 4`, [other]);
    const started = createRuntime({ database: backend.database, schema });
    await expect(started).rejects.toBeInstanceOf(MigrationChangedError);
    await expect(started).rejects.toThrow(/migration 004_residency\.sql .*never changes.*new numbered migration/);
    // Refused before anything was written: the stored checksum is still the one it found.
    expect((await stored(schema)).find((r) => r.id === 4)?.checksum).toBe(other);
  });

  it('a schema migrated before checksums existed starts and gets the checksums recorded', async () => {
    const schema = await freshSchema();
    await backend.query(`ALTER TABLE "${schema}".migrations DROP COLUMN checksum`);
    await (await createRuntime({ database: backend.database, schema })).stop();
    expect(await stored(schema)).toEqual(EXPECTED);
    await backend.query(`UPDATE "${schema}".migrations SET checksum = NULL WHERE id IN (1, 3)`);
    await (await createRuntime({ database: backend.database, schema })).stop();
    expect(await stored(schema)).toEqual(EXPECTED);
  });

  it('a schema migrated before the invocations_due edit gets the new index; one checksummed by the first 001 is accepted', async () => {
    // Migrated before 2a255c1: the old index, no checksums, no 005.
    const before = await freshSchema();
    await backend.query(`DROP INDEX "${before}".invocations_due`);
    await backend.query(`CREATE INDEX invocations_due ON "${before}".invocations (queue, locked_until)`);
    await backend.query(`DELETE FROM "${before}".migrations WHERE id = 5`);
    await backend.query(`ALTER TABLE "${before}".migrations DROP COLUMN checksum`);
    expect(await indexdef(before)).toEqual([expect.stringMatching(OLD_INDEX)]);
    await (await createRuntime({ database: backend.database, schema: before })).stop();
    expect(await indexdef(before)).toEqual([expect.stringMatching(NEW_INDEX)]);
    expect(await stored(before)).toEqual(EXPECTED);

    // Checksummed by the first text of 001: accepted, the current checksum recorded, 005 applied.
    const edited = await freshSchema();
    await backend.query(`DELETE FROM "${edited}".migrations WHERE id = 5`);
    await backend.query(`UPDATE "${edited}".migrations SET checksum = $1 WHERE id = 1`, [ORIGINAL_001]);
    await (await createRuntime({ database: backend.database, schema: edited })).stop();
    expect(await indexdef(edited)).toEqual([expect.stringMatching(NEW_INDEX)]);
    expect(await stored(edited)).toEqual(EXPECTED);
  });
});
