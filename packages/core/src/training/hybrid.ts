// Training a hybrid (few-shot) model: good parts -> PatchCore memory bank; the labelled defects a plant has
// (masks where present, image labels otherwise) -> a supervised patch head; the two fused into one
// calibrated score and map (anomaly/hybrid/model.ts), with a defect-type classifier for two or more types.
//
//   data: an MVTec category (good = train/good + test/good, defects = test/<type>, masks from ground_truth/)
//         or folder-per-label with a good folder, or labelled files.
//   holdOut: the held-out protocol of evaluation/hybrid-split.ts (split F of test/good and of each defect
//         type, group-aware with groups; shots N per type); the held-out images are evaluated with
//         evaluateOneClass, the hybrid model and (compareOneClass) its memory bank alone.
//   Good training images: a seeded fraction (validationFraction) never enters the bank; they standardise
//   the two scores (fusion) and, with out-of-fold head scores of the labelled defects (k-fold over them,
//   group-aware), set the fused thresholds
//   (image: the best balanced accuracy; pixel: F1-optimal).
// Without labelled defects the model has no head and answers as its memory bank (a warning says so).
import { createRng } from '../datasets/random.js';
import { loadGroups } from '../datasets/groups.js';
import { scanDataset } from '../datasets/scan.js';
import type { GroupMap } from '../datasets/split.js';
import { DatasetError } from '../datasets/errors.js';
import type { Dataset, SkippedFile } from '../datasets/types.js';
import type { Engine } from '../engine.js';
import { loadAddon } from '../engine.js';
import { trainingEngine, type Int8CalibrationMethod, type ModelPrecision } from '../int8.js';
import { AbortError, LoupeError } from '../errors.js';
import { fileContentHashes } from '../features-cache.js';
import { loadMask } from '../image/mask.js';
import { Inspector } from '../inspection/inspector.js';
import { findGoodClass, GOOD_LABEL, HYBRID_METHOD, preprocessingRecord, type HybridModel, type OneClassModel } from '../modelfile/models.js';
import { threadBudget } from '../threads.js';
import { evaluateOneClass, type OneClassEvaluation } from '../evaluation/one-class.js';
import type { LabelledImage } from '../evaluation/classifier.js';
import { hybridHoldOut } from '../evaluation/hybrid-split.js';
import { groupKFold } from '../anomaly/fewshot/kfold.js';
import { trainLogistic } from '../anomaly/fewshot/logistic.js';
import { trainMlp } from '../anomaly/fewshot/mlp.js';
import { classifierLogits, classifierState, meanLogits, scoreStats, type FewShotHeadState, type PatchClassifier } from '../anomaly/fewshot/head.js';
import { LABEL_NEGATIVE, LABEL_POSITIVE, patchLabelsFromMask, patchLabelsFromScores } from '../anomaly/fewshot/patch-labels.js';
import { f1OptimalThresholdBinned, quantile } from '../anomaly/patchcore/threshold.js';
import { patchScoresToMap } from '../anomaly/patchcore/anomaly-map.js';
import { holdOutValidation, PatchCoreModel } from '../anomaly/patchcore/model.js';
import { EMBEDDING_DIM, PATCH_GRID, PATCHES_PER_IMAGE, SparseRandomProjection, type ProjectionSpec } from '../anomaly/patchcore/feature-extractor.js';
import {
  aggregateLogits,
  checkHeadFlips,
  flipMeanLogits,
  fuse,
  HYBRID_FORMAT,
  HYBRID_VERSION,
  headInputDim,
  headInputRows,
  HybridScorer,
  scoreWithFlips,
  type DefectTypeState,
  type FusionPart,
  type HeadAggregation,
  type HeadInput,
  type HybridState,
} from '../anomaly/hybrid/model.js';
import { trainSoftmax } from '../anomaly/hybrid/softmax.js';
import { INPUT_SIZE } from '../model.js';
import type { Flip } from '../image/views.js';
import { oneClassConfig, type TrainingProgress } from './one-class.js';
import type { BankStorage } from '../anomaly/patchcore/memory-bank.js';

/** A labelled training image: label 'good' (or the good label) or a defect type; a mask optional. */
export interface HybridImage {
  readonly path: string;
  readonly label: string;
  /** Forward-slash path relative to the dataset root (splits, groups); default the path. */
  readonly relPath?: string;
  readonly maskPath?: string;
  /** MVTec: 'train' images (train/good) always train. */
  readonly mvtecSplit?: 'train' | 'test';
}

export interface HybridHeadOptions {
  /** What the head reads per patch; default the embedding only. */
  input?: Partial<HeadInput>;
  /** Seeded sparse projection of the head input; default 256 (0 = none). */
  projectionDim?: number;
  /**
   * The head's negatives: this many random patches of every bank image (all the good parts' conditions,
   * taken during the bank's own CNN pass); default 64. 0: every patch of `negativeImages` bank images.
   */
  negativePatchesPerImage?: number;
  /** With negativePatchesPerImage 0: the bank images whose patches are all negatives; default 60. */
  negativeImages?: number;
  /** Cap on negative patches (seeded subsample); default 60000. */
  maxNegatives?: number;
  /**
   * The patch classifier: 'mlp' (default: one hidden ReLU layer of `hidden` units) or 'logistic' (linear).
   * The MLP lifted held-out image AUROC over the logistic head on both hard dev categories (quality.md, mlp).
   */
  classifier?: 'mlp' | 'logistic';
  /** Hidden units of the MLP; default 32. */
  hidden?: number;
  /**
   * Heads whose patch logits are averaged, each on its own projection seed; default DEFAULT_HYBRID_HEAD.members.
   * One random projection decides a lot: on one split, three seeds gave 0.924-0.949 held-out AUROC (quality.md, ensemble).
   * Five rather than three (with test-time flips) lifted fused image AUROC on splits kept apart from the table's
   * (seeds 5-9): magnetic tile +0.003, KolektorSDD +0.005, each on four splits of five (quality.md, bankflips),
   * for 1.24x the inspection time of three (docs/benchmarks/hybrid-flips.md).
   */
  members?: number;
  l2?: number;
  /** Passes over the head's patches; default 5 (mlp) or 30 (logistic). */
  epochs?: number;
  aggregation?: Partial<HeadAggregation>;
  /**
   * Weight of the head in the fusion; default 4 (z(PatchCore) + 4 z(head)): 2 and 4 were the best of 0.5-4 on
   * every dev category (docs/benchmarks/quality.md, head3). 'auto': the ratio of the labelled defects' median
   * out-of-fold z-scores, head over PatchCore, clamped to [0.25, 8] (2 with a single labelled defect); it
   * underrates the final head where the out-of-fold heads lack a whole group (magnetic tile: 0.34, -0.03 AUROC).
   */
  weight?: number | 'auto';
  /** 'auto' (default): masks where given, else image labels (the PatchCore-top patches). */
  labels?: 'auto' | 'mask' | 'image';
  /** Folds of the out-of-fold head scores that set the thresholds; default 5 (at most the defect count). */
  folds?: number;
  /**
   * Test-time flips: the head's patch logits are averaged over the image and these mirror images of it
   * (the memory bank reads the image alone). Default hflip + vflip, which lifted held-out image AUROC on
   * magnetic tile by +0.006 to +0.015 per split (quality.md, tta) for 3x the network's work per inspected
   * image (2.7x slower inspection, docs/benchmarks/hybrid-flips.md); [] inspects at 1x. Needs an
   * embedding-only head (`input`).
   */
  flips?: readonly Flip[];
}

export interface TrainHybridOptions {
  engine: Engine;
  /**
   * 'fp32' (DEFAULT_PRECISION) or 'int8': INT8 features, with activation ranges calibrated on the good
   * training images and stored in the model file, so it is evaluated, inspected and served in INT8 too.
   */
  precision?: ModelPrecision;
  /** The range method of an int8 calibration; default DEFAULT_CALIBRATION_METHOD. */
  calibrationMethod?: Int8CalibrationMethod;
  /** A folder (an MVTec category, or <label>/ folders with a good one), a scanned Dataset, or labelled images. */
  data: string | Dataset | readonly HybridImage[];
  /** The label of good parts; default 'good' (or ok, normal, pass, no_defect). */
  goodLabel?: string;
  /** Fraction of test/good and of each defect type held out and evaluated (0 or undefined: none). */
  split?: number;
  /** At most this many labelled defects per type train the head; default all. */
  shots?: number;
  /** Images of one physical part stay on one side: a map relPath -> group, or a file,group CSV. */
  groups?: GroupMap | string;
  /** Seed of the split, the shots, the bank's hold-out and coreset, the head; default 0. */
  seed?: number;
  coresetRatio?: number;
  projectionDim?: number;
  storage?: BankStorage;
  maxBankMB?: number;
  /** Good training images kept out of the bank (fusion statistics, thresholds); default 0.1. */
  validationFraction?: number;
  head?: HybridHeadOptions;
  /** Also evaluate the memory bank alone on the held-out images (one more pass); default true. */
  compareOneClass?: boolean;
  batchSize?: number;
  threads?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  signal?: AbortSignal;
  onProgress?: (p: TrainingProgress) => void;
  category?: string;
  metrics?: unknown;
  extra?: Readonly<Record<string, unknown>>;
}

export interface HybridTraining {
  readonly model: HybridModel;
  readonly layout: 'mvtec' | 'folder-per-label' | 'files';
  readonly root: string | undefined;
  readonly goodLabel: string;
  /** Defect types of the data, and of the head's training images. */
  readonly defectTypes: readonly string[];
  readonly counts: {
    readonly trainGood: number;
    readonly bankImages: number;
    readonly validationImages: number;
    readonly trainDefects: number;
    readonly maskedDefects: number;
    readonly unusedDefects: number;
    readonly heldOutGood: number;
    readonly heldOutDefects: number;
  };
  /** The images of each side. */
  readonly split: { readonly trainGood: readonly LabelledImage[]; readonly trainDefects: readonly LabelledImage[]; readonly test: readonly LabelledImage[]; readonly groupAware: boolean };
  /** The hybrid model on the held-out images; null without a split. */
  readonly heldOut: OneClassEvaluation | null;
  /** Its memory bank alone (a one-class model) on the same images; null without a split or compareOneClass. */
  readonly heldOutOneClass: OneClassEvaluation | null;
  readonly warnings: readonly string[];
  readonly skipped: readonly SkippedFile[];
  readonly timings: { readonly scanS: number; readonly bankS: number; readonly headS: number; readonly evaluateS: number; readonly totalS: number };
}

export const DEFAULT_HYBRID_HEAD = {
  input: { embedding: true, residual: false, distance: false },
  projectionDim: 256,
  negativePatchesPerImage: 64,
  negativeImages: 60,
  maxNegatives: 60000,
  classifier: 'mlp' as 'mlp' | 'logistic',
  hidden: 32,
  members: 5,
  l2: 1e-2,
  aggregation: { topK: 1, sigma: 0 },
  weight: 4 as number | 'auto',
  labels: 'auto' as const,
  folds: 5,
  flips: ['hflip', 'vflip'] as readonly Flip[],
} as const;

/** Patches whose class probabilities name the defect type. */
const TYPE_TOP_K = 8;
/** Passes of each classifier over its rows (the defect-type softmax: the logistic count). */
const EPOCHS = { mlp: 5, logistic: 30 } as const;

/** The automatic head weight's range, and its value without out-of-fold scores (one labelled defect). */
const MIN_WEIGHT = 0.25;
const MAX_WEIGHT = 8;
const FALLBACK_WEIGHT = 2;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}

/** One scored training image, reduced to what the head needs (projected head input, patch labels). */
interface HeadImage {
  /** The head input of each ensemble member (its own projection). */
  readonly rows: Float32Array[];
  /** The same of each test-time flip of the image ([flip][member]; validation and defect images only). */
  readonly flipRows: Float32Array[][];
  readonly labels: Int8Array;
  readonly patchScores: Float32Array;
  readonly raw: number;
  readonly width: number;
  readonly height: number;
  readonly type: string | null;
  readonly mask: string | undefined;
  readonly group: string | undefined;
}

async function labelledItems(o: TrainHybridOptions): Promise<{ items: (HybridImage & { relPath: string })[]; dataset: Dataset | undefined }> {
  const data = o.data;
  let dataset: Dataset | undefined;
  let list: readonly HybridImage[];
  if (typeof data === 'string') {
    dataset = await scanDataset(data, { verify: 'decode', onProgress: (done, total) => o.onProgress?.({ stage: 'scan', done, total }) });
    list = dataset.items.map((i) => ({ path: i.path, label: i.label, relPath: i.relPath, ...(i.maskPath ? { maskPath: i.maskPath } : {}), ...(i.mvtecSplit ? { mvtecSplit: i.mvtecSplit } : {}) }));
  } else if ('items' in data) {
    dataset = data;
    list = data.items.map((i) => ({ path: i.path, label: i.label, relPath: i.relPath, ...(i.maskPath ? { maskPath: i.maskPath } : {}), ...(i.mvtecSplit ? { mvtecSplit: i.mvtecSplit } : {}) }));
  } else list = data;
  const items = list.map((i) => ({ ...i, relPath: i.relPath ?? i.path }));
  const seen = new Set<string>();
  for (const it of items) {
    if (seen.has(it.relPath)) throw new LoupeError('INVALID_ARGUMENT', `two images are called ${it.relPath}; give each a distinct path (relPath)`, { input: it.relPath });
    seen.add(it.relPath);
  }
  return { items, dataset };
}

/**
 * The threshold with the best balanced accuracy (TPR - FPR, Youden's J) separating `good` from `defects`
 * (defect = score >= threshold), halfway between two adjacent scores; among equally good ones, the middle.
 */
export function balancedThreshold(good: readonly number[], defects: readonly number[]): number {
  if (good.length === 0 || defects.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'a balanced threshold needs good and defective scores');
  const values = [...new Set([...good, ...defects])].sort((a, b) => a - b);
  // Candidates: below everything, between each pair of adjacent values, above everything.
  const cands = [values[0]! - 1, ...values.slice(1).map((v, i) => (values[i]! + v) / 2), values[values.length - 1]! + 1];
  const gs = [...good].sort((a, b) => a - b);
  const ds = [...defects].sort((a, b) => a - b);
  const atOrAbove = (sorted: number[], t: number): number => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return sorted.length - lo;
  };
  let best = -Infinity;
  let at: number[] = [];
  for (let i = 0; i < cands.length; i++) {
    const j = atOrAbove(ds, cands[i]!) / ds.length - atOrAbove(gs, cands[i]!) / gs.length;
    if (j > best + 1e-12) ((best = j), (at = [i]));
    else if (Math.abs(j - best) <= 1e-12) at.push(i);
  }
  return cands[at[at.length >> 1]!]!;
}

/** The head options with core's defaults filled in, checked. */
export interface ResolvedHybridHead {
  readonly h: Required<Omit<HybridHeadOptions, 'input' | 'aggregation' | 'epochs' | 'flips'>>;
  readonly input: HeadInput;
  readonly aggregation: HeadAggregation;
  readonly epochs: number;
  readonly flips: readonly Flip[];
  /** The head reads the embedding alone (no residual or distance). */
  readonly embeddingOnly: boolean;
}

/**
 * Fills in the head options' defaults and checks them (before any image is read); throws INVALID_ARGUMENT
 * naming the option. trainHybrid calls it; a server checks a request's options with it.
 */
export function checkHybridHeadOptions(head: HybridHeadOptions = {}): ResolvedHybridHead {
  const h: ResolvedHybridHead['h'] = { ...DEFAULT_HYBRID_HEAD, ...head };
  const input: HeadInput = { ...DEFAULT_HYBRID_HEAD.input, ...(head.input ?? {}) };
  const aggregation: HeadAggregation = { ...DEFAULT_HYBRID_HEAD.aggregation, ...(head.aggregation ?? {}) };
  if (!(Number.isInteger(h.projectionDim) && h.projectionDim >= 0)) throw new LoupeError('INVALID_ARGUMENT', `head projectionDim must be an integer >= 0, got ${h.projectionDim}`);
  if (h.weight !== 'auto' && !(h.weight >= 0 && Number.isFinite(h.weight))) throw new LoupeError('INVALID_ARGUMENT', `head weight must be 'auto' or a number >= 0, got ${String(h.weight)}`);
  if (h.classifier !== 'mlp' && h.classifier !== 'logistic') throw new LoupeError('INVALID_ARGUMENT', `head classifier must be 'mlp' or 'logistic', got ${String(h.classifier)}`);
  if (!(Number.isInteger(h.hidden) && h.hidden >= 1 && h.hidden <= 4096)) throw new LoupeError('INVALID_ARGUMENT', `head hidden must be an integer in [1, 4096], got ${String(h.hidden)}`);
  const epochs = head.epochs ?? EPOCHS[h.classifier];
  if (!(Number.isInteger(h.members) && h.members >= 1 && h.members <= 16)) throw new LoupeError('INVALID_ARGUMENT', `head members must be an integer in [1, 16], got ${String(h.members)}`);
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new LoupeError('INVALID_ARGUMENT', `head epochs must be an integer >= 1, got ${String(epochs)}`);
  if (headInputDim(input, 1) === 0) throw new LoupeError('INVALID_ARGUMENT', 'the head must read some patch feature (embedding, residual or distance)');
  const embeddingOnly = input.embedding && !input.residual && !input.distance;
  // The default flips fit the default (embedding-only) head; a head reading residuals or distances has none.
  const flips = head.flips ?? (embeddingOnly ? DEFAULT_HYBRID_HEAD.flips : []);
  checkHeadFlips(flips, input, 'head flips');
  return { h, input, aggregation, epochs, flips, embeddingOnly };
}

/** Trains a hybrid model (see the file header); save it with saveModel. */
export async function trainHybrid(o: TrainHybridOptions): Promise<HybridTraining> {
  const t0 = performance.now();
  const progress = o.onProgress;
  const seed = o.seed ?? 0;
  if (o.split !== undefined && !(o.split === 0 || (o.split > 0 && o.split < 1))) throw new LoupeError('INVALID_ARGUMENT', `split must be in (0, 1) (or 0: none), got ${o.split}`);
  if (o.shots !== undefined && !(Number.isInteger(o.shots) && o.shots >= 1)) throw new LoupeError('INVALID_ARGUMENT', `shots must be an integer >= 1, got ${o.shots}`);
  const { h, input, aggregation, epochs, flips, embeddingOnly } = checkHybridHeadOptions(o.head);

  // --- Data and split ----------------------------------------------------------------------------
  const { items, dataset } = await labelledItems(o);
  const root = dataset?.root;
  const where = root ?? 'the training images';
  const labels = [...new Set(items.map((i) => i.label))].sort();
  const goodLabel = findGoodClass(labels, o.goodLabel);
  if (goodLabel === undefined) {
    throw new LoupeError(
      'INVALID_ARGUMENT',
      o.goodLabel !== undefined
        ? `${where}: no label '${o.goodLabel}' (labels: ${labels.join(', ')})`
        : `${where}: no label names the good parts (labels: ${labels.join(', ')}); call the folder of good parts '${GOOD_LABEL}' or name it with goodLabel`,
      ...(root ? [{ input: root }] : []),
    );
  }
  const groups = typeof o.groups === 'string' ? await loadGroups(o.groups, dataset ?? { items }) : o.groups;
  const split = hybridHoldOut(items, { split: o.split ?? 0, ...(o.shots !== undefined ? { shots: o.shots } : {}), seed, goodLabel, ...(groups ? { groups } : {}) });
  const defectTypes = labels.filter((l) => l !== goodLabel);
  if (split.trainGood.length === 0) throw new DatasetError('DATASET_EMPTY', `${where}: no good images to train on`, ...(root ? [{ input: root }] : []));
  if (o.split && split.test.length === 0) throw new DatasetError('SPLIT_INVALID', `${where}: the split holds no image out`, ...(root ? [{ input: root }] : []));
  const tScan = performance.now();

  // --- Memory bank (one-class part) ---------------------------------------------------------------
  const threads = o.threads ?? threadBudget().engineThreads;
  const knn = await loadAddon();
  const config = oneClassConfig({
    ...(o.coresetRatio !== undefined ? { coresetRatio: o.coresetRatio } : {}),
    ...(o.projectionDim !== undefined ? { projectionDim: o.projectionDim } : {}),
    ...(o.storage !== undefined ? { storage: o.storage } : {}),
    ...(o.maxBankMB !== undefined ? { maxBankMB: o.maxBankMB } : {}),
    ...(o.validationFraction !== undefined ? { validationFraction: o.validationFraction } : {}),
    seed,
  });
  const run = { knn, batchSize: o.batchSize ?? 8, threads, ...(o.backend !== undefined ? { backend: o.backend } : {}), ...(o.signal !== undefined ? { signal: o.signal } : {}) };
  const goodFiles = split.trainGood.map((i) => i.path);
  const { engine, int8Calibration } = await trainingEngine(o.engine, o.precision, goodFiles, { ...(o.calibrationMethod ? { method: o.calibrationMethod } : {}), ...(o.signal ? { signal: o.signal } : {}) });
  const stageOf: Record<string, TrainingProgress['stage']> = { 'embed-train': 'features', coreset: 'coreset', embed: 'thresholds' };
  // The head's negatives from every bank image, while the bank is built (the head reads the embedding only).
  const bankDim = config.projectionDim && config.projectionDim > 0 ? config.projectionDim : EMBEDDING_DIM;
  const inDim = headInputDim(input, bankDim);
  // One projection per ensemble member (member 0's also feeds the defect-type classifier).
  const projections: (ProjectionSpec | null)[] = Array.from({ length: h.members }, (_, m) =>
    h.projectionDim > 0 && h.projectionDim < inDim ? { inDim, outDim: h.projectionDim, seed: seed + 1 + m } : null,
  );
  const projection = projections[0]!;
  const projs = projections.map((p) => (p ? new SparseRandomProjection(p) : null));
  const project = (rows: Float32Array, n: number): Float32Array[] => projs.map((p) => (p ? p.apply(rows, n) : rows));
  const dim = projection ? projection.outDim : inDim;
  const sampleBank = embeddingOnly && h.negativePatchesPerImage > 0 && items.some((i) => i.label !== goodLabel);
  const bankNegatives: Float32Array[][] = [];
  // negativePatchesPerImage random patches of each bank image, no more: filling maxNegatives with bank patches
  // when the bank is small dilutes the defect images' own patches outside their masks, the hardest negatives
  // (KolektorSDD seed 4: held-out image AUROC 0.914 filled up to 60000, 0.985 with 64 per image).
  const negativesPerImage = Math.min(PATCHES_PER_IMAGE, h.negativePatchesPerImage);
  const patchRng = createRng(`hybrid-negative-patches:${seed}`);
  const patchcore = await PatchCoreModel.train(engine, goodFiles, {
    config,
    ...run,
    onProgress: (s, done, total) => progress?.({ stage: stageOf[s] ?? 'features', done, total }),
    ...(sampleBank
      ? {
          onBankRows: (rows: Float32Array, _first: number, images: number): void => {
            const per = negativesPerImage;
            for (let k = 0; k < images; k++) {
              const pick = patchRng.shuffle(Array.from({ length: PATCHES_PER_IMAGE }, (_, p) => p)).slice(0, per);
              const sel = new Float32Array(per * bankDim);
              pick.forEach((p, j) => sel.set(rows.subarray((k * PATCHES_PER_IMAGE + p) * bankDim, (k * PATCHES_PER_IMAGE + p + 1) * bankDim), j * bankDim));
              bankNegatives.push(project(sel, per));
            }
          },
        }
      : {}),
  });
  const vf = patchcore.config.validationFraction;
  const { bank: bankGood, validation: valGood } = holdOutValidation(split.trainGood, vf, patchcore.config.seed);
  const tBank = performance.now();
  checkAbort(o.signal);

  // --- Head ---------------------------------------------------------------------------------------
  const warnings: string[] = [];
  const defects = split.trainDefects;
  let state: HybridState;
  let masked = 0;
  if (defects.length === 0) {
    warnings.push(
      defectTypes.length === 0
        ? 'no labelled defects: the model is one-class (its memory bank alone, no supervised head); add defective images to train the head'
        : 'no labelled defects left for training after the hold-out: the model is one-class (its memory bank alone); hold fewer out or add defects',
    );
    state = {
      format: HYBRID_FORMAT,
      version: HYBRID_VERSION,
      head: null,
      fusion: null,
      defectTypes: null,
      defectLabels: [],
      training: { goodImages: split.trainGood.length, defectImages: 0, maskedDefects: 0, positivePatches: 0, negativePatches: 0 },
    };
  } else {
    if (valGood.length === 0) throw new LoupeError('INVALID_ARGUMENT', `${where}: the head's fusion needs good images kept out of the bank; give more good images or a larger validationFraction`);
    // Without bank samples (a head that reads more than the embedding): all patches of a few bank images,
    // scored through the bank (their own patches are near it: residuals and distances are biased low).
    const negPick = sampleBank
      ? []
      : createRng(`hybrid-negatives:${seed}`)
          .shuffle(bankGood.map((_, i) => i))
          .slice(0, Math.min(h.negativeImages, bankGood.length))
          .sort((a, b) => a - b)
          .map((i) => bankGood[i]!);
    const total = negPick.length + valGood.length + defects.length;
    let done = 0;
    const headImages = async (list: readonly (HybridImage & { relPath: string })[], kind: 'negative' | 'validation' | 'defect'): Promise<HeadImage[]> => {
      const out: HeadImage[] = [];
      let k = 0;
      // Negatives only train the head; the images it scores (validation, defects) get their test-time flips.
      for await (const { result: r, flipped } of scoreWithFlips(patchcore, engine, list.map((i) => i.path), kind === 'negative' ? [] : flips, { ...run, keepEmbeddings: true })) {
        const it = list[k++]!;
        const rows = headInputRows(r.embeddings!, r.nnIdx!, r.patchScores!, patchcore.bank, input);
        // Unprojected rows are kept: copy them off the result's embeddings buffer (a projection makes its own).
        const projected = project(projection === null && rows === r.embeddings ? rows.slice() : rows, r.patchScores!.length);
        let labelsOf: Int8Array;
        if (kind !== 'defect') labelsOf = new Int8Array(r.patchScores!.length).fill(LABEL_NEGATIVE);
        else {
          const mask = h.labels !== 'image' && it.maskPath ? await loadMask(it.maskPath, r.width, r.height) : null;
          const usable = mask !== null && mask.some((v) => v !== 0);
          if (h.labels === 'mask' && !usable) throw new LoupeError('INVALID_ARGUMENT', `${it.relPath}: no usable mask (labels: 'mask')`, { input: it.path });
          if (usable) masked++;
          labelsOf = usable ? patchLabelsFromMask(mask, r.width, r.height) : patchLabelsFromScores(r.patchScores!, 4);
        }
        out.push({
          rows: projected,
          // An embedding-only head (flips need one) reads the embeddings themselves.
          flipRows: flipped.map((e) => project(e, r.patchScores!.length)),
          labels: labelsOf,
          patchScores: r.patchScores!,
          raw: r.rawScore,
          width: r.width,
          height: r.height,
          type: kind === 'defect' ? it.label : null,
          mask: kind === 'defect' ? it.maskPath : undefined,
          group: groups?.get(it.relPath),
        });
        progress?.({ stage: 'head', done: ++done, total });
      }
      return out;
    };
    const negatives: { rows: Float32Array[]; labels: Int8Array }[] = [
      ...bankNegatives.map((rows) => ({ rows, labels: new Int8Array(rows[0]!.length / dim).fill(LABEL_NEGATIVE) })),
      ...(await headImages(negPick, 'negative')),
    ];
    bankNegatives.length = 0;
    const validation = await headImages(valGood, 'validation');
    const defectImages = await headImages(defects, 'defect');
    checkAbort(o.signal);

    type Head = readonly PatchClassifier[];
    const train = (imgs: readonly Pick<HeadImage, 'rows' | 'labels'>[], foldSeed: number): { model: Head; positives: number; negatives: number } => {
      const pos: [number, number][] = [];
      const neg: [number, number][] = [];
      imgs.forEach((im, k) => {
        for (let p = 0; p < im.labels.length; p++) {
          if (im.labels[p] === LABEL_POSITIVE) pos.push([k, p]);
          else if (im.labels[p] === LABEL_NEGATIVE) neg.push([k, p]);
        }
      });
      if (pos.length === 0) throw new LoupeError('INVALID_ARGUMENT', `${where}: the labelled defects give no positive patch (empty masks?)`);
      const negKept = neg.length > h.maxNegatives ? createRng(`hybrid-neg-patches:${seed}:${foldSeed}`).shuffle(neg).slice(0, h.maxNegatives) : neg;
      const all = [...pos, ...negKept];
      const y = new Uint8Array(all.length).fill(1, 0, pos.length);
      const model = projs.map((_, m): PatchClassifier => {
        const X = new Float32Array(all.length * dim);
        all.forEach(([k, p], i) => X.set(imgs[k]!.rows[m]!.subarray(p * dim, (p + 1) * dim), i * dim));
        const opts = { l2: h.l2, epochs, seed: seed + foldSeed + 1000 * m };
        return h.classifier === 'mlp' ? { kind: 'mlp', model: trainMlp(X, all.length, dim, y, { ...opts, hidden: h.hidden }) } : { kind: 'logistic', model: trainLogistic(X, all.length, dim, y, opts) };
      });
      return { model, positives: pos.length, negatives: negKept.length };
    };
    // The ensemble's patch logits: the mean of its members'.
    // With test-time flips, averaged over the image and its mirror images as the model will (HybridScorer).
    const logitsOf = (head: Head, im: HeadImage): Float32Array => {
      const of = (rows: readonly Float32Array[]): Float32Array => meanLogits(head.map((c, m) => classifierLogits(c, rows[m]!, im.labels.length)));
      return flipMeanLogits(of(im.rows), im.flipRows.map(of), im.flipRows.length > 0 ? flips : []);
    };
    const fusionOf = (m: Head, weight: number): { image: Omit<FusionPart, 'threshold'>; pixel: Omit<FusionPart, 'threshold'> } => {
      const vLogits = validation.map((im) => logitsOf(m, im));
      const patchPc: number[] = [];
      const patchHead: number[] = [];
      validation.forEach((im, i) => {
        for (let p = 0; p < im.patchScores.length; p++) (patchPc.push(im.patchScores[p]!), patchHead.push(vLogits[i]![p]!));
      });
      return {
        image: { pc: scoreStats(validation.map((im) => im.raw)), head: scoreStats(vLogits.map((l) => aggregateLogits(l, aggregation))), weight },
        pixel: { pc: scoreStats(patchPc), head: scoreStats(patchHead), weight },
      };
    };
    const fusedMap = (im: HeadImage, logits: Float32Array, part: Omit<FusionPart, 'threshold'>): Float32Array => {
      const f = new Float32Array(im.patchScores.length);
      for (let p = 0; p < f.length; p++) f[p] = fuse(im.patchScores[p]!, logits[p]!, part);
      return patchScoresToMap(f, PATCH_GRID, { inputSize: INPUT_SIZE, sigma: patchcore.config.sigma, outHeight: im.height, outWidth: im.width });
    };

    // Out-of-fold scores of the labelled defects (and of the validation goods under each fold's head):
    // what the weight and the thresholds are set on, since the final head has seen every labelled defect.
    const k = Math.min(h.folds, defectImages.length);
    const folds: { fu: ReturnType<typeof fusionOf>; vLogits: Float32Array[]; defects: { im: HeadImage; logits: Float32Array }[] }[] = [];
    if (k >= 2) {
      const parts = groupKFold(defectImages.length, k, `hybrid-folds:${seed}`, (i) => defectImages[i]!.group);
      parts.forEach((fold, f) => {
        const inFold = new Set(fold);
        const head = train([...negatives, ...defectImages.filter((_, i) => !inFold.has(i))], f + 1);
        folds.push({
          fu: fusionOf(head.model, 1),
          vLogits: validation.map((im) => logitsOf(head.model, im)),
          defects: fold.map((i) => ({ im: defectImages[i]!, logits: logitsOf(head.model, defectImages[i]!) })),
        });
        checkAbort(o.signal);
      });
    }
    // The head's weight: given, or the ratio of the out-of-fold defects' median z-scores (head over PatchCore):
    // how much further from the good images the head puts them, the good images being standardised.
    let weight: number;
    if (typeof h.weight === 'number') weight = h.weight;
    else if (folds.length === 0) weight = FALLBACK_WEIGHT;
    else {
      const zPc: number[] = [];
      const zHead: number[] = [];
      for (const fd of folds) {
        for (const { im, logits } of fd.defects) {
          zPc.push((im.raw - fd.fu.image.pc.mean) / fd.fu.image.pc.std);
          zHead.push((aggregateLogits(logits, aggregation) - fd.fu.image.head.mean) / fd.fu.image.head.std);
        }
      }
      weight = Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.max(median(zHead), 1e-3) / Math.max(median(zPc), 1e-3)));
    }
    const goodScores: number[] = [];
    const defectScores: number[] = [];
    const goodMaxima: number[] = [];
    const pixelParts: { scores: Float32Array; mask: string | undefined; w: number; h: number }[] = [];
    const maxOf = (map: Float32Array): number => {
      let mx = -Infinity;
      for (const v of map) if (v > mx) mx = v;
      return mx;
    };
    folds.forEach((fd, f) => {
      const image = { ...fd.fu.image, weight };
      const pixel = { ...fd.fu.pixel, weight };
      validation.forEach((im, j) => {
        const l = fd.vLogits[j]!;
        goodScores.push(fuse(im.raw, aggregateLogits(l, aggregation), image));
        const map = fusedMap(im, l, pixel);
        goodMaxima.push(maxOf(map));
        if (f === 0) pixelParts.push({ scores: map, mask: undefined, w: im.width, h: im.height });
      });
      for (const { im, logits } of fd.defects) {
        defectScores.push(fuse(im.raw, aggregateLogits(logits, aggregation), image));
        if (im.mask) pixelParts.push({ scores: fusedMap(im, logits, pixel), mask: im.mask, w: im.width, h: im.height });
      }
    });
    const final = train([...negatives, ...defectImages], 0);
    const fu = fusionOf(final.model, weight);
    if (k < 2) {
      // One labelled defect: no out-of-fold score; the threshold is the quantile of the good fused scores.
      warnings.push('only one labelled defect: the threshold is the 0.99 quantile of the held-out good images (give a few more defects for one set on defects too)');
      for (const im of validation) {
        const l = logitsOf(final.model, im);
        goodScores.push(fuse(im.raw, aggregateLogits(l, aggregation), fu.image));
        goodMaxima.push(maxOf(fusedMap(im, l, fu.pixel)));
      }
    }
    let imageThreshold = defectScores.length > 0 ? balancedThreshold(goodScores, defectScores) : quantile(goodScores, 0.99);
    if (!Number.isFinite(imageThreshold)) imageThreshold = quantile(goodScores, 0.99);
    let pixelThreshold = quantile(goodMaxima, 0.99);
    if (pixelParts.some((p) => p.mask)) {
      const size = pixelParts.reduce((a, p) => a + p.scores.length, 0);
      const scores = new Float32Array(size);
      const lab = new Uint8Array(size);
      let off = 0;
      for (const p of pixelParts) {
        scores.set(p.scores, off);
        if (p.mask) lab.set(await loadMask(p.mask, p.w, p.h), off);
        off += p.scores.length;
      }
      const r = f1OptimalThresholdBinned(scores, lab);
      if (Number.isFinite(r.threshold)) pixelThreshold = r.threshold;
    }

    // Defect types: softmax over the positive patches' projected head input, labelled by type.
    const types = [...new Set(defectImages.map((im) => im.type!))].sort();
    let typeState: DefectTypeState | null = null;
    if (types.length >= 2) {
      const rows: Float32Array[] = [];
      const ys: number[] = [];
      for (const im of defectImages) {
        for (let p = 0; p < im.labels.length; p++) {
          if (im.labels[p] !== LABEL_POSITIVE) continue;
          rows.push(im.rows[0]!.subarray(p * dim, (p + 1) * dim));
          ys.push(types.indexOf(im.type!));
        }
      }
      const X = new Float32Array(rows.length * dim);
      rows.forEach((r, i) => X.set(r, i * dim));
      const m = trainSoftmax(X, rows.length, dim, Int32Array.from(ys), types.length, { seed, l2: h.l2, epochs: EPOCHS.logistic });
      typeState = {
        classes: types,
        projection,
        softmax: { d: m.d, k: m.k, w: Array.from(m.w), b: Array.from(m.b), mean: Array.from(m.mean), std: Array.from(m.std) },
        topK: TYPE_TOP_K,
      };
    }
    const headState = (m: number): FewShotHeadState => ({
      inDim,
      projection: projections[m]!,
      ...classifierState(final.model[m]!),
      training: { positives: final.positives, negatives: final.negatives, images: negatives.length + defectImages.length },
    });
    state = {
      format: HYBRID_FORMAT,
      version: HYBRID_VERSION,
      head: {
        input,
        head: headState(0),
        ...(final.model.length > 1 ? { ensemble: final.model.slice(1).map((_, j) => headState(j + 1)) } : {}),
        aggregation,
        flips: [...flips],
      },
      fusion: { image: { ...fu.image, threshold: imageThreshold }, pixel: { ...fu.pixel, threshold: pixelThreshold } },
      defectTypes: typeState,
      defectLabels: types,
      training: { goodImages: split.trainGood.length, defectImages: defectImages.length, maskedDefects: masked, positivePatches: final.positives, negativePatches: final.negatives },
    };
    if (masked < defectImages.length && h.labels !== 'image') {
      warnings.push(`${defectImages.length - masked} of ${defectImages.length} labelled defects have no mask: their head patches are the memory bank's most unusual ones (image labels)`);
    }
  }
  const tHead = performance.now();
  checkAbort(o.signal);

  // --- Model -------------------------------------------------------------------------------------
  const trainFiles = [...split.trainGood, ...split.trainDefects].map((i) => i.path);
  const trainHashes = await fileContentHashes(trainFiles);
  const category = o.category ?? (root ? root.split(/[\\/]/).filter(Boolean).pop() : undefined);
  const model: HybridModel = {
    kind: 'hybrid',
    method: HYBRID_METHOD,
    patchcore,
    hybrid: new HybridScorer(patchcore, state),
    weightsHash: o.engine.weightsHash,
    createdAt: new Date().toISOString(),
    preprocessing: preprocessingRecord({ tile: patchcore.config.tile }),
    trainHashes,
    ...(int8Calibration ? { int8Calibration } : {}),
    ...(category !== undefined ? { category } : {}),
    ...(o.metrics !== undefined ? { metrics: o.metrics } : {}),
    ...(o.extra !== undefined ? { extra: o.extra } : {}),
  };

  // --- Held-out evaluation -------------------------------------------------------------------------
  const asLabelled = (i: HybridImage & { relPath: string }): LabelledImage => ({ path: i.path, label: i.label === goodLabel ? GOOD_LABEL : i.label, relPath: i.relPath, ...(i.maskPath ? { maskPath: i.maskPath } : {}) });
  const test = split.test.map(asLabelled);
  let heldOut: OneClassEvaluation | null = null;
  let heldOutOneClass: OneClassEvaluation | null = null;
  if (test.length > 0) {
    const evalOpts = { batchSize: o.batchSize ?? 8, ...(o.signal ? { signal: o.signal } : {}), onProgress: (done: number, total: number) => progress?.({ stage: 'evaluate' as const, done, total }) };
    const open = (m: HybridModel | OneClassModel): Promise<Inspector> => Inspector.open(m, { engine: o.engine, threads, ...(o.backend ? { backend: o.backend } : {}) });
    heldOut = await evaluateOneClass(await open(model), test, evalOpts);
    if ((o.compareOneClass ?? true) && state.head) {
      const oc: OneClassModel = { kind: 'one-class', method: 'patchcore', patchcore, weightsHash: model.weightsHash, createdAt: model.createdAt, preprocessing: model.preprocessing, trainHashes: model.trainHashes, ...(int8Calibration ? { int8Calibration } : {}) };
      heldOutOneClass = await evaluateOneClass(await open(oc), test, evalOpts);
    } else if (!state.head) heldOutOneClass = heldOut;
  }
  const tEval = performance.now();
  const s = (ms: number): number => Math.round(ms) / 1000;
  const heldOutGood = split.test.filter((i) => i.label === goodLabel).length;
  return {
    model,
    layout: dataset ? dataset.layout : 'files',
    root,
    goodLabel,
    defectTypes,
    counts: {
      trainGood: split.trainGood.length,
      bankImages: bankGood.length,
      validationImages: valGood.length,
      trainDefects: split.trainDefects.length,
      maskedDefects: masked,
      unusedDefects: split.unusedDefects.length,
      heldOutGood,
      heldOutDefects: split.test.length - heldOutGood,
    },
    split: { trainGood: split.trainGood.map(asLabelled), trainDefects: split.trainDefects.map(asLabelled), test, groupAware: split.groupAware },
    heldOut,
    heldOutOneClass,
    warnings,
    skipped: dataset?.skipped ?? [],
    timings: { scanS: s(tScan - t0), bankS: s(tBank - tScan), headS: s(tHead - tBank), evaluateS: s(tEval - tHead), totalS: s(tEval - t0) },
  };
}
