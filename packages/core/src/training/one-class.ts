// Training a one-class model from good parts: a folder of good photos (or an MVTec category's train/good,
// or a list of files) -> PatchCore memory bank + thresholds -> a OneClassModel that saveModel writes with
// the same metadata whoever trains it (library, CLI, server).
import { checkPatchCoreConfig, DEFAULT_PATCHCORE_CONFIG, PatchCoreModel, type PatchCoreConfig } from '../anomaly/patchcore/model.js';
import type { BankStorage } from '../anomaly/patchcore/memory-bank.js';
import { fileContentHashes } from '../features-cache.js';
import type { Engine } from '../engine.js';
import { LoupeError } from '../errors.js';
import { loadAddon } from '../engine.js';
import { preprocessingRecord, type OneClassModel } from '../modelfile/models.js';
import type { SkippedFile } from '../datasets/types.js';
import { trainingEngine, type Int8CalibrationMethod, type ModelPrecision } from '../int8.js';
import { threadBudget } from '../threads.js';
import { resolveImageSet, type ImageSet } from './images.js';

/** Stages of a training, in order, as onProgress reports them. */
export type TrainingStage = 'scan' | 'features' | 'coreset' | 'thresholds' | 'svm' | 'head' | 'evaluate';

export interface TrainingProgress {
  readonly stage: TrainingStage;
  readonly done: number;
  readonly total: number;
}

/** The tile geometry of `tile: true` (the only tile size is the model input's). */
export const DEFAULT_TILE = { size: 224, overlap: 0.25 } as const;

/** Fewer held-out good images than this make the threshold quantile little more than their maximum. */
export const MIN_CALIBRATION_IMAGES = 10;

export interface TrainOneClassOptions {
  engine: Engine;
  /** Good parts: a folder (every image under it; an MVTec category: its train/good) or image files. */
  good: ImageSet;
  /**
   * Defective parts, optional: a folder (an MVTec category: its defective test images, with their masks)
   * or files. The image threshold then maximises F1 over them and held-out good images (the pixel
   * threshold too, with masks), instead of a quantile of the good images alone.
   */
  defects?: ImageSet;
  /** Fraction of patch features kept in the memory bank; default 0.01. */
  coresetRatio?: number;
  /** Seeded random projection of the 1536-dim patch features (0 = none, the default). */
  projectionDim?: number;
  storage?: BankStorage;
  /** Cap on the memory bank, in MiB. */
  maxBankMB?: number;
  /** Score overlapping 224x224 tiles at native resolution instead of the whole image squashed. */
  tile?: boolean | { overlap: number };
  /** Seed of the hold-out, the coreset and the projection; default 0. */
  seed?: number;
  /** Good images held out (never in the bank) to set the thresholds; default 0.1. */
  validationFraction?: number;
  /** Quantile of the held-out good scores used as the threshold without defects; default 0.99. */
  thresholdQuantile?: number;
  /**
   * 'fp32' (DEFAULT_PRECISION) or 'int8': INT8 features, with activation ranges calibrated on the training
   * images and stored in the model file, so it is evaluated, inspected and served in INT8 too.
   */
  precision?: ModelPrecision;
  /** The range method of an int8 calibration; default DEFAULT_CALIBRATION_METHOD. */
  calibrationMethod?: Int8CalibrationMethod;
  /** What the images are; default the folder's name. */
  category?: string;
  /** Views per engine run; default 8. */
  batchSize?: number;
  /** kNN/coreset threads and backend; default the thread budget's engine share, 'auto'. */
  threads?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  signal?: AbortSignal;
  onProgress?: (p: TrainingProgress) => void;
  /** Figures or notes to keep in the model file (JSON). */
  metrics?: unknown;
  extra?: Readonly<Record<string, unknown>>;
}

export interface OneClassTraining {
  readonly model: OneClassModel;
  /** Good images: in the memory bank, and held out for the thresholds. */
  readonly bankImages: number;
  readonly validationImages: number;
  readonly defectImages: number;
  /** Where the good images came from. */
  readonly root: string | undefined;
  readonly layout: 'mvtec' | 'folder' | 'files';
  /** Files of the folders that were left out, and why. */
  readonly skipped: readonly SkippedFile[];
  /** Seconds per stage. */
  readonly timings: { readonly scanS: number; readonly featuresS: number; readonly coresetS: number; readonly thresholdsS: number; readonly totalS: number };
  /** Things the trainer should know (thin calibration, ...). */
  readonly warnings: readonly string[];
}

const STAGE_OF: Record<string, TrainingStage> = { 'embed-train': 'features', coreset: 'coreset', embed: 'thresholds' };

/** The PatchCore config these options ask for (defaults from DEFAULT_PATCHCORE_CONFIG). */
export function oneClassConfig(o: Omit<TrainOneClassOptions, 'engine' | 'good' | 'precision'>): Partial<PatchCoreConfig> {
  const c: Partial<PatchCoreConfig> = {};
  if (o.coresetRatio !== undefined) c.coresetRatio = o.coresetRatio;
  if (o.projectionDim !== undefined) c.projectionDim = o.projectionDim;
  if (o.storage !== undefined) c.storage = o.storage;
  if (o.maxBankMB !== undefined) c.maxBankMB = o.maxBankMB;
  if (o.seed !== undefined) c.seed = o.seed;
  if (o.validationFraction !== undefined) c.validationFraction = o.validationFraction;
  if (o.thresholdQuantile !== undefined) c.thresholdQuantile = o.thresholdQuantile;
  if (o.tile) c.tile = { size: DEFAULT_TILE.size, overlap: typeof o.tile === 'object' ? o.tile.overlap : DEFAULT_TILE.overlap };
  return c;
}

/**
 * The rules trainOneClass applies to its options (the PatchCore config they make: coresetRatio,
 * validationFraction, thresholdQuantile, ...), without training: INVALID_ARGUMENT naming the option.
 */
export function checkOneClassOptions(o: Omit<TrainOneClassOptions, 'engine' | 'good'>): void {
  checkPatchCoreConfig(oneClassConfig(o));
}

/** Trains a one-class (PatchCore) model on good images; save it with saveModel. */
export async function trainOneClass(options: TrainOneClassOptions): Promise<OneClassTraining> {
  const t0 = performance.now();
  const progress = options.onProgress;
  const good = await resolveImageSet(options.good, { role: 'good', onProgress: (done, total) => progress?.({ stage: 'scan', done, total }) });
  const defects = options.defects !== undefined ? await resolveImageSet(options.defects, { role: 'defects' }) : undefined;
  if (good.files.length === 0) throw new LoupeError('DATASET_EMPTY', 'no good images to train on');
  const config = oneClassConfig(options);
  const tScan = performance.now();
  const marks = new Map<TrainingStage, number>();
  const threads = options.threads ?? threadBudget().engineThreads;
  const { engine, int8Calibration } = await trainingEngine(options.engine, options.precision, good.files, { ...(options.calibrationMethod ? { method: options.calibrationMethod } : {}), ...(options.signal ? { signal: options.signal } : {}) });
  const patchcore = await PatchCoreModel.train(engine, good.files, {
    config,
    knn: await loadAddon(),
    batchSize: options.batchSize ?? 8,
    threads,
    ...(options.backend !== undefined ? { backend: options.backend } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(defects ? { defects: defects.files.map((f, i) => ({ source: f, mask: defects.masks[i] ?? null })) } : {}),
    onProgress: (s, done, total) => {
      const stage = STAGE_OF[s] ?? 'features';
      marks.set(stage, performance.now());
      progress?.({ stage, done, total });
    },
  });
  // The training images by content, so evaluation can tell when a test set holds some of them.
  const trainHashes = await fileContentHashes(good.files);
  const t2 = performance.now();
  const category = options.category ?? good.category;
  const model: OneClassModel = {
    kind: 'one-class',
    method: 'patchcore',
    patchcore,
    weightsHash: options.engine.weightsHash,
    createdAt: new Date().toISOString(),
    preprocessing: preprocessingRecord({ tile: patchcore.config.tile }),
    trainHashes,
    ...(int8Calibration ? { int8Calibration } : {}),
    ...(category !== undefined ? { category } : {}),
    ...(options.metrics !== undefined ? { metrics: options.metrics } : {}),
    ...(options.extra !== undefined ? { extra: options.extra } : {}),
  };
  const featuresEnd = marks.get('features') ?? tScan;
  const coresetEnd = marks.get('coreset') ?? featuresEnd;
  const v = patchcore.training.validationImages;
  const warnings: string[] = [];
  if (v === 0) warnings.push('only one good image: the thresholds were set on the bank image itself (optimistic)');
  else if (v < MIN_CALIBRATION_IMAGES && !defects) {
    // A 0.99 quantile of a handful of scores is their maximum, and the next good part often scores higher.
    warnings.push(
      `the thresholds rest on ${v} held-out good image${v === 1 ? '' : 's'}; with fewer than ${MIN_CALIBRATION_IMAGES} expect good parts to be flagged ` +
        `(train on more good images: ${Math.round(100 * (config.validationFraction ?? DEFAULT_PATCHCORE_CONFIG.validationFraction))}% are held out, or give defects)`,
    );
  }
  const s = (ms: number): number => Math.round(ms) / 1000;
  return {
    model,
    bankImages: patchcore.training.images,
    validationImages: v,
    defectImages: defects?.files.length ?? 0,
    root: good.root,
    layout: good.layout,
    skipped: [...good.skipped, ...(defects?.skipped ?? [])],
    timings: { scanS: s(tScan - t0), featuresS: s(featuresEnd - tScan), coresetS: s(coresetEnd - featuresEnd), thresholdsS: s(t2 - coresetEnd), totalS: s(t2 - t0) },
    warnings,
  };
}
