// Trains the real models every server test uses, once per run, with @loupe/core on the real ResNet-50
// weights and real MVTec bottle images (no mocks):
//   bottle-svm.loupe       SVM on fc1000: good / broken_large / contamination, 5 images each
//   bottle-oneclass.loupe  PatchCore on 10 good images, coreset 10%
// The folder is handed to the test files with inject('fixtureModels').
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type {} from 'vitest';
import type { TestProject } from 'vitest/node';

import { hasSharedData, trainFixtureModels } from './fixtures.js';

declare module 'vitest' {
  export interface ProvidedContext {
    fixtureModels: string;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  if (!hasSharedData()) {
    // No real images here: every suite that needs models skips (describe.skipIf(!inject(...))).
    process.stderr.write('[global-setup] NOTE: the shared datasets (../shared/datasets/mvtec_ad/bottle) are absent: the server tests that need trained models are skipped\n');
    project.provide('fixtureModels', '');
    return () => {};
  }
  const dir = mkdtempSync(join(tmpdir(), 'loupe-server-models-'));
  const t0 = Date.now();
  await trainFixtureModels(dir);
  process.stderr.write(`[global-setup] trained the fixture models in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${dir}\n`);
  project.provide('fixtureModels', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
