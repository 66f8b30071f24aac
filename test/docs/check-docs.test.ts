import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// scripts/check-docs.mjs, the CI check that every docs snippet compiles, run on two fixture
// pages: one whose snippets are all right, one with a mistake of each kind it must catch.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const fixture = (name: string) => `test/docs/fixtures/${name}`;

function checkDocs(...files: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['scripts/check-docs.mjs', ...files], { cwd: root }, (error, stdout) => {
      resolve({ code: error ? Number(error.code) : 0, stdout });
    });
  });
}

/** The `file:line:col - error …` lines of the output, as [where, message]. */
const errorsOf = (stdout: string) =>
  stdout
    .split('\n')
    .map((l) => /^(\S+:\d+:\d+) - error (.*)$/.exec(l))
    .filter((m) => m !== null)
    .map((m) => [m[1] ?? '', m[2] ?? ''] as const);

describe('check-docs', { timeout: 60_000 }, () => {
  it("passes a page whose snippets compile: prelude names, a block's own prelude, blocks `at` a file another imports, a skip, a js block", async () => {
    const { code, stdout } = await checkDocs(fixture('right.md'));
    expect(errorsOf(stdout)).toEqual([]);
    expect(stdout).toContain(`skipped ${fixture('right.md')}:52 (a call signature, not code)`);
    expect(stdout).toMatch(/check-docs: 7 snippets checked \(6 ts, 1 js\) in 1 file, 1 skipped, 0 errors/);
    expect(code).toBe(0);
  });

  it('fails a wrong page, naming the markdown file:line:column of each mistake', async () => {
    const file = fixture('wrong.md');
    const { code, stdout } = await checkDocs(file);
    expect(code).toBe(1);

    // Every line marked `wrong: TSnnnn` is reported at that line (and at the column of the
    // mistake, the list item's indent counted), with that code.
    const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
    const expected = lines.flatMap((l, i) => {
      const m = /wrong: (TS\d+)/.exec(l);
      return m ? [[i + 1, m[1]] as const] : [];
    });
    expect(expected).toHaveLength(5);
    const errors = errorsOf(stdout);
    for (const [line, tsCode] of expected) {
      expect(errors.some(([where, message]) => where.startsWith(`${file}:${line}:`) && message.startsWith(`${tsCode}:`))).toBe(true);
    }
    expect(errors).toContainEqual([`${file}:13:9`, "TS2322: Type 'string' is not assignable to type 'number'."]);

    // And the comments it cannot use, at the comment's line.
    const lineOf = (text: string) => lines.findIndex((l) => l.includes(text)) + 1;
    expect(errors).toContainEqual([`${file}:${lineOf('<!-- check: skip -->')}:1`, expect.stringContaining('a skip needs its reason')]);
    expect(errors).toContainEqual([
      `${file}:${lineOf('<!-- check: prelude declare const x')}:1`,
      expect.stringContaining('not followed by a ```ts or ```js block'),
    ]);
    expect(errors).toContainEqual([`${file}:${lineOf('check: sikp')}:1`, expect.stringContaining('unknown check comment "sikp"')]);
    expect(errors).toContainEqual([`${file}:${lineOf('check: at machines/order.ts') + 1}:1`, expect.stringContaining('that file exists in the repository')]);
    expect(errors).toHaveLength(expected.length + 4);
    expect(stdout).toMatch(/check-docs: 7 snippets checked \(6 ts, 1 js\) in 1 file, 1 skipped, 9 errors/);
  });
});
