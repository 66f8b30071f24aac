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
      // The boot's progress, before the first transition.
      /^starting the embedded database \(PGlite, in memory\)/,
      /\nPGlite ready in \d+ ms/,
      /\napplying drover's migrations…\nready in \d+ ms\n/,
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

describe('examples/service.ts (a poller, a worker and a cron job under the supervisor)', () => {
  it('runs until maxRunTime, records the cron ticks, drains and exits 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/service.ts'], {
      cwd: root,
      timeout: 60_000,
    });
    expect(stdout).toMatch(/drover: supervisor running/);
    expect(stdout).toMatch(/maxRunTime reached, draining/);
    expect(stdout).toMatch(/o-1 +awaiting_payment +→ charging +on payment\.confirmed/);
    expect(stdout).toMatch(/runs of feed \(newest first\):\n +#\d+ \S+ succeeded attempt 1 +queued o-\d+/);
    expect(stdout).toMatch(/intake +worker +stopped/);
    expect(stdout).toMatch(/feed +periodic +stopped/);
  }, 70_000);
});

describe('examples/residency.ts (the residency table from SQL and from spans)', () => {
  it('prints residency() per state and the histogram from the span processor, and exits 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/residency.ts'], {
      cwd: root,
      timeout: 60_000,
    });
    expect(stdout).toMatch(/residency\("ticket"\), seconds:/);
    expect(stdout).toMatch(/^open +0 +6 +\d+\.\d+/m);
    expect(stdout).toMatch(/drover\.state\.residency \(histogram, s\)/);
    expect(stdout).toMatch(/^open +6 /m);
    expect(stdout).toMatch(/links to the trace of the request that resolved it: true/);
  }, 70_000);
});

describe('examples/shipments.ts (records as actors: a child record per order, its output, an emitted receipt)', () => {
  it('ships two orders through their child records, cancels the third with its child, and exits 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/shipments.ts'], {
      cwd: root,
      timeout: 60_000,
    });
    expect(stdout).toMatch(/shipment o-1\.ship +\(created\) +→ booking +on xstate\.init/);
    expect(stdout).toMatch(/shipment o-2\.ship +awaiting_pickup +→ delivered +on xstate\.after\.pickupWindow/);
    expect(stdout).toMatch(/shipment o-3\.ship +awaiting_pickup +→ awaiting_pickup +on drover\.cancel/);
    expect(stdout).toMatch(/receipt for o-1: tracking T-o-1/);
    expect(stdout).toMatch(/receipt for o-2: tracking T-o-2/);
    expect(stdout).toMatch(/fulfilment o-1 +shipping +→ completed +on xstate\.done\.actor\.ship/);
    expect(stdout).toMatch(/shipment o-1\.ship: done, parent \{"id":"o-1","key":"ship","machine":"fulfilment"\}/);
    expect(stdout).toMatch(/children of fulfilment o-3: o-3\.ship \(cancelled\)/);
    expect(stdout).toMatch(/spawned +drover\.spawn \(shipment o-1\.ship\)\n +received shipment\.booked/);
    expect(stdout).toMatch(/emitted +order\.receipt/);
  }, 70_000);
});
