import { defineConfig } from 'vitest/config';

// Unit tests run in parallel; integration tests start real servers (redis-server,
// a local Redis Cluster, mosquitto) on free ports, so they get longer timeouts.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 10_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Two cores: keep heavy integration files from starving each other.
          maxWorkers: 2,
          // Projects with different worker limits must run as ordered groups (vitest 4).
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
