// Multiclass linear SVM on CNN features, as in Omer & Abbas 2022 (MATLAB fitcecoc with linear SVM
// learners trained by SGD): standardise, build the ECOC targets, train the binary learners with an
// injected trainer (the native C++ kernel in production, the TS reference in tests), decode by voting
// (ties by the loss-weighted hinge loss) or, as fitcecoc, by the loss alone.

import type { NativeAddon, SvmTrainOptions } from '@loupe/native';

import { createRng } from '../datasets/random.js';
import { kFold } from '../datasets/split.js';
import { LoupeError } from '../errors.js';
import { buildTargets, codingMatrix, decode, type CodingMatrix, type CodingName, type DecodingName } from './coding.js';
import { toFeatureMatrix, type FeatureMatrix, type FeaturesInput } from './features.js';
import type { SvmTrainer } from './reference-sgd.js';
import { applyStandardization, fitStandardization, type Standardization, type StandardizeOptions } from './standardize.js';

export type SgdSchedule = NonNullable<SvmTrainOptions['schedule']>;

/** The classifier's defaults: the one place they are written (CLI and server read them from here). */
export const SVM_DEFAULTS = {
  coding: 'onevsone' as CodingName,
  decoding: 'vote' as DecodingName,
  // 100, not 30: at the large C the search picks, averaged SGD is still converging at 30 epochs (mean
  // balanced accuracy over the classification benchmark's 8 rows 70.6 -> 71.6; the fit costs ~1.6x).
  epochs: 100,
  eta0: 1,
  schedule: 'averaged' as SgdSchedule,
  seed: 0,
  /** C values tried by the lambda search (lambda = 1 / (C n)), small to large. */
  cGrid: [0.1, 0.3, 1, 3, 10, 30, 100, 1000] as readonly number[],
  cvFolds: 5,
} as const;

/** How lambda was chosen when it was not given: stratified k-fold CV on the training rows. */
export interface LambdaSelection {
  readonly folds: number;
  /** True when the folds kept each group (TrainSvmOptions.groups) whole. Absent in older files. */
  readonly groupAware?: boolean;
  readonly grid: readonly number[];
  /** CV accuracy per grid value. */
  readonly cvAccuracy: readonly number[];
  /** CV balanced accuracy (mean per-class recall) per grid value: the criterion. Absent in older files. */
  readonly cvBalancedAccuracy?: readonly number[];
  /** The chosen C (lambda = 1 / (C n)). */
  readonly C: number;
}

export interface SvmTrainingInfo {
  readonly lambda: number;
  /** Initial SGD step (offset schedule, see svm.h); 0 = plain Pegasos. Absent in older model files. */
  readonly eta0?: number;
  readonly epochs: number;
  readonly seed: number;
  readonly schedule: SgdSchedule;
  /** Name of the trainer used ('native', 'reference', ...). */
  readonly trainer: string;
  /** Training rows. */
  readonly samples: number;
  /** Training rows per class, in `classes` order. */
  readonly classCounts: readonly number[];
  /** Present when lambda was chosen by cross-validation. */
  readonly lambdaSelection?: LambdaSelection;
}

/** A trained multiclass linear SVM: everything needed to predict from raw (unstandardised) features. */
export interface SvmClassifier {
  readonly kind: 'svm';
  readonly classes: readonly string[];
  /** The CNN tap the features come from (e.g. 'fc1000'). */
  readonly layer: string;
  /** Feature dimension d. */
  readonly dim: number;
  readonly standardization: Standardization;
  readonly coding: CodingMatrix;
  /** How learner scores become a class ('lossweighted' for model files older than this field). */
  readonly decoding: DecodingName;
  /** Binary learner weights, row-major [L][d], in standardised feature space. */
  readonly weights: Float32Array;
  /** Binary learner biases [L]. */
  readonly bias: Float32Array;
  readonly training: SvmTrainingInfo;
}

export interface TrainSvmOptions {
  /** The binary-SVM trainer (native signature): `nativeSvmTrainer(addon)` or `referenceTrainLinearSvms`. */
  trainer: SvmTrainer;
  /** Recorded in the model; default 'custom'. */
  trainerName?: string;
  /** Default 'onevsone' (fitcecoc's default, the paper's). */
  coding?: CodingName;
  /** Default 'vote' (SVM_DEFAULTS.decoding); 'lossweighted' is fitcecoc's default. */
  decoding?: DecodingName;
  /**
   * L2 strength, Pegasos per-sample convention, on rows scaled to mean ||z||^2 = 1 (see ROW_SCALE_NOTE);
   * lambda = 1/(C n) in liblinear terms (the trainer gives a learner over n_j rows lambda n / n_j: one C for
   * every binary problem). Default 'auto': C from SVM_DEFAULTS.cGrid by stratified k-fold
   * cross-validation on the training rows (falls back to C = 1 when a class has fewer than 2 rows).
   */
  lambda?: number | 'auto';
  /** Initial SGD step, eta_t = 1/(lambda (t + 1/(lambda eta0))). Default 1 (~ 1 / ||z||^2). 0 = Pegasos. */
  eta0?: number;
  /** Default SVM_DEFAULTS.epochs (100). */
  epochs?: number;
  /** Default 0. Same seed, same data, same trainer -> bit-identical model. */
  seed?: number;
  /** Default 'averaged'. */
  schedule?: SgdSchedule;
  /** CNN tap of the features. Default 'fc1000' (the paper's). */
  layer?: string;
  /** Class order; default the sorted distinct labels. Every class needs at least one training row. */
  classes?: readonly string[];
  standardize?: StandardizeOptions;
  /**
   * The group of each row (e.g. the physical part an image shows), for the C search: its folds then keep
   * each group whole, so C is chosen by how well the model does on parts it has not seen (with images of
   * one part on both sides of a fold, the search rewards memorising parts). Falls back to row folds, and
   * says so in `lambdaSelection.groupAware`, when some class has fewer than 2 groups.
   */
  groups?: readonly string[];
  /** Passed through to the trainer. */
  backend?: SvmTrainOptions['backend'];
  threads?: number;
}

// ROW_SCALE_NOTE: SGD on the hinge loss converges like R^2 / (lambda T) (R^2 = max ||z||^2), and z-scored
// CNN features have ||z||^2 ~ d (1000-2048): at any useful lambda the averaged SGD would stop far from
// the SVM optimum. So the z-scores are also divided by their RMS row norm (folded into the stored std,
// so prediction applies exactly the same transform): the trainer sees mean ||z||^2 = 1, a step of ~1 is
// the natural first step, and lambda = 1/n means C = 1 whatever the feature dimension.
// Scales the z-scores `z` (in place) to unit RMS row norm; returns `s` with that scale in its std.
function scaleToUnitRms(z: FeatureMatrix, s: Standardization): Standardization {
  let sum = 0;
  for (let i = 0; i < z.data.length; i++) sum += (z.data[i] as number) * (z.data[i] as number);
  const rms = Math.sqrt(sum / z.rows);
  if (!(rms > 0) || !Number.isFinite(rms)) return s;
  for (let i = 0; i < z.data.length; i++) z.data[i] = (z.data[i] as number) / rms;
  return { ...s, std: s.std.map((v) => v * rms) };
}

/** Wraps the native addon's trainLinearSvms as an SvmTrainer. */
export function nativeSvmTrainer(addon: Pick<NativeAddon, 'trainLinearSvms'>): SvmTrainer {
  return (X, n, d, targets, k, options) => addon.trainLinearSvms(X, n, d, targets, k, options);
}

function sortedDistinct(labels: readonly string[]): string[] {
  return [...new Set(labels)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export async function trainSvmClassifier(features: FeaturesInput, labels: readonly string[], opts: TrainSvmOptions): Promise<SvmClassifier> {
  const x = toFeatureMatrix(features, 'training features');
  if (labels.length !== x.rows) {
    throw new LoupeError('INVALID_ARGUMENT', `${x.rows} feature rows but ${labels.length} labels`);
  }
  const classes = opts.classes ? [...opts.classes] : sortedDistinct(labels);
  if (new Set(classes).size !== classes.length) throw new LoupeError('INVALID_ARGUMENT', `duplicate class names in ${classes.join(', ')}`);
  if (classes.length < 2) throw new LoupeError('INVALID_ARGUMENT', `an SVM classifier needs at least 2 classes, got ${classes.length} (${classes.join(', ')})`);
  const index = new Map(classes.map((c, i) => [c, i]));
  const classIndex = new Int32Array(x.rows);
  const classCounts = classes.map(() => 0);
  const unknown = new Set<string>();
  labels.forEach((l, i) => {
    const c = index.get(l);
    if (c === undefined) unknown.add(l);
    else {
      classIndex[i] = c;
      classCounts[c] = (classCounts[c] as number) + 1;
    }
  });
  if (unknown.size > 0) throw new LoupeError('INVALID_ARGUMENT', `labels not in the class list: ${[...unknown].join(', ')}`);
  const empty = classes.filter((_, i) => classCounts[i] === 0);
  if (empty.length > 0) throw new LoupeError('INVALID_ARGUMENT', `no training rows for class(es): ${empty.join(', ')}`);

  const eta0 = opts.eta0 ?? SVM_DEFAULTS.eta0;
  const epochs = opts.epochs ?? SVM_DEFAULTS.epochs;
  const seed = opts.seed ?? SVM_DEFAULTS.seed;
  const schedule: SgdSchedule = opts.schedule ?? SVM_DEFAULTS.schedule;
  let lambda: number;
  let lambdaSelection: LambdaSelection | undefined;
  if (opts.lambda === undefined || opts.lambda === 'auto') {
    lambdaSelection = await selectLambda(x, classIndex, classes, classCounts, opts);
    lambda = 1 / ((lambdaSelection?.C ?? 1) * x.rows);
  } else {
    lambda = opts.lambda;
  }
  const coding = codingMatrix(opts.coding ?? SVM_DEFAULTS.coding, classes.length);
  const zscores = fitStandardization(x, opts.standardize);
  const z = applyStandardization(x, zscores);
  const standardization = scaleToUnitRms(z, zscores);
  const targets = buildTargets(coding, classIndex);
  const trainOptions: SvmTrainOptions = { lambda, eta0, epochs, seed, schedule };
  if (opts.backend !== undefined) trainOptions.backend = opts.backend;
  if (opts.threads !== undefined) trainOptions.threads = opts.threads;
  const { w, b } = await opts.trainer(z.data, z.rows, z.cols, targets, coding.learners, trainOptions);
  if (w.length !== coding.learners * x.cols || b.length !== coding.learners) {
    throw new LoupeError('ENGINE', `trainer returned w[${w.length}], b[${b.length}]; expected w[${coding.learners * x.cols}], b[${coding.learners}]`);
  }
  return {
    kind: 'svm',
    classes,
    layer: opts.layer ?? 'fc1000',
    dim: x.cols,
    standardization,
    coding,
    decoding: opts.decoding ?? SVM_DEFAULTS.decoding,
    weights: w,
    bias: b,
    training: {
      lambda,
      eta0,
      epochs,
      seed,
      schedule,
      trainer: opts.trainerName ?? 'custom',
      samples: x.rows,
      classCounts,
      ...(lambdaSelection ? { lambdaSelection } : {}),
    },
  };
}

/**
 * Picks C (lambda = 1/(C n)) by stratified k-fold CV on the training rows: each fold's model is the
 * full pipeline (its own standardisation) with every other setting as asked; the best balanced accuracy
 * of the pooled out-of-fold predictions wins (plain accuracy is flat over C on these good-heavy sets
 * while the defect classes' recall is not), ties going to the larger C: on features with d >= n the
 * training rows are separable, the upper end of the curve is a plateau where the SGD models differ only
 * by noise. Undefined when a class is too small.
 */
async function selectLambda(x: FeatureMatrix, classIndex: Int32Array, classes: readonly string[], classCounts: readonly number[], opts: TrainSvmOptions): Promise<LambdaSelection | undefined> {
  const seed = `svm-cv:${opts.seed ?? SVM_DEFAULTS.seed}`;
  const byGroups = opts.groups ? groupFolds(opts.groups, classIndex, classes, seed) : undefined;
  const folds = byGroups?.folds ?? Math.min(SVM_DEFAULTS.cvFolds, ...classCounts);
  if (folds < 2) return undefined;
  const { rows: n, cols: d, data } = x;
  let fold: Int32Array;
  if (byGroups) fold = byGroups.fold;
  else {
    // Fold of each row: per class, a seeded shuffle dealt round-robin (every fold sees every class).
    fold = new Int32Array(n);
    const rng = createRng(seed);
    classes.forEach((_, c) => {
      const rows: number[] = [];
      for (let i = 0; i < n; i++) if (classIndex[i] === c) rows.push(i);
      rng.shuffle(rows).forEach((r, j) => (fold[r] = j % folds));
    });
  }
  // The fold models get every setting but the groups (one per row of the whole set, not of a fold's part).
  const { groups: _groups, ...foldOpts } = opts;
  const grid = SVM_DEFAULTS.cGrid;
  const correct = grid.map(() => 0);
  const correctPerClass = grid.map(() => new Float64Array(classes.length));
  for (let f = 0; f < folds; f++) {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < n; i++) (fold[i] === f ? te : tr).push(i);
    const pick = (rows: number[]): FeatureMatrix => {
      const out = new Float32Array(rows.length * d);
      rows.forEach((r, j) => out.set(data.subarray(r * d, (r + 1) * d), j * d));
      return { data: out, rows: rows.length, cols: d };
    };
    const xtr = pick(tr);
    const xte = pick(te);
    const ltr = tr.map((i) => classes[classIndex[i] as number] as string);
    for (let g = 0; g < grid.length; g++) {
      const m = await trainSvmClassifier(xtr, ltr, { ...foldOpts, classes, lambda: 1 / ((grid[g] as number) * tr.length) });
      const p = predictSvm(m, xte).classIndex;
      te.forEach((r, j) => {
        if (p[j] !== classIndex[r]) return;
        correct[g] = (correct[g] as number) + 1;
        const pc = correctPerClass[g] as Float64Array;
        const c = classIndex[r] as number;
        pc[c] = (pc[c] as number) + 1;
      });
    }
  }
  const balanced = correctPerClass.map((pc) => pc.reduce((a, v, c) => a + v / (classCounts[c] as number), 0) / classes.length);
  let best = 0;
  // >= with a tolerance: sums of the same recalls in another order must still tie.
  for (let g = 1; g < grid.length; g++) if ((balanced[g] as number) >= (balanced[best] as number) - 1e-12) best = g;
  return { folds, ...(opts.groups ? { groupAware: Boolean(byGroups) } : {}), grid, cvAccuracy: correct.map((c) => c / n), cvBalancedAccuracy: balanced, C: grid[best] as number };
}

/**
 * Group-aware folds for the C search (the datasets' kFold over the rows, whole groups per fold), with as
 * many folds as every class's training side can keep: up to SVM_DEFAULTS.cvFolds, at most the number of
 * groups of the class with the fewest. Undefined when that is under 2 or a fold's training side would
 * still miss a class.
 */
function groupFolds(groups: readonly string[], classIndex: Int32Array, classes: readonly string[], seed: string): { folds: number; fold: Int32Array } | undefined {
  const n = classIndex.length;
  if (groups.length !== n) throw new LoupeError('INVALID_ARGUMENT', `groups has ${groups.length} entries for ${n} training rows`);
  const groupsOfClass = classes.map(() => new Set<string>());
  groups.forEach((g, i) => groupsOfClass[classIndex[i] as number]?.add(g));
  const folds = Math.min(SVM_DEFAULTS.cvFolds, ...groupsOfClass.map((s) => s.size));
  if (folds < 2) return undefined;
  const key = (i: number): string => String(i).padStart(9, '0');
  const items = Array.from({ length: n }, (_, i) => ({ relPath: key(i), label: classes[classIndex[i] as number] as string }));
  const parts = kFold(items, { k: folds, seed, groups: new Map(items.map((it, i) => [it.relPath, groups[i] as string])) });
  const fold = new Int32Array(n);
  for (let f = 0; f < parts.length; f++) {
    const part = parts[f]!;
    if (new Set(part.train.map((it) => it.label)).size < classes.length) return undefined;
    for (const it of part.test) fold[Number(it.relPath)] = f;
  }
  return { folds, fold };
}

/** Binary learner scores [n][L] = w_l . z + b_l on standardised features. */
export function learnerScores(model: SvmClassifier, z: FeatureMatrix): Float32Array {
  const { rows: n, cols: d, data } = z;
  const l = model.coding.learners;
  const out = new Float32Array(n * l);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < l; j++) {
      let s = 0;
      const wo = j * d;
      const xo = i * d;
      for (let c = 0; c < d; c++) s += (model.weights[wo + c] as number) * (data[xo + c] as number);
      out[i * l + j] = s + (model.bias[j] as number);
    }
  }
  return out;
}

export interface SvmPrediction {
  /** Predicted class name per row. */
  readonly labels: string[];
  readonly classIndex: Int32Array;
  /** Per-class scores [n][K], higher = more likely: votes + tie-break (decodeVotes) or the negated loss. */
  readonly scores: Float32Array;
  /** Binary learner scores [n][L]. */
  readonly learnerScores: Float32Array;
}

/** Predicts classes for raw features (standardised with the model's training statistics). */
export function predictSvm(model: SvmClassifier, features: FeaturesInput): SvmPrediction {
  const x = toFeatureMatrix(features, 'features');
  if (x.cols !== model.dim) {
    throw new LoupeError('INVALID_ARGUMENT', `features have ${x.cols} columns; the model was trained on ${model.dim} (${model.layer})`);
  }
  const z = applyStandardization(x, model.standardization);
  const ls = learnerScores(model, z);
  const { classIndex, scores } = decode(model.decoding, model.coding, ls, x.rows);
  return { labels: Array.from(classIndex, (c) => model.classes[c] as string), classIndex, scores, learnerScores: ls };
}
