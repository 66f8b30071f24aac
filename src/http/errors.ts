import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DroverError, InvalidInputError } from '../errors.js';
import type { Logger } from '../log.js';

/** One problem with a request: where (a JSON pointer from the request part) and what. */
export interface HttpIssue {
  path: string;
  message: string;
}

/** The body of every error response. */
export interface HttpErrorBody {
  error: { code: string; message: string; issues?: HttpIssue[] };
}

/**
 * The HTTP status of each typed error code. `EVENT_NOT_ACCEPTED` is a 409: the request is
 * well formed, but the record's current state conflicts with it (another state, or finished).
 */
export const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  INVALID_INPUT: 400,
  UNSTORABLE_VALUE: 400,
  UNMAPPED_STATES: 400,
  EVENT_NOT_ACCEPTED: 409,
  UNKNOWN_MACHINE: 404,
  UNKNOWN_VERSION: 404,
  RECORD_NOT_FOUND: 404,
  WORKER_NOT_FOUND: 404,
  DUPLICATE_RECORD: 409,
  DUPLICATE_WORKER: 409,
  NOT_FAILED: 409,
  MACHINE_CHANGED: 409,
  SNAPSHOT_RESTORE: 409,
  DATABASE_UNAVAILABLE: 503,
  RUNTIME_STOPPED: 503,
};

/** The JSON schema of an error response, shared by every route's OpenAPI entry. */
export const errorSchema = {
  $id: 'HttpError',
  type: 'object',
  description: 'An error: a stable `code`, a message, and for validation errors the issues with their paths.',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        issues: {
          type: 'array',
          items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } }, required: ['path', 'message'] },
        },
      },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

/** The response schemas every route shares for its errors. */
export const errorResponses = { '4xx': { $ref: 'HttpError#' }, '5xx': { $ref: 'HttpError#' } } as const;

interface AjvErrorLike {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Fastify's validation errors as issues with JSON-pointer paths from the request part: `/body/input/order_id`. */
function validationIssues(error: FastifyError): HttpIssue[] {
  const part = error.validationContext === 'querystring' ? 'query' : (error.validationContext ?? 'body');
  return ((error.validation ?? []) as AjvErrorLike[]).map((v) => {
    let path = `/${part}${v.instancePath ?? ''}`;
    const p = v.params ?? {};
    if (v.keyword === 'required' && typeof p.missingProperty === 'string') path += `/${p.missingProperty}`;
    if (v.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
      return { path: `${path}/${p.additionalProperty}`, message: 'is not a known field' };
    }
    return { path, message: v.message ?? 'is invalid' };
  });
}

/** A typed error's issues (bad machine input) as request paths: `/body/input/<path>`. */
function inputIssues(err: InvalidInputError): HttpIssue[] {
  return err.issues.map((i) => ({ path: ['/body/input', ...i.path.map(String)].join('/'), message: i.message }));
}

/** The status and body for anything a route threw. */
export function errorResponse(err: unknown, logger: Logger, request: FastifyRequest): { status: number; body: HttpErrorBody } {
  if (err instanceof DroverError) {
    const status = STATUS_OF_CODE[err.code];
    if (status !== undefined) {
      const body: HttpErrorBody = { error: { code: err.code, message: err.message } };
      if (err instanceof InvalidInputError) body.error.issues = inputIssues(err);
      if (status >= 500) logger.warn({ code: err.code, method: request.method, url: request.url }, 'drover http: unavailable');
      return { status, body };
    }
  }
  const fe = err as Partial<FastifyError>;
  if (Array.isArray(fe.validation)) {
    const issues = validationIssues(err as FastifyError);
    const list = issues.map((i) => `${i.path} ${i.message}`).join('; ');
    return { status: 400, body: { error: { code: 'INVALID_REQUEST', message: `the request is invalid: ${list}`, issues } } };
  }
  // Fastify's own client errors: bad JSON, an unsupported content type, a body too large.
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, body: { error: { code: 'BAD_REQUEST', message: String(fe.message) } } };
  }
  logger.error(
    { err: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined, method: request.method, url: request.url },
    'drover http: request failed',
  );
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error; see the server log' } } };
}

/** Sends an error response. */
export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } } satisfies HttpErrorBody);
}
