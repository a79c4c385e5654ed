// Image-level anomaly metrics: ROC curve, AUROC (ties count 1/2, as Mann-Whitney), F1-max.
// Convention: a higher score means "more anomalous"; positives are anomalous (defective) images.

import { LoupeError } from '../errors.js';

export type BinaryLabels = ArrayLike<boolean | number>;

export interface RocCurve {
  /** From (0,0) at threshold +Infinity to (1,1); one point per distinct score, descending. */
  readonly fpr: number[];
  readonly tpr: number[];
  /** Score threshold of each point: predicted positive when score >= threshold. */
  readonly thresholds: number[];
  readonly positives: number;
  readonly negatives: number;
}

interface Sorted {
  scores: Float64Array;
  pos: Uint8Array;
  p: number;
  n: number;
}

function sortDescending(scores: ArrayLike<number>, labels: BinaryLabels): Sorted {
  if (scores.length !== labels.length) throw new LoupeError('INVALID_ARGUMENT', `${scores.length} scores but ${labels.length} labels`);
  const m = scores.length;
  const idx = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    idx[i] = i;
    if (Number.isNaN(scores[i] as number)) throw new LoupeError('INVALID_ARGUMENT', `score ${i} is NaN`);
  }
  idx.sort((a, b) => (scores[b] as number) - (scores[a] as number));
  const s = new Float64Array(m);
  const pos = new Uint8Array(m);
  let p = 0;
  for (let i = 0; i < m; i++) {
    const j = idx[i] as number;
    s[i] = scores[j] as number;
    const l = labels[j];
    pos[i] = l === true || (typeof l === 'number' && l !== 0) ? 1 : 0;
    p += pos[i] as number;
  }
  return { scores: s, pos, p, n: m - p };
}

function requireBothClasses(p: number, n: number, what: string): void {
  if (p === 0 || n === 0) throw new LoupeError('INVALID_ARGUMENT', `${what} needs both positive and negative samples (got ${p} positive, ${n} negative)`);
}

export function rocCurve(scores: ArrayLike<number>, labels: BinaryLabels): RocCurve {
  const s = sortDescending(scores, labels);
  requireBothClasses(s.p, s.n, 'ROC');
  const fpr = [0];
  const tpr = [0];
  const thresholds = [Infinity];
  let tp = 0;
  let fp = 0;
  const m = s.scores.length;
  for (let i = 0; i < m; ) {
    const t = s.scores[i] as number;
    while (i < m && s.scores[i] === t) {
      if (s.pos[i]) tp++;
      else fp++;
      i++;
    }
    fpr.push(fp / s.n);
    tpr.push(tp / s.p);
    thresholds.push(t);
  }
  return { fpr, tpr, thresholds, positives: s.p, negatives: s.n };
}

/** Trapezoidal area under a curve given as increasing x. */
export function trapezoid(x: readonly number[], y: readonly number[]): number {
  let a = 0;
  for (let i = 1; i < x.length; i++) a += (((x[i] as number) - (x[i - 1] as number)) * ((y[i] as number) + (y[i - 1] as number))) / 2;
  return a;
}

/** Area under the ROC curve; equals P(score_pos > score_neg) + 1/2 P(tie). */
export function auroc(scores: ArrayLike<number>, labels: BinaryLabels): number {
  const c = rocCurve(scores, labels);
  return trapezoid(c.fpr, c.tpr);
}

export interface F1Max {
  readonly f1: number;
  /** Predicted anomalous when score >= threshold. */
  readonly threshold: number;
  readonly precision: number;
  readonly recall: number;
}

/** Best F1 over all thresholds (each distinct score). */
export function f1Max(scores: ArrayLike<number>, labels: BinaryLabels): F1Max {
  const s = sortDescending(scores, labels);
  if (s.p === 0) throw new LoupeError('INVALID_ARGUMENT', 'F1-max needs at least one positive sample');
  let best: F1Max = { f1: 0, threshold: Infinity, precision: 0, recall: 0 };
  let tp = 0;
  let fp = 0;
  const m = s.scores.length;
  for (let i = 0; i < m; ) {
    const t = s.scores[i] as number;
    while (i < m && s.scores[i] === t) {
      if (s.pos[i]) tp++;
      else fp++;
      i++;
    }
    const precision = tp / (tp + fp);
    const recall = tp / s.p;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    if (f1 > best.f1) best = { f1, threshold: t, precision, recall };
  }
  return best;
}

/** Thins a curve to at most `maxPoints` points (keeps the ends), for plotting. */
export function thinCurve(x: readonly number[], y: readonly number[], maxPoints = 512): { x: number[]; y: number[] } {
  if (x.length <= maxPoints) return { x: [...x], y: [...y] };
  const xs: number[] = [];
  const ys: number[] = [];
  const step = (x.length - 1) / (maxPoints - 1);
  for (let i = 0; i < maxPoints; i++) {
    const j = Math.round(i * step);
    xs.push(x[j] as number);
    ys.push(y[j] as number);
  }
  return { x: xs, y: ys };
}
