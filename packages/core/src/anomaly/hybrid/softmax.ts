// Class-balanced, L2-regularised multinomial logistic regression (softmax) on Float32Array rows, trained
// with mini-batch Adam (seeded): the defect-type classifier of hybrid models. Features are standardised
// (mean/std stored); each class weighs the same in the loss whatever its number of rows.
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';
import { Adam, trainingSetup } from '../fewshot/adam.js';

export interface SoftmaxModel {
  readonly d: number;
  readonly k: number;
  /** [k][d] weights on standardised features. */
  readonly w: Float32Array;
  readonly b: Float32Array;
  readonly mean: Float32Array;
  readonly std: Float32Array;
}

export interface SoftmaxOptions {
  l2?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
}

/** Trains on rows X [n][d] with class indices y in [0, k). */
export function trainSoftmax(X: Float32Array, n: number, d: number, y: Int32Array, k: number, options: SoftmaxOptions = {}): SoftmaxModel {
  if (X.length < n * d || y.length !== n) throw new LoupeError('INVALID_ARGUMENT', `softmax: expected ${n} x ${d} rows and ${n} labels`);
  if (!(k >= 2)) throw new LoupeError('INVALID_ARGUMENT', `softmax regression needs at least 2 classes, got ${k}`);
  const counts = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    if (!(y[i]! >= 0 && y[i]! < k)) throw new LoupeError('INVALID_ARGUMENT', `softmax: label ${y[i]} of row ${i} is not in [0, ${k})`);
    counts[y[i]!]!++;
  }
  const { l2, epochs, bs, lr, mean, std, Z } = trainingSetup(X, n, d, options, { epochs: 30, learningRate: 1e-2 });
  const present = Array.from(counts).filter((c) => c > 0).length;
  const cw = Array.from(counts, (c) => (c > 0 ? 1 / (present * c) : 0));
  const w = new Float64Array(k * d);
  const b = new Float64Array(k);
  const gW = new Float64Array(k * d), gB = new Float64Array(k);
  const adam = new Adam([w, b], lr, [l2, 0]);
  const z = new Float64Array(k);
  const rng = createRng(`softmax:${options.seed ?? 0}`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let ep = 0; ep < epochs; ep++) {
    rng.shuffle(order);
    for (let start = 0; start < n; start += bs) {
      const end = Math.min(n, start + bs);
      gW.fill(0);
      gB.fill(0);
      let wsum = 0;
      for (let t = start; t < end; t++) {
        const i = order[t]!;
        const o = i * d;
        let max = -Infinity;
        for (let c = 0; c < k; c++) {
          let s = b[c]!;
          for (let j = 0; j < d; j++) s += w[c * d + j]! * Z[o + j]!;
          z[c] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let c = 0; c < k; c++) sum += (z[c] = Math.exp(z[c]! - max));
        const wi = cw[y[i]!]!;
        wsum += wi;
        for (let c = 0; c < k; c++) {
          const r = wi * (z[c]! / sum - (c === y[i] ? 1 : 0));
          gB[c] = gB[c]! + r;
          for (let j = 0; j < d; j++) gW[c * d + j] = gW[c * d + j]! + r * Z[o + j]!;
        }
      }
      adam.step([gW, gB], wsum);
    }
  }
  return { d, k, w: Float32Array.from(w), b: Float32Array.from(b), mean, std };
}

/** Class probabilities of rows X [n][d]: [n][k]. */
export function softmaxProbabilities(model: SoftmaxModel, X: Float32Array, n: number): Float32Array {
  const { d, k, w, b, mean, std } = model;
  if (X.length < n * d) throw new LoupeError('INVALID_ARGUMENT', `softmax: expected ${n} x ${d} rows`);
  const out = new Float32Array(n * k);
  const z = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < k; c++) {
      let s = b[c]!;
      for (let j = 0; j < d; j++) s += (w[c * d + j]! * (X[i * d + j]! - mean[j]!)) / std[j]!;
      z[c] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let c = 0; c < k; c++) sum += (z[c] = Math.exp(z[c]! - max));
    for (let c = 0; c < k; c++) out[i * k + c] = z[c]! / sum;
  }
  return out;
}
