// Anomaly maps as in anomalib's PatchCore AnomalyMapGenerator: the 28x28 patch scores are bilinearly
// upsampled (align_corners = false) to the model input size (224) and smoothed with a Gaussian of
// sigma 4 (kernel 2*floor(4*sigma+0.5)+1 = 33 taps, reflect padding, normalised to sum 1). The smoothed
// 224x224 map is then resized bilinearly to the original image size for display and pixel metrics.
// Single-channel maps are flat row-major Float32Arrays [h][w].
// The arithmetic lives in the C++ engine (native/engine/include/loupe/patch_maps.h, synchronous); these
// functions check and marshal. `out`, where accepted, may be longer than needed (the map goes at its start).
import { LoupeError } from '../../errors.js';
import { runKernel } from '../../native-kernels.js';

/**
 * Longest side of an anomaly map. A map follows its image's size up to this (every MVTec image, 1024 px at
 * most, keeps a map at its own size); a larger image gets a map scaled down to fit, its aspect kept, so
 * a 7000x7000 frame costs a 4 MB map instead of 196 MB (and the overlay and mask drawn from it alike).
 */
export const MAX_MAP_SIDE = 1024;

/** The size of the anomaly map of a width x height image (see MAX_MAP_SIDE). */
export function mapSize(width: number, height: number, maxSide = MAX_MAP_SIDE): { width: number; height: number } {
  const s = Math.min(1, maxSide / Math.max(width, height));
  if (s === 1) return { width, height };
  return { width: Math.max(1, Math.round(width * s)), height: Math.max(1, Math.round(height * s)) };
}

/** Bilinear resize of a single-channel map, torch semantics (align_corners = false). */
export function resizeBilinear(src: Float32Array, sh: number, sw: number, dh: number, dw: number, out?: Float32Array): Float32Array {
  if (src.length !== sh * sw) throw new LoupeError('INVALID_ARGUMENT', `resizeBilinear: expected ${sh * sw} values, got ${src.length}`);
  const dst = out ?? new Float32Array(dh * dw);
  runKernel('resizeBilinear', (a) => a.resizeBilinear(src, sh, sw, dh, dw, dst.subarray(0, dh * dw)));
  return dst;
}

/** anomalib's kernel size for a sigma: 2 * floor(4 * sigma + 0.5) + 1. */
export function gaussianKernelSize(sigma: number): number {
  return runKernel('gaussianKernelSize', (a) => a.gaussianKernelSize(sigma));
}

/** Normalised 1-D Gaussian kernel (sums to 1), centred, of odd `size`. */
export function gaussianKernel1d(sigma: number, size = gaussianKernelSize(sigma)): Float32Array {
  return runKernel('gaussianKernel1d', (a) => a.gaussianKernel1d(sigma, size));
}

/** torch 'reflect' padding index (mirror without repeating the edge), valid for any offset. */
export function reflectIndex(i: number, n: number): number {
  return runKernel('reflectIndex', (a) => a.reflectIndex(i, n));
}

/** Separable Gaussian blur with reflect borders. sigma <= 0 copies. `out` may be `src` (in place). */
export function gaussianBlur(src: Float32Array, h: number, w: number, sigma: number, out?: Float32Array): Float32Array {
  if (src.length !== h * w) throw new LoupeError('INVALID_ARGUMENT', `gaussianBlur: expected ${h * w} values, got ${src.length}`);
  const dst = out ?? new Float32Array(h * w);
  runKernel('gaussianBlur', (a) => a.gaussianBlur(src, h, w, sigma, dst.subarray(0, h * w)));
  return dst;
}

export interface AnomalyMapOptions {
  /** Side of the model input the patch grid covers (224). */
  inputSize?: number;
  /** Gaussian sigma in input pixels (PatchCore: 4). 0 disables smoothing. */
  sigma?: number;
  /**
   * Output size (default inputSize x inputSize): the smoothed map is then resized bilinearly to it in
   * the same native call, exactly resizeBilinear(patchScoresToMap(...), inputSize, inputSize, h, w).
   */
  outHeight?: number;
  outWidth?: number;
  /** Write the map here (at least outHeight * outWidth floats) instead of a new array. */
  out?: Float32Array;
}

/** Patch scores [grid][grid] -> smoothed anomaly map [inputSize][inputSize] (or [outHeight][outWidth]). */
export function patchScoresToMap(patchScores: Float32Array, grid: number, options: AnomalyMapOptions = {}): Float32Array {
  const size = options.inputSize ?? 224;
  const sigma = options.sigma ?? 4;
  const oh = options.outHeight ?? size;
  const ow = options.outWidth ?? size;
  if (patchScores.length !== grid * grid) throw new LoupeError('INVALID_ARGUMENT', `patchScoresToMap: expected ${grid * grid} values, got ${patchScores.length}`);
  const dst = options.out ?? new Float32Array(oh * ow);
  runKernel('patchScoresToMap', (a) => a.patchScoresToMap(patchScores, grid, grid, size, size, sigma, oh, ow, dst.subarray(0, oh * ow)));
  return dst;
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
