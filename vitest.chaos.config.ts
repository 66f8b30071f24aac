import { defineConfig } from 'vitest/config';

// The chaos and pressure sweep (docs/reliability.md): `npm run chaos` (full) and
// `npm run chaos:short` (CI). Each scenario starts its own PostgreSQL cluster and nats-server
// and several node processes, so files run one at a time: in parallel they would measure each other.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    testTimeout: 15 * 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
});
