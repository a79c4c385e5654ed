// Linearly separable synthetic "CNN features": Gaussian clusters around well-separated class means,
// with an offset and per-feature scales so standardisation matters.
import { createRng } from '../../src/datasets/random.js';
import type { FeatureMatrix } from '../../src/classifier/features.js';

export interface Blobs {
  x: FeatureMatrix;
  labels: string[];
  classes: string[];
}

export function blobs(opts: { classes: string[]; perClass: number; dim: number; seed: number; spread?: number; separation?: number }): Blobs {
  const rng = createRng(opts.seed);
  const centres = opts.classes.map(() => Array.from({ length: opts.dim }, () => rng.normal() * (opts.separation ?? 4)));
  const scales = Array.from({ length: opts.dim }, () => 0.1 + rng.next() * 20);
  const n = opts.classes.length * opts.perClass;
  const data = new Float32Array(n * opts.dim);
  const labels: string[] = [];
  let r = 0;
  for (let i = 0; i < opts.perClass; i++) {
    opts.classes.forEach((c, ci) => {
      for (let j = 0; j < opts.dim; j++) {
        data[r * opts.dim + j] = 50 + scales[j]! * (centres[ci]![j]! + rng.normal() * (opts.spread ?? 1));
      }
      labels.push(c);
      r++;
    });
  }
  return { x: { data, rows: n, cols: opts.dim }, labels, classes: opts.classes };
}
