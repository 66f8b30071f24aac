// Bundles the dashboard's client (src/dashboard/) with esbuild: one ES module and one
// stylesheet, no CDN. `npm run build` writes them to dist/dashboard/; a server running from
// src/ (tests, tsx) calls bundleDashboard() in memory on its first page request instead.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The bundle as strings: `{ js, css, worker }` (worker: elkjs's layout worker, as it ships). */
export async function bundleDashboard({ minify = true } = {}) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['src/dashboard/main.tsx'],
    bundle: true,
    write: false,
    outdir: 'out',
    format: 'esm',
    target: ['chrome110', 'firefox115', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify,
    legalComments: 'none',
    logLevel: 'silent',
    tsconfig: 'src/dashboard/tsconfig.json',
  });
  const text = (ext) => result.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? '';
  // The layout runs in a Web Worker (the page stays responsive while a big machine is laid
  // out); elkjs ships the worker already built.
  const worker = await readFile(createRequire(import.meta.url).resolve('elkjs/lib/elk-worker.min.js'), 'utf8');
  return { js: text('.js'), css: text('.css'), worker };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const { js, css, worker } = await bundleDashboard();
  const out = new URL('../dist/dashboard/', import.meta.url);
  await mkdir(out, { recursive: true });
  await writeFile(new URL('dashboard.js', out), js);
  await writeFile(new URL('dashboard.css', out), css);
  await writeFile(new URL('elk-worker.js', out), worker);
  const kib = (text) => `${(text.length / 1024).toFixed(0)} KiB`;
  console.log(`dashboard: dist/dashboard/dashboard.js ${kib(js)}, dashboard.css ${kib(css)}, elk-worker.js ${kib(worker)} in ${Math.round(Date.now() - started)} ms`);
}
