// Multiclass linear SVM on CNN features, as in Omer & Abbas 2022 (MATLAB fitcecoc with linear SVM
// learners trained by SGD): standardise, build the ECOC targets, train the binary learners with an
// injected trainer (the native C++ kernel in production, the TS reference in tests), decode with
// loss-weighted hinge decoding.

import type { NativeAddon, SvmTrainOptions } from '@loupe/native';

import { LoupeError } from '../errors.js';
import { buildTargets, codingMatrix, decodeLossWeighted, type CodingMatrix, type CodingName } from './coding.js';
import { toFeatureMatrix, type FeatureMatrix, type FeaturesInput } from './features.js';
import type { SvmTrainer } from './reference-sgd.js';
import { applyStandardization, fitStandardization, type Standardization, type StandardizeOptions } from './standardize.js';

export type SgdSchedule = NonNullable<SvmTrainOptions['schedule']>;

export interface SvmTrainingInfo {
  readonly lambda: number;
  readonly epochs: number;
  readonly seed: number;
  readonly schedule: SgdSchedule;
  /** Name of the trainer used ('native', 'reference', ...). */
  readonly trainer: string;
  /** Training rows. */
  readonly samples: number;
  /** Training rows per class, in `classes` order. */
  readonly classCounts: readonly number[];
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
  /** L2 strength, Pegasos per-sample convention. Default 1e-4. */
  lambda?: number;
  /** Default 20. */
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
  /** Passed through to the trainer. */
  backend?: SvmTrainOptions['backend'];
  threads?: number;
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

  const lambda = opts.lambda ?? 1e-4;
  const epochs = opts.epochs ?? 20;
  const seed = opts.seed ?? 0;
  const schedule: SgdSchedule = opts.schedule ?? 'averaged';
  const coding = codingMatrix(opts.coding ?? 'onevsone', classes.length);
  const standardization = fitStandardization(x, opts.standardize);
  const z = applyStandardization(x, standardization);
  const targets = buildTargets(coding, classIndex);
  const trainOptions: SvmTrainOptions = { lambda, epochs, seed, schedule };
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
    weights: w,
    bias: b,
    training: { lambda, epochs, seed, schedule, trainer: opts.trainerName ?? 'custom', samples: x.rows, classCounts },
  };
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
  /** Per-class scores [n][K] (negated loss-weighted hinge loss; higher = more likely). */
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
  const { classIndex, scores } = decodeLossWeighted(model.coding, ls, x.rows);
  return { labels: Array.from(classIndex, (c) => model.classes[c] as string), classIndex, scores, learnerScores: ls };
}
