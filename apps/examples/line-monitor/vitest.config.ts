import { defineConfig } from 'vitest/config';

// The test trains a small model with @loupe/core and runs the BUILT app (dist/) on real images as a user
// would; the engine runs ResNet-50 on the CPU, so generous timeouts and one file at a time.
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
