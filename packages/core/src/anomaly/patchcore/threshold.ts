// Decision thresholds and score normalisation for the one-class scorer.
//
// Raw scores are PatchCore distances (Euclidean, in feature units): the image score is the reweighted
// distance of the most anomalous patch to its nearest memory-bank patch, a pixel value is the smoothed
// patch distance there. They have no fixed scale, so a model stores a threshold calibrated on data:
//   - good validation images only: the q-quantile (default 0.99) of their scores;
//   - good + labelled defective images: the threshold that maximises F1 (defect = positive class).
// Normalised scores map the threshold to exactly 0.5 by a monotone, scale-free ratio transform:
//   n(s) = 0.5 * s / t            for s <= t   (0 = identical to a training patch, 0.5 = at threshold)
//   n(s) = 1 - 0.5 * t / s        for s >  t   (0.75 = twice the threshold distance, -> 1 as s -> inf)
// so "normalised >= 0.5" is exactly "raw >= threshold", and n is readable as a distance ratio.
import { LoupeError } from '../../errors.js';

/** numpy-style linear-interpolation quantile (q in [0, 1]); NaN when empty. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new LoupeError('INVALID_ARGUMENT', `quantile q must be in [0, 1], got ${q}`);
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const f = pos - lo;
  return sorted[lo]! + f * (sorted[hi]! - sorted[lo]!);
}

export interface F1Result {
  /** Predict "anomalous" when score >= threshold. */
  threshold: number;
  f1: number;
  precision: number;
  recall: number;
}

/**
 * Exact F1-optimal threshold over all distinct score values (label 1 = defect). Ties in score are
 * decided together. With no positives, returns +Infinity and F1 0.
 */
export function f1OptimalThreshold(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): F1Result {
  const n = scores.length;
  if (labels.length !== n) throw new LoupeError('INVALID_ARGUMENT', `scores (${n}) and labels (${labels.length}) differ in length`);
  let positives = 0;
  for (let i = 0; i < n; i++) if (labels[i]) positives++;
  if (positives === 0 || n === 0) return { threshold: Infinity, f1: 0, precision: 0, recall: 0 };
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let tp = 0;
  let fp = 0;
  let best: F1Result = { threshold: Infinity, f1: 0, precision: 0, recall: 0 };
  for (let k = 0; k < n; ) {
    const s = scores[order[k]!]!;
    while (k < n && scores[order[k]!]! === s) {
      if (labels[order[k]!]) tp++;
      else fp++;
      k++;
    }
    const precision = tp / (tp + fp);
    const recall = tp / positives;
    const f1 = tp === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    if (f1 > best.f1) best = { threshold: s, f1, precision, recall };
  }
  return best;
}

/**
 * F1-optimal threshold for very many values (pixels), on `bins` equal-width bins between min and max:
 * thresholds are bin lower edges, so the result is within one bin width of the exact optimum.
 */
export function f1OptimalThresholdBinned(scores: Float32Array, labels: Uint8Array, bins = 8192): F1Result {
  const n = scores.length;
  if (labels.length !== n) throw new LoupeError('INVALID_ARGUMENT', `scores (${n}) and labels (${labels.length}) differ in length`);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = scores[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const pos = new Float64Array(bins);
  const neg = new Float64Array(bins);
  let positives = 0;
  const width = hi > lo ? (hi - lo) / bins : 1;
  for (let i = 0; i < n; i++) {
    let b = Math.floor((scores[i]! - lo) / width);
    if (b >= bins) b = bins - 1;
    if (b < 0) b = 0;
    if (labels[i]) {
      pos[b] = pos[b]! + 1;
      positives++;
    } else neg[b] = neg[b]! + 1;
  }
  let best: F1Result = { threshold: Infinity, f1: 0, precision: 0, recall: 0 };
  if (positives === 0) return best;
  let tp = 0;
  let fp = 0;
  for (let b = bins - 1; b >= 0; b--) {
    tp += pos[b]!;
    fp += neg[b]!;
    if (tp === 0) continue;
    const precision = tp / (tp + fp);
    const recall = tp / positives;
    const f1 = (2 * precision * recall) / (precision + recall);
    if (f1 > best.f1) best = { threshold: lo + b * width, f1, precision, recall };
  }
  return best;
}

/** Maps a raw score to [0, 1) with the threshold at exactly 0.5 (see the file header). */
export function normalizeScore(raw: number, threshold: number): number {
  if (!(threshold > 0)) throw new LoupeError('INVALID_ARGUMENT', `threshold must be > 0, got ${threshold}`);
  if (!(raw > 0)) return 0;
  if (raw === Infinity) return 1;
  return raw <= threshold ? (0.5 * raw) / threshold : 1 - (0.5 * threshold) / raw;
}

/** Inverse of normalizeScore for n in [0, 1]. */
export function denormalizeScore(n: number, threshold: number): number {
  if (n <= 0) return 0;
  if (n >= 1) return Infinity;
  return n <= 0.5 ? 2 * n * threshold : (0.5 * threshold) / (1 - n);
}

/** Normalises a whole map in place or into `out`. */
export function normalizeMap(map: Float32Array, threshold: number, out: Float32Array = new Float32Array(map.length)): Float32Array {
  for (let i = 0; i < map.length; i++) out[i] = normalizeScore(map[i]!, threshold);
  return out;
}

export type ThresholdMethod = 'quantile' | 'f1';

export interface Thresholds {
  /** Raw image-score threshold (anomalous when raw >= image). */
  image: number;
  /** Raw pixel threshold for binary defect masks. */
  pixel: number;
  method: ThresholdMethod;
  /** Quantile used (method 'quantile'). */
  quantile?: number;
  /** Validation F1 at the image threshold (method 'f1'). */
  f1?: number;
  goodCount: number;
  defectCount: number;
}

export interface CalibrationInput {
  /** Raw image scores of good validation images (never in the memory bank). */
  goodImageScores: ArrayLike<number>;
  /** Max of the smoothed anomaly map of each good validation image. */
  goodMapMaxima: ArrayLike<number>;
  /** Optional labelled defective images: image scores and, if masks exist, their pixels. */
  defectImageScores?: ArrayLike<number>;
  /** Pixel values and 0/1 mask labels of all validation images (good and defective) for the pixel F1. */
  pixelScores?: Float32Array;
  pixelLabels?: Uint8Array;
  quantile?: number;
}

/**
 * Image and pixel thresholds. Without defects: q-quantiles of the good images' scores and map maxima
 * (a good image's map has no pixel above the pixel threshold with probability ~q). With defects:
 * F1-optimal image threshold, and F1-optimal pixel threshold when pixel labels are given.
 */
export function calibrateThresholds(input: CalibrationInput): Thresholds {
  const q = input.quantile ?? 0.99;
  const good = input.goodImageScores;
  if (good.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'threshold calibration needs at least one good validation image');
  const defects = input.defectImageScores ?? [];
  let pixel = quantile(input.goodMapMaxima, q);
  if (input.pixelScores && input.pixelLabels) {
    const r = f1OptimalThresholdBinned(input.pixelScores, input.pixelLabels);
    if (Number.isFinite(r.threshold)) pixel = r.threshold;
  }
  if (defects.length > 0) {
    const scores = [...Array.from(good), ...Array.from(defects)];
    const labels = [...Array.from(good, () => 0), ...Array.from(defects, () => 1)];
    const r = f1OptimalThreshold(scores, labels);
    return { image: r.threshold, pixel, method: 'f1', f1: r.f1, goodCount: good.length, defectCount: defects.length };
  }
  return { image: quantile(good, q), pixel, method: 'quantile', quantile: q, goodCount: good.length, defectCount: 0 };
}
