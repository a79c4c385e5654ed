// Patch labels for the supervised few-shot head, on the 28x28 PatchCore grid.
//   from a defect mask: a cell is positive when at least `positiveFraction` of its pixels are defect;
//     cells touched by the defect below that, and every cell within `ignoreRing` cells of a positive, are
//     ignored (their 3x3-pooled features see the defect partly); the rest are negative.
//   from an image label only: the `topK` cells with the largest PatchCore patch distance are positive
//     (multiple-instance guess: the defect is where the memory bank is most surprised); the rest of a
//     defective image is ignored.
import { LoupeError } from '../../errors.js';

export const LABEL_POSITIVE = 1;
export const LABEL_NEGATIVE = 0;
export const LABEL_IGNORE = -1;

export interface MaskLabelOptions {
  grid?: number;
  /** Minimum defect coverage of a cell to be positive (default 0.02). */
  positiveFraction?: number;
  /** Cells around positives that are neither positive nor negative (default 1). */
  ignoreRing?: number;
}

/** Fraction of defect pixels in each grid cell of a 0/1 (or 0/255) mask of width x height. */
export function cellCoverage(mask: Uint8Array, width: number, height: number, grid = 28): Float32Array {
  if (mask.length !== width * height) throw new LoupeError('INVALID_ARGUMENT', `mask has ${mask.length} values for ${width}x${height}`);
  const sum = new Float64Array(grid * grid);
  const cnt = new Float64Array(grid * grid);
  for (let y = 0; y < height; y++) {
    const gy = Math.min(grid - 1, Math.floor((y * grid) / height));
    for (let x = 0; x < width; x++) {
      const gx = Math.min(grid - 1, Math.floor((x * grid) / width));
      const c = gy * grid + gx;
      cnt[c] = cnt[c]! + 1;
      if (mask[y * width + x]!) sum[c] = sum[c]! + 1;
    }
  }
  const out = new Float32Array(grid * grid);
  for (let c = 0; c < out.length; c++) out[c] = cnt[c]! > 0 ? sum[c]! / cnt[c]! : 0;
  return out;
}

/** Int8 labels per cell (1 / 0 / -1) from a mask. An all-zero mask gives all -1 (nothing is known). */
export function patchLabelsFromMask(mask: Uint8Array, width: number, height: number, options: MaskLabelOptions = {}): Int8Array {
  const grid = options.grid ?? 28;
  const minFrac = options.positiveFraction ?? 0.02;
  const ring = options.ignoreRing ?? 1;
  const cov = cellCoverage(mask, width, height, grid);
  const labels = new Int8Array(grid * grid).fill(LABEL_NEGATIVE);
  let positives = 0;
  for (let c = 0; c < cov.length; c++) {
    if (cov[c]! >= minFrac) {
      labels[c] = LABEL_POSITIVE;
      positives++;
    } else if (cov[c]! > 0) labels[c] = LABEL_IGNORE;
  }
  if (positives === 0) {
    // Defective by label but nothing (usable) drawn: do not trust any cell as negative.
    return labels.fill(LABEL_IGNORE);
  }
  if (ring > 0) {
    const out = labels.slice();
    for (let y = 0; y < grid; y++)
      for (let x = 0; x < grid; x++) {
        if (labels[y * grid + x] !== LABEL_POSITIVE) continue;
        for (let dy = -ring; dy <= ring; dy++)
          for (let dx = -ring; dx <= ring; dx++) {
            const yy = y + dy, xx = x + dx;
            if (yy < 0 || xx < 0 || yy >= grid || xx >= grid) continue;
            const i = yy * grid + xx;
            if (out[i] === LABEL_NEGATIVE) out[i] = LABEL_IGNORE;
          }
      }
    return out;
  }
  return labels;
}

/** Image-label-only labels: the topK patches by PatchCore distance are positive, the rest ignored. */
export function patchLabelsFromScores(patchScores: Float32Array, topK = 4): Int8Array {
  const labels = new Int8Array(patchScores.length).fill(LABEL_IGNORE);
  const order = Array.from(patchScores.keys()).sort((a, b) => patchScores[b]! - patchScores[a]!);
  for (let i = 0; i < Math.min(topK, order.length); i++) labels[order[i]!] = LABEL_POSITIVE;
  return labels;
}
