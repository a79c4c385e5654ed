// Training the paper's classifier: a labelled dataset (an MVTec category, <label>/ folders, or a list of
// labelled files) -> CNN features of one tap (cached) -> standardised ECOC linear SVM (native SGD, C by
// cross-validation) -> an SvmModel with its good class and training metadata, and, when asked, figures
// on a held-back part (stratified split, group-aware with groups) or pooled over k folds.
import { basename, resolve } from 'node:path';

import { nativeSvmTrainer, SVM_DEFAULTS, trainSvmClassifier, type SvmClassifier } from '../classifier/svm.js';
import type { CodingName, DecodingName } from '../classifier/coding.js';
import { loadGroups } from '../datasets/groups.js';
import { scanDataset } from '../datasets/scan.js';
import { kFold, stratifiedSplit, undersample, type GroupMap } from '../datasets/split.js';
import type { Dataset, SkippedFile } from '../datasets/types.js';
import { loadAddon, type Engine } from '../engine.js';
import { DatasetError } from '../datasets/errors.js';
import { LoupeError } from '../errors.js';
import type { FitMode } from '../image/decode.js';
import { classificationMetrics, type ClassificationMetrics } from '../metrics/classification.js';
import { findGoodClass, GOOD_LABEL, preprocessingRecord, SVM_LAYERS, type SvmLayer, type SvmModel } from '../modelfile/models.js';
import { trainingEngine, type Int8CalibrationMethod, type ModelPrecision } from '../int8.js';
import { threadBudget } from '../threads.js';
import { classificationFigures, classifierFeatures, evaluateClassifierFeatures, r6, type ClassifierEvaluation, type LabelledImage } from '../evaluation/classifier.js';
import type { TrainingProgress } from './one-class.js';

/** How images are held back to measure the model. */
export type HoldOut = { readonly split: number } | { readonly kfold: number };

export interface TrainClassifierOptions {
  engine: Engine;
  /** A labelled dataset: a folder (an MVTec category, or <label>/ folders), a scanned Dataset, or labelled files. */
  data: string | Dataset | readonly LabelledImage[];
  /** CNN tap of the features; default 'fc1000' (the paper's). */
  layer?: SvmLayer;
  /** 'squash' (default) or 'crop' to 224x224. */
  fit?: FitMode;
  /** Default 'onevsone' (the paper's). */
  coding?: CodingName;
  decoding?: DecodingName;
  /** L2 strength; default: C chosen by cross-validation on the training part. */
  lambda?: number;
  epochs?: number;
  /** Seed of the split, balancing and SGD; default 0. */
  seed?: number;
  /** The label of good parts; default the label called good (or ok, normal, pass, no_defect). */
  goodLabel?: string;
  /** Order of the model's classes (every label of the data); default the dataset's label order. */
  classes?: readonly string[];
  /** Images of one physical part (group) stay on one side of a split and in one fold: a map relPath -> group, or a file,group CSV. */
  groups?: GroupMap | string;
  /** Undersample every label to the smallest one first (the paper balances its sets). */
  balance?: boolean;
  /** Hold images back to measure the model: a split fraction, or k-fold (the model is then refitted on all). */
  holdOut?: HoldOut;
  /** Feature cache folder; default $LOUPE_HOME/features; false: no cache. */
  cache?: string | false;
  batchSize?: number;
  threads?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  signal?: AbortSignal;
  onProgress?: (p: TrainingProgress) => void;
  /**
   * 'fp32' (DEFAULT_PRECISION) or 'int8': INT8 features, with activation ranges calibrated on the images the
   * trainer is given (labels unused) and stored in the model file, so it is evaluated, inspected and served in INT8 too.
   */
  precision?: ModelPrecision;
  /** The range method of an int8 calibration; default DEFAULT_CALIBRATION_METHOD. */
  calibrationMethod?: Int8CalibrationMethod;
  /** What the images are; default the dataset folder's name. */
  category?: string;
  /** Keep a few training image paths per label in the model (for the montage of evaluation reports); default true. */
  recordSamples?: boolean;
  /** Any other JSON metadata to keep in the model file. */
  extra?: Readonly<Record<string, unknown>>;
}

export interface HeldOutFigures {
  readonly kind: 'split' | 'kfold';
  readonly metrics: ClassificationMetrics;
  /** The held-back images (every image once over k folds) and the class predicted for each. */
  readonly items: readonly LabelledImage[];
  readonly predicted: readonly string[];
  /** Per-fold figures (k-fold). */
  readonly folds: readonly ClassificationMetrics[];
  readonly groupAware: boolean;
}

export interface ClassifierTraining {
  readonly model: SvmModel;
  /** The scanned dataset, when a folder was given. */
  readonly dataset: Dataset | undefined;
  /** All images used (after balancing), the classes in order, and the part the saved model was fitted on. */
  readonly items: readonly LabelledImage[];
  readonly classes: readonly string[];
  readonly train: readonly LabelledImage[];
  readonly heldOut: HeldOutFigures | undefined;
  readonly skipped: readonly SkippedFile[];
  readonly features: { readonly cached: number; readonly computed: number; readonly seconds: number; readonly writeFailures: number };
  readonly seconds: number;
}

/** Up to `n` image paths per label. */
export function samplesByLabel(items: readonly LabelledImage[], labels: readonly string[], n = 6): { label: string; images: string[] }[] {
  return labels.map((label) => ({ label, images: items.filter((i) => i.label === label).slice(0, n).map((i) => i.path) }));
}

function labelledItems(data: TrainClassifierOptions['data']): { dataset: Dataset | undefined; items: readonly LabelledImage[] } {
  if (typeof data === 'string') throw new Error('unreachable');
  if ('items' in data) return { dataset: data, items: data.items };
  return { dataset: undefined, items: data };
}

/**
 * The rules trainClassifier applies to its options before any image is read (the native trainer would
 * refuse these only after the CNN ran, and not as a LoupeError): INVALID_ARGUMENT naming the option.
 * Exported so that a caller can refuse a request before starting a training (the server does).
 */
export function checkClassifierOptions(o: Pick<TrainClassifierOptions, 'layer' | 'lambda' | 'epochs'>): void {
  if (o.layer !== undefined && !(SVM_LAYERS as readonly string[]).includes(o.layer)) throw new LoupeError('INVALID_ARGUMENT', `layer must be ${SVM_LAYERS.join(' or ')}, got ${String(o.layer)}`);
  if (o.lambda !== undefined && !(o.lambda > 0 && Number.isFinite(o.lambda))) throw new LoupeError('INVALID_ARGUMENT', `lambda must be a finite number > 0, got ${o.lambda}`);
  if (o.epochs !== undefined && !(Number.isInteger(o.epochs) && o.epochs >= 1 && o.epochs <= 1_048_576)) throw new LoupeError('INVALID_ARGUMENT', `epochs must be an integer in [1, 1048576], got ${o.epochs}`);
}

/** Trains an SVM classifier (see the file header); save it with saveModel. */
export async function trainClassifier(o: TrainClassifierOptions): Promise<ClassifierTraining> {
  const t0 = performance.now();
  const progress = o.onProgress;
  checkClassifierOptions(o);
  const { dataset, items: all } =
    typeof o.data === 'string' ? labelledItems(await scanDataset(o.data, { verify: 'decode', onProgress: (done, total) => progress?.({ stage: 'scan', done, total }) })) : labelledItems(o.data);
  const root = dataset?.root;
  const where = root ?? 'the training images';
  const labelsInData = dataset ? [...dataset.labels] : [...new Set(all.map((i) => i.label))].sort();
  if (labelsInData.length < 2) {
    throw new DatasetError(
      'DATASET_LAYOUT',
      `${where}: a classifier needs at least 2 labels, found ${labelsInData.length} (${labelsInData.join(', ')})${dataset?.layout === 'folder-per-label' ? '; put each class in its own <label>/ folder' : ''}`,
      ...(root ? [{ input: root }] : []),
    );
  }
  const goodClass = findGoodClass(labelsInData, o.goodLabel);
  if (goodClass === undefined) {
    throw new LoupeError(
      'INVALID_ARGUMENT',
      o.goodLabel !== undefined
        ? `${where}: no label '${o.goodLabel}' (labels: ${labelsInData.join(', ')})`
        : `${where}: no label names the good parts (labels: ${labelsInData.join(', ')}); call the folder of good parts '${GOOD_LABEL}' or name it with goodLabel (--good-label)`,
      ...(root ? [{ input: root }] : []),
    );
  }
  const seed = o.seed ?? 0;
  const relOf = (it: LabelledImage): string => it.relPath ?? it.path;
  const keyed = all.map((it) => ({ ...it, relPath: relOf(it) }));
  // relPath identifies an image in splits, groups and the feature rows: two images under one name would share features.
  const seen = new Set<string>();
  for (const it of keyed) {
    if (seen.has(it.relPath)) throw new LoupeError('INVALID_ARGUMENT', `${where}: two images are called ${it.relPath}; give each a distinct path (relPath)`, { input: it.relPath });
    seen.add(it.relPath);
  }
  const items = o.balance ? undersample(keyed, { seed }) : keyed;
  const classes = o.classes ? [...o.classes] : labelsInData;
  const extraLabels = labelsInData.filter((l) => !classes.includes(l));
  if (extraLabels.length > 0) throw new LoupeError('INVALID_ARGUMENT', `${where}: labels ${extraLabels.join(', ')} are not in the given classes (${classes.join(', ')})`);
  let groups: GroupMap | undefined;
  if (typeof o.groups === 'string') {
    groups = await loadGroups(o.groups, dataset ?? { items: keyed });
  } else groups = o.groups;
  const layer: SvmLayer = o.layer ?? 'fc1000';
  const fit: FitMode = o.fit ?? 'squash';

  const t1 = performance.now();
  // A hold-out split is drawn before the features so that an int8 model is calibrated on the images it is
  // trained on, never on its held-out ones (k-fold and no hold-out: the saved model trains on every image).
  const holdOutSplit = o.holdOut && !('kfold' in o.holdOut) ? stratifiedSplit(items, { testRatio: o.holdOut.split, seed, ...(groups ? { groups } : {}) }) : undefined;
  const { engine, int8Calibration } = await trainingEngine(o.engine, o.precision, (holdOutSplit ? holdOutSplit.train : items).map((i) => i.path), { ...(o.calibrationMethod ? { method: o.calibrationMethod } : {}), fit, ...(o.signal ? { signal: o.signal } : {}) });
  const feats = await classifierFeatures({ layer, fit }, items.map((i) => i.path), {
    engine,
    ...(o.cache !== undefined ? { cache: o.cache } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.signal !== undefined ? { signal: o.signal } : {}),
    onProgress: (done, total) => progress?.({ stage: 'features', done, total }),
  });
  const featSeconds = (performance.now() - t1) / 1000;
  const row = new Map(items.map((it, i) => [it.relPath, i]));
  const featuresOf = (part: readonly LabelledImage[]): Float32Array[] => part.map((it) => feats.features[row.get(relOf(it))!]!);
  const hashes = new Map(items.map((it, i) => [it.relPath, it.sha256 ?? feats.hashes[i]]));
  const withHash = (part: readonly (LabelledImage & { relPath: string })[]): LabelledImage[] => part.map((it) => (it.sha256 || !hashes.get(it.relPath) ? it : { ...it, sha256: hashes.get(it.relPath)! }));

  const trainer = nativeSvmTrainer(await loadAddon());
  const threads = o.threads ?? threadBudget().engineThreads;
  const fitSvm = async (part: readonly (LabelledImage & { relPath: string })[], what: string): Promise<SvmClassifier> => {
    const missing = classes.filter((c) => !part.some((it) => it.label === c));
    if (missing.length > 0) {
      throw new DatasetError('SPLIT_INVALID', `${where}: the ${what} has no images of ${missing.join(', ')}; with so few images (or with groups) hold fewer back or use fewer folds`, ...(root ? [{ input: root }] : []));
    }
    progress?.({ stage: 'svm', done: 0, total: 1 });
    const m = await trainSvmClassifier(featuresOf(part), part.map((it) => it.label), {
      trainer,
      trainerName: 'native',
      coding: o.coding ?? SVM_DEFAULTS.coding,
      ...(o.decoding !== undefined ? { decoding: o.decoding } : {}),
      ...(o.lambda !== undefined ? { lambda: o.lambda } : {}),
      ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
      ...(groups ? { groups: part.map((it) => groups!.get(it.relPath) as string) } : {}),
      seed,
      layer,
      classes,
      threads,
      ...(o.backend !== undefined ? { backend: o.backend } : {}),
    });
    progress?.({ stage: 'svm', done: 1, total: 1 });
    return m;
  };
  const asModel = (classifier: SvmClassifier, trainPart: readonly LabelledImage[], metrics?: unknown): SvmModel => ({
    kind: 'svm',
    classifier,
    layer,
    fit,
    goodClass,
    threshold: 0,
    weightsHash: o.engine.weightsHash,
    createdAt: new Date().toISOString(),
    preprocessing: preprocessingRecord({ fit }),
    trainHashes: trainPart.map((i) => i.sha256).filter((h): h is string => typeof h === 'string' && h !== ''),
    ...(int8Calibration ? { int8Calibration } : {}),
    ...(o.category !== undefined ? { category: o.category } : root ? { category: basename(root) } : {}),
    ...(metrics !== undefined ? { metrics } : {}),
    extra: {
      ...(dataset ? { dataset: { root: dataset.root, layout: dataset.layout, labels: classes, images: items.length, skipped: dataset.skipped.length, balanced: Boolean(o.balance), groups: typeof o.groups === 'string' ? resolve(o.groups) : null } } : {}),
      // A few training images per label, for the montage of evaluation reports.
      ...(o.recordSamples === false ? {} : { trainSamples: samplesByLabel(trainPart, classes) }),
      ...(o.extra ?? {}),
    },
  });

  let heldOut: HeldOutFigures | undefined;
  let trainPart: (LabelledImage & { relPath: string })[] = withHash(items) as (LabelledImage & { relPath: string })[];
  let classifier: SvmClassifier;
  let splitInfo: Record<string, unknown> | undefined;
  const evaluate = (c: SvmClassifier, part: readonly LabelledImage[]): ClassifierEvaluation => evaluateClassifierFeatures(asModel(c, []), part, featuresOf(part));
  if (o.holdOut && 'kfold' in o.holdOut) {
    const k = o.holdOut.kfold;
    const parts = kFold(items, { k, seed, ...(groups ? { groups } : {}) });
    const folds: ClassificationMetrics[] = [];
    const truth: string[] = [];
    const predicted: string[] = [];
    const tested: LabelledImage[] = [];
    for (const [i, p] of parts.entries()) {
      const e = evaluate(await fitSvm(p.train, `training part of fold ${i + 1}`), p.test);
      folds.push(e.metrics);
      truth.push(...p.test.map((it) => it.label));
      predicted.push(...e.predicted);
      tested.push(...p.test);
    }
    // Every image is tested exactly once over the folds, so the pooled confusion is an honest total.
    heldOut = { kind: 'kfold', metrics: classificationMetrics(truth, predicted, { classes, goodLabel: goodClass }), items: tested, predicted, folds, groupAware: Boolean(groups) };
    classifier = await fitSvm(items, 'dataset'); // the saved model is refitted on everything
    splitInfo = { kind: 'kfold', k, seed, groupAware: Boolean(groups) };
  } else if (o.holdOut) {
    const split = holdOutSplit!;
    if (split.test.length === 0) throw new DatasetError('SPLIT_INVALID', `${where}: holding back ${o.holdOut.split} leaves no images to evaluate on`, ...(root ? [{ input: root }] : []));
    trainPart = withHash(split.train) as typeof trainPart;
    classifier = await fitSvm(split.train, 'training part');
    const e = evaluate(classifier, split.test);
    heldOut = { kind: 'split', metrics: e.metrics, items: split.test, predicted: e.predicted, folds: [], groupAware: Boolean(groups) };
    splitInfo = { kind: 'holdout', testRatio: o.holdOut.split, seed, groupAware: Boolean(groups), train: split.train.length, test: split.test.length };
  } else {
    classifier = await fitSvm(items, 'dataset');
  }
  const metrics = heldOut
    ? {
        heldOut: classificationFigures(heldOut.metrics),
        split: splitInfo,
        ...(heldOut.folds.length ? { folds: heldOut.folds.map((f) => ({ accuracy: r6(f.accuracy), balancedAccuracy: r6(f.balancedAccuracy), total: f.total })) } : {}),
      }
    : undefined;
  const model = asModel(classifier, trainPart, metrics);
  return {
    model: splitInfo ? { ...model, extra: { ...model.extra, split: splitInfo } } : model,
    dataset,
    items,
    classes,
    train: trainPart,
    heldOut,
    skipped: dataset?.skipped ?? [],
    features: { cached: feats.cached, computed: feats.computed, seconds: featSeconds, writeFailures: feats.writeFailures },
    seconds: (performance.now() - t0) / 1000,
  };
}
