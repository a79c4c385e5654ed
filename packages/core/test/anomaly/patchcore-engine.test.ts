// PatchCore on the real engine: real ResNet-50 weights, real native kNN/coreset kernels, real MVTec
// bottle images from ../shared. Skips (with the reason) when the data, the weights or the addon are absent.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FewShotModel } from '../../src/anomaly/fewshot/fused.js';
import { loadMask } from '../../src/image/mask.js';
import { loadPatchCore, savePatchCore } from '../../src/anomaly/patchcore/model-file.js';
import { PatchCoreModel } from '../../src/anomaly/patchcore/model.js';
import { bruteForceKnn, type KnnNative } from '../../src/anomaly/patchcore/scorer.js';
import { heatmapOverlayPng, maskPng } from '../../src/anomaly/patchcore/visualize.js';
import { createRng } from '../../src/datasets/random.js';
import { Engine, loadAddon } from '../../src/engine.js';
import { resolveWeights } from '../../src/weights/resolve.js';

const SHARED = [resolve(__dirname, '../../../../../shared'), resolve(__dirname, '../../../../shared')].find((p) => existsSync(join(p, 'datasets')));
const BOTTLE = SHARED ? join(SHARED, 'datasets', 'mvtec_ad', 'bottle') : undefined;

async function why(): Promise<string | null> {
  if (!BOTTLE || !existsSync(BOTTLE)) return 'shared/datasets/mvtec_ad/bottle is not present';
  try {
    resolveWeights();
  } catch (err) {
    return `weights missing: ${(err as Error).message}`;
  }
  try {
    await loadAddon();
  } catch (err) {
    return `native addon unavailable: ${(err as Error).message}`;
  }
  return null;
}
const skipReason = await why();
if (skipReason) console.warn(`[patchcore-engine.test] skipped: ${skipReason}`);

function files(dir: string, n: number, seed: number): string[] {
  const all = readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .map((f) => join(dir, f));
  return createRng(seed).shuffle(all).slice(0, n);
}

function randn(n: number, seed: number): Float32Array {
  const r = createRng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

describe.skipIf(skipReason !== null)('PatchCore with the native engine', () => {
  let engine: Engine;
  let knn: KnnNative;
  let model: PatchCoreModel;
  let tmp: string;
  const good = () => files(join(BOTTLE!, 'test', 'good'), 4, 1);
  const broken = () => files(join(BOTTLE!, 'test', 'broken_large'), 4, 2);

  beforeAll(async () => {
    engine = await Engine.open({ threads: 2 });
    knn = await loadAddon();
    tmp = mkdtempSync(join(tmpdir(), 'loupe-patchcore-'));
    model = await PatchCoreModel.train(engine, files(join(BOTTLE!, 'train', 'good'), 24, 3), { config: { coresetRatio: 0.1 }, batchSize: 8 });
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('native kNN agrees with the brute-force oracle', async () => {
    const nb = 300, nq = 50, d = 64, k = 5;
    const bank = randn(nb * d, 1);
    const q = randn(nq * d, 2);
    const a = await knn.knnSearch(bank, nb, q, nq, d, k, { threads: 2 });
    const b = bruteForceKnn(bank, nb, q, nq, d, k);
    expect(Array.from(a.idx)).toEqual(Array.from(b.idx));
    for (let i = 0; i < b.dist.length; i++) expect(a.dist[i]).toBeCloseTo(b.dist[i]!, 2);
  });

  it("the model's native index (pruned on real 1536-dim patch features) finds the oracle's neighbours", async () => {
    const index = await model.knnIndex(knn, { threads: 2 });
    expect(index.method).toBe('pruned');
    const [r] = await model.score(engine, broken().slice(0, 1), { keepEmbeddings: true });
    const d = model.bank.d;
    const nq = 160; // every 5th patch of one broken bottle (the oracle is plain JS)
    const q = new Float32Array(nq * d);
    for (let i = 0; i < nq; i++) q.set(r!.embeddings!.subarray(i * 5 * d, (i * 5 + 1) * d), i * d);
    for (const k of [1, 9]) {
      const a = await index.search(q, nq, k);
      const b = bruteForceKnn(model.bank.vectors, model.bank.n, q, nq, d, k);
      expect(Array.from(a.idx)).toEqual(Array.from(b.idx));
      for (let i = 0; i < b.dist.length; i++) expect(Math.abs(a.dist[i]! - b.dist[i]!)).toBeLessThanOrEqual(1e-4 * b.dist[i]! + 1e-3);
    }
    // The same neighbours as the brute-force native index.
    const brute = await knn.createKnnIndex(model.bank.vectors, model.bank.n, d, { method: 'bruteForce', threads: 2 });
    expect(brute.method).toBe('bruteForce');
    expect(Array.from((await brute.search(q, nq, 1)).idx)).toEqual(Array.from((await index.search(q, nq, 1)).idx));
    expect(() => index.search(q, nq + 1, 1)).toThrow(/queries has .* elements/);
    expect(() => index.search(q, nq, 0)).toThrow(/k/);
  });

  it('native coreset returns m distinct rows, deterministic per seed', async () => {
    const n = 500, d = 32;
    const X = randn(n * d, 3);
    const a = await knn.greedyCoreset(X, n, d, 50, { seed: 4, projectionDim: 16 });
    const b = await knn.greedyCoreset(X, n, d, 50, { seed: 4, projectionDim: 16 });
    expect(a.length).toBe(50);
    expect(new Set(a).size).toBe(50);
    expect(Array.from(a)).toEqual(Array.from(b));
    for (const i of a) expect(i >= 0 && i < n).toBe(true);
  });

  it('trains a bank of the expected size with calibrated thresholds', () => {
    // 24 images: 2 held out for validation, 22 * 784 patches in, 10% kept.
    expect(model.training.images).toBe(22);
    expect(model.training.validationImages).toBe(2);
    expect(model.bank.n).toBe(Math.ceil(22 * 784 * 0.1));
    expect(model.bank.d).toBe(1536);
    expect(model.bankMB).toBeCloseTo((model.bank.n * 1536 * 4) / 2 ** 20, 6);
    expect(Number.isFinite(model.thresholds.image)).toBe(true);
    expect(model.thresholds.image).toBeGreaterThan(0);
  });

  it('an interrupt during the last batch of calibration still refuses the model (no model to save)', async () => {
    const ac = new AbortController();
    const stages: string[] = [];
    const run = PatchCoreModel.train(engine, files(join(BOTTLE!, 'train', 'good'), 6, 4), {
      config: { coresetRatio: 0.1 },
      batchSize: 8,
      signal: ac.signal,
      onProgress: (stage, done, total) => {
        stages.push(stage);
        if (stage === 'embed' && done === total) ac.abort(); // calibration's images fit in one batch
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(stages).toContain('embed');
  });

  it('scores broken bottles above good ones and puts the peak on the defect', async () => {
    const g = await model.score(engine, good());
    const b = await model.score(engine, broken());
    const maxGood = Math.max(...g.map((r) => r.rawScore));
    const minBroken = Math.min(...b.map((r) => r.rawScore));
    expect(minBroken).toBeGreaterThan(maxGood);
    for (const r of [...g, ...b]) {
      expect([r.width, r.height]).toEqual([256, 256]);
      expect(r.map.length).toBe(256 * 256);
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.score).toBeLessThan(1);
      expect(r.score >= 0.5).toBe(r.isAnomalous);
    }
    // Peak inside the ground-truth mask (dilated by 16 px) for most broken bottles.
    let hits = 0;
    for (const [i, r] of b.entries()) {
      const stem = broken()[i]!.split('/').pop()!.replace('.png', '');
      const mask = await loadMask(join(BOTTLE!, 'ground_truth', 'broken_large', `${stem}_mask.png`), 256, 256);
      let hit = false;
      for (let dy = -16; dy <= 16 && !hit; dy++)
        for (let dx = -16; dx <= 16 && !hit; dx++) {
          const y = r.peak.y + dy, x = r.peak.x + dx;
          if (y >= 0 && x >= 0 && y < 256 && x < 256 && mask[y * 256 + x]) hit = true;
        }
      if (hit) hits++;
    }
    expect(hits).toBeGreaterThanOrEqual(3);
  });

  it('round-trips through the model file (fp32 exactly, fp16 closely)', async () => {
    const file = join(tmp, 'bottle.loupe');
    await savePatchCore(file, model);
    const loaded = await loadPatchCore(file, { expectWeightsHash: engine.weightsHash });
    expect(loaded.model.bank.n).toBe(model.bank.n);
    // Other CNN weights are refused, whichever of the two stored hashes says so.
    await expect(loadPatchCore(file, { expectWeightsHash: '0'.repeat(64) })).rejects.toThrow(/trained on CNN weights/);
    const bytes = readFileSync(file).toString('latin1');
    const edited = join(tmp, 'edited-hash.loupe');
    writeFileSync(edited, Buffer.from(bytes.replace(`"weightsHash":"${engine.weightsHash}"`, `"weightsHash":"${'0'.repeat(64)}"`), 'latin1'));
    expect(readFileSync(edited).equals(readFileSync(file))).toBe(false);
    await expect(loadPatchCore(edited, { expectWeightsHash: engine.weightsHash })).rejects.toThrow(/weightsHash "0{64}" disagrees with patchcore.weightsHash/);
    const src = broken().slice(0, 2);
    const a = await model.score(engine, src);
    const b = await loaded.model.score(engine, src);
    expect(b.map((r) => r.rawScore)).toEqual(a.map((r) => r.rawScore));

    const { header, bank } = model.serialize();
    const half = PatchCoreModel.deserialize({ ...header, bank: { ...header.bank, storage: 'fp16' }, config: { ...header.config, storage: 'fp16' } }, (await import('../../src/anomaly/patchcore/memory-bank.js')).encodeFloat16(bank as Float32Array));
    const file16 = join(tmp, 'bottle16.loupe');
    await savePatchCore(file16, half);
    const loaded16 = await loadPatchCore(file16);
    expect(loaded16.model.bankMB).toBeCloseTo(model.bankMB / 2, 6);
    const c = await loaded16.model.score(engine, src);
    for (let i = 0; i < c.length; i++) expect(Math.abs(c[i]!.rawScore - a[i]!.rawScore) / a[i]!.rawScore).toBeLessThan(1e-2);
  });

  it('tile mode scores native-resolution tiles and stitches a full-size map', async () => {
    const tiled = await PatchCoreModel.train(engine, files(join(BOTTLE!, 'train', 'good'), 6, 5), {
      config: { coresetRatio: 0.05, tile: { size: 224, overlap: 0.25 } },
      batchSize: 8,
    });
    // 256x256 -> tiles at x, y in {0, 32}: 4 tiles per image; 5 bank images.
    expect(tiled.bank.sourcePatches).toBe(5 * 4 * 784);
    const [r] = await tiled.score(engine, broken().slice(0, 1));
    expect([r!.width, r!.height]).toEqual([256, 256]);
    expect(Number.isFinite(r!.rawScore)).toBe(true);
  });

  it('writes heatmap overlays and binary masks as PNG', async () => {
    const [r] = await model.score(engine, broken().slice(0, 1));
    const png = await heatmapOverlayPng(broken()[0]!, r!.map, r!.width, r!.height, { threshold: model.thresholds.pixel });
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', 256, 256, 3]);
    const mask = await maskPng(r!.map, r!.width, r!.height, model.thresholds.pixel);
    const mm = await sharp(mask).metadata();
    expect([mm.format, mm.width, mm.height, mm.channels]).toEqual(['png', 256, 256, 1]);
    const px = await sharp(mask).raw().toBuffer();
    expect(px.some((v) => v === 255)).toBe(true);
    expect(px.every((v) => v === 0 || v === 255)).toBe(true);
  });

  it('trains a few-shot head on a handful of defects and fuses it with the memory-bank score', async () => {
    const dir = join(BOTTLE!, 'test', 'broken_large');
    const defects = broken().slice(0, 2).map((p) => {
      const stem = p.split('/').pop()!.replace('.png', '');
      return { source: p, mask: join(BOTTLE!, 'ground_truth', 'broken_large', `${stem}_mask.png`) };
    });
    const fs = await FewShotModel.train(engine, model, {
      negatives: files(join(BOTTLE!, 'train', 'good'), 4, 7),
      defects,
      validation: files(join(BOTTLE!, 'train', 'good'), 3, 8),
    }, { epochs: 10 });
    expect(fs.head.training.positives).toBeGreaterThan(0);
    const test = [...good().slice(0, 2), ...files(dir, 6, 2).slice(4)];
    const res = await fs.score(engine, model, test);
    expect(res.length).toBe(test.length);
    for (const r of res) {
      expect(Number.isFinite(r.fusedScore)).toBe(true);
      expect(r.fusedNormalized >= 0.5).toBe(r.fusedAnomalous);
      expect(r.embeddings).toBeUndefined();
    }
    // Unseen broken bottles score above the good ones on the fused scale too.
    expect(Math.min(res[2]!.fusedScore, res[3]!.fusedScore)).toBeGreaterThan(Math.max(res[0]!.fusedScore, res[1]!.fusedScore));
    const restored = FewShotModel.fromState(JSON.parse(JSON.stringify(fs.toState())));
    const again = await restored.score(engine, model, test.slice(0, 1));
    expect(again[0]!.fusedScore).toBeCloseTo(res[0]!.fusedScore, 4);
  });
});
