import { randomUUID } from 'node:crypto';
import { type TransitionMessage, transitionMessages } from '../bus/bus.js';
import type { CancelledRow, EffectRow, InboxRow, NewChildRow } from '../db/actor-queries.js';
import type { Queryable } from '../db/database.js';
import type { ChildLink, RecordLinks } from '../db/queries.js';
import { transitionColumns } from '../db/queries.js';
import { errorMessage, serializeError, UndeliverableMessageError } from '../errors.js';
import type { MessageTarget } from '../record/actors.js';
import type { DurableMachine } from '../record/durable.js';
import { contextIds, type FoldOptions, initialStep, nextWake, type StepOutcome } from '../record/step.js';
import type { EngineContext } from './context.js';
import { recordKey } from './records.js';

// Records as actors, the engine's half: a step's fold collected child machines started and
// stopped, events sent and emitted (src/record/step.ts); here they become rows written in the
// step's own transaction: child records (each with its first step run here, recursively),
// inbox events for the receivers, effects rows, child records to cancel.

const NO_LINKS: RecordLinks = { parent: null, children: {} };

/** A stepped record as the plan reads it. */
export interface ActorStep {
  machine: string;
  id: string;
  version: number;
  links?: RecordLinks | null;
  out: StepOutcome;
}

/** A child record the plan created, for the commit's messages and spans. */
export interface CreatedChild {
  root: string;
  def: DurableMachine;
  id: string;
  out: StepOutcome;
}

/** An emitted event of the plan, before its effects row has an id. */
export interface PlannedEmit {
  root: string;
  machine: string;
  id: string;
  version: number;
  event: StepOutcome['emitted'][number]['event'];
  state: string;
  seq: number;
  ids: Record<string, unknown>;
  at: Date;
}

type Rooted<T> = T & { root: string };

/** Everything a batch of steps writes beside its records, each row tagged with the stepped record (`root`) it comes from. */
export interface ActorPlan {
  children: Array<Rooted<NewChildRow>>;
  messages: Array<Rooted<InboxRow>>;
  newEvents: Array<Rooted<InboxRow>>;
  effects: Array<Rooted<EffectRow>>;
  cancels: Array<Rooted<{ machine: string; id: string }>>;
  created: CreatedChild[];
  emitted: PlannedEmit[];
  /** The new `children` column of stepped records whose child records changed. */
  links: Map<string, Record<string, ChildLink>>;
}

/** A plan with nothing in it. */
export function emptyActorPlan(): ActorPlan {
  return { children: [], messages: [], newEvents: [], effects: [], cancels: [], created: [], emitted: [], links: new Map() };
}

/** Whether a plan writes nothing. */
export function emptyPlan(plan: ActorPlan): boolean {
  return plan.children.length + plan.messages.length + plan.newEvents.length + plan.effects.length + plan.cancels.length === 0;
}

/** The plan's rows of the stepped records in `committed` (by record key). */
export function committedPart(plan: ActorPlan, committed: (root: string) => boolean): ActorPlan {
  const keep = <T extends { root: string }>(rows: T[]) => rows.filter((r) => committed(r.root));
  return {
    children: keep(plan.children),
    messages: keep(plan.messages),
    newEvents: keep(plan.newEvents),
    effects: keep(plan.effects),
    cancels: keep(plan.cancels),
    created: keep(plan.created),
    emitted: keep(plan.emitted),
    links: plan.links,
  };
}

/**
 * The fold's check of where a record's messages go: `sendParent` needs a parent, and a
 * `sendToRecord` target must exist (`missing`: the targets a lookup did not find).
 */
export function deliverableFor(links: RecordLinks | null | undefined, missing?: ReadonlySet<string>): NonNullable<FoldOptions['deliverable']> {
  return (to: MessageTarget, event) => {
    if (to.kind === 'parent' && !links?.parent) {
      return new UndeliverableMessageError(
        `sendParent("${event.type}") from a record that has no parent: only child records (invoked or spawned by another record) have one`,
      );
    }
    if (to.kind === 'record' && missing?.has(recordKey(to.machine, to.id))) {
      return new UndeliverableMessageError(`sendToRecord: machine "${to.machine}" has no record "${to.id}" to send "${event.type}" to`);
    }
    return undefined;
  };
}

/** The `sendToRecord` targets of a step, by record key. */
export function recordTargets(out: StepOutcome): Array<{ machine: string; id: string }> {
  return out.messages.flatMap((m) => (m.to.kind === 'record' ? [{ machine: m.to.machine, id: m.to.id }] : []));
}

/** Turns the actor effects of a batch of stepped records into rows (see {@link ActorPlan}). */
export function planActors(ctx: EngineContext, steps: readonly ActorStep[], now: number): ActorPlan {
  const plan = emptyActorPlan();
  let n = 0;
  const at = new Date(now);
  for (const step of steps) {
    const { out } = step;
    const busy =
      out.childStarts.length + out.childStops.length + out.messages.length + out.emitted.length > 0 ||
      (out.status !== 'active' && (step.links?.parent || Object.values(step.links?.children ?? {}).some((c) => c.live)));
    if (!busy) continue;
    const root = recordKey(step.machine, step.id);
    // Child records created in this plan, by record key: events to them go in with them.
    const fresh = new Map<string, Rooted<NewChildRow>>();

    const visit = (record: { machine: string; id: string; version: number; links: RecordLinks; out: StepOutcome }): Record<string, ChildLink> | null => {
      const { out } = record;
      const children = { ...record.links.children };
      let changed = false;
      const ids = contextIds(out.snapshot.context);
      const effect = (kind: EffectRow['kind'], peer: { machine: string; id: string } | null, event: unknown, seq: number, state = out.state) =>
        plan.effects.push({
          root,
          machine: record.machine,
          instance_id: record.id,
          version: record.version,
          seq,
          kind,
          peer_machine: peer?.machine ?? null,
          peer_id: peer?.id ?? null,
          event,
          state,
          ids,
          at,
        });
      const send = (target: { machine: string; id: string }, event: Record<string, unknown>, seq: number, state = out.state) => {
        effect('sent', target, event, seq, state);
        const row: Rooted<InboxRow> = { root, n: n++, machine: target.machine, instance_id: target.id, event, peer_machine: record.machine, peer_id: record.id };
        const child = fresh.get(recordKey(target.machine, target.id));
        if (!child) {
          plan.messages.push(row);
          return;
        }
        plan.newEvents.push(row);
        child.event_seq += 1;
        if (child.status === 'active') child.wake_at = at;
        plan.effects.push({
          root,
          machine: child.machine,
          instance_id: child.id,
          version: child.version,
          seq: child.seq,
          kind: 'received',
          peer_machine: record.machine,
          peer_id: record.id,
          event,
          state: child.state,
          ids: {},
          at,
        });
      };

      for (const key of out.childStops) {
        const link = children[key];
        if (!link?.live) continue;
        children[key] = { ...link, live: false };
        changed = true;
        plan.cancels.push({ root, machine: link.machine, id: link.id });
      }
      for (const start of out.childStarts) {
        const previous = children[start.key];
        if (previous?.live) plan.cancels.push({ root, machine: previous.machine, id: previous.id });
        const number = (previous?.n ?? 0) + 1;
        const id = number === 1 ? `${record.id}.${start.key}` : `${record.id}.${start.key}.${number}`;
        const parent = { machine: record.machine, id: record.id, key: start.key };
        let def: DurableMachine;
        let childOut: StepOutcome;
        try {
          def = ctx.registry.latest(start.machine.id);
          childOut = initialStep(def, start.input, now, now, undefined, { deliverable: deliverableFor({ parent, children: {} }) });
        } catch (err) {
          // Not registered, or its initial transition threw: the parent's invoke fails, as in memory.
          ctx.logger.warn({ machine: record.machine, id: record.id, child: start.machine.id, err: errorMessage(err) }, 'drover: child machine could not start');
          send(record, { type: `xstate.error.actor.${start.key}`, error: serializeError(err), actorId: start.key }, out.seq);
          continue;
        }
        children[start.key] = { machine: def.name, id, n: number, live: true };
        changed = true;
        effect('spawned', { machine: def.name, id }, { type: 'drover.spawn', key: start.key }, out.seq);
        const wake = nextWake(childOut);
        const spawns =
          childOut.status !== 'active'
            ? []
            : [...childOut.spawns.values()].map((s) => ({ invoke_id: s.id, token: randomUUID(), src: s.src, input: s.input ?? null, locked_until: at }));
        const row: Rooted<NewChildRow> = {
          root,
          machine: def.name,
          id,
          version: def.version,
          queue: def.queue,
          state: childOut.state,
          snapshot: def.machine.getPersistedSnapshot(childOut.snapshot),
          status: childOut.status,
          entered_at: at,
          wake_at: wake === null ? null : new Date(wake),
          timers: childOut.timers,
          error: childOut.error ?? null,
          seq: childOut.seq,
          event_seq: 0,
          parent_machine: parent.machine,
          parent_id: parent.id,
          parent_key: parent.key,
          children: {},
          transitions: childOut.transitions.map(transitionColumns),
          spawns,
        };
        plan.children.push(row);
        fresh.set(recordKey(def.name, id), row);
        plan.created.push({ root, def, id, out: childOut });
        const grandchildren = visit({ machine: def.name, id, version: def.version, links: { parent, children: {} }, out: childOut });
        if (grandchildren) row.children = grandchildren;
      }
      for (const message of out.messages) {
        const target = resolve(message.to, record.links, children);
        if (target) send(target, message.event as unknown as Record<string, unknown>, message.seq, message.state);
        else ctx.logger.debug({ machine: record.machine, id: record.id, event: message.event.type }, 'drover: event to a stopped child record dropped');
      }
      for (const { event, seq, state } of out.emitted) {
        effect('emitted', null, event, seq, state);
        plan.emitted.push({ root, machine: record.machine, id: record.id, version: record.version, event, state, seq, ids, at });
      }
      if (out.status !== 'active') {
        // A finished record stops its children; a finished child tells its parent.
        for (const [key, link] of Object.entries(children)) {
          if (!link.live) continue;
          children[key] = { ...link, live: false };
          changed = true;
          plan.cancels.push({ root, machine: link.machine, id: link.id });
        }
        const parent = record.links.parent;
        if (parent && out.status !== 'cancelled') {
          const event =
            out.status === 'done'
              ? { type: `xstate.done.actor.${parent.key}`, output: out.snapshot.output, actorId: parent.key }
              : { type: `xstate.error.actor.${parent.key}`, error: out.error ?? { name: 'Error', message: 'the child record failed' }, actorId: parent.key };
          send(parent, event, out.seq);
        }
      }
      return changed ? children : null;
    };

    const links = visit({ machine: step.machine, id: step.id, version: step.version, links: step.links ?? NO_LINKS, out });
    if (links) plan.links.set(root, links);
  }
  return plan;
}

function resolve(to: MessageTarget, links: RecordLinks, children: Record<string, ChildLink>): { machine: string; id: string } | null {
  if (to.kind === 'record') return { machine: to.machine, id: to.id };
  if (to.kind === 'parent') return links.parent;
  const child = children[to.key];
  return child?.live ? child : null;
}

/** What a plan wrote beside its records, for the work after the commit. */
export interface ActorWrite {
  part: ActorPlan;
  queues: string[];
  emittedIds: string[];
  undelivered: Array<{ machine: string; id: string }>;
  cancelled: CancelledRow[];
  now: number;
}

/** Writes a plan's rows (of the records that committed: see {@link committedPart}) in their transaction. */
export async function writeActors(ctx: EngineContext, tx: Queryable, part: ActorPlan, now: number): Promise<ActorWrite> {
  const { actors } = ctx.queries;
  const at = new Date(now);
  const strip = <T extends { root: string }>(rows: T[]) => rows.map(({ root: _root, ...row }) => row);
  const delivered =
    part.children.length + part.messages.length + part.newEvents.length + part.effects.length > 0
      ? await actors.deliver(tx, {
          children: strip(part.children),
          messages: strip(part.messages),
          newEvents: strip(part.newEvents),
          effects: strip(part.effects),
          now: at,
          node: ctx.node,
        })
      : { queues: [], emitted: [], undelivered: [] };
  const cancelled = part.cancels.length > 0 ? await actors.cancelChildren(tx, { roots: strip(part.cancels), now: at, reason: STOPPED }) : [];
  return { part, queues: delivered.queues, emittedIds: delivered.emitted, undelivered: delivered.undelivered, cancelled, now };
}

const STOPPED = 'its parent stopped it';

/**
 * After the commit of a plan: the created and cancelled child records' transitions (returned,
 * for the commit hook) and spans, their local invocations stopped (`abortRecord`), the emitted
 * events to the commit hook, the queues with new work woken.
 */
export function actorsCommitted(ctx: EngineContext, write: ActorWrite, abortRecord: (machine: string, id: string) => void): TransitionMessage[] {
  const messages: TransitionMessage[] = [];
  for (const child of write.part.created) {
    messages.push(...transitionMessages(child.id, child.def.name, child.def.version, child.out.transitions));
    ctx.telemetry.stateSpans(child.def.name, child.def.version, child.id, write.now, child.out.transitions);
    ctx.inspector?.stepped(child.def, child.id, child.out);
  }
  for (const row of write.cancelled) {
    abortRecord(row.machine, row.id);
    const event = { type: 'drover.cancel', reason: STOPPED };
    const t = { seq: row.seq, from: row.state, to: row.state, status: 'cancelled' as const, event, at: write.now, ids: row.ids };
    ctx.telemetry.stateSpans(row.machine, row.version, row.id, new Date(row.entered_at).getTime(), [t]);
    messages.push(...transitionMessages(row.id, row.machine, row.version, [t]));
  }
  if (write.undelivered.length > 0) ctx.logger.debug({ records: write.undelivered.slice(0, 10) }, 'drover: events to finished records dropped');
  ctx.commits.emitted(
    write.part.emitted.map((e, i) => ({
      id: e.id,
      machine: e.machine,
      version: e.version,
      event: e.event,
      state: e.state,
      seq: e.seq,
      ids: e.ids,
      at: e.at,
      effectId: write.emittedIds[i] ?? '',
    })),
  );
  if (write.queues.length > 0) ctx.wakeQueues?.(write.queues);
  return messages;
}
