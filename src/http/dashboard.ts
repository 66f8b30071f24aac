import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply } from 'fastify';

// The dashboard: a small client (src/dashboard/, Preact) of the HTTP API, served by the same
// server. `npm run build` bundles it into dist/dashboard/; running from src/ (tests, tsx) the
// server bundles it in memory with esbuild (a devDependency) on the first page request.

/** The page's own URLs: each reloads and can be shared (the client routes them). */
export const DASHBOARD_PATHS = ['/', '/machines/:machine', '/machines/:machine/records/:id', '/workers', '/nodes'] as const;

/** The cookie the dashboard sets for its event stream (EventSource cannot send headers). */
export const TOKEN_COOKIE = 'drover_token';

interface Asset {
  body: string;
  /** The body gzipped once (elkjs's layout worker is 1.6 MB, ~450 kB gzipped). */
  gzip: Buffer;
  type: string;
  etag: string;
}

const FROM_SOURCE = import.meta.url.endsWith('.ts');
let loading: Promise<Map<string, Asset>> | undefined;

const asset = (body: string, type: string): Asset => ({
  body,
  gzip: gzipSync(body),
  type,
  etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
});

type Bundle = { js: string; css: string; worker: string };

async function bundle(): Promise<Bundle> {
  if (FROM_SOURCE) {
    // A computed URL: the build script is repository tooling, not part of the package.
    const script = new URL('../../scripts/build-dashboard.mjs', import.meta.url).href;
    const { bundleDashboard } = (await import(script)) as { bundleDashboard: (o?: { minify?: boolean }) => Promise<Bundle> };
    return bundleDashboard();
  }
  const dir = new URL('../dashboard/', import.meta.url);
  const [js, css, worker] = await Promise.all(['dashboard.js', 'dashboard.css', 'elk-worker.js'].map((f) => readFile(new URL(f, dir), 'utf8')));
  return { js: js as string, css: css as string, worker: worker as string };
}

/** The bundle, loaded (or built) once per process; a failure is retried on the next request. */
function assets(): Promise<Map<string, Asset>> {
  loading ??= bundle().then(
    ({ js, css, worker }) =>
      new Map([
        ['/assets/dashboard.js', asset(js, 'text/javascript; charset=utf-8')],
        ['/assets/dashboard.css', asset(css, 'text/css; charset=utf-8')],
        ['/assets/elk-worker.js', asset(worker, 'text/javascript; charset=utf-8')],
      ]),
    (err: unknown) => {
      loading = undefined;
      throw err;
    },
  );
  return loading;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>drover</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script type="module" src="/assets/dashboard.js"></script>
</head>
<body>
<div id="app"><p>Loading the drover dashboard…</p></div>
<noscript>The drover dashboard needs JavaScript; the API is under <a href="/api/openapi.json">/api/</a>.</noscript>
</body>
</html>
`;

/** Headers of every dashboard response: same-origin scripts only, no framing, no referrer (a `?token=` URL must not leak). */
function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer');
}

/** Registers the dashboard's page (at every path of {@link DASHBOARD_PATHS}) and its assets. */
export function registerDashboard(app: FastifyInstance): void {
  for (const path of DASHBOARD_PATHS) {
    app.get(path, { schema: { hide: true } }, async (_request, reply) =>
      secure(reply).type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(PAGE),
    );
  }
  for (const path of ['/assets/dashboard.js', '/assets/dashboard.css', '/assets/elk-worker.js']) {
    app.get(path, { schema: { hide: true } }, async (request, reply) => {
      const file = (await assets()).get(path) as Asset;
      secure(reply).header('etag', file.etag).header('cache-control', 'no-cache').header('vary', 'accept-encoding');
      if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
      if (/\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) return reply.type(file.type).header('content-encoding', 'gzip').send(file.gzip);
      return reply.type(file.type).send(file.body);
    });
  }
}

/** The value of one cookie of a `Cookie` header, decoded; null when absent or malformed. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return null;
    }
  }
  return null;
}
