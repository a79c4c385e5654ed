// Feature matrices: row-major float32 [rows][cols], one row per image.

import { LoupeError } from '../errors.js';

export interface FeatureMatrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

/** A matrix, or one vector per image (Float32Array or number[]). */
export type FeaturesInput = FeatureMatrix | readonly (Float32Array | readonly number[])[];

export function isFeatureMatrix(x: unknown): x is FeatureMatrix {
  const m = x as Partial<FeatureMatrix> | null;
  return m !== null && typeof m === 'object' && m.data instanceof Float32Array && typeof m.rows === 'number' && typeof m.cols === 'number';
}

/** Normalises features to a FeatureMatrix (no copy when it already is one), checking shapes and finiteness. */
export function toFeatureMatrix(input: FeaturesInput, what = 'features'): FeatureMatrix {
  let m: FeatureMatrix;
  if (isFeatureMatrix(input)) {
    if (!Number.isInteger(input.rows) || !Number.isInteger(input.cols) || input.rows < 0 || input.cols < 1 || input.data.length !== input.rows * input.cols) {
      throw new LoupeError('INVALID_ARGUMENT', `${what}: data length ${input.data.length} does not match ${input.rows} x ${input.cols}`);
    }
    m = input;
  } else {
    const rows = input.length;
    if (rows === 0) throw new LoupeError('INVALID_ARGUMENT', `${what}: no rows`);
    const cols = (input[0] as ArrayLike<number>).length;
    if (cols < 1) throw new LoupeError('INVALID_ARGUMENT', `${what}: empty vectors`);
    const data = new Float32Array(rows * cols);
    input.forEach((row, i) => {
      if (row.length !== cols) throw new LoupeError('INVALID_ARGUMENT', `${what}: row ${i} has length ${row.length}, expected ${cols}`);
      data.set(row as ArrayLike<number>, i * cols);
    });
    m = { data, rows, cols };
  }
  for (let i = 0; i < m.data.length; i++) {
    if (!Number.isFinite(m.data[i] as number)) {
      throw new LoupeError('INVALID_ARGUMENT', `${what}: non-finite value at row ${Math.floor(i / m.cols)}, column ${i % m.cols}`);
    }
  }
  return m;
}
