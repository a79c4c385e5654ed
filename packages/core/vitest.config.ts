import { defineConfig } from 'vitest/config';

// Real components, no mocks: the engine tests load the 100 MB weights and run ResNet-50 on the CPU,
// so files run one at a time (the machine's cores belong to the engine) with generous timeouts.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
