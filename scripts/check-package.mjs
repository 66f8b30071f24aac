// After `npm run build`: the package as a user gets it. Packs the tarball and checks what is
// in it (dist with its SQL, docs, README, LICENSE; every relative link of the README and the
// docs lands on a packed file; source maps carry their sources). Then installs the tarball
// into a scratch project from npm's cache, as a consumer would, and checks that: the install
// warns of no engine (EBADENGINE), a strict TypeScript consumer (skipLibCheck, as most have:
// PGlite's own .d.ts needs @types/emscripten) type-checks and sees pg's types without
// installing @types/pg itself, the `drover` bin refuses a .ts machine without tsx and loads
// it once tsx is installed, and a stack trace through the source maps names src/ lines.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const version = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
const problems = [];
const started = Date.now();
const work = mkdtempSync(join(tmpdir(), 'drover-package-'));

/** Runs a command; resolves to its exit code and output. */
function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', npm_config_update_notifier: 'false' } });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** npm install in the consumer, from the cache where it can: no audit, no engine warning. */
function install(specs, consumer) {
  const r = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...specs], consumer);
  if (r.code !== 0) throw new Error(`npm install ${specs.join(' ')} failed:\n${r.stderr}`);
  for (const line of r.stderr.split('\n')) if (/EBADENGINE\s+package/.test(line)) problems.push(`npm install warns: ${line.trim()}`);
}

try {
  // The tarball and its file list.
  const [pack] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  const files = new Set(pack.files.map((f) => f.path));
  for (const needed of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/db/migrations/001_core.sql', 'dist/dashboard/dashboard.js', 'dist/dashboard/dashboard.css', 'dist/dashboard/elk-worker.js', 'docs/README.md']) {
    if (!files.has(needed)) problems.push(`the tarball has no ${needed}`);
  }
  for (const f of files) if (/^(src|test|bench|examples)\//.test(f)) problems.push(`the tarball ships ${f}`);

  const tarball = join(work, pack.filename);
  const unpacked = join(work, 'unpacked');
  mkdirSync(unpacked);
  execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
  const pkg = join(unpacked, 'package');

  // Every relative link of the packed Markdown lands on a packed file.
  for (const md of [...files].filter((f) => f.endsWith('.md'))) {
    const text = readFileSync(join(pkg, md), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/i.test(target)) continue;
      const path = normalize(join(dirname(md), target)).replace(/\/$/, '');
      if (!files.has(path) && ![...files].some((f) => f.startsWith(`${path}/`))) problems.push(`${md} links to ${target}, which the package does not ship`);
    }
  }

  // Source maps carry their sources: src/ is not shipped.
  const maps = [...files].filter((f) => f.endsWith('.js.map'));
  if (maps.length === 0) problems.push('the tarball has no source maps');
  for (const map of maps) {
    const { sources, sourcesContent } = JSON.parse(readFileSync(join(pkg, map), 'utf8'));
    if (!sourcesContent || sourcesContent.length !== sources.length || sourcesContent.some((s) => typeof s !== 'string')) {
      problems.push(`${map} does not embed its sources (inlineSources)`);
    }
  }

  // A consumer project: the tarball, and @types/node as a TypeScript user has it. Not @types/pg.
  const consumer = join(work, 'consumer');
  mkdirSync(join(consumer, 'machines'), { recursive: true });
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // xstate as the consumer's own dependency too (it writes the machines), as drover's README says.
  install([tarball, `@types/node@${version('@types/node')}`, `xstate@${version('xstate')}`], consumer);

  writeFileSync(
    join(consumer, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: true, types: ['node'] }, include: ['*.ts', 'machines'] }),
  );
  writeFileSync(
    join(consumer, 'app.ts'),
    `import { setup } from 'xstate';
import { createRuntime, durable, MachinesLoadError, type RuntimeOptions } from 'drover';

const lamp = durable(setup({}).createMachine({ id: 'lamp', initial: 'off', states: { off: { on: { flip: 'on' } }, on: {} } }));
const options: RuntimeOptions = { database: 'postgres://localhost/app', machines: [lamp] };
// Refused only while pg's types resolve: without @types/pg, pg.Pool is any and so is database.
// @ts-expect-error a number is not a connection string, a pg.Pool or a PGlite
const wrong: RuntimeOptions = { database: 42 };
export { wrong };
export async function main(): Promise<string> {
  const runtime = await createRuntime(options).catch((err: unknown) => {
    if (err instanceof MachinesLoadError) console.error(err.reason, err.file);
    throw err;
  });
  return runtime.schema;
}
`,
  );
  writeFileSync(
    join(consumer, 'machines', 'lamp.ts'),
    `import { setup } from 'xstate';
import { durable } from 'drover';

export const lamp = durable(setup({}).createMachine({ id: 'lamp', initial: 'off', states: { off: { on: { flip: 'on' } }, on: {} } }));
`,
  );
  const tsc = run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], consumer);
  if (tsc.code !== 0) problems.push(`a strict consumer does not type-check:\n${tsc.stdout}${tsc.stderr}`);

  // The bin on a .ts machine under plain node: refused with the options, then loaded through tsx.
  const bin = join(consumer, 'node_modules', 'drover', 'dist', 'cli', 'main.js');
  const refused = run(process.execPath, [bin, '--machines', 'machines', 'export', 'lamp'], consumer);
  if (refused.code !== 2 || !refused.stderr.includes('no TypeScript loader')) {
    problems.push(`drover export on a .ts machine without tsx: exit ${refused.code}, ${refused.stderr || refused.stdout}`);
  }
  install([`tsx@${version('tsx')}`], consumer);
  const loaded = run(process.execPath, [bin, '--machines', 'machines', 'export', 'lamp'], consumer);
  if (loaded.code !== 0 || !loaded.stdout.includes('createMachine(')) {
    problems.push(`drover export on a .ts machine with tsx installed: exit ${loaded.code}, ${loaded.stderr}`);
  }

  // A stack trace through the shipped source maps points at src/ lines.
  const trace = run(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', "import('drover').then((d) => d.parseDuration('soon'))"], consumer);
  if (!/src\/time\.ts:\d+/.test(trace.stderr)) problems.push(`a stack trace does not name src/time.ts lines:\n${trace.stderr}`);

  const kb = (n) => `${Math.round(n / 1024)} kB`;
  console.log(`package: ${pack.filename}, ${kb(pack.size)} packed, ${kb(pack.unpackedSize)} unpacked, ${pack.entryCount} files; checked in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (problems.length > 0) {
  console.error(`the package has ${problems.length} problem(s):\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
