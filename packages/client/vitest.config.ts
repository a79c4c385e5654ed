import { defineConfig } from 'vitest/config';

// Real components, no mocks: the proto check runs the real generator; the stream tests a real server.
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
