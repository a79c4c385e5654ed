// The SVM evaluation protocol: a model's verdicts (the Inspector's rule, svmVerdicts) on labelled images ->
// confusion matrix, per-class precision/recall/F1, accuracy, balanced accuracy, macro F1, good-vs-defect.
// Training's held-out figures, `loupe evaluate`, the HTML reports and the benchmarks all come from here.
import type { Dataset, SkippedFile } from '../datasets/types.js';
import { scanDataset, type VerifyLevel } from '../datasets/scan.js';
import type { Engine } from '../engine.js';
import { extractFeaturesCached } from '../features-cache.js';
import { engineForModel } from '../int8.js';
import { svmVerdicts, type SvmVerdict } from '../inspection/kinds.js';
import { LoupeError } from '../errors.js';
import { classificationMetrics, type ClassificationMetrics } from '../metrics/classification.js';
import { checkModelWeights, type SvmModel } from '../modelfile/models.js';

/** A labelled image (a dataset item, or any path with its label). */
export interface LabelledImage {
  readonly path: string;
  readonly label: string;
  /** Forward-slash path relative to the dataset root (reports); default the path. */
  readonly relPath?: string;
  /** sha256 of the file (seen-in-training checks). */
  readonly sha256?: string;
  /** Ground-truth defect mask (one-class pixel metrics). */
  readonly maskPath?: string;
}

export interface ClassifierEvaluation {
  readonly metrics: ClassificationMetrics;
  /** The evaluated images, in order, with what the model said of each. */
  readonly items: readonly LabelledImage[];
  readonly verdicts: readonly SvmVerdict[];
  /** The predicted class of each image (good class or defect type). */
  readonly predicted: readonly string[];
  /** Evaluated images the model was trained on (by content): their figures are not held-out ones. */
  readonly seenInTraining: number;
  /** Labels of the images that the model does not know (their images count as errors). */
  readonly unknownLabels: readonly string[];
}

/**
 * Evaluates an SVM model on images whose features of the model's layer are given (one row per image).
 * True labels the model does not know are kept as extra classes (always wrong), so no image is dropped.
 */
export function evaluateClassifierFeatures(model: SvmModel, items: readonly LabelledImage[], features: readonly Float32Array[]): ClassifierEvaluation {
  const verdicts = items.length > 0 ? svmVerdicts(model, features) : [];
  const predicted = verdicts.map((v) => v.label);
  const truth = items.map((i) => i.label);
  const classes = model.classifier.classes;
  const unknownLabels = [...new Set(truth)].filter((l) => !classes.includes(l)).sort();
  const metrics = classificationMetrics(truth, predicted, { classes: [...classes, ...unknownLabels], goodLabel: model.goodClass });
  const trained = new Set(model.trainHashes);
  const seenInTraining = trained.size === 0 ? 0 : items.filter((i) => i.sha256 !== undefined && trained.has(i.sha256)).length;
  return { metrics, items, verdicts, predicted, seenInTraining, unknownLabels };
}

export interface ClassifierFeatureOptions {
  readonly engine: Engine;
  /** Feature cache folder; default $LOUPE_HOME/features; false: no cache. */
  readonly cache?: string | false;
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (done: number, total: number) => void;
  /** 'throw' (default) or 'skip': an unreadable image is listed in `invalid` and left out. */
  readonly onInvalidImage?: 'throw' | 'skip';
}

export interface FeatureRun {
  /** One vector per file (empty for the invalid ones). */
  readonly features: Float32Array[];
  readonly cached: number;
  readonly computed: number;
  /** sha256 of each file. */
  readonly hashes: readonly string[];
  readonly invalid: readonly { readonly index: number; readonly error: LoupeError }[];
  readonly writeFailures: number;
}

/** Features of the model's layer (and preprocessing) for files, through the feature cache. */
export async function classifierFeatures(model: Pick<SvmModel, 'layer' | 'fit'>, files: readonly string[], o: ClassifierFeatureOptions): Promise<FeatureRun> {
  const r = await extractFeaturesCached(files, {
    engine: o.engine,
    layer: model.layer,
    fit: model.fit,
    ...(o.cache !== undefined ? { cacheDir: o.cache } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.signal !== undefined ? { signal: o.signal } : {}),
    ...(o.onInvalidImage !== undefined ? { onInvalidImage: o.onInvalidImage } : {}),
    ...(o.onProgress ? { onProgress: (p: { done: number; total: number }) => o.onProgress!(p.done, p.total) } : {}),
  });
  return { features: r.features, cached: r.cached, computed: r.computed, hashes: r.hashes, invalid: r.invalid, writeFailures: r.writeFailures };
}

export interface EvaluateClassifierOptions extends ClassifierFeatureOptions {
  /** Names the model in errors (its file). */
  readonly source?: string;
  /** Scan progress (folders are decoded in full while scanned). */
  readonly onScanProgress?: (done: number, total: number) => void;
  readonly verify?: VerifyLevel;
}

export interface ClassifierDatasetEvaluation extends ClassifierEvaluation {
  /** The scanned dataset, when a folder was given. */
  readonly dataset: Dataset | undefined;
  readonly skipped: readonly SkippedFile[];
  readonly features: { readonly cached: number; readonly computed: number; readonly writeFailures: number };
}

/** Evaluates an SVM model on a labelled folder (MVTec category or <label>/ folders) or a list of images. */
export async function evaluateClassifier(model: SvmModel, data: string | Dataset | readonly LabelledImage[], o: EvaluateClassifierOptions): Promise<ClassifierDatasetEvaluation> {
  if (model?.kind !== 'svm') throw new LoupeError('INVALID_ARGUMENT', `evaluateClassifier needs an SVM model, got ${model ? `a '${String(model.kind)}' model` : String(model)}`);
  checkModelWeights(model, o.engine, o.source ?? '<model>');
  let dataset: Dataset | undefined;
  let items: readonly LabelledImage[];
  if (typeof data === 'string') {
    dataset = await scanDataset(data, { verify: o.verify ?? 'decode', ...(o.onScanProgress ? { onProgress: o.onScanProgress } : {}) });
    items = dataset.items;
  } else if ('items' in data) {
    dataset = data;
    items = data.items;
  } else items = data;
  // The model's precision (an int8 model's own calibration): what it was trained and measured on.
  const feats = await classifierFeatures(model, items.map((i) => i.path), { ...o, engine: engineForModel(o.engine, model) });
  // Hashes from the read that made the features, for lists that did not bring their own.
  const withHashes = items.map((it, i) => (it.sha256 !== undefined || !feats.hashes[i] ? it : { ...it, sha256: feats.hashes[i] }));
  const e = evaluateClassifierFeatures(model, withHashes, feats.features);
  return { ...e, dataset, skipped: dataset?.skipped ?? [], features: { cached: feats.cached, computed: feats.computed, writeFailures: feats.writeFailures } };
}

/** Rounded for JSON (metrics are ratios of small integers: 6 digits say everything). */
export function r6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** The figures of a classification as plain JSON (what model files keep and `--json` prints), in a fixed key order. */
export function classificationFigures(m: ClassificationMetrics): Record<string, unknown> {
  return {
    accuracy: r6(m.accuracy),
    balancedAccuracy: r6(m.balancedAccuracy),
    binaryAccuracy: m.goodVsDefect ? r6(m.goodVsDefect.accuracy) : null,
    macroF1: r6(m.macroF1),
    classes: [...m.confusion.classes],
    confusion: m.confusion.counts.map((row) => [...row]),
    // null where the human table says n/a: nothing to measure, not a measured 0.
    perClass: m.perClass.map((c) => ({
      label: c.label,
      support: c.support,
      precision: c.predicted > 0 ? r6(c.precision) : null,
      recall: c.support > 0 ? r6(c.recall) : null,
      f1: c.support > 0 || c.predicted > 0 ? r6(c.f1) : null,
    })),
    total: m.total,
  };
}
