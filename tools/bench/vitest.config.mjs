import { defineConfig } from 'vitest/config';

// The ONNX parity test: one file, real weights, onnxruntime on 2 threads.
export default defineConfig({
  cacheDir: '../../node_modules/.vite/tools-bench',  // not tools/bench/node_modules
  test: {
    root: import.meta.dirname,
    include: ['*.test.mjs'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
