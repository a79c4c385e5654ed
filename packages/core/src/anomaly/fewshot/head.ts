// Few-shot lift: a supervised patch classifier on the same patch embeddings PatchCore uses, trained
// from good images plus a handful of labelled defective images (masks -> patch labels, or image labels
// only -> the PatchCore-top patches), and fused with the memory-bank score.
//
//   head score of an image = max over its patches of the logistic logit (a defect is local);
//   fused = z_pc + weight * z_head, each z standardised with the mean/std of GOOD validation images that
//   neither the memory bank nor the head saw (so the two scores are on one scale without any defect).
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';
import { SparseRandomProjection, type ProjectionSpec } from '../patchcore/feature-extractor.js';
import { quantile } from '../patchcore/threshold.js';
import { LABEL_NEGATIVE, LABEL_POSITIVE } from './patch-labels.js';
import { logisticLogits, trainLogistic, type LogisticModel, type LogisticOptions } from './logistic.js';
import { mlpLogits, type MlpModel } from './mlp.js';

export interface HeadTrainingImage {
  /** [patches][inDim] embeddings (PatchCore rows). */
  rows: Float32Array;
  /** Per patch: 1 positive, 0 negative, -1 ignore (patch-labels.ts). */
  labels: Int8Array;
}

export interface FewShotHeadOptions extends LogisticOptions {
  /** Reduce embeddings to this dim before the classifier (seeded sparse projection); 0 = none. Default 256. */
  projectionDim?: number;
  projectionSeed?: number;
  /** Cap on negative patches (seeded subsample). Default 20000. */
  maxNegatives?: number;
}

export interface ScoreStats {
  mean: number;
  std: number;
}

/** Mean and std (floored at 1e-6 and at 1e-3 of |mean|) of a score sample. */
export function scoreStats(values: ArrayLike<number>): ScoreStats {
  const n = values.length;
  if (n === 0) throw new LoupeError('INVALID_ARGUMENT', 'score statistics need at least one value');
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i]!;
  const mean = s / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (values[i]! - mean) ** 2;
  const std = Math.max(Math.sqrt(v / Math.max(1, n - 1)), 1e-6, 1e-3 * Math.abs(mean));
  return { mean, std };
}

/** z_pc + weight * z_head. */
export function fuseScores(pc: number, head: number, pcStats: ScoreStats, headStats: ScoreStats, weight = 1): number {
  return (pc - pcStats.mean) / pcStats.std + (weight * (head - headStats.mean)) / headStats.std;
}

/** The patch classifier of a head: logistic (linear) or a one-hidden-layer MLP; a state holds exactly one. */
export type PatchClassifier = { readonly kind: 'logistic'; readonly model: LogisticModel } | { readonly kind: 'mlp'; readonly model: MlpModel };

export interface FewShotHeadState {
  inDim: number;
  projection: ProjectionSpec | null;
  logistic?: { d: number; b: number; w: number[]; mean: number[]; std: number[] };
  mlp?: { d: number; hidden: number; w1: number[]; b1: number[]; w2: number[]; b2: number; mean: number[]; std: number[] };
  training: { positives: number; negatives: number; images: number };
}

/** Logits of rows X [n][d] under either classifier. */
export function classifierLogits(c: PatchClassifier, X: Float32Array, n: number): Float32Array {
  return c.kind === 'mlp' ? mlpLogits(c.model, X, n) : logisticLogits(c.model, X, n);
}

/** The patch logits of an ensemble: the mean of its members' (one member: its own logits). Training and
 * inspection both call this, so thresholds set in training hold at inspection. */
export function meanLogits(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts[0]!.length);
  for (const l of parts) for (let p = 0; p < out.length; p++) out[p] = out[p]! + l[p]! / parts.length;
  return out;
}

/** The JSON form of a classifier (the `logistic` or `mlp` field of a head state). */
export function classifierState(c: PatchClassifier): Pick<FewShotHeadState, 'logistic' | 'mlp'> {
  if (c.kind === 'logistic') {
    const l = c.model;
    return { logistic: { d: l.d, b: l.b, w: Array.from(l.w), mean: Array.from(l.mean), std: Array.from(l.std) } };
  }
  const m = c.model;
  return { mlp: { d: m.d, hidden: m.hidden, w1: Array.from(m.w1), b1: Array.from(m.b1), w2: Array.from(m.w2), b2: m.b2, mean: Array.from(m.mean), std: Array.from(m.std) } };
}

/** A classifier from a head state, its sizes checked. */
export function classifierFromState(s: Pick<FewShotHeadState, 'logistic' | 'mlp'>): PatchClassifier {
  const bad = (what: string): never => {
    throw new LoupeError('INVALID_ARGUMENT', `few-shot head: inconsistent ${what} state`);
  };
  if ((s.logistic === undefined) === (s.mlp === undefined)) throw new LoupeError('INVALID_ARGUMENT', 'few-shot head: the state must hold exactly one of logistic and mlp');
  if (s.logistic) {
    const l = s.logistic;
    if (l.w.length !== l.d || l.mean.length !== l.d || l.std.length !== l.d || !Number.isFinite(l.b)) bad('logistic');
    return { kind: 'logistic', model: { d: l.d, b: l.b, w: Float32Array.from(l.w), mean: Float32Array.from(l.mean), std: Float32Array.from(l.std) } };
  }
  const m = s.mlp!;
  if (!(Number.isInteger(m.hidden) && m.hidden >= 1) || m.w1.length !== m.hidden * m.d || m.b1.length !== m.hidden || m.w2.length !== m.hidden || m.mean.length !== m.d || m.std.length !== m.d || !Number.isFinite(m.b2)) bad('mlp');
  return {
    kind: 'mlp',
    model: { d: m.d, hidden: m.hidden, w1: Float32Array.from(m.w1), b1: Float32Array.from(m.b1), w2: Float32Array.from(m.w2), b2: m.b2, mean: Float32Array.from(m.mean), std: Float32Array.from(m.std) },
  };
}

export class FewShotHead {
  private readonly projection: SparseRandomProjection | null;

  private constructor(
    readonly inDim: number,
    projectionSpec: ProjectionSpec | null,
    readonly classifier: PatchClassifier,
    readonly training: FewShotHeadState['training'],
  ) {
    this.projection = projectionSpec ? new SparseRandomProjection(projectionSpec) : null;
  }

  static train(images: readonly HeadTrainingImage[], inDim: number, options: FewShotHeadOptions = {}): FewShotHead {
    const pDim = options.projectionDim ?? 256;
    const spec: ProjectionSpec | null = pDim > 0 && pDim < inDim ? { inDim, outDim: pDim, seed: options.projectionSeed ?? 0 } : null;
    const proj = spec ? new SparseRandomProjection(spec) : null;
    const d = spec ? spec.outDim : inDim;
    const pos: Array<[number, number]> = [];
    const neg: Array<[number, number]> = [];
    images.forEach((im, k) => {
      const patches = im.labels.length;
      if (im.rows.length !== patches * inDim) throw new LoupeError('INVALID_ARGUMENT', `head image ${k}: ${im.rows.length} floats for ${patches} x ${inDim}`);
      for (let p = 0; p < patches; p++) {
        if (im.labels[p] === LABEL_POSITIVE) pos.push([k, p]);
        else if (im.labels[p] === LABEL_NEGATIVE) neg.push([k, p]);
      }
    });
    if (pos.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'the few-shot head needs at least one positive (defect) patch');
    const maxNeg = options.maxNegatives ?? 20000;
    const rng = createRng(`fewshot-negatives:${options.seed ?? 0}`);
    const negKept = neg.length > maxNeg ? rng.shuffle(neg).slice(0, maxNeg) : neg;
    const all = [...pos, ...negKept];
    const n = all.length;
    const X = new Float32Array(n * d);
    const y = new Uint8Array(n);
    all.forEach(([k, p], i) => {
      const row = images[k]!.rows.subarray(p * inDim, (p + 1) * inDim);
      if (proj) proj.apply(row, 1, X.subarray(i * d, (i + 1) * d));
      else X.set(row, i * d);
      y[i] = i < pos.length ? 1 : 0;
    });
    const classifier: PatchClassifier = { kind: 'logistic', model: trainLogistic(X, n, d, y, options) };
    return new FewShotHead(inDim, spec, classifier, { positives: pos.length, negatives: negKept.length, images: images.length });
  }

  /** Logit per patch of rows [n][inDim]. */
  patchLogits(rows: Float32Array, n: number): Float32Array {
    if (rows.length !== n * this.inDim) throw new LoupeError('INVALID_ARGUMENT', `head: expected ${n} x ${this.inDim} floats`);
    const X = this.projection ? this.projection.apply(rows, n) : rows;
    return classifierLogits(this.classifier, X, n);
  }

  /** Image score: max patch logit over the image's rows (all views of it in tile mode). */
  imageScore(rows: Float32Array, n: number): number {
    const z = this.patchLogits(rows, n);
    let m = -Infinity;
    for (let i = 0; i < z.length; i++) if (z[i]! > m) m = z[i]!;
    return m;
  }

  toState(): FewShotHeadState {
    return {
      inDim: this.inDim,
      projection: this.projection ? this.projection.spec : null,
      ...classifierState(this.classifier),
      training: this.training,
    };
  }

  static fromState(s: FewShotHeadState): FewShotHead {
    const c = classifierFromState(s);
    const d = s.projection ? s.projection.outDim : s.inDim;
    if (c.model.d !== d) throw new LoupeError('INVALID_ARGUMENT', `few-shot head: its classifier reads ${c.model.d} features, its input gives ${d}`);
    return new FewShotHead(s.inDim, s.projection, c, s.training);
  }
}

/** A fused scorer: PatchCore raw score + head score, standardised on good validation images. */
export interface FusionState {
  pcStats: ScoreStats;
  headStats: ScoreStats;
  weight: number;
  /** Threshold on the fused score (quantile of the good validation fused scores, or F1-optimal). */
  threshold: number;
}

/** Fusion statistics and a quantile threshold from good validation images' PatchCore and head scores. */
export function fitFusion(goodPc: ArrayLike<number>, goodHead: ArrayLike<number>, weight = 1, q = 0.99): FusionState {
  const pcStats = scoreStats(goodPc);
  const headStats = scoreStats(goodHead);
  const fused = Array.from(goodPc, (v, i) => fuseScores(v, goodHead[i]!, pcStats, headStats, weight));
  return { pcStats, headStats, weight, threshold: quantile(fused, q) };
}
