// How the CLI prints: JSON for programs, aligned tables for people, colour only on a TTY.

/** Where a command writes; tests and the bin pass `process` streams. */
export interface Io {
  out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  err: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** Colour on a TTY unless `NO_COLOR` is set (any value, https://no-color.org); `FORCE_COLOR` forces it. */
export function colourOn(io: Io, stream: 'out' | 'err' = 'out'): boolean {
  if (io.env.NO_COLOR !== undefined && io.env.NO_COLOR !== '') return false;
  if (io.env.FORCE_COLOR !== undefined && io.env.FORCE_COLOR !== '0') return true;
  return io[stream].isTTY === true;
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const;
export type Style = keyof typeof CODES;

/** A painter: `paint('red', text)` wraps text in ANSI codes when colour is on. */
export function painter(on: boolean) {
  return (style: Style, text: string): string => (on ? `\u001b[${CODES[style][0]}m${text}\u001b[${CODES[style][1]}m` : text);
}

// eslint-disable-next-line no-control-regex -- the ANSI escape is what it matches
const ANSI = /\u001b\[[0-9;]*m/g;
const width = (s: string) => s.replace(ANSI, '').length;

/** Statuses in colour: green is fine, yellow waits, red needs a look. */
export function statusStyle(status: string): Style | undefined {
  if (['done', 'running', 'succeeded', 'active', 'ok', 'applied'].includes(status)) return 'green';
  if (['failed', 'crashed', 'changed'].includes(status)) return 'red';
  if (['cancelled', 'stopped', 'disabled', 'skipped', 'pending'].includes(status)) return 'yellow';
  return undefined;
}

/** One column of {@link table}: a header, and how to render a row's cell. */
export interface Column<T> {
  header: string;
  cell: (row: T) => string;
  /** Colour of the cell, from its value. */
  style?: (row: T) => Style | undefined;
  align?: 'left' | 'right';
}

/** An aligned text table; an empty list prints `(none)`. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[], colour: boolean): string {
  if (rows.length === 0) return '(none)\n';
  const paint = painter(colour);
  const cells = rows.map((row) => columns.map((c) => clean(c.cell(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => width(r[i] as string))));
  const pad = (text: string, i: number) => {
    const gap = ' '.repeat((widths[i] as number) - width(text));
    return columns[i]?.align === 'right' ? gap + text : text + gap;
  };
  const line = (parts: string[]) => parts.join('  ').trimEnd();
  const head = line(columns.map((c, i) => paint('bold', pad(c.header, i))));
  const body = cells.map((r, ri) =>
    line(
      r.map((text, i) => {
        const style = columns[i]?.style?.(rows[ri] as T);
        return style ? paint(style, pad(text, i)) : pad(text, i);
      }),
    ),
  );
  return `${[head, ...body].join('\n')}\n`;
}

/** Key/value lines, keys aligned. */
export function fields(pairs: ReadonlyArray<readonly [string, string]>, colour: boolean): string {
  const paint = painter(colour);
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${paint('bold', k.padEnd(w))}  ${clean(v)}`).join('\n') + '\n';
}

/** Control characters out of what goes to a terminal (a record id is user data). */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it removes
  return text.replace(/[\u0000-\u0008\u000b-\u001a\u001c-\u001f\u007f]/g, '?');
}

/** JSON for `--json`: dates as ISO strings, two-space indented, one trailing newline. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** How long ago, short: `4s`, `12m`, `3h`, `2d`. */
export function ago(at: Date | null | undefined, now: number): string {
  if (!at) return '-';
  return short(Math.max(0, now - at.getTime()));
}

/** Milliseconds, short: `850ms`, `4.2s`, `12m`, `3h`, `2d`. */
export function short(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h`;
  return `${Math.floor(ms / 86_400_000)}d`;
}

/** Seconds (residency) shown like {@link short}. */
export const seconds = (s: number | null): string => (s === null ? '-' : short(s * 1000));

/** A date as ISO text, or `-`. */
export const iso = (at: Date | null | undefined): string => (at ? at.toISOString() : '-');

/**
 * Progress of a long command: a redrawn bar with counts on a TTY, a plain line per update
 * otherwise (at most one every `every` items, and the last). Written to stderr so `--json`
 * output on stdout stays clean.
 */
export class Progress {
  private last = -1;
  constructor(
    private readonly io: Io,
    private readonly label: string,
    private readonly total: number,
    private readonly every = Math.max(1, Math.ceil(total / 10)),
  ) {}

  update(done: number): void {
    const tty = this.io.err.isTTY === true;
    if (tty) {
      const cols = 30;
      const filled = this.total > 0 ? Math.round((done / this.total) * cols) : cols;
      const bar = `${'█'.repeat(filled)}${'░'.repeat(cols - filled)}`;
      this.io.err.write(`\r${this.label} ${bar} ${done}/${this.total}`);
      if (done >= this.total) this.io.err.write('\n');
      return;
    }
    if (done < this.total && this.last >= 0 && done - this.last < this.every) return;
    this.last = done;
    this.io.err.write(`${this.label}: ${done}/${this.total}\n`);
  }
}
