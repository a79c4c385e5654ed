import { defineConfig } from 'vitest/config';

// The fleet capacity benchmark (bench/scale.bench.ts -> docs/benchmarks/scale.md): not part of `vitest run`.
//   cd apps/server && npx vitest run -c vitest.bench.config.ts
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    globalSetup: ['test/global-setup.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 3_600_000,
    hookTimeout: 600_000,
    env: { UV_THREADPOOL_SIZE: '16' },
  },
});
