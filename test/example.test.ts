import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('npm start (examples/orders.ts on the embedded default)', () => {
  it('drives every order to its final state, printing each change, and exits 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/orders.ts'], {
      cwd: root,
      timeout: 60_000,
    });
    for (const line of [
      /o-1 +awaiting_payment +→ charging +on payment\.confirmed/,
      /o-1 +charging +→ shipped +on xstate\.done\.actor/,
      /o-2 +charging +→ payment_failed +on xstate\.error\.actor/,
      /o-3 +awaiting_payment +→ cancelled +on cancel/,
      /o-4 +awaiting_payment +→ expired +on xstate\.after\.paymentWindow/,
      /o-1: shipped \(receipt rcpt-o-1\)/,
      /history of o-1: awaiting_payment → charging → shipped/,
    ]) {
      expect(stdout).toMatch(line);
    }
  }, 70_000);
});
