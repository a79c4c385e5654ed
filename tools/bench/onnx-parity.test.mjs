// Numeric parity of the ONNX exporter: the real ResNet-50 weights are exported by the engine
// (loupe::ExportOnnx, through the addon or the loupe_export_onnx tool) and run by onnxruntime-node on
// the three reference images; softmax must match the reference within 1e-5, logits within 1e-4, with
// identical top-5. The feature-map taps are checked against the reference stage statistics and avg_pool.
// Skips (loudly) only when an input is missing: onnxruntime-node, the real weights, or an exporter.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  exportOnnx,
  loadAddon,
  loadOrt,
  maxAbsDiff,
  ortSessionOptions,
  preprocessPng,
  referenceDir,
  topK,
  weightsPath,
  exporterTool,
} from './lib.mjs';

const IMAGES = ['chelsea', 'coffee', 'rocket'];
// Keras layer of each engine tap (see shared/reference/resnet50/README.md).
const STAGE_OF_TAP = {
  conv1: 'activation',
  res2c: 'activation_9',
  res3d: 'activation_21',
  res4f: 'activation_39',
  res5c: 'activation_48',
};
const TAPS = ['fc1000', 'probabilities', 'avg_pool', ...Object.keys(STAGE_OF_TAP)];

const { ort, error: ortError } = loadOrt();
const weights = weightsPath();
const refDir = referenceDir();
const { addon } = await loadAddon();
const canExport = Boolean((addon && typeof addon.exportOnnx === 'function') || exporterTool());
const missing = [
  !ort && `onnxruntime-node (${ortError?.message?.split('\n')[0]})`,
  !weights && 'the real weights (npm run fetch-weights, or LOUPE_HOME/LOUPE_WEIGHTS)',
  !refDir && 'shared/reference/resnet50',
  !canExport && 'an ONNX exporter (addon.exportOnnx or native/build*/loupe_export_onnx)',
].filter(Boolean);
if (missing.length) console.warn(`[onnx-parity] SKIPPED, missing: ${missing.join('; ')}`);

function meanStd(x) {
  let s = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  let q = 0;
  for (const v of x) q += (v - mean) * (v - mean);
  return { mean, std: Math.sqrt(q / x.length) };
}

describe.skipIf(missing.length > 0)('ONNX export of the real ResNet-50 vs the reference', () => {
  let dir;
  let session;
  const results = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-onnx-parity-'));
    const out = join(dir, 'resnet50.onnx');
    await exportOnnx({ weights, out, addon, taps: TAPS });
    session = await ort.InferenceSession.create(out, ortSessionOptions(2));
    for (const name of IMAGES) {
      const x = await preprocessPng(join(refDir, `${name}_224.png`));
      const feeds = { input: new ort.Tensor('float32', x, [1, 224, 224, 3]) };
      results[name] = await session.run(feeds);
    }
  });

  afterAll(async () => {
    await session?.release?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('declares the engine layout: NHWC input, taps in order', () => {
    expect(session.inputNames).toEqual(['input']);
    expect(session.outputNames).toEqual(TAPS);
    expect(results.chelsea.res3d.dims).toEqual([1, 28, 28, 512]);
    expect(results.chelsea.fc1000.dims).toEqual([1, 1000]);
  });

  for (const name of IMAGES) {
    it(`${name}: softmax within 1e-5, logits and avg_pool within 1e-4, identical top-5`, () => {
      const ref = JSON.parse(readFileSync(join(refDir, `${name}.json`), 'utf8'));
      const r = results[name];
      const dSoftmax = maxAbsDiff(r.probabilities.data, ref.softmax);
      const dLogits = maxAbsDiff(r.fc1000.data, ref.logits);
      const dPool = maxAbsDiff(r.avg_pool.data, ref.avg_pool);
      console.log(`[onnx-parity] ${name}: softmax ${dSoftmax.toExponential(2)}, logits ` +
        `${dLogits.toExponential(2)}, avg_pool ${dPool.toExponential(2)}`);
      expect(dSoftmax).toBeLessThan(1e-5);
      expect(dLogits).toBeLessThan(1e-4);
      expect(dPool).toBeLessThan(1e-4);
      expect(topK(r.probabilities.data, 5)).toEqual(ref.top5.map((t) => t.index));
    });

    it(`${name}: NHWC stage taps match the reference statistics (1e-4 relative)`, () => {
      const ref = JSON.parse(readFileSync(join(refDir, `${name}.json`), 'utf8'));
      for (const [tap, layer] of Object.entries(STAGE_OF_TAP)) {
        const want = ref.stage_stats[layer];
        const t = results[name][tap];
        expect(t.dims).toEqual([1, ...want.shape_nhwc.slice(-3)]);
        const got = meanStd(t.data);
        expect(Math.abs(got.mean - want.mean)).toBeLessThan(1e-4 * Math.abs(want.mean) + 1e-6);
        expect(Math.abs(got.std - want.std)).toBeLessThan(1e-4 * Math.abs(want.std) + 1e-6);
      }
      // avg_pool is the spatial mean of res5c in NHWC: checks the layout of the transposed tap.
      const res5c = results[name].res5c.data;
      const pooled = new Float64Array(2048);
      for (let i = 0; i < res5c.length; i++) pooled[i % 2048] += res5c[i] / 49;
      expect(maxAbsDiff(pooled, results[name].avg_pool.data)).toBeLessThan(1e-5);
    });
  }
});
