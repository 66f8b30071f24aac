// JSON schemas of the HTTP API: fastify validates requests with them (its ajv) and
// @fastify/swagger builds /api/openapi.json from them, so the checks and the document agree.

const STATUSES = ['active', 'done', 'failed', 'cancelled'] as const;

/** Record ids, machine, worker names and tags in a path: non-empty, bounded. */
const name = { type: 'string', minLength: 1, maxLength: 1000 } as const;
const dateTime = { type: 'string', format: 'date-time' } as const;
const nullableDateTime = { type: ['string', 'null'], format: 'date-time' } as const;
const freeObject = { type: 'object', additionalProperties: true } as const;
const errorObject = {
  type: ['object', 'null'],
  properties: { name: { type: 'string' }, message: { type: 'string' }, stack: { type: 'string' } },
} as const;

export const machineParams = {
  type: 'object',
  properties: { machine: name },
  required: ['machine'],
} as const;

export const recordParams = {
  type: 'object',
  properties: { machine: name, id: name },
  required: ['machine', 'id'],
} as const;

export const workerParams = { type: 'object', properties: { name }, required: ['name'] } as const;
export const tagParams = { type: 'object', properties: { tag: name }, required: ['tag'] } as const;

export const recordView = {
  $id: 'Record',
  type: 'object',
  properties: {
    id: { type: 'string' },
    machine: { type: 'string' },
    version: { type: 'integer' },
    state: { type: 'string', description: 'The state string: `b.x`, or `p.l.l1,p.r.r1` for parallel regions.' },
    value: { description: "XState's state value: a string or an object." },
    context: freeObject,
    status: { type: 'string', enum: STATUSES },
    enteredAt: dateTime,
    wakeAt: nullableDateTime,
    attempt: { type: 'integer' },
    error: errorObject,
    parent: {
      type: 'object',
      description: 'For a child record: its parent record and its key there (the invoke or spawn id).',
      properties: { machine: { type: 'string' }, id: { type: 'string' }, key: { type: 'string' } },
      required: ['machine', 'id', 'key'],
    },
  },
  required: ['id', 'machine', 'version', 'state', 'value', 'context', 'status', 'enteredAt', 'wakeAt', 'attempt', 'error'],
} as const;

export const recordPage = {
  type: 'object',
  properties: {
    items: { type: 'array', items: { $ref: 'Record#' } },
    next: { type: ['string', 'null'], description: 'Pass back as `after` for the next page; null on the last page.' },
  },
  required: ['items', 'next'],
} as const;

export const historyEntry = {
  type: 'object',
  properties: {
    from: { type: ['string', 'null'] },
    to: { type: 'string' },
    event: freeObject,
    at: dateTime,
    status: { type: 'string', enum: STATUSES },
    error: errorObject,
    kind: {
      type: 'string',
      enum: ['sent', 'received', 'spawned', 'emitted'],
      description: 'Absent for a change of state or status: an event sent to or received from another record, a child record started, an event emitted.',
    },
    peer: { type: 'object', properties: { machine: { type: 'string' }, id: { type: 'string' } }, required: ['machine', 'id'] },
  },
  required: ['from', 'to', 'event', 'at', 'status'],
} as const;

export const listQuery = {
  type: 'object',
  properties: {
    state: { ...name, description: 'Matches like `snapshot.matches()`: the state or any state below it.' },
    status: { type: 'string', enum: STATUSES },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
    after: { ...name, description: 'The `next` of the previous page.' },
    parentMachine: { ...name, description: 'With parentId: only the child records of that record.' },
    parentId: { ...name, description: 'With parentMachine: only the child records of that record.' },
  },
  additionalProperties: false,
} as const;

export const createBody = {
  type: 'object',
  properties: {
    id: { ...name, description: 'Default: a random UUID.' },
    input: { description: 'The machine input (any JSON).' },
    uniqueKey: name,
    priority: { type: 'integer' },
    runAt: { ...dateTime, description: 'When the first work starts. Default: now.' },
  },
  additionalProperties: false,
} as const;

export const eventBody = {
  type: 'object',
  properties: { type: { type: 'string', minLength: 1 } },
  required: ['type'],
  additionalProperties: true,
} as const;

export const cancelBody = {
  type: 'object',
  properties: { reason: { type: 'string', maxLength: 10_000 } },
  additionalProperties: false,
} as const;

export const retryBody = {
  type: 'object',
  properties: { skipEvent: { type: 'boolean' } },
  additionalProperties: false,
} as const;

export const scopeBody = {
  type: 'object',
  properties: { scope: { type: 'string', enum: ['fleet', 'node'], default: 'fleet', description: '`fleet`: every live node; `node`: this one.' } },
  additionalProperties: false,
} as const;

export const machineQuery = {
  type: 'object',
  properties: { version: { type: 'integer', minimum: 1 } },
  additionalProperties: false,
} as const;

export const residencyQuery = {
  type: 'object',
  properties: { since: { ...dateTime, description: 'Stays that ended since then. Default: 24 hours ago.' } },
  additionalProperties: false,
} as const;

export const runsQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
    before: { type: 'string', pattern: '^[0-9]{1,19}$', description: 'The `next` of the previous page (keyset).' },
    offset: { type: 'integer', minimum: 0, description: 'Runs to skip (numbered pages).' },
  },
  additionalProperties: false,
} as const;

export const parkedQuery = {
  type: 'object',
  properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
  additionalProperties: false,
} as const;

export const eventsQuery = {
  type: 'object',
  properties: {
    machine: name,
    state: { ...name, description: 'Target state: itself or any state below it (a parallel leaf included).' },
    lastEventId: { type: 'string', pattern: '^[0-9]{1,19}$', description: 'Like the `Last-Event-ID` header, for clients that cannot set it.' },
  },
  additionalProperties: false,
} as const;

export const machineSummary = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'integer', description: 'The newest version: what create starts.' },
    versions: { type: 'array', items: { type: 'integer' } },
    queue: { type: 'string' },
    counts: {
      type: 'object',
      properties: Object.fromEntries(STATUSES.map((s) => [s, { type: 'integer' }])),
      required: [...STATUSES],
    },
  },
  required: ['name', 'version', 'versions', 'queue', 'counts'],
} as const;

export const stateCount = {
  type: 'object',
  properties: {
    machine: { type: 'string' },
    state: { type: 'string' },
    status: { type: 'string', enum: STATUSES },
    count: { type: 'integer' },
    oldestEnteredAt: dateTime,
  },
  required: ['machine', 'state', 'status', 'count', 'oldestEnteredAt'],
} as const;

export const residencyRow = {
  type: 'object',
  properties: {
    state: { type: 'string' },
    count: { type: 'integer' },
    stays: { type: 'integer' },
    p50: { type: ['number', 'null'] },
    p95: { type: ['number', 'null'] },
    p99: { type: ['number', 'null'] },
    max: { type: ['number', 'null'] },
  },
  required: ['state', 'count', 'stays', 'p50', 'p95', 'p99', 'max'],
} as const;

export const nodeInfo = {
  type: 'object',
  properties: { id: { type: 'string' }, host: { type: 'string' }, pid: { type: 'integer' }, startedAt: dateTime, lastSeen: dateTime },
  required: ['id', 'host', 'pid', 'startedAt', 'lastSeen'],
} as const;

export const runRecord = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    worker: { type: 'string' },
    kind: { type: 'string', enum: ['tick', 'call'] },
    scheduledFor: dateTime,
    startedAt: dateTime,
    finishedAt: nullableDateTime,
    status: { type: 'string', enum: ['running', 'succeeded', 'failed', 'skipped'] },
    attempt: { type: 'integer' },
    debug: { type: ['string', 'null'] },
    error: errorObject,
    node: { type: 'string' },
  },
  required: ['id', 'worker', 'kind', 'scheduledFor', 'startedAt', 'finishedAt', 'status', 'attempt', 'debug', 'error', 'node'],
} as const;

export const fleetWorker = {
  type: 'object',
  description: 'A worker or periodic across every live node (`supervisor.fleet()`).',
  properties: {
    name: { type: 'string' },
    kind: { type: 'string', enum: ['worker', 'periodic'] },
    enabled: { type: 'boolean' },
    status: { type: 'string', enum: ['running', 'stopped', 'crashed', 'disabled'] },
    schedule: { type: ['string', 'null'] },
    tags: { type: 'array', items: { type: 'string' } },
    nextRun: nullableDateTime,
    nodes: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          node: { type: 'string' },
          status: { type: 'string' },
          panics: { type: 'integer' },
          lastMetric: { type: ['object', 'null'], additionalProperties: true },
        },
      },
    },
    lastRun: { anyOf: [runRecord, { type: 'null' }] },
  },
  required: ['name', 'kind', 'enabled', 'status', 'schedule', 'tags', 'nextRun', 'nodes', 'lastRun'],
} as const;

export const okBody = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } as const;
