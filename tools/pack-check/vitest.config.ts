import { defineConfig } from 'vitest/config';

// Real npm, real tarballs, a real engine and real servers: one file, generous timeouts (npm install and the
// engine share the machine's cores).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 600_000,
  },
});
