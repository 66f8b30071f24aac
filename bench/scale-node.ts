// One idle drover node for bench/scale.ts (argv: schema, settle ms): a runtime on defaults that
// knows the idle machine, started, left alone for the settle time; then prints
// `memory <rss> <heapUsed>` (after a forced GC when V8 allows it) and exits.
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { createRuntime } from '../src/index.js';
import { DATABASE_URL } from './common.js';
import { scaleIdle } from './scale-machines.js';

const [schema, settle] = process.argv.slice(2) as [string, string];
const rt = await createRuntime({ database: DATABASE_URL, schema, machines: [scaleIdle] });
await rt.start();
await new Promise((r) => setTimeout(r, Number(settle)));
try {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
} catch {
  // No forced GC: the heap figure then includes garbage.
}
const { rss, heapUsed } = process.memoryUsage();
process.stdout.write(`memory ${rss} ${heapUsed}\n`);
await rt.stop();
process.exit(0);
