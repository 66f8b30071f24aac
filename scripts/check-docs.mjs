#!/usr/bin/env node
// Compiles every ```ts / ```typescript / ```js code block of README.md and docs/*.md (or of the
// markdown files named on the command line) against the repository's own source, in one
// TypeScript program, and prints each error as file:line:column of the markdown. Exit 1 on any.
//
// The convention (docs/README.md, "Snippets that check"):
// - 'drover' and 'drover/testing' resolve to src/index.ts and src/testing/index.ts; relative
//   imports resolve from the repository root (`./machines/order.js` is machines/order.ts).
// - Each block is its own ES module (top-level await works). Every export of 'drover' and of
//   scripts/docs-prelude.ts (`drover`, `order`, `runtime`, …) is in scope unless the block
//   declares or imports that name itself.
// - An HTML comment right before a block (blank lines between are fine) changes it:
//     <!-- check: skip (why this is not code) -->       not compiled; the reason is required
//     <!-- check: prelude declare const t: number; -->   code put before the block (several lines fine)
//     <!-- check: at machines/ticket.ts -->              the block is that file: other blocks import it
// - TypeScript blocks are type-checked with tsconfig.json's compiler options (strict);
//   JavaScript blocks are checked for syntax only. Other fences (sh, json, sql, text) are not read.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();

const TS = new Set(['ts', 'typescript', 'mts']);
const JS = new Set(['js', 'javascript', 'mjs']);

/** A problem in a markdown file, before or after compiling. */
const problems = [];
const problem = (file, line, col, message) => problems.push({ file, line, col, message });

// --- reading the markdown --------------------------------------------------------------------

const args = process.argv.slice(2);
const files = args.length > 0 ? args.map((f) => path.resolve(f)) : defaultFiles();

function defaultFiles() {
  const docs = readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join(root, 'docs', f));
  return [path.join(root, 'README.md'), ...docs];
}

/** The path to print: relative to the working directory, as editors and CI logs link it. */
const shown = (file) => path.relative(process.cwd(), file) || file;

/**
 * The code blocks of one markdown file, with what the check comments before each say.
 * @returns {{ file: string, lang: 'ts' | 'js', fence: number, indent: number, lines: string[], prelude: { line: number, text: string }[], skip: string | null, at: string | null }[]}
 */
function blocksOf(file) {
  const text = readFileSync(file, 'utf8').split(/\r?\n/);
  const blocks = [];
  let pending = null; // the check comments read since the last block: { line, skip, prelude, at }
  const dangling = () => {
    if (pending) problem(file, pending.line, 1, 'this check comment is not followed by a ```ts or ```js block');
    pending = null;
  };
  for (let i = 0; i < text.length; i++) {
    const line = text[i];
    if (/^\s*<!--\s*check:/.test(line)) {
      const start = i;
      let body = line.slice(line.indexOf('check:') + 'check:'.length);
      while (!body.includes('-->') && i + 1 < text.length) body += '\n' + text[++i];
      if (!body.includes('-->')) {
        problem(file, start + 1, 1, 'unterminated check comment (no "-->")');
        break;
      }
      pending ??= { line: start + 1, skip: null, prelude: [], at: null };
      readDirective(file, start + 1, body.slice(0, body.indexOf('-->')), pending);
      continue;
    }
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(line);
    if (!open) {
      if (line.trim() !== '') dangling();
      continue;
    }
    const [, indent, marker, info] = open;
    const lang = info.toLowerCase();
    const fence = i + 1;
    const lines = [];
    const close = new RegExp(`^\\s*${marker[0] === '`' ? '`' : '~'}{${marker.length},}\\s*$`);
    for (i++; i < text.length && !close.test(text[i]); i++) {
      // Inside a list item the block is indented; the code starts at the fence's column.
      const l = text[i];
      const lead = /^ */.exec(l)[0].length;
      lines.push(l.slice(Math.min(lead, indent.length)));
    }
    const kind = TS.has(lang) ? 'ts' : JS.has(lang) ? 'js' : null;
    if (!kind) {
      dangling();
      continue;
    }
    blocks.push({ file, lang: kind, fence, indent: indent.length, lines, prelude: [], skip: null, at: null, ...pending });
    pending = null;
  }
  dangling();
  return blocks;
}

/** Reads one check comment's body into the directives of the block that follows. */
function readDirective(file, line, body, into) {
  const m = /^\s*(\w+)([\s\S]*)$/.exec(body);
  const kind = m?.[1];
  if (kind === 'skip') {
    const reason = /^\s*\(([\s\S]*\S[\s\S]*)\)\s*$/.exec(m[2])?.[1]?.replace(/\s+/g, ' ').trim();
    if (!reason) problem(file, line, 1, 'a skip needs its reason: <!-- check: skip (why this block is not code) -->');
    into.skip = reason ?? 'no reason given';
  } else if (kind === 'prelude') {
    // The prelude's lines keep their markdown line numbers, so its errors point into the comment.
    const lines = m[2].replace(/^[ \t]*/, '').split('\n');
    into.prelude.push(...lines.map((text, k) => ({ line: line + k, text })));
  } else if (kind === 'at') {
    const at = m[2].trim();
    if (!/^[\w./-]+\.(ts|mts|js|mjs)$/.test(at) || at.startsWith('/') || at.split('/').includes('..')) {
      problem(file, line, 1, `"check: at" takes a file path inside the repository, like test/order.test.ts (got "${at}")`);
    } else into.at = at;
  } else {
    problem(file, line, 1, `unknown check comment "${kind ?? ''}": use skip (reason), prelude <code> or at <path>`);
  }
}

// --- names in scope ----------------------------------------------------------------------------

/** The names a module exports, read from its syntax (src/index.ts is re-exports only). */
function exportedNames(file) {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names = new Set();
  for (const s of sf.statements) {
    if (ts.isExportDeclaration(s)) {
      if (!s.exportClause) throw new Error(`${shown(file)}: "export *" is not supported by check-docs; name the exports`);
      if (ts.isNamedExports(s.exportClause)) for (const e of s.exportClause.elements) names.add(e.name.text);
      else names.add(s.exportClause.name.text);
    } else if (ts.getCombinedModifierFlags(s) & ts.ModifierFlags.Export) {
      for (const n of declaredBy(s)) names.add(n);
    }
  }
  return names;
}

/** The top-level names a statement declares. */
function declaredBy(s) {
  const out = [];
  const binding = (b) => {
    if (ts.isIdentifier(b)) out.push(b.text);
    else for (const e of b.elements) if (!ts.isOmittedExpression(e)) binding(e.name);
  };
  if (ts.isImportDeclaration(s) && s.importClause) {
    const c = s.importClause;
    if (c.name) out.push(c.name.text);
    if (c.namedBindings && ts.isNamespaceImport(c.namedBindings)) out.push(c.namedBindings.name.text);
    else if (c.namedBindings) for (const e of c.namedBindings.elements) out.push(e.name.text);
  } else if (ts.isImportEqualsDeclaration(s)) out.push(s.name.text);
  else if (ts.isVariableStatement(s)) for (const d of s.declarationList.declarations) binding(d.name);
  else if (
    (ts.isFunctionDeclaration(s) ||
      ts.isClassDeclaration(s) ||
      ts.isInterfaceDeclaration(s) ||
      ts.isTypeAliasDeclaration(s) ||
      ts.isEnumDeclaration(s) ||
      ts.isModuleDeclaration(s)) &&
    s.name &&
    ts.isIdentifier(s.name)
  )
    out.push(s.name.text);
  return out;
}

const preludeFile = path.join(root, 'scripts', 'docs-prelude.ts');
const scope = [
  { from: preludeFile, names: exportedNames(preludeFile) },
  { from: 'drover', names: exportedNames(path.join(root, 'src', 'index.ts')) },
];

// --- one program for every block ---------------------------------------------------------------

const blocks = files.flatMap((f) => {
  try {
    return blocksOf(f);
  } catch (e) {
    problem(f, 1, 1, e.code === 'ENOENT' ? 'no such file' : String(e));
    return [];
  }
});
const checked = blocks.filter((b) => b.skip === null);
const skipped = blocks.filter((b) => b.skip !== null);

// Each block becomes a virtual module: at the repository root beside no real file, or, with
// `at`, that very file (which must not exist), so other blocks can import it. Its relative
// imports resolve from where it is. `map[k]` is the markdown line (and column shift) of the
// module's line k.
const virtual = new Map();
checked.forEach((b, n) => {
  let name = path.join(root, `__docs_${n}_${path.basename(b.file, '.md').replace(/\W/g, '_')}_${b.fence}.${b.lang === 'ts' ? 'mts' : 'mjs'}`);
  if (b.at) {
    const at = path.join(root, b.at);
    if (/\.m?ts$/.test(at) !== (b.lang === 'ts')) problem(b.file, b.fence, 1, `"check: at ${b.at}" names a ${b.lang === 'ts' ? 'JavaScript' : 'TypeScript'} file for a ${b.lang} block`);
    else if (existsSync(at)) problem(b.file, b.fence, 1, `"check: at ${b.at}": that file exists in the repository; pick a path that does not`);
    else if (virtual.has(at)) problem(b.file, b.fence, 1, `"check: at ${b.at}": another block is that file already (${shown(virtual.get(at).block.file)}:${virtual.get(at).block.fence})`);
    else name = at;
  }
  const dir = path.dirname(name);
  const specifier = (from) => {
    if (!path.isAbsolute(from)) return from;
    const rel = path.relative(dir, from).replace(/\.ts$/, '.js').split(path.sep).join('/');
    return rel.startsWith('.') ? rel : `./${rel}`;
  };
  const body = [...b.prelude.map((p) => p.text), ...b.lines].join('\n');
  const own = new Set(ts.createSourceFile('x.ts', body, ts.ScriptTarget.Latest).statements.flatMap(declaredBy));
  // On one line, so the block's own lines keep their numbers; a name both export comes from the prelude.
  const imports = scope
    .map(({ from, names }, k) => {
      const wanted = [...names].filter((x) => !own.has(x) && !scope.slice(0, k).some((s) => s.names.has(x)));
      return wanted.length > 0 ? `import { ${wanted.join(', ')} } from '${specifier(from)}';` : '';
    })
    .join(' ');
  const header = b.lang === 'ts' ? imports : '';
  const source = [header, body, 'export {};'].join('\n');
  const map = [
    { line: b.fence, shift: 0 },
    ...b.prelude.map((p) => ({ line: p.line, shift: 0 })),
    ...b.lines.map((_, k) => ({ line: b.fence + 1 + k, shift: b.indent })),
    { line: b.fence + b.lines.length + 1, shift: 0 },
  ];
  virtual.set(name, { block: b, source, map });
});

const config = ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile);
if (config.error) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'));
const parsed = ts.parseJsonConfigFileContent(
  {
    ...config.config,
    compilerOptions: {
      ...config.config.compilerOptions,
      noEmit: true,
      declaration: false,
      sourceMap: false,
      allowJs: true,
      checkJs: false,
      paths: { drover: ['./src/index.ts'], 'drover/testing': ['./src/testing/index.ts'] },
    },
    include: [],
    files: [],
  },
  ts.sys,
  root,
);

const host = ts.createCompilerHost(parsed.options);
const readFile = host.readFile.bind(host);
const fileExists = host.fileExists.bind(host);
const getSourceFile = host.getSourceFile.bind(host);
host.readFile = (f) => virtual.get(path.resolve(f))?.source ?? readFile(f);
host.fileExists = (f) => virtual.has(path.resolve(f)) || fileExists(f);
// A block `at` a folder that does not exist makes that folder exist, for module resolution.
const directoryExists = host.directoryExists?.bind(host) ?? ts.sys.directoryExists;
const dirs = new Set([...virtual.keys()].flatMap((f) => ancestors(path.dirname(f))));
host.directoryExists = (d) => dirs.has(path.resolve(d)) || directoryExists(d);
host.realpath = (f) => (virtual.has(path.resolve(f)) ? f : (ts.sys.realpath?.(f) ?? f));
function ancestors(d) {
  const out = [];
  for (let at = d; at.startsWith(root) && !out.includes(at); at = path.dirname(at)) out.push(at);
  return out;
}
host.getSourceFile = (f, lang, ...rest) => {
  const v = virtual.get(path.resolve(f));
  return v ? ts.createSourceFile(f, v.source, lang, true) : getSourceFile(f, lang, ...rest);
};

const program = ts.createProgram({ rootNames: [...virtual.keys(), preludeFile], options: parsed.options, host });

for (const d of [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]) {
  problem(path.join(root, 'tsconfig.json'), 1, 1, ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}
const preludeSf = program.getSourceFile(preludeFile);
for (const d of [...program.getSyntacticDiagnostics(preludeSf), ...program.getSemanticDiagnostics(preludeSf)]) {
  const { line, character } = preludeSf.getLineAndCharacterOfPosition(d.start ?? 0);
  problem(preludeFile, line + 1, character + 1, `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}
for (const [name, { block, map }] of virtual) {
  const sf = program.getSourceFile(name);
  const diagnostics = [...program.getSyntacticDiagnostics(sf), ...(block.lang === 'ts' ? program.getSemanticDiagnostics(sf) : [])];
  for (const d of diagnostics) {
    const { line, character } = sf.getLineAndCharacterOfPosition(d.start ?? 0);
    const at = map[Math.min(line, map.length - 1)];
    problem(block.file, at.line, character + 1 + at.shift, `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
}

// --- report ------------------------------------------------------------------------------------

problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
for (const p of problems) {
  const [first, ...rest] = p.message.split('\n');
  console.log(`${shown(p.file)}:${p.line}:${p.col} - error ${first}`);
  for (const r of rest) console.log(`    ${r}`);
}
for (const b of skipped) console.log(`skipped ${shown(b.file)}:${b.fence} (${b.skip})`);
const ts_ = checked.filter((b) => b.lang === 'ts').length;
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(
  `check-docs: ${checked.length} snippets checked (${ts_} ts, ${checked.length - ts_} js) in ${files.length} file${files.length === 1 ? '' : 's'}, ${skipped.length} skipped, ` +
    `${problems.length} error${problems.length === 1 ? '' : 's'} (${seconds}s)`,
);
process.exitCode = problems.length > 0 ? 1 : 0;
