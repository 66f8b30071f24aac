// Numbers, dates and durations as the dashboard prints them.

const integer = new Intl.NumberFormat('en');

export const count = (n: number): string => integer.format(n);

/** Seconds as `850 ms`, `12.3 s`, `4.2 min`, `3.1 h`, `2.0 d`. */
export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  if (s < 86_400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86_400).toFixed(1)} d`;
}

/** An ISO date as local `YYYY-MM-DD HH:MM:SS`. */
export function date(iso: string | null | undefined): string {
  if (!iso) return '–';
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How long ago, relative to now: `5 s ago`. */
export const ago = (iso: string, now = Date.now()): string => `${seconds(Math.max(0, (now - Date.parse(iso)) / 1000))} ago`;
