import { type Database, withRetry } from '../db/database.js';
import { createVersionQueries } from '../db/version-queries.js';
import { MachineChangedError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DurableMachine } from '../record/durable.js';
import { diffFingerprints, fingerprint, missingLeaves } from '../record/fingerprint.js';

/** Stranded record ids named per version in a refusal. */
const IDS_SHOWN = 10;
/** Differences listed per version in a refusal. */
const DIFFERENCES_SHOWN = 20;

/**
 * The start check of machine versions: each registered (machine, version) is stored with its
 * structure the first time; a version whose structure differs from the stored one refuses
 * the start with {@link MachineChangedError}, listing the differences and the live records in
 * states that no longer exist. `allowChange: true` on the machine accepts a change that
 * strands no live record (the stored structure is updated). Runs in one transaction under an
 * advisory lock, so runtimes starting together check one after another.
 */
export async function checkMachineVersions(
  db: Database,
  schema: string,
  machines: readonly DurableMachine[],
  options: { now: number; logger: Logger },
): Promise<void> {
  if (machines.length === 0) return;
  const vq = createVersionQueries(schema);
  const refusals = await withRetry(() =>
    db.transaction(async (tx) => {
      await vq.lock(tx);
      const stored = new Map(
        (await vq.storedVersions(tx, { machines: [...new Set(machines.map((m) => m.name))] })).map((r) => [`${r.machine}@${r.version}`, r]),
      );
      const now = new Date(options.now);
      const refusals: string[] = [];
      for (const def of machines) {
        const current = fingerprint(def.machine);
        const row = stored.get(`${def.name}@${def.version}`);
        if (!row) {
          await vq.insertVersion(tx, { machine: def.name, version: def.version, fingerprint: current, now });
          continue;
        }
        const differences = diffFingerprints(row.fingerprint, current);
        if (differences.length === 0) continue;
        const live = await vq.liveStates(tx, { machine: def.name, version: def.version });
        const stranded = live.filter((l) => missingLeaves(l.state, current).length > 0);
        if ((def as { allowChange?: boolean }).allowChange === true && stranded.length === 0) {
          await vq.updateVersion(tx, { machine: def.name, version: def.version, fingerprint: current, now });
          options.logger.warn(
            { machine: def.name, version: def.version, differences },
            'drover: machine version changed in place (allowChange); no live record is stranded',
          );
          continue;
        }
        const ids =
          stranded.length === 0
            ? []
            : await vq.liveIds(tx, { machine: def.name, version: def.version, states: stranded.map((s) => s.state), limit: IDS_SHOWN });
        refusals.push(refusal(def, differences, stranded, ids));
      }
      return refusals;
    }),
  );
  if (refusals.length > 0) throw new MachineChangedError(refusals.join('\n'));
}

function refusal(
  def: DurableMachine,
  differences: string[],
  stranded: Array<{ state: string; count: number }>,
  ids: string[],
): string {
  const lines = [`machine "${def.name}" version ${def.version} is not the version ${def.version} stored in the database:`];
  for (const d of differences.slice(0, DIFFERENCES_SHOWN)) lines.push(`  - ${d}`);
  if (differences.length > DIFFERENCES_SHOWN) lines.push(`  - … and ${differences.length - DIFFERENCES_SHOWN} more`);
  if (stranded.length > 0) {
    const total = stranded.reduce((n, s) => n + s.count, 0);
    lines.push(
      `  ${total} live record(s) are in states this version no longer has: ${stranded.map((s) => `"${s.state}" (${s.count})`).join(', ')}; ` +
        `ids: ${ids.join(', ')}${total > ids.length ? ', …' : ''}`,
    );
  }
  const fix =
    `  Bump \`version\` in durable() and register the new version beside the old one` +
    ` (machines: [v${def.version}, v${def.version + 1}]); move live records with runtime.migrate().`;
  lines.push(
    stranded.length > 0
      ? `${fix} allowChange cannot accept this change: it would strand live records.`
      : `${fix} Or, since no live record is stranded, pass \`allowChange: true\` to durable() to accept the change in place.`,
  );
  return lines.join('\n');
}
