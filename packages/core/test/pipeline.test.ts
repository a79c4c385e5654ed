// The engine wrapper and the feature pipeline with the real addon and weights: batching, order,
// abort, bad images, and weights errors that name the file at fault.
import { copyFileSync, mkdirSync, readdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  AbortError,
  decodeImage,
  Engine,
  EngineError,
  extractFeatures,
  ImageDecodeError,
  INPUT_ELEMENTS,
  LoupeError,
  packBatch,
  resolveWeights,
  streamFeatures,
  tapElements,
  WeightsError,
  type FeatureProgress,
} from '../src/internal.js';
import { engineSkipReason, testBackend } from './support/engine-env.js';
import { hasReference, referenceDir, sharedDir, skipNote, tempDir } from './support/env.js';

const skip = !hasReference ? `reference images not found in ${referenceDir}` : engineSkipReason();
if (skip) skipNote('engine pipeline', skip);

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** A weights dir whose files link to the real ones, except `broken`, which is a truncated copy or absent. */
function brokenWeights(broken: string, how: 'truncate' | 'remove'): string {
  const src = join(resolveWeights().dir, 'ResNet50');
  const dst = join(tmp.dir, `weights-${how}`, 'ResNet50');
  mkdirSync(dst, { recursive: true });
  for (const f of readdirSync(src)) {
    if (f === broken) {
      if (how === 'truncate') {
        copyFileSync(join(src, f), join(dst, f));
        truncateSync(join(dst, f), 1000);
      }
    } else symlinkSync(join(src, f), join(dst, f));
  }
  return join(dst, 'model.json');
}

describe.skipIf(!!skip)('engine + feature pipeline', () => {
  let engine: Engine;
  const ref = (n: string): string => join(referenceDir, `${n}_224.png`);
  const files = [ref('chelsea'), ref('coffee'), ref('rocket'), ref('chelsea'), ref('coffee')];

  beforeAll(async () => {
    engine = await Engine.open({ backend: testBackend });
  });

  it('a truncated shard is a WeightsError naming the shard', async () => {
    const model = brokenWeights('group1-shard7of25.bin', 'truncate');
    const err = await Engine.open({ weights: model }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as LoupeError).code).toBe('WEIGHTS_CORRUPT');
    expect((err as LoupeError).input).toBe('group1-shard7of25.bin');
    expect((err as Error).message).toContain('group1-shard7of25.bin');
  });

  it('a missing shard is a WeightsError naming the shard', async () => {
    const model = brokenWeights('group1-shard25of25.bin', 'remove');
    const err = await Engine.open({ weights: model }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toContain('group1-shard25of25.bin');
  });

  it('a corrupt model.json is a WeightsError naming it', async () => {
    const dir = join(tmp.dir, 'badjson');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.json'), '{"format": "layers-model", "weightsManifest": [');
    const err = await Engine.open({ weights: join(dir, 'model.json') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toContain('model.json');
  });

  it('shares one model between engines and sessions', async () => {
    const again = await Engine.open({ backend: testBackend });
    expect(again.weightsHash).toBe(engine.weightsHash);
    const s = engine.openSession({ backend: testBackend, threads: 1 });
    expect(engine.openSession({ backend: testBackend, threads: 1 })).toBe(s);
    expect(s.threads).toBe(1);
    expect(engine.buildInfo()).toHaveProperty('onednn');
  });

  it('validates run arguments', async () => {
    await expect(engine.run({ data: new Float32Array(10), batch: 1 }, ['fc1000'])).rejects.toThrow(/224/);
    await expect(engine.run({ data: new Float32Array(INPUT_ELEMENTS), batch: 1 }, ['nope' as 'fc1000'])).rejects.toThrow(/unknown tap/);
    await expect(engine.run({ data: new Float32Array(INPUT_ELEMENTS), batch: 1 }, [])).rejects.toThrow(/at least one/);
  });

  it('splits batches larger than maxBatch and keeps image order', async () => {
    const small = engine.openSession({ backend: testBackend, maxBatch: 2 });
    const imgs = await Promise.all(files.map((f) => decodeImage(f)));
    const whole = await engine.run(packBatch(imgs), ['avg_pool']);
    const split = await small.run(packBatch(imgs), ['avg_pool']);
    expect(split.avg_pool.length).toBe(5 * 2048);
    let d = 0;
    for (let i = 0; i < whole.avg_pool.length; i++) d = Math.max(d, Math.abs(whole.avg_pool[i]! - split.avg_pool[i]!));
    expect(d).toBeLessThan(1e-5);
  });

  it('extractFeatures streams batches in input order with progress', async () => {
    const progress: FeatureProgress[] = [];
    const feats = await extractFeatures(files, { engine, layers: ['avg_pool', 'res4f'], batchSize: 2, onProgress: (p) => progress.push(p), keepImages: true });
    expect(feats.map((f) => f.index)).toEqual([0, 1, 2, 3, 4]);
    expect(feats.map((f) => f.name)).toEqual(files);
    expect(progress.map((p) => p.done)).toEqual([2, 4, 5]);
    expect(progress.at(-1)).toMatchObject({ total: 5, batches: 3, batch: 3, skipped: 0 });
    for (const f of feats) {
      expect(f.features.avg_pool.length).toBe(2048);
      expect(f.features.res4f.length).toBe(tapElements('res4f'));
      expect(f.image?.rgb.length).toBe(INPUT_ELEMENTS);
    }
    // Same image at positions 0 and 3 (different batches, different batch-mates): same features.
    let d = 0;
    for (let i = 0; i < 2048; i++) d = Math.max(d, Math.abs(feats[0]!.features.avg_pool[i]! - feats[3]!.features.avg_pool[i]!));
    expect(d).toBeLessThan(1e-5);
  });

  it("accepts { layer } and buffers, naming buffers by position", async () => {
    const { readFileSync } = await import('node:fs');
    const feats = await extractFeatures([readFileSync(ref('rocket'))], { engine, layer: 'fc1000' });
    expect(feats[0]!.name).toBe('<buffer #0>');
    expect(feats[0]!.features.fc1000.length).toBe(1000);
  });

  it('a bad image fails the call with an error naming it, or is skipped on request', async () => {
    const bad = join(tmp.dir, 'not-an-image.jpg');
    writeFileSync(bad, 'garbage');
    const list = [ref('chelsea'), bad, ref('coffee')];
    const err = await extractFeatures(list, { engine, layer: 'avg_pool', batchSize: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect((err as LoupeError).input).toBe(bad);

    const skipped: [string | undefined, number][] = [];
    const feats = await extractFeatures(list, { engine, layer: 'avg_pool', batchSize: 2, onInvalidImage: 'skip', onSkip: (e, i) => skipped.push([e.input, i]) });
    expect(feats.map((f) => f.index)).toEqual([0, 2]);
    expect(skipped).toEqual([[bad, 1]]);
  });

  it('AbortSignal cancels queued work', async () => {
    const controller = new AbortController();
    const many = Array.from({ length: 12 }, () => ref('coffee'));
    const seen: number[] = [];
    const run = (async () => {
      for await (const batch of streamFeatures(many, { engine, layer: 'avg_pool', batchSize: 2, signal: controller.signal })) {
        seen.push(batch.length);
        controller.abort();
      }
    })();
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as Error).name).toBe('AbortError');
    expect(seen).toEqual([2]);

    const pre = new AbortController();
    pre.abort();
    await expect(extractFeatures(many, { engine, layer: 'avg_pool', signal: pre.signal })).rejects.toBeInstanceOf(AbortError);
  });

  it('cancelPending rejects queued runs with EngineError(Cancelled)', async () => {
    const img = await decodeImage(ref('chelsea'));
    const t = packBatch([img]);
    const first = engine.run(t, ['avg_pool']);
    const queued = engine.run(t, ['avg_pool']).catch((e: unknown) => e); // handled from the start
    expect(engine.cancelPending()).toBeGreaterThanOrEqual(1);
    await expect(first).resolves.toBeDefined();
    const err = await queued;
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).engineCode).toBe('Cancelled');
  });

  it('extracts features from a real dataset image (grayscale JPEG, 256x256)', async () => {
    const file = join(sharedDir(), 'datasets', 'mtd', 'magnetic_tile', 'train', 'good', 'exp0_num_743.jpg');
    const { existsSync } = await import('node:fs');
    if (!existsSync(file)) return skipNote('dataset image', `${file} absent`);
    const [f] = await extractFeatures([file], { engine, layer: 'res3d' });
    expect(f!.features.res3d.length).toBe(28 * 28 * 512);
    expect(f!.features.res3d.every((v) => Number.isFinite(v) && v >= 0)).toBe(true); // post-ReLU
  });
});
