import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyActorRef,
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  assign,
  createActor,
  sendParent,
  sendTo,
  setup,
  SimulatedClock,
  spawnChild,
} from 'xstate';
import { durable, type DurableMachine, type Runtime, sendToRecord } from '../../src/index.js';
import { createTestRuntime } from '../../src/testing/index.js';
import { BACKENDS, type TestBackend } from '../helpers/backends.js';

// The fidelity bar for records as actors: a parent/child system run durably, with the runtime
// stopped and a new one started on the same schema around every event, reaches the same state
// values and contexts (parent and children) as the same system run in memory by plain XState.

/** One step of a script: an event to the parent, an event to a child record (`<parent id>.<child>`), or time passing. */
type Step = { send: AnyEventObject } | { child: string; send: AnyEventObject } | { advance: number };

interface System {
  name: string;
  parent: AnyStateMachine;
  /** Registered with durable() in `machines` besides the parent (drover registers invoked child machines itself). */
  registered: AnyStateMachine[];
  script: Step[];
  /** The in-memory parent's final state: the script does what it is meant to (not nothing, on both sides). */
  expected: { status: string; value: unknown; context: unknown };
}

interface Observed {
  status: string;
  value: unknown;
  context: unknown;
}

// --- (a) invoke a child machine with onDone using its output ---

function orderSystem(suffix: string, registerChild: boolean): System {
  const packer = setup({
    types: {
      context: {} as { items: string[]; packed: string[] },
      input: {} as { items: string[] },
      events: {} as { type: 'pack' } | { type: 'seal' },
    },
    guards: { allPacked: ({ context }) => context.packed.length === context.items.length },
  }).createMachine({
    id: `fa_packer_${suffix}`,
    initial: 'packing',
    context: ({ input }) => ({ items: input.items, packed: [] }),
    states: {
      packing: {
        on: {
          pack: { actions: assign({ packed: ({ context }) => [...context.packed, context.items[context.packed.length] ?? '?'] }) },
          seal: { guard: 'allPacked', target: 'sealed' },
        },
      },
      sealed: { type: 'final' },
    },
    output: ({ context }) => ({ count: context.packed.length, label: context.packed.join('+') }),
  });
  const order = setup({
    types: {
      context: {} as { items: string[]; shipment: { count: number; label: string } | null; error: boolean },
      events: {} as { type: 'add'; item: string } | { type: 'ship' } | { type: 'pack' },
    },
    actors: { packer },
  }).createMachine({
    id: `fa_order_${suffix}`,
    initial: 'open',
    context: { items: [], shipment: null, error: false },
    states: {
      open: {
        on: {
          add: { actions: assign({ items: ({ context, event }) => [...context.items, event.item] }) },
          ship: 'shipping',
        },
      },
      shipping: {
        invoke: {
          id: 'ship',
          src: 'packer',
          input: ({ context }) => ({ items: context.items }),
          onDone: { target: 'shipped', actions: assign({ shipment: ({ event }) => event.output as { count: number; label: string } }) },
          onError: { target: 'open', actions: assign({ error: true }) },
        },
        on: { pack: { actions: sendTo('ship', { type: 'pack' }) } },
      },
      shipped: { type: 'final' },
    },
  });
  return {
    name: `invoke with onDone (child ${registerChild ? 'registered' : 'not registered'})`,
    parent: order,
    registered: registerChild ? [packer] : [],
    script: [
      { send: { type: 'add', item: 'a' } },
      { send: { type: 'add', item: 'b' } },
      { send: { type: 'ship' } },
      { send: { type: 'pack' } }, // forwarded by the parent with sendTo
      { child: 'ship', send: { type: 'pack' } }, // straight to the child record
      { child: 'ship', send: { type: 'seal' } },
    ],
    expected: { status: 'done', value: 'shipped', context: { items: ['a', 'b'], shipment: { count: 2, label: 'a+b' }, error: false } },
  };
}

// --- (b) spawn several children, message them with sendTo, each replies with sendParent ---

const worker = setup({
  types: { context: {} as { n: number; pings: number }, input: {} as { n: number }, events: {} as { type: 'ping' } | { type: 'quit' } },
}).createMachine({
  id: 'fb_worker',
  initial: 'ready',
  context: ({ input }) => ({ n: input.n, pings: 0 }),
  states: {
    ready: {
      on: {
        ping: {
          actions: [
            assign({ pings: ({ context }) => context.pings + 1 }),
            sendParent(({ context }) => ({ type: 'pong', n: context.n, pings: context.pings })),
          ],
        },
        quit: 'gone',
      },
    },
    gone: { type: 'final' },
  },
  output: ({ context }) => ({ n: context.n, pings: context.pings }),
});

type HubEvent =
  | { type: 'start' }
  | { type: 'ping' }
  | { type: 'pingOne' }
  | { type: 'pingRefs' }
  | { type: 'quitOne' }
  | { type: 'finish' }
  | { type: 'pong'; n: number; pings: number };

const hub = setup({
  types: {
    context: {} as { c2: AnyActorRef | null; c3: AnyActorRef | null; replies: number; last: Record<string, number>; outputs: Record<string, unknown> },
    events: {} as HubEvent,
  },
  actors: { worker },
}).createMachine({
  id: 'fb_hub',
  initial: 'idle',
  context: { c2: null, c3: null, replies: 0, last: {}, outputs: {} },
  states: {
    idle: {
      on: {
        start: {
          target: 'running',
          actions: [
            spawnChild('worker', { id: 'c1', input: { n: 1 } }),
            assign({
              c2: ({ spawn }) => spawn('worker', { id: 'c2', input: { n: 2 } }),
              c3: ({ spawn }) => spawn('worker', { id: 'c3', input: { n: 3 } }),
            }),
          ],
        },
      },
    },
    running: {
      on: {
        ping: {
          actions: [
            sendTo('c1', { type: 'ping' }),
            sendTo(({ context }) => context.c2 as AnyActorRef, { type: 'ping' }),
            sendTo(({ context }) => context.c3 as AnyActorRef, { type: 'ping' }),
          ],
        },
        pingOne: { actions: sendTo('c1', { type: 'ping' }) },
        // Only through the refs kept in context: they must have survived every restore.
        pingRefs: {
          actions: [sendTo(({ context }) => context.c2 as AnyActorRef, { type: 'ping' }), sendTo(({ context }) => context.c3 as AnyActorRef, { type: 'ping' })],
        },
        quitOne: { actions: sendTo('c1', { type: 'quit' }) },
        // Replies from different children may arrive in any order durably: count them, keyed by child.
        pong: { actions: assign({ replies: ({ context }) => context.replies + 1, last: ({ context, event }) => ({ ...context.last, [`w${event.n}`]: event.pings }) }) },
        'xstate.done.actor.c1': { actions: assign({ outputs: ({ context, event }) => ({ ...context.outputs, c1: (event as unknown as { output: unknown }).output }) }) },
        finish: { guard: ({ context }) => context.replies === 9, target: 'done' },
      },
    },
    done: { type: 'final' },
  },
});

const hubSystem: System = {
  name: 'spawned children messaged with sendTo reply with sendParent',
  parent: hub,
  registered: [],
  script: [
    { send: { type: 'start' } },
    { send: { type: 'ping' } },
    { send: { type: 'pingOne' } },
    { send: { type: 'ping' } },
    { send: { type: 'quitOne' } },
    { send: { type: 'pingRefs' } },
    { send: { type: 'finish' } },
  ],
  expected: {
    status: 'done',
    value: 'done',
    context: { c2: 'ref:c2', c3: 'ref:c3', replies: 9, last: { w1: 3, w2: 3, w3: 3 }, outputs: { c1: { n: 1, pings: 3 } } },
  },
};

// --- (c) a child's sendParent from its entry actions ---

const greeter = setup({
  types: { context: {} as { name: string }, input: {} as { name: string }, events: {} as { type: 'bye' } },
}).createMachine({
  id: 'fc_greeter',
  initial: 'greeting',
  context: ({ input }) => ({ name: input.name }),
  entry: sendParent(({ context }) => ({ type: 'hello', name: context.name })),
  states: {
    greeting: { entry: sendParent({ type: 'ready' }), on: { bye: 'gone' } },
    gone: { type: 'final' },
  },
  output: ({ context }) => ({ greeted: context.name }),
});

const team = setup({
  types: {
    context: {} as { names: string[]; hellos: string[]; readies: number; result: unknown },
    events: {} as { type: 'add'; name: string } | { type: 'open' } | { type: 'hello'; name: string } | { type: 'ready' } | { type: 'bye' },
  },
  actors: { greeter },
}).createMachine({
  id: 'fc_team',
  initial: 'forming',
  context: { names: [], hellos: [], readies: 0, result: null },
  states: {
    forming: { on: { add: { actions: assign({ names: ({ context, event }) => [...context.names, event.name] }) }, open: 'open' } },
    open: {
      invoke: {
        id: 'greeter',
        src: 'greeter',
        input: ({ context }) => ({ name: context.names.join('&') }),
        onDone: { target: 'closed', actions: assign({ result: ({ event }) => event.output }) },
      },
      on: {
        hello: { actions: assign({ hellos: ({ context, event }) => [...context.hellos, event.name] }) },
        ready: { actions: assign({ readies: ({ context }) => context.readies + 1 }) },
        bye: { actions: sendTo('greeter', { type: 'bye' }) },
      },
    },
    closed: { type: 'final' },
  },
});

const teamSystem: System = {
  name: 'a child sends to its parent from its entry actions',
  parent: team,
  registered: [],
  script: [{ send: { type: 'add', name: 'ann' } }, { send: { type: 'add', name: 'bo' } }, { send: { type: 'open' } }, { send: { type: 'bye' } }],
  expected: { status: 'done', value: 'closed', context: { names: ['ann', 'bo'], hellos: ['ann&bo'], readies: 1, result: { greeted: 'ann&bo' } } },
};

// --- (d) a child with its own `after` timers ---

const hold = setup({
  types: { context: {} as { seat: string; outcome: string | null }, input: {} as { seat: string }, events: {} as { type: 'confirm' } },
}).createMachine({
  id: 'fd_hold',
  initial: 'held',
  context: ({ input }) => ({ seat: input.seat, outcome: null }),
  states: {
    held: {
      initial: 'quiet',
      after: { 1000: 'expired' },
      on: { confirm: 'confirmed' },
      states: { quiet: { after: { 400: { target: 'nudged', actions: sendParent({ type: 'nudge' }) } } }, nudged: {} },
    },
    expired: { type: 'final', entry: assign({ outcome: 'expired' }) },
    confirmed: { type: 'final', entry: assign({ outcome: 'confirmed' }) },
  },
  output: ({ context }) => ({ seat: context.seat, outcome: context.outcome }),
});

const booking = setup({
  types: {
    context: {} as { nudges: number; result: unknown },
    events: {} as { type: 'book' } | { type: 'nudge' },
  },
  actors: { hold },
}).createMachine({
  id: 'fd_booking',
  initial: 'idle',
  context: { nudges: 0, result: null },
  states: {
    idle: { on: { book: 'holding' } },
    holding: {
      invoke: { id: 'hold', src: 'hold', input: { seat: '12A' }, onDone: { target: 'settled', actions: assign({ result: ({ event }) => event.output }) } },
      on: { nudge: { actions: assign({ nudges: ({ context }) => context.nudges + 1 }) } },
    },
    settled: { type: 'final' },
  },
});

const expirySystem: System = {
  name: "a child's after timers fire: the hold expires",
  parent: booking,
  registered: [],
  script: [{ send: { type: 'book' } }, { advance: 300 }, { advance: 200 }, { advance: 400 }, { advance: 200 }],
  expected: { status: 'done', value: 'settled', context: { nudges: 1, result: { seat: '12A', outcome: 'expired' } } },
};

const confirmSystem: System = {
  name: "a child's after timer, then an event to the child before the next one",
  parent: booking,
  registered: [],
  script: [{ send: { type: 'book' } }, { advance: 450 }, { child: 'hold', send: { type: 'confirm' } }, { advance: 1000 }],
  expected: { status: 'done', value: 'settled', context: { nudges: 1, result: { seat: '12A', outcome: 'confirmed' } } },
};

// --- (e) the parent leaves the invoking state while the child runs ---

const job = setup({
  types: { context: {} as { attempt: number; steps: number }, input: {} as { attempt: number }, events: {} as { type: 'work' } | { type: 'finish' } },
}).createMachine({
  id: 'fe_job',
  initial: 'running',
  context: ({ input }) => ({ attempt: input.attempt, steps: 0 }),
  states: {
    running: { on: { work: { actions: assign({ steps: ({ context }) => context.steps + 1 }) }, finish: 'finished' } },
    finished: { type: 'final' },
  },
  output: ({ context }) => ({ attempt: context.attempt, steps: context.steps }),
});

const boss = setup({
  types: { context: {} as { attempt: number; result: unknown }, events: {} as { type: 'go' } | { type: 'work' } | { type: 'abort' } },
  actors: { job },
}).createMachine({
  id: 'fe_boss',
  initial: 'idle',
  context: { attempt: 0, result: null },
  states: {
    idle: { on: { go: { target: 'working', actions: assign({ attempt: ({ context }) => context.attempt + 1 }) } } },
    working: {
      invoke: {
        id: 'job',
        src: 'job',
        input: ({ context }) => ({ attempt: context.attempt }),
        onDone: { target: 'finished', actions: assign({ result: ({ event }) => event.output }) },
      },
      on: { abort: 'idle', work: { actions: sendTo('job', { type: 'work' }) } },
    },
    finished: { type: 'final' },
  },
});

const leaveSystem: System = {
  name: 'the parent leaves the invoking state mid-child, then invokes the key again',
  parent: boss,
  registered: [],
  script: [
    { send: { type: 'go' } },
    { send: { type: 'work' } },
    { child: 'job', send: { type: 'work' } },
    { send: { type: 'abort' } }, // the child record is cancelled (in memory: stopped)
    { send: { type: 'go' } }, // the key again: child record `<id>.job.2`
    { child: 'job.2', send: { type: 'work' } },
    { child: 'job.2', send: { type: 'finish' } },
  ],
  expected: { status: 'done', value: 'finished', context: { attempt: 2, result: { attempt: 2, steps: 1 } } },
};

const SYSTEMS: System[] = [orderSystem('r', true), orderSystem('u', false), hubSystem, teamSystem, expirySystem, confirmSystem, leaveSystem];

// --- comparing ---

const isRef = (v: unknown): v is AnyActorRef =>
  typeof v === 'object' && v !== null && typeof (v as { send?: unknown }).send === 'function' && typeof (v as { sessionId?: unknown }).sessionId === 'string';

/** JSON-shaped, with actor refs (in memory) and stored ref placeholders (durably) both as `ref:<id>`. */
function plain(value: unknown): unknown {
  if (isRef(value)) return `ref:${value.id}`;
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    const o = value as Record<string, unknown>;
    if (o.xstate$$type === 1 && typeof o.id === 'string') return `ref:${o.id}`;
    return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/** XState's snapshot status as drover names it: a stopped child is a cancelled child record. */
const STATUS: Record<string, string> = { active: 'active', done: 'done', stopped: 'cancelled', error: 'failed' };

function observeSnapshot(s: AnyMachineSnapshot): Observed {
  return { status: STATUS[s.status] ?? s.status, value: plain(s.value), context: plain(s.context) };
}

const describeStep = (s: Step) => ('advance' in s ? `advance ${s.advance} ms` : 'child' in s ? `${s.send.type} to child ${s.child}` : s.send.type);

/** The system in memory: the parent after its start and after every step, and each child it started (by its child record id). */
function runInMemory(sys: System, id: string): { after: Observed[]; children: Map<string, AnyActorRef> } {
  const clock = new SimulatedClock();
  const children = new Map<string, AnyActorRef>();
  const starts = new Map<string, number>();
  const actor = createActor(sys.parent, {
    clock,
    inspect: (ev) => {
      if (ev.type !== '@xstate.actor') return;
      const ref = ev.actorRef as AnyActorRef & { _parent?: AnyActorRef };
      // The root's own event comes first (no parent): `actor` is only read once children start.
      if (!ref._parent || ref._parent !== actor) return;
      const n = (starts.get(ref.id) ?? 0) + 1;
      starts.set(ref.id, n);
      children.set(n === 1 ? `${id}.${ref.id}` : `${id}.${ref.id}.${n}`, ref);
    },
  });
  actor.start();
  const after = [observeSnapshot(actor.getSnapshot())];
  for (const step of sys.script) {
    if ('advance' in step) clock.increment(step.advance);
    else if ('child' in step) {
      const ref = (actor.getSnapshot().children as Record<string, AnyActorRef>)[step.child.split('.')[0] as string];
      if (!ref) throw new Error(`in memory: no live child "${step.child}" for ${describeStep(step)}`);
      ref.send(step.send);
    } else actor.send(step.send);
    const snap = actor.getSnapshot();
    if (snap.status === 'error') throw new Error(`in memory: the parent failed at ${describeStep(step)}: ${String(snap.error)}`);
    after.push(observeSnapshot(snap));
  }
  return { after, children };
}

const START = Date.UTC(2026, 0, 1);

/** A record as drover stores it, in the shape of {@link Observed}. */
async function observeRecord(rt: Runtime, machine: string, id: string): Promise<Observed | null> {
  const r = await rt.get(machine, id);
  return r ? { status: r.status, value: plain(r.value), context: plain(r.context) } : null;
}

/**
 * The system durably: every step on a runtime of its own (created on the same schema, drained
 * until nothing is due, stopped), the clock carried over from one to the next.
 */
async function runDurably(backend: TestBackend, sys: System, machines: DurableMachine[], id: string, childIds: string[]) {
  let now = START;
  const session = async <T>(fn: (rt: Runtime, advance: (ms: number) => Promise<unknown>) => Promise<T>): Promise<T> => {
    const t = await createTestRuntime({ database: backend.database, schema: backend.schema, machines, now, drainTimeout: '20s' });
    try {
      const result = await fn(t as unknown as Runtime, (ms) => t.clock.advance(ms));
      await t.drain();
      now = t.clock.now();
      return result;
    } finally {
      await t.stop();
    }
  };
  const name = sys.parent.id;
  const after: Array<Observed | null> = [];
  await session(async (rt) => {
    await rt.create(name, { id });
  });
  after.push(await session((rt) => observeRecord(rt, name, id)));
  for (const step of sys.script) {
    await session(async (rt, advance) => {
      if ('advance' in step) await advance(step.advance);
      else if ('child' in step) await rt.send(childMachineOf(sys, step.child), `${id}.${step.child}`, step.send);
      else await rt.send(name, id, step.send);
    });
    after.push(await session((rt) => observeRecord(rt, name, id)));
  }
  const children = await session(async (rt) => {
    const out = new Map<string, Observed | null>();
    for (const childId of childIds) {
      const rows = await backend.query<{ machine: string }>(`SELECT machine FROM "${backend.schema}".instances WHERE id = $1`, [childId]);
      out.set(childId, rows[0] ? await observeRecord(rt, rows[0].machine, childId) : null);
    }
    return out;
  });
  const linked = await backend.query<{ machine: string; id: string }>(
    `SELECT machine, id FROM "${backend.schema}".instances WHERE parent_machine = $1 AND parent_id = $2 ORDER BY id`,
    [name, id],
  );
  return { after, children, linked };
}

/** The machine of the child a script step sends to: the one the parent's setup registers (each parent here has one). */
function childMachineOf(sys: System, child: string): string {
  const { actors } = sys.parent.implementations as unknown as { actors: Record<string, AnyStateMachine> };
  const logic = Object.values(actors)[0];
  if (!logic) throw new Error(`no child machine for "${child}"`);
  return logic.id;
}

describe.each(BACKENDS)('records as actors: drover restarted around every event equals in-memory XState on $name', ({ make }) => {
  let backend: TestBackend;

  beforeAll(async () => {
    backend = await make();
  });
  afterAll(async () => {
    await backend?.close();
  });

  it.each(SYSTEMS)('$name', async (sys) => {
    const id = `p-${sys.parent.id}-${sys.script.length}`;
    const memory = runInMemory(sys, id);
    expect(memory.after.at(-1), 'the in-memory run (the script itself)').toEqual(sys.expected);

    const machines = [durable(sys.parent), ...sys.registered.map((m) => durable(m))];
    const got = await runDurably(backend, sys, machines, id, [...memory.children.keys()]);

    expect(got.after[0], 'after create').toEqual(memory.after[0]);
    for (const [i, step] of sys.script.entries()) expect(got.after[i + 1], `after step ${i} (${describeStep(step)})`).toEqual(memory.after[i + 1]);

    // Exactly the children XState started, each a record of the child machine, linked to the parent.
    const expectedChildren = [...memory.children].map(([childId, ref]) => ({ machine: logicId(ref), id: childId }));
    expect(got.linked).toEqual(expectedChildren.sort((a, b) => (a.id < b.id ? -1 : 1)));
    for (const [childId, ref] of memory.children) {
      expect(got.children.get(childId), `child record ${childId}`).toEqual(observeSnapshot(ref.getSnapshot() as AnyMachineSnapshot));
    }
  });
});

/** The id of the machine an in-memory child runs. */
function logicId(ref: AnyActorRef): string {
  return ((ref as unknown as { logic: AnyStateMachine }).logic as AnyStateMachine).id;
}

// Beyond what XState does in memory: messages to any record, the links on the record view.

const inbox = durable(
  setup({ types: { context: {} as { notes: string[] }, events: {} as { type: 'note'; text: string } } }).createMachine({
    id: 'fx_inbox',
    initial: 'open',
    context: { notes: [] },
    states: { open: { on: { note: { actions: assign({ notes: ({ context, event }) => [...context.notes, event.text] }) } } } },
  }),
);

const notifierMachine = setup({
  types: { context: {} as { sent: number }, events: {} as { type: 'notify'; to: string; text: string } },
}).createMachine({
  id: 'fx_notifier',
  initial: 'ready',
  context: { sent: 0 },
  states: {
    ready: {
      on: {
        notify: {
          actions: [
            assign({ sent: ({ context }) => context.sent + 1 }),
            sendToRecord('fx_inbox', ({ event }) => (event as { to: string }).to, ({ event }) => ({ type: 'note', text: (event as { text: string }).text })),
          ],
        },
      },
    },
  },
});
const notifier = durable(notifierMachine);

describe.each(BACKENDS)('records as actors beyond XState on $name', ({ make }) => {
  let backend: TestBackend;

  beforeAll(async () => {
    backend = await make();
  });
  afterAll(async () => {
    await backend?.close();
  });

  it('sendToRecord delivers to any record; in plain XState it does nothing', async () => {
    const actor = createActor(notifierMachine).start();
    actor.send({ type: 'notify', to: 'box-1', text: 'hi' });
    expect(actor.getSnapshot().context).toEqual({ sent: 1 });

    const t = await createTestRuntime({ database: backend.database, schema: backend.schema, machines: [inbox, notifier] });
    try {
      await t.create('fx_inbox', { id: 'box-1' });
      await t.create('fx_notifier', { id: 'n-1' });
      await t.send('fx_notifier', 'n-1', { type: 'notify', to: 'box-1', text: 'hi' });
      await t.send('fx_notifier', 'n-1', { type: 'notify', to: 'box-1', text: 'again' });
      await t.drain();
      expect((await t.get('fx_inbox', 'box-1'))?.context).toEqual({ notes: ['hi', 'again'] });
      expect((await t.get('fx_notifier', 'n-1'))?.context).toEqual({ sent: 2 });
    } finally {
      await t.stop();
    }
  });

  it('sendToRecord to a record that does not exist fails the sender with UndeliverableMessageError, in its history', async () => {
    const t = await createTestRuntime({ database: backend.database, schema: backend.schema, machines: [inbox, notifier] });
    try {
      await t.create('fx_notifier', { id: 'n-2' });
      await t.send('fx_notifier', 'n-2', { type: 'notify', to: 'nobody', text: 'hi' });
      await t.drain();
      const r = await t.get('fx_notifier', 'n-2');
      expect(r?.status).toBe('failed');
      expect(r?.error?.name).toBe('UndeliverableMessageError');
      expect(r?.context).toEqual({ sent: 0 }); // nothing of the failed step is stored
      const last = (await t.history('fx_notifier', 'n-2')).at(-1);
      expect(last?.status).toBe('failed');
      expect(last?.error?.name).toBe('UndeliverableMessageError');
      expect(await t.get('fx_inbox', 'nobody')).toBeNull();
    } finally {
      await t.stop();
    }
  });

  it('a child record shows its parent on get(), and list({ parent }) finds it', async () => {
    const t = await createTestRuntime({ database: backend.database, schema: backend.schema, machines: [durable(hub)] });
    try {
      await t.create('fb_hub', { id: 'h-links' });
      await t.send('fb_hub', 'h-links', { type: 'start' });
      await t.drain();
      const rt = t as unknown as Runtime;
      const child = await rt.get('fb_worker', 'h-links.c2');
      expect(child?.parent).toEqual({ machine: 'fb_hub', id: 'h-links', key: 'c2' });
      const page = await rt.list('fb_worker', { parent: { machine: 'fb_hub', id: 'h-links' } });
      expect(page.items.map((r) => r.id).sort()).toEqual(['h-links.c1', 'h-links.c2', 'h-links.c3']);
    } finally {
      await t.stop();
    }
  });
});
