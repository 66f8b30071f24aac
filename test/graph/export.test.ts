import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { type AnyStateMachine, and, assign, createMachine, fromPromise, not, setup } from 'xstate';
import { order } from '../../machines/order.js';
import { exportMachine } from '../../src/graph/export.js';
import { machineGraph } from '../../src/graph/graph.js';
import { type DurableMachine, durable } from '../../src/record/durable.js';

/** A state name and an event type that would break naive code generation. */
const NASTY_STATE = 'it\'s "odd"\n*/ \\ #x.y';
const NASTY_EVENT = 'say "hi"\r\n*/ \'now\' \\ ok.go\u2028';

/** The relative target for a sibling whose key holds `.` or `\`: XState reads `\` as an escape. */
const escaped = (key: string) => key.replace(/[\\.]/g, '\\$&');

function underLimit() {
  return true;
}

const rich = durable(
  setup({
    actors: { fetchUser: fromPromise(async () => 1), audit: fromPromise(async () => 2) },
    guards: { isReady: () => true, isBig: () => true, hasRetries: () => true },
    actions: { logEntry: () => {}, logExit: () => {}, track: () => {} },
    delays: { retryDelay: 500 },
  }).createMachine({
    id: 'rich',
    initial: 'idle',
    context: { retries: 0, labels: ['a', 'b'], nested: { on: true } },
    states: {
      idle: {
        description: 'Waiting for the user',
        tags: ['waiting', 'quiet'],
        meta: { color: 'grey', weight: 2 },
        entry: 'logEntry',
        exit: ['logExit', { type: 'track', params: { where: 'idle' } }],
        on: {
          'user.submit': [{ target: 'loading', guard: 'isReady' }, { target: 'rejected', guard: underLimit }, 'wizard'],
          [NASTY_EVENT]: escaped(NASTY_STATE),
          RESET: { actions: assign({ retries: 0 }) },
          CHECK: { target: 'loading', guard: and(['isReady', not('isBig')]) },
          'payment.*': { target: 'idle', reenter: true, description: 'restart' },
        },
      },
      loading: {
        invoke: [
          {
            id: 'fetch',
            src: 'fetchUser',
            onDone: { target: 'active', guard: 'isBig' },
            onError: [{ target: 'idle', guard: { type: 'hasRetries', params: { max: 3 } } }, { target: 'rejected' }],
          },
          { src: 'audit', onError: 'rejected' },
        ],
        after: { retryDelay: 'idle', 5000: { target: 'rejected', guard: 'isBig' } },
      },
      active: {
        type: 'parallel',
        onDone: 'finished',
        on: { SUSPEND: 'wizard.hist', 'a.b': '.upload.complete' },
        states: {
          upload: {
            initial: 'pending',
            states: {
              pending: { on: { 'upload.done': 'complete', CANCEL: '#rich.rejected', JUMP: '#review-approved' } },
              complete: { type: 'final' },
            },
          },
          review: {
            initial: 'open',
            states: {
              open: { always: { target: 'approved', guard: 'isBig' }, on: { APPROVE: 'approved' } },
              approved: { id: 'review-approved', type: 'final', output: { ok: true } },
            },
          },
        },
      },
      wizard: {
        initial: 'step1',
        on: { NEXT: '.step2', 'go.back': { target: '.step1', actions: ['track', 'logExit'] } },
        states: {
          step1: { initial: 'a', states: { a: { on: { B: 'b' } }, b: {} } },
          step2: { after: { 1000: { target: '#rich.rejected', actions: 'logExit' } } },
          hist: { type: 'history', history: 'deep', target: 'step2' },
        },
      },
      [NASTY_STATE]: { on: { BACK: 'idle', [NASTY_EVENT]: 'idle' } },
      rejected: { type: 'final' },
      finished: { type: 'final' },
    },
  }),
  { version: 3 },
);

/** Evaluates exported TypeScript with xstate's createMachine: it must compile without syntax errors. */
function evaluate(code: string): AnyStateMachine {
  const out = ts.transpileModule(code, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    reportDiagnostics: true,
  });
  expect(out.diagnostics?.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')) ?? []).toEqual([]);
  const exports: Record<string, unknown> = {};
  const require = (name: string) => {
    expect(name).toBe('xstate');
    return { createMachine };
  };
  new Function('exports', 'require', out.outputText)(exports, require);
  return exports.machine as AnyStateMachine;
}

/** The durable machine with its XState machine swapped: machineGraph reads only name, version and machine. */
function withMachine(def: DurableMachine, machine: AnyStateMachine): DurableMachine {
  return { ...def, machine };
}

describe('exportMachine', () => {
  for (const [label, def] of [
    ['order', order],
    ['a rich fixture', rich],
  ] as const) {
    it(`round-trips ${label}: the evaluated code has the same states, transitions, guards, delays and invokes`, () => {
      const code = exportMachine(def);
      const copy = evaluate(code);
      expect(copy.id).toBe(def.machine.id);
      expect(machineGraph(withMachine(def, copy))).toEqual(machineGraph(def));
      // What machineGraph does not show (actions, tags, history depth, meta, context) survives too.
      expect(exportMachine(withMachine(def, copy))).toBe(code);
    });
  }

  it('writes what the rich fixture holds, by name', () => {
    const code = exportMachine(rich);
    const copy = evaluate(code);
    const root = copy.root;
    expect(copy.config.context).toEqual({ retries: 0, labels: ['a', 'b'], nested: { on: true } });
    const idle = root.states.idle!;
    expect(idle.tags).toEqual(['waiting', 'quiet']);
    expect(idle.description).toBe('Waiting for the user');
    expect(idle.meta).toEqual({ color: 'grey', weight: 2 });
    expect(idle.config.entry).toBe('logEntry');
    expect(idle.config.exit).toEqual(['logExit', { type: 'track', params: { where: 'idle' } }]);
    const submit = idle.transitions.get('user.submit')!;
    expect(submit.map((t) => [t.target?.map((n) => n.id), t.guard])).toEqual([
      [['rich.loading'], 'isReady'],
      [['rich.rejected'], 'underLimit'],
      [['rich.wizard'], undefined],
    ]);
    expect(idle.transitions.get('CHECK')![0]!.guard).toBe('and(isReady, not(isBig))');
    expect(idle.transitions.get('RESET')![0]!.actions).toEqual(['xstate.assign']);
    expect(idle.transitions.get('payment.*')![0]!.reenter).toBe(true);
    const hist = root.states.wizard!.states.hist!;
    expect([hist.type, hist.history]).toEqual(['history', 'deep']);
    expect(root.states.active!.states.review!.states.approved!.id).toBe('review-approved');
    expect(root.states.loading!.invoke.map((i) => [i.id, i.src])).toEqual([
      ['fetch', 'fetchUser'],
      ['1.rich.loading', 'audit'],
    ]);
    // Readable targets where they resolve the same: siblings, `.child`, ids only across levels.
    expect(code).toContain("'user.submit': [");
    expect(code).toContain("NEXT: '.step2'");
    expect(code).toContain("SUSPEND: 'wizard.hist'");
    expect(code).toContain("CANCEL: '#rich.rejected'");
    expect(code).toContain("JUMP: '#review-approved'");
    expect(code).toContain("guard: { type: 'hasRetries', params: { max: 3 } }");
    expect(code).toContain("after: { 1000: { target: '#rich.rejected', actions: 'logExit' } }");
    expect(code).toMatch(/after: \{ 5000: \{ target: 'rejected', guard: 'isBig' \}, retryDelay: 'idle' \}/);
  });

  it('fails the round trip when a target or a guard is lost (the comparison can fail)', () => {
    const code = exportMachine(rich);
    const noGuard = code.replace("{ target: 'loading', guard: 'isReady' }", "{ target: 'loading' }");
    const noTarget = code.replace("'upload.done': 'complete'", "'upload.done': {}");
    expect(noGuard).not.toBe(code);
    expect(noTarget).not.toBe(code);
    for (const broken of [noGuard, noTarget]) {
      expect(machineGraph(withMachine(rich, evaluate(broken)))).not.toEqual(machineGraph(rich));
    }
  });

  it('escapes state names and event types with quotes, newlines, */ and backslashes', () => {
    const def = durable(
      createMachine({
        id: 'nasty',
        initial: NASTY_STATE,
        states: {
          [NASTY_STATE]: { on: { [NASTY_EVENT]: 'plain' }, tags: [NASTY_EVENT], description: NASTY_STATE },
          plain: { on: { [NASTY_EVENT]: escaped(NASTY_STATE), '#hash': '#nasty.plain' } },
          '#hash': {},
        },
      }),
    );
    const code = exportMachine(def);
    const copy = evaluate(code);
    expect(Object.keys(copy.root.states)).toEqual([NASTY_STATE, 'plain', '#hash']);
    expect(copy.root.initial.target[0]!.key).toBe(NASTY_STATE);
    expect([...copy.root.states[NASTY_STATE]!.transitions.keys()]).toEqual([NASTY_EVENT]);
    expect(copy.root.states[NASTY_STATE]!.tags).toEqual([NASTY_EVENT]);
    expect(copy.root.states[NASTY_STATE]!.description).toBe(NASTY_STATE);
    expect(machineGraph(withMachine(def, copy))).toEqual(machineGraph(def));
    // No raw line terminator inside a literal: each line of the code is whole.
    expect(code).not.toMatch(/[\r\u2028\u2029]/);
    expect(code).not.toContain(NASTY_STATE);
    expect(code).not.toContain(NASTY_EVENT);
  });

  it("writes order as the editor's createMachine config", () => {
    const code = exportMachine(order);
    expect(code.startsWith("import { createMachine } from 'xstate';\n\nexport const machine = createMachine({\n")).toBe(true);
    expect(code).toContain("'payment.confirmed': 'charging'");
    expect(code).toContain("after: { paymentWindow: 'expired' }");
    expect(code).toContain("src: 'charge'");
    expect(code).toContain("onDone: { target: 'shipped', actions: 'xstate.assign' }");
    // The context is a function of the input: not serialised.
    expect(code).toContain('context: {},');
    expect(code).not.toContain('=>');
    expect(code.endsWith('});\n')).toBe(true);
  });

  it('names the export as asked, and refuses a name that is no identifier', () => {
    expect(exportMachine(order, { exportName: 'orderMachine' })).toContain('export const orderMachine = createMachine({');
    expect(() => exportMachine(order, { exportName: 'order machine' })).toThrow(/exportName must be a JavaScript identifier/);
    expect(() => exportMachine(order, { exportName: 'class' })).toThrow(/exportName/);
  });
});
