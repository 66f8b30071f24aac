// Scenario (i), drover only: what an idle runtime costs. `config.idleRecords` records of a
// machine that waits for an event forever (`idle: { on: { go: 'done' } }`) are seeded through
// drover's API (createMany, or create() without it), then a runtime on defaults is started,
// left 5 s to settle, and watched for `config.idleSeconds`: every statement its pool ran
// (profiledPool with allClients: transactions and LISTEN too), per minute and by statement,
// the CPU it took, and the process heap (before seeding, after seeding, after start, at the end).
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { setup } from 'xstate';
import { durable, parseDuration } from '../src/index.js';
import { analyze, config, coresSince, cpuMark, errorText, type IdleResult, now, schemaName, sleep } from './common.js';
import { closeRun, describeSettings, droverOverrides, enqueue, enqueueText, open, sourceDefaults, tunedSuffix } from './drover.js';

export const idleMachine = durable(
  setup({ types: { events: {} as { type: 'go' } } }).createMachine({
    id: 'bench_idle',
    initial: 'idle',
    states: { idle: { on: { go: 'done' } }, done: { type: 'final' } },
  }),
);

/** A full GC, if one can be forced (V8's gc() exposed at run time); false otherwise. */
let gcFn: (() => void) | undefined;
function forceGc(): boolean {
  if (!gcFn) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      return false;
    }
  }
  gcFn();
  gcFn();
  return true;
}

/** (i) seed, start, settle 5 s, count for `config.idleSeconds`. */
export async function droverIdle(n = config.idleRecords, seconds = config.idleSeconds): Promise<IdleResult> {
  const schema = schemaName('idle');
  const pollIntervalMs = parseDuration(droverOverrides.pollInterval ?? sourceDefaults().pollInterval ?? '1s');
  const result: IdleResult = {
    scenario: 'i',
    system: 'drover',
    variant: `${n.toLocaleString('en-US')} idle records, one runtime${tunedSuffix()}`,
    settings: describeSettings(),
    records: n,
    queues: new Set([idleMachine.queue]).size,
    seedMs: 0,
    seedHow: '',
    measuredMs: 0,
    statements: [],
    heap: [],
    gcForced: false,
    pollIntervalMs,
  };
  const heap = (at: string) => {
    result.gcForced = forceGc();
    result.heap.push({ at, bytes: process.memoryUsage().heapUsed });
  };
  heap('before seeding');
  const { rt, profile } = await open(schema, [idleMachine], {}, true);
  try {
    result.seedHow = enqueueText(rt);
    const t0 = now();
    await enqueue(rt, profile, idleMachine.name, n, () => undefined, { id: (i) => `i${i}` });
    result.seedMs = now() - t0;
    await analyze(schema);
    heap('after seeding');
    await rt.start();
    await sleep(5000);
    heap('after start (+5 s settle)');
    profile.reset();
    const cpuAt = cpuMark();
    const t1 = now();
    await sleep(seconds * 1000);
    result.measuredMs = now() - t1;
    result.cores = coresSince(cpuAt);
    result.statements = [...profile.stats.entries()].map(([name, s]) => ({ name, calls: s.calls, rows: s.rows, ms: s.ms }));
    heap('at the end');
  } catch (err) {
    result.error = errorText(err);
  } finally {
    await closeRun(rt, profile, schema);
  }
  return result;
}
