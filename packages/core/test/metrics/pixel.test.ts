import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { createRng } from '../../src/datasets/random.js';
import { areaUpTo, computePixelMetrics, connectedComponents, PixelMetricsAccumulator, pixelMetricsExact, type PixelSample } from '../../src/metrics/pixel.js';
import { auroc } from '../../src/metrics/roc.js';
import { sharedDir, skipNote } from '../support/env.js';

describe('connectedComponents', () => {
  it('8-connectivity joins diagonals, 4-connectivity does not', () => {
    // 1 0 0 1
    // 0 1 0 1
    // 0 0 0 0
    // 1 1 0 0
    const m = [1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0];
    const c8 = connectedComponents(m, 4, 4);
    expect(c8.count).toBe(3);
    expect(Array.from(c8.areas)).toEqual([0, 2, 2, 2]);
    expect(Array.from(c8.labels)).toEqual([1, 0, 0, 2, 0, 1, 0, 2, 0, 0, 0, 0, 3, 3, 0, 0]);
    const c4 = connectedComponents(m, 4, 4, { connectivity: 4 });
    expect(c4.count).toBe(4);
    expect(connectedComponents([255, 128, 0, 0], 2, 2, { threshold: 127 }).count).toBe(1);
    expect(connectedComponents(new Uint8Array(9), 3, 3).count).toBe(0);
  });

  it('handles a large single region without recursion limits', () => {
    const n = 512;
    const c = connectedComponents(new Uint8Array(n * n).fill(1), n, n);
    expect(c.count).toBe(1);
    expect(c.areas[1]).toBe(n * n);
  });
});

// Image 1 (4x2): region A = pixels 0,1 (scores .9,.5), region B = pixel 7 (.7), normals .8 .6 .1 .1 .1
// Image 2 (5x1): good, all .1.   FPR over 10 normal pixels; PRO over the 2 regions.
// Curve: (0,0) (0,.25) (.1,.25) (.1,.75) (.2,.75) (.2,1) (1,1)
// AUPRO@0.3 = (.1*.25 + .1*.75 + .1*1) / .3 = 2/3 ; AUPRO@0.15 = (.025 + .05*.75)/.15 = 5/12
// Pixel AUROC: .9 beats 10, .7 beats 9, .5 beats 8 => 27/30
const hand: PixelSample[] = [
  { width: 4, height: 2, scores: [0.9, 0.5, 0.8, 0.6, 0.1, 0.1, 0.1, 0.7], mask: [255, 255, 0, 0, 0, 0, 0, 255] },
  { width: 5, height: 1, scores: [0.1, 0.1, 0.1, 0.1, 0.1], mask: null },
];

describe('pixel AUROC and PRO: hand-computed', () => {
  it('exact', () => {
    const r = pixelMetricsExact(hand);
    expect(r.regions).toBe(2);
    expect(r.normalPixels).toBe(10);
    expect(r.anomalousPixels).toBe(3);
    expect(r.pixelAuroc).toBeCloseTo(0.9, 12);
    expect(r.aupro).toBeCloseTo(2 / 3, 12);
    expect(r.proCurve!.fpr).toEqual([0, 0, 0.1, 0.1, 0.2, 0.2, 1]);
    expect(r.proCurve!.pro).toEqual([0, 0.25, 0.25, 0.75, 0.75, 1, 1]);
    expect(pixelMetricsExact(hand, { maxFpr: 0.15 }).aupro).toBeCloseTo(5 / 12, 12);
  });

  it('streaming histogram gives the same values when scores fall in distinct bins', () => {
    for (const bins of [10, 16384]) {
      const acc = new PixelMetricsAccumulator({ min: 0, max: 1 }, { bins });
      for (const s of hand) acc.add(s);
      const r = acc.result();
      expect(r.pixelAuroc).toBeCloseTo(0.9, 12);
      expect(r.aupro).toBeCloseTo(2 / 3, 12);
      expect(r.images).toBe(2);
    }
  });

  it('minRegionArea drops small regions from PRO only', () => {
    const r = pixelMetricsExact(hand, { minRegionArea: 2 });
    expect(r.regions).toBe(1);
    // Only A: PRO .5 from FPR 0 to .2, then 1 => (.2*.5 + .1*1)/.3
    expect(r.aupro).toBeCloseTo((0.2 * 0.5 + 0.1) / 0.3, 12);
    expect(r.pixelAuroc).toBeCloseTo(0.9, 12);
  });

  it('areaUpTo interpolates at the limit', () => {
    expect(areaUpTo([0, 1], [0, 1], 0.3)).toBeCloseTo(0.15);
    expect(areaUpTo([0, 0.2, 0.6], [1, 1, 0], 0.4)).toBeCloseTo((0.2 + 0.2 * 0.75) / 0.4);
  });

  it('no regions or no normal pixels -> null metrics', () => {
    const r = pixelMetricsExact([{ width: 2, height: 1, scores: [0, 1], mask: null }]);
    expect(r.aupro).toBeNull();
    expect(r.pixelAuroc).toBeNull();
    expect(() => pixelMetricsExact([{ width: 2, height: 2, scores: [0, 1], mask: null }])).toThrow(/2 scores for 2x2/);
  });
});

describe('pixel metrics: random cases', () => {
  const rng = createRng(77);
  const samples: PixelSample[] = [];
  for (let k = 0; k < 6; k++) {
    const w = 24;
    const h = 20;
    const mask = new Uint8Array(w * h);
    if (k % 3 !== 0) {
      const cx = rng.int(w);
      const cy = rng.int(h);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < 10 + rng.int(10)) mask[y * w + x] = 255;
    }
    const scores = Float32Array.from(mask, (m) => (m ? 0.6 : 0.4) + rng.normal() * 0.15);
    samples.push({ width: w, height: h, scores, mask: k % 3 !== 0 ? mask : null });
  }

  it('exact pixel AUROC equals image-style AUROC on the flattened pixels', () => {
    const s: number[] = [];
    const l: number[] = [];
    for (const x of samples) for (let p = 0; p < x.scores.length; p++) {
      s.push(x.scores[p]!);
      l.push(x.mask && x.mask[p]! > 0 ? 1 : 0);
    }
    expect(pixelMetricsExact(samples).pixelAuroc).toBeCloseTo(auroc(s, l), 12);
  });

  it('streaming (two passes over a generator) matches exact within the bin width', async () => {
    const exact = pixelMetricsExact(samples);
    const streamed = await computePixelMetrics(function* () {
      yield* samples;
    }, { bins: 4096 });
    expect(streamed.pixelAuroc!).toBeCloseTo(exact.pixelAuroc!, 3);
    expect(streamed.aupro!).toBeCloseTo(exact.aupro!, 2);
    expect(streamed.regions).toBe(exact.regions);
    expect(exact.aupro!).toBeGreaterThan(0.2);
    expect(exact.aupro!).toBeLessThan(1);
  });
});

describe('pixel metrics on real MVTec bottle masks', () => {
  const root = join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle');
  const have = existsSync(join(root, 'ground_truth'));
  if (!have) skipNote('pixel metrics on real masks', `no shared dataset at ${root}`);

  async function* source(mapOf: (mask: Uint8Array | null, i: number) => Float32Array): AsyncGenerator<PixelSample> {
    let i = 0;
    for (const t of readdirSync(join(root, 'ground_truth')).sort()) {
      for (const f of readdirSync(join(root, 'ground_truth', t)).sort()) {
        const { data, info } = await sharp(join(root, 'ground_truth', t, f)).greyscale().raw().toBuffer({ resolveWithObject: true });
        const mask = new Uint8Array(data.buffer, data.byteOffset, data.length);
        yield { width: info.width, height: info.height, mask, scores: mapOf(mask, i++) };
      }
    }
    for (let g = 0; g < 20; g++) yield { width: 256, height: 256, mask: null, scores: mapOf(null, i++) };
  }

  it.skipIf(!have)('a perfect map scores 1; a random map scores ~0.5 AUROC and ~0.15 AUPRO', async () => {
    const perfect = await computePixelMetrics(() => source((m) => Float32Array.from(m ?? new Uint8Array(256 * 256), (v) => (v > 0 ? 1 : 0))), { range: { min: 0, max: 1 } });
    expect(perfect.regions).toBeGreaterThanOrEqual(63);
    expect(perfect.images).toBe(83);
    expect(perfect.pixelAuroc).toBe(1);
    expect(perfect.aupro).toBeCloseTo(1, 6);
    const rng = createRng(3);
    const noise = await computePixelMetrics(() => source(() => Float32Array.from({ length: 256 * 256 }, () => rng.next())), { range: { min: 0, max: 1 }, bins: 1000 });
    expect(noise.pixelAuroc!).toBeGreaterThan(0.49);
    expect(noise.pixelAuroc!).toBeLessThan(0.51);
    expect(noise.aupro!).toBeGreaterThan(0.13);
    expect(noise.aupro!).toBeLessThan(0.17);
  });
});
