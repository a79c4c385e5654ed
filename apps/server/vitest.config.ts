import { defineConfig } from 'vitest/config';

// Real server on loopback, real client, real ResNet-50 weights and real images (no mocks). The engine
// owns the cores, so test files run one at a time with generous timeouts. UV_THREADPOOL_SIZE must be set
// before the worker's libuv pool starts: decodes, kNN searches and engine runs all live on it.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 600_000,
    env: { UV_THREADPOOL_SIZE: '16' },
  },
});
