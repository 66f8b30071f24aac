// Scenario (e): bulk create. drover's createMany() of `config.bulk` one-step job records on a
// runtime that is never started (a client: nothing runs them), in calls of 1,000 items and in
// one call of all of them; the peers' bulk inserts of the same number of jobs alongside
// (pg-boss insert(), graphile-worker addJobs()). Only the calls are timed.
import { admin, type BulkResult, config, errorText, now, schemaName } from './common.js';
import { type BulkItem, closeRun, createManyOf, describeSettings, oneStep, open, tunedSuffix } from './drover.js';

/** (e) drover: `n` records of the one-step job in createMany() calls of `perCall` items. */
export async function droverBulk(n: number, perCall: number): Promise<BulkResult> {
  const schema = schemaName('bulk');
  const result: BulkResult = {
    scenario: 'e',
    system: 'drover',
    variant: (perCall >= n ? `createMany(), ${n} in one call` : `createMany(), ${perCall} per call`) + tunedSuffix(),
    settings: `${describeSettings()}; never started (a client)`,
    items: n,
    perCall,
    runMs: 0,
  };
  const { rt, profile } = await open(schema, [oneStep], {}, true);
  try {
    const createMany = createManyOf(rt);
    if (!createMany) {
      result.skipped = 'createMany not available';
      return result;
    }
    profile.reset();
    const t0 = now();
    let created = 0;
    for (let i = 0; i < n; i += perCall) {
      const items: BulkItem[] = [];
      for (let j = i; j < Math.min(n, i + perCall); j++) items.push({ id: `r${j}`, input: { i: j } });
      created += (await createMany(oneStep.name, items)).length;
    }
    result.runMs = now() - t0;
    if (created !== n) throw new Error(`createMany resolved to ${created} records, expected ${n}`);
    const check = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".instances`);
    if (check.rows[0]?.n !== n) throw new Error(`expected ${n} records stored, found ${check.rows[0]?.n}`);
    result.notes = profile.report(result.runMs);
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeRun(rt, profile, schema);
  }
  return result;
}

/** The (e) sizes: 1,000 per call, and all in one call. */
export const bulkCalls = () => [...new Set([1000, config.bulk])];
