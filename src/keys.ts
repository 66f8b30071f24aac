import { InvalidArgumentError } from './errors.js';

/**
 * Refuses option keys that are not in `valid`, naming the nearest valid key, so a typo
 * (`maxAttempt`, `pollIntervall`) fails loudly instead of being ignored.
 *
 * @example rejectUnknownKeys(options, ['version', 'queue'], 'durable()');
 */
export function rejectUnknownKeys(options: object | undefined | null, valid: readonly string[], where: string): void {
  if (!options || typeof options !== 'object') return;
  for (const key of Object.keys(options)) {
    if (valid.includes(key)) continue;
    const nearest = nearestKey(key, valid);
    throw new InvalidArgumentError(
      `${where}: unknown option "${key}"${nearest ? ` (did you mean "${nearest}"?)` : ''}; valid options: ${[...valid].sort().join(', ')}`,
    );
  }
}

/** The valid key closest to `key` by edit distance (case-insensitive), if any is close enough to be a typo. */
export function nearestKey(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of valid) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/**
 * The option keys of `T`, checked at compile time: every key listed is a key of `T`, and every
 * key of `T` is listed (a missing one is a type error naming it), so a list passed to
 * {@link rejectUnknownKeys} cannot drift from the options interface.
 *
 * @example const KEYS = optionKeys<WorkerConfig>()(['maxPanicAttempts', 'panicBackoff', 'record']);
 */
export function optionKeys<T extends object>() {
  return <const K extends readonly (keyof T & string)[]>(
    keys: K & ([Exclude<keyof T, K[number]>] extends [never] ? unknown : { missingKeys: Exclude<keyof T, K[number]> }),
  ): K => keys;
}
