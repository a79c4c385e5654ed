// Class-balanced, L2-regularised logistic regression on Float32Array rows (mini-batch Adam, seeded).
// Loss: sum_i w_i * BCE(sigmoid(w.x_i + b), y_i) / sum_i w_i + (l2 / 2) * ||w||^2, with w_i = 1/(2 n_pos)
// for positives and 1/(2 n_neg) for negatives (each class weighs half), on standardised features.
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';
import { Adam, trainingSetup } from './adam.js';

export { featureStats } from './adam.js';

export interface LogisticModel {
  d: number;
  /** Weights on standardised features. */
  w: Float32Array;
  b: number;
  mean: Float32Array;
  std: Float32Array;
}

export interface LogisticOptions {
  l2?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Trains on rows X [n][d] with labels y (0/1). */
export function trainLogistic(X: Float32Array, n: number, d: number, y: Uint8Array, options: LogisticOptions = {}): LogisticModel {
  if (X.length < n * d || y.length !== n) throw new LoupeError('INVALID_ARGUMENT', `logistic: expected ${n} x ${d} rows and ${n} labels`);
  let nPos = 0;
  for (let i = 0; i < n; i++) if (y[i]) nPos++;
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) throw new LoupeError('INVALID_ARGUMENT', `logistic regression needs both classes (got ${nPos} positive, ${nNeg} negative rows)`);
  const { l2, epochs, bs, lr, mean, std, Z } = trainingSetup(X, n, d, options, { epochs: 30, learningRate: 1e-2 });
  const wPos = 1 / (2 * nPos);
  const wNeg = 1 / (2 * nNeg);

  const w = new Float64Array(d);
  const bias = new Float64Array(1);
  const g = new Float64Array(d);
  const gb = new Float64Array(1);
  const adam = new Adam([w, bias], lr, [l2, 0]);
  const rng = createRng(`logistic:${options.seed ?? 0}`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let ep = 0; ep < epochs; ep++) {
    rng.shuffle(order);
    for (let start = 0; start < n; start += bs) {
      const end = Math.min(n, start + bs);
      g.fill(0);
      gb[0] = 0;
      let wsum = 0;
      for (let k = start; k < end; k++) {
        const i = order[k]!;
        const o = i * d;
        let z = bias[0]!;
        for (let j = 0; j < d; j++) z += w[j]! * Z[o + j]!;
        const yi = y[i] ? 1 : 0;
        const wi = yi ? wPos : wNeg;
        const r = wi * (sigmoid(z) - yi);
        wsum += wi;
        gb[0] += r;
        for (let j = 0; j < d; j++) g[j] = g[j]! + r * Z[o + j]!;
      }
      adam.step([g, gb], wsum);
    }
  }
  const b = bias[0]!;
  return { d, w: Float32Array.from(w), b, mean, std };
}

/** Logits of rows X [n][d]. */
export function logisticLogits(model: LogisticModel, X: Float32Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  const { d, w, b, mean, std } = model;
  if (X.length < n * d) throw new LoupeError('INVALID_ARGUMENT', `logistic: expected ${n} x ${d} rows`);
  // Fold the standardisation into the weights: w'_j = w_j / std_j, b' = b - sum_j w'_j * mean_j.
  const wf = new Float32Array(d);
  let bf = b;
  for (let j = 0; j < d; j++) {
    wf[j] = w[j]! / std[j]!;
    bf -= wf[j]! * mean[j]!;
  }
  for (let i = 0; i < n; i++) {
    const o = i * d;
    let z = bf;
    for (let j = 0; j < d; j++) z += wf[j]! * X[o + j]!;
    out[i] = z;
  }
  return out;
}
