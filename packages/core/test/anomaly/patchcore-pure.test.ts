// Exact small cases for the pure-TypeScript parts of PatchCore (no engine; tiny in-memory images).
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { loadMask } from '../../src/image/mask.js';
import {
  avgPool3x3,
  bilinearAxis,
  buildPatchEmbeddings,
  EMBEDDING_DIM,
  SparseRandomProjection,
} from '../../src/anomaly/patchcore/feature-extractor.js';
import { gaussianBlur, gaussianKernel1d, gaussianKernelSize, patchScoresToMap, reflectIndex, resizeBilinear } from '../../src/anomaly/patchcore/anomaly-map.js';
import {
  bankMB,
  buildMemoryBank,
  coresetSize,
  decodeFloat16,
  encodeFloat16,
  float16BitsToFloat32,
  float32ToFloat16Bits,
} from '../../src/anomaly/patchcore/memory-bank.js';
import { bruteForceKnn, greedyCoresetTs, reweightFactor, scoreEmbeddings, typescriptKnn } from '../../src/anomaly/patchcore/scorer.js';
import {
  calibrateThresholds,
  denormalizeScore,
  f1OptimalThreshold,
  f1OptimalThresholdBinned,
  normalizeScore,
  quantile,
} from '../../src/anomaly/patchcore/threshold.js';
import { cropTile, planTiles, TileStitcher, tileOrigins } from '../../src/image/tiles.js';
import { createRng } from '../../src/datasets/random.js';

function randomArray(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

/** Naive reference: torch AvgPool2d(3, 1, 1) (count_include_pad) on NHWC, one loop per output value. */
function naivePool(src: Float32Array, n: number, h: number, w: number, c: number): Float64Array {
  const out = new Float64Array(n * h * w * c);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let dy = -1; dy <= 1; dy++)
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy, xx = x + dx;
              if (yy >= 0 && yy < h && xx >= 0 && xx < w) s += src[((i * h + yy) * w + xx) * c + ch]!;
            }
          out[((i * h + y) * w + x) * c + ch] = s / 9;
        }
  return out;
}

/** Naive torch bilinear (align_corners=false) sample of a [h][w] plane at output (oy, ox) of [H][W]. */
function naiveBilinear(plane: (y: number, x: number) => number, h: number, w: number, H: number, W: number, oy: number, ox: number): number {
  const sy = Math.max(0, ((oy + 0.5) * h) / H - 0.5);
  const sx = Math.max(0, ((ox + 0.5) * w) / W - 0.5);
  const y0 = Math.min(Math.floor(sy), h - 1), x0 = Math.min(Math.floor(sx), w - 1);
  const y1 = Math.min(y0 + 1, h - 1), x1 = Math.min(x0 + 1, w - 1);
  const ly = sy - y0, lx = sx - x0;
  return (1 - ly) * ((1 - lx) * plane(y0, x0) + lx * plane(y0, x1)) + ly * ((1 - lx) * plane(y1, x0) + lx * plane(y1, x1));
}

describe('avgPool3x3', () => {
  it('averages 3x3 neighbourhoods with zero padding, always dividing by 9', () => {
    const src = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const out = avgPool3x3(src, 1, 3, 3, 1);
    expect(out[4]).toBeCloseTo(45 / 9, 6);
    expect(out[0]).toBeCloseTo((1 + 2 + 4 + 5) / 9, 6);
    expect(out[1]).toBeCloseTo((1 + 2 + 3 + 4 + 5 + 6) / 9, 6);
    expect(out[8]).toBeCloseTo((5 + 6 + 8 + 9) / 9, 6);
  });

  it('matches a naive reference on random multi-image, multi-channel data', () => {
    const n = 2, h = 5, w = 4, c = 3;
    const src = randomArray(n * h * w * c, 1);
    const out = avgPool3x3(src, n, h, w, c);
    const ref = naivePool(src, n, h, w, c);
    for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(ref[i]!, 5);
  });
});

describe('bilinear (torch align_corners=false)', () => {
  it('computes the 14 -> 28 sampling grid', () => {
    const a = bilinearAxis(14, 28);
    expect([a.i0[0], a.i1[0], a.lambda[0]]).toEqual([0, 1, 0]); // -0.25 clamps to 0
    expect([a.i0[1], a.i1[1], a.lambda[1]]).toEqual([0, 1, 0.25]);
    expect([a.i0[2], a.i1[2], a.lambda[2]]).toEqual([0, 1, 0.75]);
    expect([a.i0[27], a.i1[27]]).toEqual([13, 13]);
  });

  it('upsamples 2x2 -> 4x4 exactly as torch', () => {
    const out = resizeBilinear(Float32Array.from([1, 2, 3, 4]), 2, 2, 4, 4);
    expect(Array.from(out)).toEqual([1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]);
  });

  it('downsamples and handles non-square sizes like the naive formula', () => {
    const src = randomArray(5 * 7, 2);
    const out = resizeBilinear(src, 5, 7, 3, 11);
    for (let y = 0; y < 3; y++)
      for (let x = 0; x < 11; x++) expect(out[y * 11 + x]).toBeCloseTo(naiveBilinear((yy, xx) => src[yy * 7 + xx]!, 5, 7, 3, 11, y, x), 5);
  });
});

describe('gaussian smoothing', () => {
  it('uses anomalib kernel sizes and a normalised symmetric kernel', () => {
    expect(gaussianKernelSize(4)).toBe(33);
    expect(gaussianKernelSize(1)).toBe(9);
    const k = gaussianKernel1d(4);
    expect(k.length).toBe(33);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    for (let i = 0; i < 16; i++) expect(k[i]).toBeCloseTo(k[32 - i]!, 7);
    expect(k[16]! / k[20]!).toBeCloseTo(Math.exp(16 / 32), 5);
  });

  it('reflects like torch (edge not repeated)', () => {
    expect([-3, -2, -1, 0, 4, 5, 6, 7].map((i) => reflectIndex(i, 5))).toEqual([3, 2, 1, 0, 4, 3, 2, 1]);
  });

  it('keeps a constant map constant and spreads an impulse as the kernel outer product', () => {
    const c = gaussianBlur(new Float32Array(40 * 40).fill(3), 40, 40, 4);
    for (const v of c) expect(v).toBeCloseTo(3, 5);
    const h = 41;
    const imp = new Float32Array(h * h);
    imp[20 * h + 20] = 1;
    const out = gaussianBlur(imp, h, h, 2);
    const k = gaussianKernel1d(2); // 17 taps, fits inside: no border effect
    expect(out[20 * h + 20]).toBeCloseTo(k[8]! * k[8]!, 7);
    expect(out[(20 + 3) * h + 20 - 5]).toBeCloseTo(k[8 + 3]! * k[8 - 5]!, 7);
    expect(out[0]).toBe(0);
  });

  it('turns 28x28 patch scores into a 224x224 map', () => {
    const ps = new Float32Array(28 * 28).fill(2);
    ps[14 * 28 + 14] = 10;
    const map = patchScoresToMap(ps, 28);
    expect(map.length).toBe(224 * 224);
    let arg = 0;
    for (let i = 0; i < map.length; i++) if (map[i]! > map[arg]!) arg = i;
    const y = Math.floor(arg / 224), x = arg % 224;
    expect(Math.abs(y - 116)).toBeLessThanOrEqual(4); // patch 14 covers pixels 112..119
    expect(Math.abs(x - 116)).toBeLessThanOrEqual(4);
    expect(map[0]).toBeCloseTo(2, 5);
  });
});

describe('buildPatchEmbeddings', () => {
  it('concatenates pooled res3d with pooled, upsampled res4f (naive reference)', () => {
    const n = 2;
    const res3d = randomArray(n * 28 * 28 * 512, 3);
    const res4f = randomArray(n * 14 * 14 * 1024, 4);
    const emb = buildPatchEmbeddings(res3d, res4f, n);
    expect(emb.length).toBe(n * 784 * EMBEDDING_DIM);
    const p2 = naivePool(res3d, n, 28, 28, 512);
    const p3 = naivePool(res4f, n, 14, 14, 1024);
    const rng = createRng(5);
    for (let t = 0; t < 200; t++) {
      const img = rng.int(n), y = rng.int(28), x = rng.int(28);
      const row = ((img * 28 + y) * 28 + x) * EMBEDDING_DIM;
      const c2 = rng.int(512);
      expect(emb[row + c2]).toBeCloseTo(p2[((img * 28 + y) * 28 + x) * 512 + c2]!, 5);
      const c3 = rng.int(1024);
      const ref = naiveBilinear((yy, xx) => p3[((img * 14 + yy) * 14 + xx) * 1024 + c3]!, 14, 14, 28, 28, y, x);
      expect(emb[row + 512 + c3]).toBeCloseTo(ref, 5);
    }
  });
});

/** Mirror into [0, n) one bounce at a time (torch 'reflect'). */
function naiveReflect(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

/** Naive 2-D Gaussian blur: the full outer-product kernel (anomalib size), reflected taps, double sums. */
function naiveBlur(src: Float32Array, h: number, w: number, sigma: number): Float64Array {
  const half = Math.floor(4 * sigma + 0.5);
  const k: number[] = [];
  for (let t = -half; t <= half; t++) k.push(Math.exp(-(t * t) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let dy = -half; dy <= half; dy++)
        for (let dx = -half; dx <= half; dx++) s += ((k[dy + half]! * k[dx + half]!) / (sum * sum)) * src[naiveReflect(y + dy, h) * w + naiveReflect(x + dx, w)]!;
      out[y * w + x] = s;
    }
  return out;
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('native kernels (engine patch_maps)', () => {
  it('blurs like the naive 2-D Gaussian with reflect borders, in place too', () => {
    for (const [h, w, sigma] of [[9, 13, 1.3], [31, 29, 4], [5, 6, 2] /* kernel wider than the map */, [1, 7, 1], [1, 1, 3]] as const) {
      const src = randomArray(h * w, h * 100 + w);
      const out = gaussianBlur(src, h, w, sigma);
      const ref = naiveBlur(src, h, w, sigma);
      for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(ref[i]!, 5);
      const inPlace = src.slice();
      gaussianBlur(inPlace, h, w, sigma, inPlace);
      expect(Array.from(inPlace)).toEqual(Array.from(out));
    }
    const src = randomArray(12, 1);
    expect(Array.from(gaussianBlur(src, 3, 4, 0))).toEqual(Array.from(src));
  });

  it('goes straight to the output size in one call, exactly as map + resize', () => {
    const ps = randomArray(28 * 28, 6);
    const two = resizeBilinear(patchScoresToMap(ps, 28), 224, 224, 300, 257);
    const one = patchScoresToMap(ps, 28, { outHeight: 300, outWidth: 257 });
    expect(one.length).toBe(300 * 257);
    expect(Array.from(one)).toEqual(Array.from(two));
    const out = new Float32Array(300 * 257 + 5).fill(-1);
    expect(patchScoresToMap(ps, 28, { outHeight: 300, outWidth: 257, out })).toBe(out);
    expect(Array.from(out.subarray(0, 300 * 257))).toEqual(Array.from(two));
    expect(out[300 * 257]).toBe(-1);
  });

  it('projects like the matrix it applies (probed with unit rows)', () => {
    const inDim = 40, outDim = 6;
    const p = new SparseRandomProjection({ inDim, outDim, seed: 3 });
    const eye = new Float32Array(inDim * inDim);
    for (let i = 0; i < inDim; i++) eye[i * inDim + i] = 1;
    const P = p.apply(eye, inDim); // row i = the matrix's row for input i
    const n = 19; // a full 16-row block and a tail
    const x = randomArray(n * inDim, 4);
    const y = p.apply(x, n);
    for (let r = 0; r < n; r++)
      for (let j = 0; j < outDim; j++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * P[i * outDim + j]!;
        expect(y[r * outDim + j]).toBeCloseTo(s, 5);
      }
  });

  it('reports bad arguments as INVALID_ARGUMENT', () => {
    expect(errorCode(() => gaussianKernel1d(0))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => gaussianKernel1d(1, 4))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => resizeBilinear(new Float32Array(4), 2, 2, 0, 3))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => resizeBilinear(new Float32Array(4), 2, 2, 3, 3, new Float32Array(8)))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => gaussianBlur(new Float32Array(4), 2, 2, Infinity))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => avgPool3x3(new Float32Array(5), 1, 2, 2, 1))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => bilinearAxis(0, 4))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => patchScoresToMap(new Float32Array(10), 3))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => new SparseRandomProjection({ inDim: 8, outDim: 2, seed: 0 }).apply(new Float32Array(8), 1, new Float32Array(1)))).toBe('INVALID_ARGUMENT');
  });
});

describe('SparseRandomProjection', () => {
  it('is deterministic per seed, ~sqrt(D) non-zeros per output, and preserves distances on average', () => {
    const a = new SparseRandomProjection({ inDim: 1536, outDim: 256, seed: 7 });
    const b = new SparseRandomProjection({ inDim: 1536, outDim: 256, seed: 7 });
    const c = new SparseRandomProjection({ inDim: 1536, outDim: 256, seed: 8 });
    const x = randomArray(20 * 1536, 9);
    const pa = a.apply(x, 20), pb = b.apply(x, 20), pc = c.apply(x, 20);
    expect(Array.from(pa)).toEqual(Array.from(pb));
    expect(Array.from(pa)).not.toEqual(Array.from(pc));
    expect(a.nonZeros / 256).toBeGreaterThan(30);
    expect(a.nonZeros / 256).toBeLessThan(48);
    let ratio = 0, pairs = 0;
    for (let i = 0; i < 20; i++)
      for (let j = i + 1; j < 20; j++) {
        let d0 = 0, d1 = 0;
        for (let k = 0; k < 1536; k++) d0 += (x[i * 1536 + k]! - x[j * 1536 + k]!) ** 2;
        for (let k = 0; k < 256; k++) d1 += (pa[i * 256 + k]! - pa[j * 256 + k]!) ** 2;
        ratio += d1 / d0;
        pairs++;
      }
    expect(ratio / pairs).toBeGreaterThan(0.85);
    expect(ratio / pairs).toBeLessThan(1.15);
  });
});

describe('fp16 storage', () => {
  it('converts known values with round-to-nearest-even', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // tie -> even -> overflow
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie -> even
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float32ToFloat16Bits(1 / 3)).toBe(0x3555);
    expect(float32ToFloat16Bits(0.1)).toBe(0x2e66);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(float16BitsToFloat32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))).toBe(true);
  });

  it('round-trips every finite half value', () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if (((h >> 10) & 0x1f) === 0x1f && (h & 0x3ff) !== 0) continue; // NaN payloads
      if (float32ToFloat16Bits(float16BitsToFloat32(h)) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
    const v = randomArray(1000, 11);
    const back = decodeFloat16(encodeFloat16(v));
    for (let i = 0; i < v.length; i++) expect(Math.abs(back[i]! - v[i]!)).toBeLessThanOrEqual(Math.abs(v[i]!) * 2 ** -11 + 2 ** -24);
  });
});

describe('memory bank', () => {
  it('sizes the coreset by ratio, entry cap and MB cap', () => {
    expect(coresetSize(78400, 1536, { coresetRatio: 0.01 })).toBe(784);
    expect(coresetSize(78400, 1536, { coresetRatio: 0.1, maxEntries: 1000 })).toBe(1000);
    expect(coresetSize(78400, 1536, { coresetRatio: 0.1, maxMB: 1 })).toBe(Math.floor(1048576 / (1536 * 4)));
    expect(coresetSize(78400, 1536, { coresetRatio: 0.1, maxMB: 1, storage: 'fp16' })).toBe(Math.floor(1048576 / (1536 * 2)));
    expect(coresetSize(10, 4, { coresetRatio: 1 })).toBe(10);
    expect(bankMB({ n: 1024, d: 1024, storage: 'fp16' })).toBe(2);
  });

  it('greedy k-center picks farthest points', () => {
    const X = Float32Array.from([0, 1, 2, 10]);
    expect(Array.from(greedyCoresetTs(X, 4, 1, 3, 0))).toEqual([0, 3, 2]);
  });

  it('builds a bank through the kernel interface, fp16-rounded when asked', async () => {
    const X = randomArray(100 * 8, 12);
    const bank = await buildMemoryBank(typescriptKnn, X, 100, 8, { coresetRatio: 0.1, storage: 'fp16' });
    expect(bank.n).toBe(10);
    expect(bank.sourcePatches).toBe(100);
    for (const v of bank.vectors) expect(float16BitsToFloat32(float32ToFloat16Bits(v))).toBe(v);
  });
});

describe('scoring', () => {
  it('reweights with 1 - softmax(distances)[0]', () => {
    expect(reweightFactor([5])).toBe(1);
    expect(reweightFactor([1, 2])).toBeCloseTo(1 - 1 / (1 + Math.E), 12);
    expect(reweightFactor(new Array(9).fill(3))).toBeCloseTo(1 - 1 / 9, 12);
    expect(reweightFactor([1000, 1001])).toBeCloseTo(1 - 1 / (1 + Math.E), 12); // stable
  });

  it('brute-force kNN returns ascending squared distances, ties to the lower index', () => {
    const bank = Float32Array.from([0, 0, 1, 0, -1, 0, 5, 5]);
    const q = Float32Array.from([0, 0, 0.4, 0]);
    const r = bruteForceKnn(bank, 4, q, 2, 2, 3);
    expect(Array.from(r.idx)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(r.dist[1]).toBe(1);
    expect(r.dist[3]).toBeCloseTo(0.16, 6);
    expect(r.dist[4]).toBeCloseTo(0.36, 6);
  });

  it('computes patch distances and the reweighted image score by hand', async () => {
    // Bank in 2-D: a tight cluster at the origin and one isolated point at (10, 0).
    const bank = { vectors: Float32Array.from([0, 0, 0.1, 0, 0, 0.1, 10, 0]), n: 4, d: 2, storage: 'fp32' as const, sourcePatches: 4 };
    // One image, 3 patches; the worst patch (13, 0) is nearest to (10, 0), 3 away.
    const q = Float32Array.from([0, 0.05, 13, 0, 0.1, 0.1]);
    const index = await typescriptKnn.createKnnIndex(bank.vectors, bank.n, bank.d);
    const r = await scoreEmbeddings(index, bank, q, 1, 3, { supportNeighbours: 2 });
    expect(r.patchScores[0]).toBeCloseTo(0.05, 6);
    expect(r.patchScores[1]).toBeCloseTo(3, 6);
    expect(Array.from(r.nnIdx)).toEqual([0, 3, 1]);
    expect(r.maxPatch[0]).toBe(1);
    // N_2(m*) = {(10,0), (0.1,0)}: distances 3 and 12.9.
    const w = 1 - Math.exp(3) / (Math.exp(3) + Math.exp(12.9));
    expect(r.imageScores[0]).toBeCloseTo(w * 3, 6);
    const r1 = await scoreEmbeddings(index, bank, q, 1, 3, { supportNeighbours: 1 });
    expect(r1.imageScores[0]).toBeCloseTo(3, 6);
  });
});

describe('thresholds', () => {
  it('computes numpy linear quantiles', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4], 0.99)).toBeCloseTo(3.97, 10);
    expect(quantile([7], 0.3)).toBe(7);
  });

  it('finds the F1-optimal threshold', () => {
    const r = f1OptimalThreshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]);
    expect(r.threshold).toBe(0.35);
    expect(r.f1).toBeCloseTo(0.8, 10);
    const rb = f1OptimalThresholdBinned(Float32Array.from([0.1, 0.4, 0.35, 0.8]), Uint8Array.from([0, 0, 1, 1]), 1000);
    expect(rb.f1).toBeCloseTo(0.8, 10);
    expect(rb.threshold).toBeLessThanOrEqual(0.35);
    expect(rb.threshold).toBeGreaterThan(0.349);
    expect(f1OptimalThreshold([1, 2], [0, 0]).threshold).toBe(Infinity);
  });

  it('normalises with the threshold at 0.5 and inverts', () => {
    expect(normalizeScore(0, 2)).toBe(0);
    expect(normalizeScore(1, 2)).toBe(0.25);
    expect(normalizeScore(2, 2)).toBe(0.5);
    expect(normalizeScore(4, 2)).toBe(0.75);
    expect(normalizeScore(Infinity, 2)).toBe(1);
    for (const s of [0.3, 1.9, 2, 2.1, 17]) expect(denormalizeScore(normalizeScore(s, 2), 2)).toBeCloseTo(s, 10);
  });

  it('calibrates from good images (quantile) or labelled defects (F1)', () => {
    const t = calibrateThresholds({ goodImageScores: [1, 2, 3, 4], goodMapMaxima: [2, 3, 4, 5], quantile: 0.5 });
    expect(t).toMatchObject({ image: 2.5, pixel: 3.5, method: 'quantile', goodCount: 4, defectCount: 0 });
    const f = calibrateThresholds({ goodImageScores: [1, 2, 3], goodMapMaxima: [1, 2, 3], defectImageScores: [2.5, 5] });
    expect(f.method).toBe('f1');
    expect(f.image).toBe(2.5);
  });
});

describe('tiling', () => {
  it('places overlapping tiles with the last one flush', () => {
    expect(tileOrigins(500, 224, 0.25)).toEqual([0, 168, 276]);
    expect(tileOrigins(224, 224, 0.25)).toEqual([0]);
    expect(tileOrigins(100, 224, 0.25)).toEqual([0]);
    expect(tileOrigins(448, 224, 0)).toEqual([0, 224]);
    expect(planTiles(448, 300, { overlap: 0 })).toEqual([
      { x: 0, y: 0 },
      { x: 224, y: 0 },
      { x: 0, y: 76 },
      { x: 224, y: 76 },
    ]);
  });

  it('crops tiles (edge-replicated outside) and averages overlaps', () => {
    const px = new Uint8Array(3 * 2 * 1);
    px.set([1, 2, 3, 4, 5, 6]);
    const t = cropTile(px, 3, 2, 1, { x: 1, y: 0 }, 3);
    expect(Array.from(t)).toEqual([2, 3, 3, 5, 6, 6, 5, 6, 6]);
    const s = new TileStitcher(4, 2);
    s.add(new Float32Array(9).fill(1), { x: 0, y: 0 }, 3);
    s.add(new Float32Array(9).fill(3), { x: 1, y: 0 }, 3);
    expect(Array.from(s.result())).toEqual([1, 2, 2, 3, 1, 2, 2, 3]);
  });
});

describe('loadMask', () => {
  const png = (w: number, h: number): Promise<Buffer> =>
    sharp(Buffer.from(Array.from({ length: w * h }, (_, i) => (i % w < w / 2 ? 255 : 0))), { raw: { width: w, height: h, channels: 1 } }).png().toBuffer();

  it('resizes another resolution of the same frame (nearest), refuses another shape naming the mask', async () => {
    const m = await loadMask({ name: 'half.png', data: await png(8, 4) }, 16, 8);
    expect(Array.from(m.subarray(0, 16))).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(m.reduce((a, v) => a + v, 0)).toBe(64);
    await expect(loadMask({ name: 'wrong.png', data: await png(10, 10) }, 16, 8)).rejects.toThrow(/wrong\.png.*10x10, not the shape of its 16x8 image/);
    expect(Array.from(await loadMask(null, 2, 2))).toEqual([0, 0, 0, 0]);
  });
});

describe('heatmapOverlayPng with a byte limit', () => {
  it('draws smaller to fit, keeping a 1-px defect line outlined (the map shrinks by its maximum)', async () => {
    const { heatmapOverlayPng } = await import('../../src/anomaly/patchcore/visualize.js');
    const side = 600;
    const noise = Buffer.alloc(side * side * 3);
    let s = 7;
    for (let i = 0; i < noise.length; i++) noise[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    const image = await sharp(noise, { raw: { width: side, height: side, channels: 3 } }).png().toBuffer();
    const map = new Float32Array(side * side).fill(0.2);
    for (let x = 0; x < side; x++) map[300 * side + x] = 1.5; // a thin scratch above the threshold (1)
    const full = await heatmapOverlayPng(image, map, side, side, { threshold: 1 });
    const maxBytes = Math.floor(full.length / 4);
    const small = await heatmapOverlayPng(image, map, side, side, { threshold: 1, maxBytes });
    expect(small.length).toBeLessThanOrEqual(maxBytes);
    const { data, info } = await sharp(small).raw().toBuffer({ resolveWithObject: true });
    expect(info.width).toBeLessThan(side);
    expect(info.width).toBe(info.height);
    let white = 0;
    for (let i = 0; i < data.length; i += 3) if (data[i] === 255 && data[i + 1] === 255 && data[i + 2] === 255) white++;
    expect(white).toBeGreaterThanOrEqual(info.width); // the line's outline is still there, across the image
  });
});
