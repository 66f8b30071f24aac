import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { InvalidArgumentError } from '../errors.js';
import { optionKeys, rejectUnknownKeys } from '../keys.js';
import { type Logger, silentLogger } from '../log.js';
import { accessOf } from '../runtime/access.js';
import type { Runtime } from '../runtime/types.js';
import { cookieValue, registerDashboard, TOKEN_COOKIE } from './dashboard.js';
import { errorResponse, errorSchema, sendError } from './errors.js';
import { EventStreams } from './events.js';
import { registerRoutes } from './routes.js';
import { recordView } from './schemas.js';

/** Options of `runtime.serve()`. */
export interface ServeOptions {
  /** The port. Default 7070; 0 picks a free one (read it from `server.port`). */
  port?: number;
  /** The address to bind. Default `127.0.0.1`. Any address other than loopback requires `token`. */
  host?: string;
  /**
   * A bearer token: required off loopback, checked (in constant time) on every `/api/` request
   * when set. The event stream also accepts it from the `drover_token` cookie (the dashboard's
   * EventSource cannot send headers); the dashboard page and its assets need none.
   */
  token?: string;
  /** Origins allowed to call the API from a browser (CORS); none by default. `'*'` allows any. */
  cors?: { origin: string | readonly string[] };
}

/** A running HTTP API, as `runtime.serve()` resolves it. */
export interface HttpServer {
  /** The base URL, e.g. `http://127.0.0.1:7070`. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Ends open event streams and stops listening; resolves once the server is closed. */
  close(): Promise<void>;
}

const SERVE_KEYS = optionKeys<ServeOptions>()(['port', 'host', 'token', 'cors']);
const DEFAULT_PORT = 7070;

/** Whether an address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

function checkOptions(options: ServeOptions): { port: number; host: string; token: Buffer | null; origins: string[] } {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new InvalidArgumentError('serve(): options must be an object');
  rejectUnknownKeys(options, SERVE_KEYS, 'serve()');
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`serve(): port must be an integer from 0 to 65535 (got ${String(port)})`);
  const host = options.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host.length === 0) throw new InvalidArgumentError('serve(): host must be a non-empty string');
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token.length < 1)) {
    throw new InvalidArgumentError('serve(): token must be a non-empty string');
  }
  if (!isLoopback(host) && options.token === undefined) {
    throw new InvalidArgumentError(`serve(): binding ${host} exposes the API beyond this machine; pass a \`token\` (clients send Authorization: Bearer <token>) or bind 127.0.0.1`);
  }
  let origins: string[] = [];
  if (options.cors !== undefined) {
    rejectUnknownKeys(options.cors, ['origin'], 'serve(): cors');
    const origin = options.cors?.origin;
    origins = typeof origin === 'string' ? [origin] : Array.isArray(origin) ? [...(origin as string[])] : [];
    if (origins.length === 0 || origins.some((o) => typeof o !== 'string' || o.length === 0)) {
      throw new InvalidArgumentError('serve(): cors.origin must be an origin (`https://ops.example.com`), `*`, or a list of origins');
    }
  }
  return { port, host, token: options.token === undefined ? null : digest(options.token), origins };
}

/**
 * Serves the HTTP API of a runtime (JSON under `/api/`, the OpenAPI document at
 * `/api/openapi.json`, Server-Sent Events at `/api/events`). `runtime.serve()` calls it and
 * closes the server on `stop()`; the CLI's `drover serve` too.
 *
 * @example const server = await serveHttp(drover, { port: 0 }); console.log(server.url);
 */
export async function serveHttp(runtime: Runtime, options: ServeOptions = {}, internal: { logger?: Logger } = {}): Promise<HttpServer> {
  const { port, host, token, origins } = checkOptions(options);
  const access = accessOf(runtime);
  const logger = internal.logger ?? silentLogger;
  const app = Fastify({
    logger: false,
    // Unknown fields are refused (400 with their path), not silently dropped; every issue is reported.
    ajv: { customOptions: { removeAdditional: false, allErrors: true } },
  });
  const streams = new EventStreams(access, logger);

  app.setErrorHandler((err, request, reply) => {
    const { status, body } = errorResponse(err, logger, request);
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));

  if (origins.length > 0) {
    const any = origins.includes('*');
    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      const origin = request.headers.origin;
      if (typeof origin !== 'string' || !(any || origins.includes(origin))) return;
      reply.header('access-control-allow-origin', any ? '*' : origin);
      if (!any) reply.header('vary', 'Origin');
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
        // A preflight carries no credentials: answered before the token check.
        return reply
          .code(204)
          .header('access-control-allow-methods', 'GET, POST, OPTIONS')
          .header('access-control-allow-headers', 'Authorization, Content-Type, Last-Event-ID')
          .header('access-control-max-age', '600')
          .send();
      }
    });
  }
  if (token !== null) {
    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      if (reply.sent || !request.url.startsWith('/api')) return;
      const header = request.headers.authorization;
      let given = typeof header === 'string' && /^Bearer /i.test(header) ? header.slice(7).trim() : null;
      // EventSource cannot send headers: the event stream (a GET that changes nothing) also
      // takes the token from the dashboard's cookie. No other route does, so no cross-site
      // form can act with it.
      if (given === null && request.method === 'GET' && request.url.split('?')[0] === '/api/events') given = cookieValue(request.headers.cookie, TOKEN_COOKIE);
      // Digests of equal length, compared in constant time: neither the token nor its length leaks.
      if (given === null || !timingSafeEqual(digest(given), token)) {
        return sendError(reply.header('www-authenticate', 'Bearer'), 401, 'UNAUTHORIZED', 'a valid `Authorization: Bearer <token>` header is required');
      }
    });
  }
  // A POST without a body (`curl -X POST …/cancel`) is an empty object: optional bodies stay optional.
  app.addHook('preValidation', async (request) => {
    if (request.method === 'POST' && request.body === undefined) request.body = {};
  });
  app.addHook('preClose', async () => streams.closeAll());

  app.addSchema(errorSchema);
  app.addSchema(recordView);
  await app.register(swagger, {
    // Shared schemas keep their $id as the component name (`Record`, `HttpError`).
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    openapi: {
      openapi: '3.1.0',
      info: { title: 'drover HTTP API', version: '1', description: 'Machines, records, workers and periodics of a drover runtime. See docs/http.md.' },
      components: token === null ? {} : { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(token === null ? {} : { security: [{ bearer: [] }] }),
    },
  });
  registerRoutes(app, runtime, access, streams);
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The dashboard: its page at `/` and at each of its views' URLs, its bundle under /assets/.
  registerDashboard(app);

  await app.listen({ port, host });
  const address = app.server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' || host.includes(':') ? `[${host.replace(/^\[|\]$/g, '')}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    host,
    close: () => (closing ??= app.close()),
  };
}
