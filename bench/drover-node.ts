// One drover node in its own process, for the multi-process variant of (a) and (b)
// (BENCH_DROVER_PROCESSES). Started by drover-procs.ts: argv = schema, scenario.
// Protocol on stdio: prints `ready`; starts on any line from stdin; prints `done <count>`
// as records of this node reach `done` (post-commit, from its own bus); stops on SIGTERM.
import { createRuntime } from '../src/index.js';
import { DATABASE_URL } from './common.js';
import { chain, droverOverrides, oneStep } from './drover.js';

const [schema, scenario] = process.argv.slice(2) as [string, string];
const machine = scenario === 'a' ? oneStep : chain;
const rt = await createRuntime({
  database: DATABASE_URL,
  schema,
  machines: [machine],
  ...droverOverrides,
});
let done = 0;
let reported = 0;
rt.subscribe({ machine: machine.name, to: 'done' }, () => {
  done += 1;
});
const report = setInterval(() => {
  if (done !== reported) {
    reported = done;
    process.stdout.write(`done ${done}\n`);
  }
}, 5);
process.on('SIGTERM', () => {
  clearInterval(report);
  void rt.stop().then(() => process.exit(0));
});
process.stdin.once('data', () => void rt.start());
process.stdout.write('ready\n');
