import { defineConfig } from 'vitest/config';

// `npm run test:binaries`: the agent binaries of dist/bin, ARM ones under qemu
// user-mode emulation (slow: seconds per start), one file at a time.
export default defineConfig({
  test: {
    include: ['test/binaries/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});
