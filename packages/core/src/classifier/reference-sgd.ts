// A plain-TypeScript Pegasos trainer with the native addon's trainLinearSvms signature. It is the test
// oracle for the C++ kernel and a fallback where the addon is not built. Objective per learner j:
//   min_w,b  lambda_j/2 |w|^2 + 1/n_j sum_i max(0, 1 - y_i (w.x_i + b)),  lambda_j = lambda n / n_j,
// over the n_j samples with a non-zero target (one-vs-one learners see two classes only): every learner
// has the same C = 1/(lambda n) in liblinear terms (svm.h).
// It follows the native step rule and sample order exactly (native/engine/include/loupe/svm.h), in
// double precision and without the kernel's lazy-scaling tricks, so it is a readable oracle.

import type { SvmTrainOptions } from '@loupe/native';

import { LoupeError } from '../errors.js';

/** The native signature (native/index.d.ts NativeAddon.trainLinearSvms). */
export type SvmTrainer = (
  X: Float32Array,
  n: number,
  d: number,
  targets: Int8Array,
  k: number,
  options?: SvmTrainOptions,
) => Promise<{ w: Float32Array; b: Float32Array }>;

/** Validates the arguments every trainer shares (same checks as the native binding). */
export function checkTrainerArgs(X: Float32Array, n: number, d: number, targets: Int8Array, k: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(d) || !Number.isInteger(k) || n < 1 || d < 1 || k < 1) {
    throw new LoupeError('INVALID_ARGUMENT', `trainLinearSvms: bad sizes n=${n} d=${d} k=${k}`);
  }
  if (X.length !== n * d) throw new LoupeError('INVALID_ARGUMENT', `trainLinearSvms: X has ${X.length} values, expected ${n} x ${d}`);
  if (targets.length !== k * n) throw new LoupeError('INVALID_ARGUMENT', `trainLinearSvms: targets has ${targets.length} values, expected ${k} x ${n}`);
}

const MASK64 = (1n << 64n) - 1n;

/** splitmix64 (Steele, Lea, Flood 2014) on a BigInt state; returns [next state, output]. */
function splitMix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [s, z ^ (z >> 31n)];
}

/** The native kernel's stream key mixing (ml_internal.h StreamState). */
function streamState(seed: bigint, stream: bigint): bigint {
  const [, a] = splitMix64((seed ^ 0x6a09e667f3bcc909n) & MASK64);
  const [, b] = splitMix64((stream ^ 0xbb67ae8584caa73bn) & MASK64);
  return (a ^ ((b * 0x9e3779b97f4a7c15n) & MASK64)) & MASK64;
}

/**
 * The sample order of one epoch, bit-identical to the native SgdSampleOrder (svm.h): Fisher-Yates over
 * [0, n) driven by splitmix64 on a stream keyed by (seed, epoch), unbiased rejection sampling.
 */
export function referenceSampleOrder(seed: number, epoch: number, n: number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let state = streamState(BigInt.asUintN(64, BigInt(Math.trunc(seed))), 0x5347440000000000n ^ BigInt(epoch >>> 0));
  for (let i = n - 1; i > 0; i--) {
    const bound = BigInt(i + 1);
    const threshold = ((1n << 64n) - bound) % bound;
    let r: bigint;
    for (;;) {
      [state, r] = splitMix64(state);
      if (r >= threshold) break;
    }
    const j = Number(r % bound);
    const tmp = order[i] as number;
    order[i] = order[j] as number;
    order[j] = tmp;
  }
  return order;
}

/**
 * Pegasos (Shalev-Shwartz et al. 2007) with the native kernel's exact step (svm.h), in double precision:
 *   t counts the learner's samples plus the offset t0 = 1/(lambda_j eta0) (0 when eta0 = 0); eta = 1/(lambda_j t); score = w.x + b; violated = y score < 1;
 *   w <- (1 - 1/t) w; if violated: w += eta y x, b += y min(eta, 1 - y score) (bias not regularised,
 *   proximal hinge step); w projected onto the ball of radius 1/sqrt(lambda_j).
 * 'averaged' returns the mean of (w_t, b_t) over the steps t in (T/2, T], T = epochs x samples used.
 * Same sample order as the native kernel, so the two agree up to float rounding.
 */
export const referenceTrainLinearSvms: SvmTrainer = async (X, n, d, targets, k, options = {}) => {
  checkTrainerArgs(X, n, d, targets, k);
  const lambda = options.lambda ?? 1e-4;
  const epochs = options.epochs ?? 20;
  const seed = options.seed ?? 0;
  const schedule = options.schedule ?? 'averaged';
  const eta0 = options.eta0 ?? 0;
  if (!(eta0 >= 0) || !Number.isFinite(eta0)) throw new LoupeError('INVALID_ARGUMENT', `eta0 must be >= 0, got ${eta0}`);
  if (!(lambda > 0) || !Number.isFinite(lambda)) throw new LoupeError('INVALID_ARGUMENT', `lambda must be > 0, got ${lambda}`);
  if (!Number.isInteger(epochs) || epochs < 1) throw new LoupeError('INVALID_ARGUMENT', `epochs must be an integer >= 1, got ${epochs}`);
  for (let j = 0; j < k; j++) {
    let pos = 0;
    let neg = 0;
    for (let i = 0; i < n; i++) {
      const y = targets[j * n + i] as number;
      if (y === 1) pos++;
      else if (y === -1) neg++;
      else if (y !== 0) throw new LoupeError('INVALID_ARGUMENT', `learner ${j}: target of sample ${i} is ${y}, expected -1, 0 or +1`);
    }
    if (pos === 0 || neg === 0) throw new LoupeError('INVALID_ARGUMENT', `learner ${j} has ${pos} positive and ${neg} negative samples; it needs both classes`);
  }
  const orders = Array.from({ length: epochs }, (_, e) => referenceSampleOrder(seed, e, n));
  const wOut = new Float32Array(k * d);
  const bOut = new Float32Array(k);
  const w = new Float64Array(d);
  const avg = new Float64Array(d);
  for (let j = 0; j < k; j++) {
    const tj = targets.subarray(j * n, (j + 1) * n);
    let nj = 0;
    for (let i = 0; i < n; i++) if (tj[i] !== 0) nj++;
    const lambdaJ = lambda * (n / nj);
    const t0 = eta0 > 0 ? 1 / (lambdaJ * eta0) : 0;
    const radius2 = 1 / lambdaJ;
    w.fill(0);
    avg.fill(0);
    let b = 0;
    let bAvg = 0;
    const avgFrom = schedule === 'averaged' ? Math.floor((nj * epochs) / 2) : Infinity;
    let avgCount = 0;
    let steps = 0;
    for (let e = 0; e < epochs; e++) {
      const order = orders[e] as Int32Array;
      for (let oi = 0; oi < n; oi++) {
        const i = order[oi] as number;
        const y = tj[i] as number;
        if (y === 0) continue;
        steps++;
        const t = steps + t0;
        const eta = 1 / (lambdaJ * t);
        const xo = i * d;
        let score = b;
        for (let c = 0; c < d; c++) score += (w[c] as number) * (X[xo + c] as number);
        const violated = y * score < 1;
        if (t > 1) {
          const shrink = 1 - 1 / t;
          for (let c = 0; c < d; c++) w[c] = (w[c] as number) * shrink;
        }
        if (violated) {
          const step = eta * y;
          for (let c = 0; c < d; c++) w[c] = (w[c] as number) + step * (X[xo + c] as number);
          b += y * Math.min(eta, 1 - y * score);
        }
        let norm2 = 0;
        for (let c = 0; c < d; c++) norm2 += (w[c] as number) * (w[c] as number);
        if (norm2 > radius2) {
          const sc = Math.sqrt(radius2 / norm2);
          for (let c = 0; c < d; c++) w[c] = (w[c] as number) * sc;
        }
        if (steps > avgFrom) {
          avgCount++;
          for (let c = 0; c < d; c++) avg[c] = (avg[c] as number) + (w[c] as number);
          bAvg += b;
        }
      }
    }
    if (avgCount > 0) {
      for (let c = 0; c < d; c++) wOut[j * d + c] = (avg[c] as number) / avgCount;
      bOut[j] = bAvg / avgCount;
    } else {
      for (let c = 0; c < d; c++) wOut[j * d + c] = w[c] as number;
      bOut[j] = b;
    }
  }
  return { w: wOut, b: bOut };
};
