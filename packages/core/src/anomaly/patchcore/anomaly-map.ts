// Anomaly maps as in anomalib's PatchCore AnomalyMapGenerator: the 28x28 patch scores are bilinearly
// upsampled (align_corners = false) to the model input size (224) and smoothed with a Gaussian of
// sigma 4 (kernel 2*floor(4*sigma+0.5)+1 = 33 taps, reflect padding, normalised to sum 1). The smoothed
// 224x224 map is then resized bilinearly to the original image size for display and pixel metrics.
// Single-channel maps are flat row-major Float32Arrays [h][w].
import { LoupeError } from '../../errors.js';
import { bilinearAxis } from './feature-extractor.js';

/** Bilinear resize of a single-channel map, torch semantics (align_corners = false). */
export function resizeBilinear(src: Float32Array, sh: number, sw: number, dh: number, dw: number, out?: Float32Array): Float32Array {
  if (src.length !== sh * sw) throw new LoupeError('INVALID_ARGUMENT', `resizeBilinear: expected ${sh * sw} values, got ${src.length}`);
  const dst = out ?? new Float32Array(dh * dw);
  if (sh === dh && sw === dw) {
    dst.set(src);
    return dst;
  }
  const ay = bilinearAxis(sh, dh);
  const ax = bilinearAxis(sw, dw);
  // Horizontal pass into a [sh][dw] buffer, then vertical: 4 MACs per output pixel.
  const tmp = new Float32Array(sh * dw);
  for (let y = 0; y < sh; y++) {
    const r = y * sw;
    const o = y * dw;
    for (let x = 0; x < dw; x++) {
      const l = ax.lambda[x]!;
      tmp[o + x] = (1 - l) * src[r + ax.i0[x]!]! + l * src[r + ax.i1[x]!]!;
    }
  }
  for (let y = 0; y < dh; y++) {
    const l = ay.lambda[y]!;
    const r0 = ay.i0[y]! * dw;
    const r1 = ay.i1[y]! * dw;
    const o = y * dw;
    for (let x = 0; x < dw; x++) dst[o + x] = (1 - l) * tmp[r0 + x]! + l * tmp[r1 + x]!;
  }
  return dst;
}

/** anomalib's kernel size for a sigma: 2 * floor(4 * sigma + 0.5) + 1. */
export function gaussianKernelSize(sigma: number): number {
  return 2 * Math.floor(4 * sigma + 0.5) + 1;
}

/** Normalised 1-D Gaussian kernel (sums to 1), centred, of odd `size`. */
export function gaussianKernel1d(sigma: number, size = gaussianKernelSize(sigma)): Float32Array {
  if (!(sigma > 0)) throw new LoupeError('INVALID_ARGUMENT', `sigma must be > 0, got ${sigma}`);
  if (size < 1 || size % 2 !== 1) throw new LoupeError('INVALID_ARGUMENT', `kernel size must be odd, got ${size}`);
  const half = (size - 1) / 2;
  const k = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = i - half;
    k[i] = Math.exp(-(x * x) / (2 * sigma * sigma));
    sum += k[i]!;
  }
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = k[i]! / sum;
  return out;
}

/** torch 'reflect' padding index (mirror without repeating the edge), valid for any offset. */
export function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

/** Separable Gaussian blur with reflect borders. sigma <= 0 copies. */
export function gaussianBlur(src: Float32Array, h: number, w: number, sigma: number, out?: Float32Array): Float32Array {
  if (src.length !== h * w) throw new LoupeError('INVALID_ARGUMENT', `gaussianBlur: expected ${h * w} values, got ${src.length}`);
  const dst = out ?? new Float32Array(h * w);
  if (!(sigma > 0)) {
    dst.set(src);
    return dst;
  }
  const k = gaussianKernel1d(sigma);
  const half = (k.length - 1) / 2;
  // Precomputed reflected column/row indices for the padded ranges.
  const colIdx = new Int32Array(w + 2 * half);
  for (let i = 0; i < colIdx.length; i++) colIdx[i] = reflectIndex(i - half, w);
  const rowIdx = new Int32Array(h + 2 * half);
  for (let i = 0; i < rowIdx.length; i++) rowIdx[i] = reflectIndex(i - half, h);
  const tmp = new Float32Array(h * w);
  const line = new Float32Array(w + 2 * half);
  for (let y = 0; y < h; y++) {
    const r = y * w;
    for (let i = 0; i < line.length; i++) line[i] = src[r + colIdx[i]!]!;
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let t = 0; t < k.length; t++) acc += k[t]! * line[x + t]!;
      tmp[r + x] = acc;
    }
  }
  const acc = new Float64Array(w);
  for (let y = 0; y < h; y++) {
    acc.fill(0);
    for (let t = 0; t < k.length; t++) {
      const kt = k[t]!;
      const r = rowIdx[y + t]! * w;
      for (let x = 0; x < w; x++) acc[x] = acc[x]! + kt * tmp[r + x]!;
    }
    const o = y * w;
    for (let x = 0; x < w; x++) dst[o + x] = acc[x]!;
  }
  return dst;
}

export interface AnomalyMapOptions {
  /** Side of the model input the patch grid covers (224). */
  inputSize?: number;
  /** Gaussian sigma in input pixels (PatchCore: 4). 0 disables smoothing. */
  sigma?: number;
}

/** Patch scores [grid][grid] -> smoothed anomaly map [inputSize][inputSize]. */
export function patchScoresToMap(patchScores: Float32Array, grid: number, options: AnomalyMapOptions = {}): Float32Array {
  const size = options.inputSize ?? 224;
  const sigma = options.sigma ?? 4;
  const up = resizeBilinear(patchScores, grid, grid, size, size);
  return gaussianBlur(up, size, size, sigma);
}

/** Max of an array (NaN-free input assumed); -Infinity when empty. */
export function maxOf(values: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v > m) m = v;
  }
  return m;
}
