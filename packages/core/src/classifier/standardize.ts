// Per-feature standardisation (z-score), fitted on training features only and stored in the model.

import { LoupeError } from '../errors.js';
import type { FeatureMatrix } from './features.js';

export interface Standardization {
  /** Per-feature mean of the training features. */
  readonly mean: Float32Array;
  /** Per-feature standard deviation (sample, n-1), floored at `stdFloor`. */
  readonly std: Float32Array;
  /** The floor applied: max(absolute floor, relative floor x mean std). */
  readonly stdFloor: number;
}

export interface StandardizeOptions {
  /** Absolute lower bound for a feature's std. Default 1e-6. */
  minStd?: number;
  /** Relative lower bound, as a fraction of the mean std over features. Default 1e-3. */
  relativeMinStd?: number;
}

/**
 * Fits mean/std on training features. Constant (or nearly constant) features get the floor as their std
 * so they neither divide by zero nor blow up small test-time deviations.
 */
export function fitStandardization(x: FeatureMatrix, opts: StandardizeOptions = {}): Standardization {
  const { rows: n, cols: d, data } = x;
  if (n < 1) throw new LoupeError('INVALID_ARGUMENT', 'standardisation needs at least one training row');
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let j = 0; j < d; j++) mean[j] = (mean[j] as number) + (data[o + j] as number);
  }
  for (let j = 0; j < d; j++) mean[j] = (mean[j] as number) / n;
  const m2 = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let j = 0; j < d; j++) {
      const dv = (data[o + j] as number) - (mean[j] as number);
      m2[j] = (m2[j] as number) + dv * dv;
    }
  }
  const std = new Float64Array(d);
  let sumStd = 0;
  for (let j = 0; j < d; j++) {
    std[j] = n > 1 ? Math.sqrt((m2[j] as number) / (n - 1)) : 0;
    sumStd += std[j] as number;
  }
  const floor = Math.max(opts.minStd ?? 1e-6, (opts.relativeMinStd ?? 1e-3) * (sumStd / d));
  const stdOut = new Float32Array(d);
  for (let j = 0; j < d; j++) stdOut[j] = Math.max(std[j] as number, floor);
  return { mean: Float32Array.from(mean), std: stdOut, stdFloor: floor };
}

/** (x - mean) / std, as a new matrix. */
export function applyStandardization(x: FeatureMatrix, s: Standardization): FeatureMatrix {
  const { rows: n, cols: d, data } = x;
  if (s.mean.length !== d) {
    throw new LoupeError('INVALID_ARGUMENT', `features have ${d} columns, the standardisation was fitted on ${s.mean.length}`);
  }
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let j = 0; j < d; j++) out[o + j] = ((data[o + j] as number) - (s.mean[j] as number)) / (s.std[j] as number);
  }
  return { data: out, rows: n, cols: d };
}
