import { defineConfig } from 'vitest/config';

// The CLI tests spawn the built `loupe` (dist/) as a user would; the ones that need the real weights
// run ResNet-50 on the CPU, so files run one at a time with generous timeouts.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
  },
});
