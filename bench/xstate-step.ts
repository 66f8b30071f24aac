// Scenario x (BENCH_ONLY=x, no database): what one durable step costs in JavaScript, split the
// way drover's poller does it, for the two machines of scenarios (a) and (b). It also times
// the alternative that skips XState's per-call throwaway actor: `transition()` builds a new
// Actor (which evaluates the machine's initial state, context factory included) on every
// call; `machine.transition(snapshot, event, scope)` with one scope per machine does not.
import { type AnyActorScope, type AnyMachineSnapshot, type AnyStateMachine, createActor, type EventObject, transition } from 'xstate';
import { type DurableMachine, defineJob } from '../src/index.js';
import { restoreSnapshot } from '../src/record/state.js';
import { initialStep } from '../src/record/step.js';
import { now } from './common.js';
import { chain } from './drover.js';

const replacer = (_key: string, value: unknown) => (value instanceof Error ? { name: value.name, message: value.message } : value);

/** One actor scope per machine, reused for every step (what `transition()` rebuilds each call). */
function reusableScope(machine: AnyStateMachine, actions: unknown[]): AnyActorScope {
  const self = createActor(machine);
  return {
    self,
    defer: () => {},
    id: '',
    logger: () => {},
    sessionId: '',
    stopChild: () => {},
    system: self.system,
    emit: () => {},
    actionExecutor: (a: unknown) => {
      actions.push(a);
    },
  } as unknown as AnyActorScope;
}

/** µs per call: the fastest of 5 batches of `n` calls (other load on the machine only adds time). */
export function time(n: number, fn: () => void): number {
  for (let i = 0; i < Math.min(1000, n); i++) fn(); // warm-up
  let best = Number.POSITIVE_INFINITY;
  for (let batch = 0; batch < 5; batch++) {
    const t0 = now();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, ((now() - t0) * 1000) / n);
  }
  return best;
}

/** µs per operation for one machine and the event that moves it out of its first state. */
function measure(name: string, def: DurableMachine, input: unknown, event: (s: AnyMachineSnapshot) => EventObject): string[] {
  const machine = def.machine;
  const first = initialStep(def, input, Date.now());
  const persisted = JSON.parse(JSON.stringify(machine.getPersistedSnapshot(first.snapshot)));
  const snap = restoreSnapshot(machine, persisted);
  const ev = event(snap);
  const actions: unknown[] = [];
  const scope = reusableScope(machine, actions);
  const [viaTransition] = transition(machine, snap, ev);
  const viaScope = machine.transition(snap, ev, scope) as AnyMachineSnapshot;
  if (JSON.stringify(viaTransition.value) !== JSON.stringify(viaScope.value)) throw new Error(`${name}: the two transitions disagree`);
  const next = viaTransition;
  const n = 5_000;
  const rows: Array<[string, number]> = [
    ['restoreSnapshot (createActor + resolveState)', time(n, () => restoreSnapshot(machine, persisted))],
    ['xstate transition() (new throwaway Actor per call)', time(n, () => transition(machine, snap, ev))],
    [
      'machine.transition() with a reused scope',
      time(n, () => {
        actions.length = 0;
        machine.transition(snap, ev, scope);
      }),
    ],
    ['getPersistedSnapshot', time(n, () => machine.getPersistedSnapshot(next))],
    [
      'JSON.stringify with an Error replacer (as queries.json)',
      time(n, () => JSON.stringify(machine.getPersistedSnapshot(next), replacer)),
    ],
    ['JSON.stringify plain', time(n, () => JSON.stringify(machine.getPersistedSnapshot(next)))],
  ];
  return rows.map(([op, us]) => `| ${name} | ${op} | ${us.toFixed(1)} |`);
}

export function xstateStep(): string[] {
  const job = defineJob('bench_job_x', async () => ({ ok: true }));
  const doneOf = (s: AnyMachineSnapshot) => ({ type: `xstate.done.actor.${Object.keys(s.children)[0]}`, output: { ok: true } });
  return [
    '| machine | operation | µs per call (best of 5 × 5,000) |',
    '|---|---|---:|',
    ...measure('defineJob (a)', job, { i: 1 }, doneOf),
    ...measure('3-state chain (b)', chain, { n: 1 }, doneOf),
  ];
}
