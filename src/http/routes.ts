import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../errors.js';
import { machineGraph } from '../graph/graph.js';
import type { RecordStatus } from '../record/step.js';
import type { RuntimeAccess } from '../runtime/access.js';
import type { CreateOptions, DroverEvent, Runtime } from '../runtime/types.js';
import { parseDuration } from '../time.js';
import { errorResponses } from './errors.js';
import type { EventStreams } from './events.js';
import * as S from './schemas.js';

type MachineParams = { machine: string };
type RecordParams = { machine: string; id: string };

/** The registered versions of every machine, oldest first (the registry never changes after start). */
function registeredVersions(access: RuntimeAccess): Map<string, number[]> {
  return new Map(access.registry.names().map((name) => [name, access.registry.versions(name)]));
}

const ok = (schema: object, status = 200) => ({ [status]: schema, ...errorResponses });

/** Registers every `/api/` route of the HTTP API on `app`. */
export function registerRoutes(app: FastifyInstance, runtime: Runtime, access: RuntimeAccess, streams: EventStreams): void {
  const versions = registeredVersions(access);
  const { registry, supervisor } = access;

  // Machines -----------------------------------------------------------------------------

  app.get(
    '/api/machines',
    { schema: { tags: ['machines'], summary: 'Registered machines with their versions and record counts per status', response: ok({ type: 'array', items: S.machineSummary }) } },
    async () => {
      const totals = new Map<string, Record<RecordStatus, number>>();
      for (const c of await runtime.counts()) {
        const t = totals.get(c.machine) ?? { active: 0, done: 0, failed: 0, cancelled: 0 };
        t[c.status] += c.count;
        totals.set(c.machine, t);
      }
      return registry.names().map((name) => {
        const latest = registry.latest(name);
        return {
          name,
          version: latest.version,
          versions: versions.get(name) ?? [latest.version],
          queue: latest.queue,
          counts: totals.get(name) ?? { active: 0, done: 0, failed: 0, cancelled: 0 },
        };
      });
    },
  );

  app.get<{ Params: MachineParams; Querystring: { version?: number } }>(
    '/api/machines/:machine',
    {
      schema: {
        tags: ['machines'],
        summary: 'A machine with its state graph (states, nesting, parallel regions, transitions, delays, invokes) and SLA budgets per state (seconds)',
        params: S.machineParams,
        querystring: S.machineQuery,
      },
    },
    async (request) => {
      const { machine } = request.params;
      const def = request.query.version === undefined ? registry.latest(machine) : registry.get(machine, request.query.version);
      // SLA budgets in seconds, by state (the dashboard colours residency against them).
      const sla = Object.fromEntries(Object.entries(def.residency).flatMap(([state, r]) => (r.sla === undefined ? [] : [[state, parseDuration(r.sla) / 1000]])));
      return { name: machine, version: def.version, versions: versions.get(machine) ?? [def.version], queue: def.queue, sla, graph: machineGraph(def) };
    },
  );

  app.get<{ Params: MachineParams; Querystring: { since?: string } }>(
    '/api/machines/:machine/residency',
    {
      schema: {
        tags: ['machines'],
        summary: 'Residency per state: records there now, and p50/p95/p99/max of the stays that ended since `since` (seconds)',
        params: S.machineParams,
        querystring: S.residencyQuery,
        response: ok({ type: 'array', items: S.residencyRow }),
      },
    },
    async (request) => runtime.residency(request.params.machine, request.query.since ? { since: new Date(request.query.since) } : {}),
  );

  app.get<{ Params: MachineParams }>(
    '/api/machines/:machine/counts',
    {
      schema: { tags: ['machines'], summary: 'Records per state and status', params: S.machineParams, response: ok({ type: 'array', items: S.stateCount }) },
    },
    async (request) => runtime.counts({ machine: request.params.machine }),
  );

  // Records ------------------------------------------------------------------------------

  app.get<{
    Params: MachineParams;
    Querystring: { state?: string; status?: RecordStatus; limit?: number; after?: string; parentMachine?: string; parentId?: string };
  }>(
    '/api/machines/:machine/records',
    {
      schema: {
        tags: ['records'],
        summary: 'Records by id, a page at a time (pass `next` back as `after`)',
        params: S.machineParams,
        querystring: S.listQuery,
        response: ok(S.recordPage),
      },
    },
    async (request) => {
      const { parentMachine, parentId, ...rest } = request.query;
      if ((parentMachine === undefined) !== (parentId === undefined)) throw new InvalidArgumentError('parentMachine and parentId go together');
      return runtime.list(request.params.machine, parentMachine !== undefined && parentId !== undefined ? { ...rest, parent: { machine: parentMachine, id: parentId } } : rest);
    },
  );

  app.post<{ Params: MachineParams; Body: { id?: string; input?: unknown; uniqueKey?: string; priority?: number; runAt?: string } | undefined }>(
    '/api/machines/:machine/records',
    {
      schema: {
        tags: ['records'],
        summary: 'Creates a record and runs its initial transition',
        params: S.machineParams,
        body: S.createBody,
        response: ok({ $ref: 'Record#' }, 201),
      },
    },
    async (request, reply) => {
      const { runAt, ...rest } = request.body ?? {};
      const options: CreateOptions = { ...rest, ...(runAt === undefined ? {} : { runAt: new Date(runAt) }) };
      return reply.code(201).send(await runtime.create(request.params.machine, options));
    },
  );

  app.get<{ Params: RecordParams }>(
    '/api/machines/:machine/records/:id',
    { schema: { tags: ['records'], summary: 'A record', params: S.recordParams, response: ok({ $ref: 'Record#' }) } },
    async (request, reply) => {
      const { machine, id } = request.params;
      const record = await runtime.get(machine, id);
      if (record) return record;
      return reply.code(404).send({ error: { code: 'RECORD_NOT_FOUND', message: `machine "${machine}" has no record "${id}"` } });
    },
  );

  app.get<{ Params: RecordParams }>(
    '/api/machines/:machine/records/:id/history',
    {
      schema: { tags: ['records'], summary: "A record's transitions, oldest first", params: S.recordParams, response: ok({ type: 'array', items: S.historyEntry }) },
    },
    async (request) => runtime.history(request.params.machine, request.params.id),
  );

  app.post<{ Params: RecordParams; Body: DroverEvent }>(
    '/api/machines/:machine/records/:id/events',
    {
      schema: {
        tags: ['records'],
        summary: 'Stores an event for the record (the body is the event); 202 once stored',
        params: S.recordParams,
        body: S.eventBody,
        response: ok(S.okBody, 202),
      },
    },
    async (request, reply) => {
      await runtime.send(request.params.machine, request.params.id, request.body);
      return reply.code(202).send({ ok: true });
    },
  );

  app.post<{ Params: RecordParams; Body: { reason?: string } | undefined }>(
    '/api/machines/:machine/records/:id/cancel',
    {
      schema: {
        tags: ['records'],
        summary: 'Cancels an active record; `cancelled` is false if it had already finished',
        params: S.recordParams,
        body: S.cancelBody,
        response: ok({ type: 'object', properties: { cancelled: { type: 'boolean' } }, required: ['cancelled'] }),
      },
    },
    async (request) => ({ cancelled: await runtime.cancel(request.params.machine, request.params.id, request.body?.reason) }),
  );

  app.post<{ Params: RecordParams; Body: { skipEvent?: boolean } | undefined }>(
    '/api/machines/:machine/records/:id/retry',
    {
      schema: {
        tags: ['records'],
        summary: 'Retries a failed record (409 NOT_FAILED otherwise); resolves to the record after the retry',
        params: S.recordParams,
        body: S.retryBody,
        response: ok({ $ref: 'Record#' }),
      },
    },
    async (request) => runtime.retry(request.params.machine, request.params.id, request.body ?? {}),
  );

  // Workers and periodics ----------------------------------------------------------------

  app.get(
    '/api/workers',
    { schema: { tags: ['workers'], summary: "Every live node's workers and periodics, and stored flags", response: ok({ type: 'array', items: S.fleetWorker }) } },
    async () => supervisor.fleet(),
  );

  app.get<{ Params: { name: string }; Querystring: { limit?: number; before?: string; offset?: number } }>(
    '/api/workers/:name/runs',
    {
      schema: {
        tags: ['workers'],
        summary: 'Run records, newest first: keyset (`next` back as `before`) or offset pages',
        params: S.workerParams,
        querystring: S.runsQuery,
        response: ok({ type: 'object', properties: { items: { type: 'array', items: S.runRecord }, next: { type: ['string', 'null'] } }, required: ['items', 'next'] }),
      },
    },
    async (request) => supervisor.runs(request.params.name, request.query),
  );

  const flagResponse = ok({ type: 'object', properties: { name: { type: 'string' }, enabled: { type: 'boolean' } }, required: ['name', 'enabled'] });
  for (const op of ['enable', 'disable'] as const) {
    app.post<{ Params: { name: string } }>(
      `/api/workers/:name/${op}`,
      { schema: { tags: ['workers'], summary: `${op === 'enable' ? 'Enables' : 'Disables'} a worker or periodic on every node (stored)`, params: S.workerParams, response: flagResponse } },
      async (request) => {
        await supervisor[op](request.params.name);
        return { name: request.params.name, enabled: op === 'enable' };
      },
    );
  }

  // Start and stop reach every live node by default (through the stored command table, so a
  // server on a client runtime can do it too); `scope: 'node'` acts on this node's worker alone.
  const startStopResponse = ok(
    {
      type: 'object',
      properties: {
        name: { type: 'string' },
        scope: { type: 'string', enum: ['fleet', 'node'] },
        status: { type: 'string', description: "This node's worker status after the call (scope `node` only)." },
      },
      required: ['name', 'scope'],
    },
    200,
  );
  for (const op of ['start', 'stop'] as const) {
    app.post<{ Params: { name: string }; Body: { scope?: 'fleet' | 'node' } }>(
      `/api/workers/:name/${op}`,
      {
        schema: {
          tags: ['workers'],
          summary:
            op === 'start'
              ? "Starts a worker or periodic on every live node that registers it (scope `fleet`, within one control interval), or this node's (scope `node`: 404 if this node does not register it)"
              : "Stops a worker or periodic on every live node that registers it (scope `fleet`), or this node's once its handler returns (scope `node`)",
          params: S.workerParams,
          body: S.scopeBody,
          response: startStopResponse,
        },
      },
      async (request) => {
        const { name } = request.params;
        if (request.body.scope === 'node') {
          if (op === 'start') supervisor.start(name);
          else await supervisor.stop(name);
          return { name, scope: 'node', status: supervisor.status(name) };
        }
        await (op === 'start' ? supervisor.startEverywhere(name) : supervisor.stopEverywhere(name));
        return { name, scope: 'fleet' };
      },
    );
  }

  const tagResponse = ok({ type: 'object', properties: { tag: { type: 'string' }, paused: { type: 'boolean' } }, required: ['tag', 'paused'] });
  for (const op of ['pause', 'resume'] as const) {
    app.post<{ Params: { tag: string } }>(
      `/api/tags/:tag/${op}`,
      { schema: { tags: ['workers'], summary: `${op === 'pause' ? 'Pauses' : 'Resumes'} every periodic carrying the tag, on every node`, params: S.tagParams, response: tagResponse } },
      async (request) => {
        await supervisor[op](request.params.tag);
        return { tag: request.params.tag, paused: op === 'pause' };
      },
    );
  }

  // Nodes, parked transitions, events ----------------------------------------------------

  app.get('/api/nodes', { schema: { tags: ['nodes'], summary: 'Live nodes (recent heartbeat)', response: ok({ type: 'array', items: S.nodeInfo }) } }, async () =>
    runtime.nodes(),
  );

  app.get<{ Querystring: { limit?: number } }>(
    '/api/parked',
    {
      schema: {
        tags: ['nodes'],
        summary: 'Transitions the NATS relay parked (empty without NATS)',
        querystring: S.parkedQuery,
        response: ok({ type: 'object', properties: { count: { type: 'integer' }, items: { type: 'array', items: { type: 'object', additionalProperties: true } } }, required: ['count', 'items'] }),
      },
    },
    async (request) => runtime.parked(request.query),
  );

  app.get<{ Querystring: { machine?: string; state?: string; lastEventId?: string } }>(
    '/api/events',
    {
      schema: {
        tags: ['events'],
        summary: 'Server-Sent Events of committed transitions (`event: transition`, `id:` the history row id); resumable with Last-Event-ID',
        querystring: S.eventsQuery,
        produces: ['text/event-stream'],
      },
    },
    async (request, reply) => {
      await streams.open(request, reply, request.query);
      return reply;
    },
  );
}
