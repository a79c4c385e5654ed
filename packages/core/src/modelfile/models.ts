// Every kind of Loupe model behind one pair of functions: loadModel reads and validates a model file (or its
// bytes) into a typed LoupeModel, saveModel writes one with the metadata every model carries (CNN weights
// hash, preprocessing, training image hashes, category, thresholds). The Inspector, training, evaluation,
// the CLI and the server all read and write models through here, so a file means the same to each.
import type { FewShotHeadState, FusionState } from '../anomaly/fewshot/head.js';
import { HybridScorer, type HybridState } from '../anomaly/hybrid/model.js';
import { PatchCoreModel, type PatchCoreHeader } from '../anomaly/patchcore/model.js';
import { loadPatchCoreDecoded, savePatchCore } from '../anomaly/patchcore/model-file.js';
import type { SvmClassifier } from '../classifier/svm.js';
import type { Int8Calibration } from '../engine.js';
import { type FitMode } from '../image/decode.js';
import { CAFFE_MEAN_BGR } from '../preprocess.js';
import { INPUT_SIZE, isTapName, tapElements, type TapName } from '../model.js';
import { ModelFileError } from './errors.js';
import { decodeModel, MODEL_FILE_EXTENSION, readModelFile, readModelHeader, type DecodedModel, type ModelHeaderBase, type ModelKind } from './format.js';
import { saveSvmModel, svmModelFromDecoded } from './svm-model.js';

/** CNN taps an SVM classifier can use: pooled vectors (a feature map is far too wide for a linear SVM). */
export const SVM_LAYERS = ['fc1000', 'avg_pool'] as const;
export type SvmLayer = (typeof SVM_LAYERS)[number];

/** Class names read as "the good parts" in model files that do not name their good class. */
const GOOD_NAMES = /^(good|ok|normal|pass|no[_-]?defect)$/i;

/** The label of defect-free images in Loupe's datasets and in MVTec categories. */
export const GOOD_LABEL = 'good';

/** The good class of a list of labels: `preferred` when given and present, else the first conventional good name. */
export function findGoodClass(classes: readonly string[], preferred?: string): string | undefined {
  if (preferred !== undefined) return classes.includes(preferred) ? preferred : undefined;
  return classes.find((c) => c === GOOD_LABEL) ?? classes.find((c) => GOOD_NAMES.test(c));
}

/** What every model file records besides the model itself. */
export interface ModelMetadata {
  /** sha256 of the CNN weights the model's features came from. */
  readonly weightsHash: string;
  /** ISO 8601. */
  readonly createdAt: string;
  /** How images become model inputs (everything that changes the features). */
  readonly preprocessing: Readonly<Record<string, unknown>>;
  /** sha256 of every training image's file, so evaluation can say which images it has seen. */
  readonly trainHashes: readonly string[];
  /** What the images were (an MVTec category's or a folder's name), when the trainer knew it. */
  readonly category?: string;
  /** Training and held-out figures the trainer chose to keep (JSON). */
  readonly metrics?: unknown;
  /** Any other JSON metadata. */
  readonly extra?: Readonly<Record<string, unknown>>;
  /**
   * Present when the model was trained in INT8: the activation ranges calibrated on its training images.
   * The model then runs (is evaluated, inspected, served) on the int8 session made from them; without it,
   * in fp32 (see int8.ts: engineForModel).
   */
  readonly int8Calibration?: Int8Calibration;
}

/** A multiclass linear SVM on one CNN tap (the paper's method), with its good class. */
export interface SvmModel extends ModelMetadata {
  readonly kind: 'svm';
  readonly classifier: SvmClassifier;
  readonly layer: SvmLayer;
  readonly fit: FitMode;
  /** The class of defect-free parts: every other class is a defect type. */
  readonly goodClass: string;
  /**
   * Threshold on the margin (best defect class score - good class score): anomalous when the margin is
   * at or above it. 0 = the classifier's own decision; `calibrate` moves it.
   */
  readonly threshold: number;
}

/** A one-class model (PatchCore memory bank) learnt from good parts, optionally with a few-shot head. */
export interface OneClassModel extends ModelMetadata {
  readonly kind: 'one-class';
  readonly method: 'patchcore';
  readonly patchcore: PatchCoreModel;
  readonly fewShot?: { head: FewShotHeadState; fusion: FusionState };
}

/**
 * A hybrid (few-shot) model: a PatchCore memory bank from good parts plus a supervised patch head from the
 * labelled defects, fused into one calibrated score (anomaly/hybrid/model.ts). Without labelled defects it
 * has no head and answers as its memory bank alone.
 */
export interface HybridModel extends ModelMetadata {
  readonly kind: 'hybrid';
  readonly method: typeof HYBRID_METHOD;
  readonly patchcore: PatchCoreModel;
  /** The head, fusion and defect types around the bank (its `state` is what the file stores). */
  readonly hybrid: HybridScorer;
}

/** The method name of hybrid model files. */
export const HYBRID_METHOD = 'patchcore+head';

export type LoupeModel = SvmModel | OneClassModel | HybridModel;

/** A short, kind-independent description of a model file from its header alone (listings, the server). */
export interface ModelSummary {
  readonly kind: ModelKind;
  readonly method: string;
  readonly classes: readonly string[];
  /** The CNN taps the model reads, comma-separated. */
  readonly layer: string;
  readonly createdAt: string;
  readonly weightsHash: string;
  readonly category: string | undefined;
  /** 'int8' for a model trained (and run) in INT8, else 'fp32'. */
  readonly precision: 'fp32' | 'int8';
}

/** What the model file records as the image preprocessing. One place for the facts, for every kind. */
export function preprocessingRecord(options: { fit?: FitMode; tile?: { size: number; overlap: number } | null } = {}): Record<string, unknown> {
  return {
    ...(options.tile ? { tiles: { size: options.tile.size, overlap: options.tile.overlap } } : { fit: options.fit ?? 'squash' }),
    size: INPUT_SIZE,
    resize: 'bicubic',
    colorOrder: 'BGR',
    normalization: 'caffe',
    meanBGR: [...CAFFE_MEAN_BGR],
    exifOrientation: true,
    iccProfiles: 'ignored',
  };
}

function stringList(v: unknown, file: string, field: string, pattern?: RegExp): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && (!pattern || pattern.test(x)))) {
    throw new ModelFileError('MODEL_CORRUPT', file, pattern ? 'must be a list of sha256 hex digests' : 'must be a list of strings', { field });
  }
  return v as string[];
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The header's int8Calibration, checked for shape (the engine checks the tensor names when it makes the session). */
function int8CalibrationOf(h: Record<string, unknown>, file: string, weightsHash: string): { int8Calibration?: Int8Calibration } {
  const c = h['int8Calibration'];
  if (c === undefined) return {};
  const field = 'int8Calibration';
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new ModelFileError('MODEL_CORRUPT', file, 'must be an object { weightsHash, method, ranges }', { field });
  const o = c as Record<string, unknown>;
  if (typeof o['weightsHash'] !== 'string' || typeof o['method'] !== 'string') throw new ModelFileError('MODEL_CORRUPT', file, 'weightsHash and method must be strings', { field });
  if (o['weightsHash'] !== weightsHash) throw new ModelFileError('MODEL_CORRUPT', file, `calibrated on CNN weights ${String(o['weightsHash']).slice(0, 12)}..., not the model's ${weightsHash.slice(0, 12)}...`, { field: `${field}.weightsHash` });
  const ranges = o['ranges'];
  if (typeof ranges !== 'object' || ranges === null || Array.isArray(ranges) || Object.keys(ranges).length === 0) throw new ModelFileError('MODEL_CORRUPT', file, 'must map tensor names to ranges', { field: `${field}.ranges` });
  for (const [name, r] of Object.entries(ranges)) {
    if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0) throw new ModelFileError('MODEL_CORRUPT', file, `range of ${name} must be a finite number > 0, got ${JSON.stringify(r)}`, { field: `${field}.ranges.${name}` });
  }
  return { int8Calibration: { weightsHash: o['weightsHash'], method: o['method'], ranges: { ...(ranges as Record<string, number>) } } };
}

function svmFromDecoded(decoded: DecodedModel, file: string): SvmModel {
  const loaded = svmModelFromDecoded(decoded, file);
  const h = loaded.header;
  const layer = h.layer;
  // A feature map (res5c, ...) loads as numbers but can never be classified: refuse it here, not per image.
  if (!(SVM_LAYERS as readonly string[]).includes(layer) || !isTapName(layer)) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `unknown layer ${JSON.stringify(layer)}; SVM models use ${SVM_LAYERS.join(' or ')}`, { field: 'layer' });
  }
  const dim = tapElements(layer as TapName);
  if (loaded.model.dim !== dim) throw new ModelFileError('MODEL_CORRUPT', file, `${loaded.model.dim} features, but ${layer} has ${dim}`, { field: 'dim' });
  const fit = h.preprocessing['fit'] ?? 'squash';
  if (fit !== 'squash' && fit !== 'crop') throw new ModelFileError('MODEL_INCOMPATIBLE', file, `unknown fit mode ${JSON.stringify(fit)} (squash | crop)`, { field: 'preprocessing.fit' });
  const extra = h.extra ?? {};
  // Files before goodClass was a header field: the server's trainer kept it in extra, else the name says it.
  const declared = typeof h.goodClass === 'string' ? h.goodClass : typeof extra['goodClass'] === 'string' ? extra['goodClass'] : undefined;
  if (declared !== undefined && !loaded.model.classes.includes(declared)) {
    throw new ModelFileError('MODEL_CORRUPT', file, `goodClass ${JSON.stringify(declared)} is not one of the classes (${loaded.model.classes.join(', ')})`, { field: 'goodClass' });
  }
  const goodClass = declared ?? findGoodClass(loaded.model.classes);
  if (goodClass === undefined) {
    throw new ModelFileError(
      'MODEL_INCOMPATIBLE',
      file,
      `no class names the good parts (classes: ${loaded.model.classes.join(', ')}), so no verdict can be given; retrain it with the good parts' label (goodLabel / --good-label)`,
      { field: 'goodClass' },
    );
  }
  const threshold = h.threshold ?? 0;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) throw new ModelFileError('MODEL_CORRUPT', file, `not a finite number: ${JSON.stringify(threshold)}`, { field: 'threshold' });
  const trainHashes = stringList(h.trainHashes ?? extra['trainHashes'], file, h.trainHashes !== undefined ? 'trainHashes' : 'extra.trainHashes', SHA256);
  const category = typeof h.category === 'string' ? h.category : undefined;
  return {
    kind: 'svm',
    classifier: loaded.model,
    layer: layer as SvmLayer,
    fit,
    goodClass,
    threshold,
    weightsHash: h.weightsHash,
    createdAt: h.createdAt,
    preprocessing: h.preprocessing,
    trainHashes,
    ...int8CalibrationOf(h as unknown as Record<string, unknown>, file, h.weightsHash),
    ...(category !== undefined ? { category } : {}),
    ...(h.metrics !== undefined ? { metrics: h.metrics } : {}),
    ...(h.extra !== undefined ? { extra: h.extra } : {}),
  };
}

function oneClassFromDecoded(decoded: DecodedModel, file: string): OneClassModel {
  const loaded = loadPatchCoreDecoded(decoded, file);
  const h = decoded.header as Record<string, unknown>;
  const weightsHash = loaded.model.weightsHash;
  if (!weightsHash) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, 'the model does not record which CNN weights it was trained on, so its distances cannot be trusted with any; retrain it', { field: 'weightsHash' });
  }
  const preprocessing = typeof h['preprocessing'] === 'object' && h['preprocessing'] !== null ? (h['preprocessing'] as Record<string, unknown>) : preprocessingRecord({ tile: loaded.model.config.tile });
  return {
    kind: 'one-class',
    method: 'patchcore',
    patchcore: loaded.model,
    weightsHash,
    createdAt: String(h['createdAt']),
    preprocessing,
    trainHashes: loaded.trainHashes,
    ...int8CalibrationOf(h, file, weightsHash),
    ...(loaded.category !== undefined ? { category: loaded.category } : {}),
    ...(loaded.fewShot ? { fewShot: loaded.fewShot } : {}),
    ...(h['metrics'] !== undefined ? { metrics: h['metrics'] } : {}),
    ...(typeof h['extra'] === 'object' && h['extra'] !== null ? { extra: h['extra'] as Record<string, unknown> } : {}),
  };
}

function hybridFromDecoded(decoded: DecodedModel, file: string): HybridModel {
  const loaded = loadPatchCoreDecoded(decoded, file, { method: HYBRID_METHOD });
  const h = decoded.header as Record<string, unknown>;
  const weightsHash = loaded.model.weightsHash;
  if (!weightsHash) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, 'the model does not record which CNN weights it was trained on, so its distances cannot be trusted with any; retrain it', { field: 'weightsHash' });
  }
  const state = h['hybrid'];
  if (typeof state !== 'object' || state === null) throw new ModelFileError('MODEL_CORRUPT', file, 'missing hybrid state', { field: 'hybrid' });
  let hybrid: HybridScorer;
  try {
    hybrid = new HybridScorer(loaded.model, state as HybridState);
  } catch (err) {
    throw new ModelFileError('MODEL_CORRUPT', file, err instanceof Error ? err.message : String(err), { field: 'hybrid', cause: err });
  }
  const preprocessing = typeof h['preprocessing'] === 'object' && h['preprocessing'] !== null ? (h['preprocessing'] as Record<string, unknown>) : preprocessingRecord({ tile: loaded.model.config.tile });
  return {
    kind: 'hybrid',
    method: HYBRID_METHOD,
    patchcore: loaded.model,
    hybrid,
    weightsHash,
    createdAt: String(h['createdAt']),
    preprocessing,
    trainHashes: loaded.trainHashes,
    ...int8CalibrationOf(h, file, weightsHash),
    ...(loaded.category !== undefined ? { category: loaded.category } : {}),
    ...(h['metrics'] !== undefined ? { metrics: h['metrics'] } : {}),
    ...(typeof h['extra'] === 'object' && h['extra'] !== null ? { extra: h['extra'] as Record<string, unknown> } : {}),
  };
}

/** A model from a decoded file (any kind). */
export function modelFromDecoded(decoded: DecodedModel, file: string): LoupeModel {
  if (decoded.header.kind === 'svm') return svmFromDecoded(decoded, file);
  return decoded.header.kind === 'hybrid' ? hybridFromDecoded(decoded, file) : oneClassFromDecoded(decoded, file);
}

/**
 * Reads and validates a model file of any kind, or a model's bytes (`name` then names it in errors).
 * Errors are ModelFileError naming the file and the header field.
 */
export async function loadModel(source: string | Uint8Array, options: { name?: string } = {}): Promise<LoupeModel> {
  if (typeof source === 'string') return modelFromDecoded(await readModelFile(source), source);
  const name = options.name ?? '<model bytes>';
  return modelFromDecoded(decodeModel(source, name), name);
}

/**
 * Refuses a model whose features came from other CNN weights than `engine`'s (its scores would mean
 * nothing): ModelFileError MODEL_INCOMPATIBLE naming both hashes.
 */
export function checkModelWeights(model: Pick<ModelMetadata, 'weightsHash'>, engine: { readonly weightsHash: string }, source: string): void {
  if (model.weightsHash !== engine.weightsHash) {
    throw new ModelFileError(
      'MODEL_INCOMPATIBLE',
      source,
      `the model was trained on features of CNN weights ${model.weightsHash.slice(0, 12)}..., but the engine has ${engine.weightsHash.slice(0, 12)}... (open the engine on the weights it was trained with, or retrain it)`,
      { field: 'weightsHash' },
    );
  }
}

/** `file` with the model extension added when it has none (`models/bottle` -> `models/bottle.loupe`). */
export function withModelExtension(file: string): string {
  return file.endsWith(MODEL_FILE_EXTENSION) ? file : `${file}${MODEL_FILE_EXTENSION}`;
}

/** Writes a model atomically, with all its metadata. Returns the bytes written and the payload sha256. */
export async function saveModel(file: string, model: LoupeModel): Promise<{ bytes: number; sha256: string }> {
  if (model.kind === 'svm') {
    return saveSvmModel(file, model.classifier, {
      weightsHash: model.weightsHash,
      preprocessing: model.preprocessing,
      createdAt: model.createdAt,
      goodClass: model.goodClass,
      threshold: model.threshold,
      trainHashes: model.trainHashes,
      ...(model.int8Calibration !== undefined ? { int8Calibration: { ...model.int8Calibration } } : {}),
      ...(model.category !== undefined ? { category: model.category } : {}),
      ...(model.metrics !== undefined ? { metrics: model.metrics } : {}),
      ...(model.extra !== undefined ? { extra: model.extra } : {}),
    });
  }
  if (model.patchcore.weightsHash !== model.weightsHash) {
    throw new ModelFileError('MODEL_WRITE', file, `the memory bank's weights hash ${String(model.patchcore.weightsHash)} is not the model's ${model.weightsHash}`, { field: 'weightsHash' });
  }
  if (model.kind === 'hybrid' && model.hybrid.patchcore !== model.patchcore) {
    throw new ModelFileError('MODEL_WRITE', file, 'the hybrid state belongs to another memory bank', { field: 'hybrid' });
  }
  return savePatchCore(file, model.patchcore, {
    createdAt: model.createdAt,
    preprocessing: model.preprocessing,
    trainHashes: model.trainHashes,
    ...(model.kind === 'hybrid' ? { kind: 'hybrid', method: HYBRID_METHOD } : {}),
    header: {
      ...(model.kind === 'hybrid' ? { hybrid: model.hybrid.state } : {}),
      ...(model.int8Calibration !== undefined ? { int8Calibration: { ...model.int8Calibration } } : {}),
    },
    ...(model.category !== undefined ? { category: model.category } : {}),
    ...(model.kind === 'one-class' && model.fewShot ? { fewShot: model.fewShot } : {}),
    ...(model.metrics !== undefined ? { metrics: model.metrics } : {}),
    ...(model.extra !== undefined ? { extra: model.extra } : {}),
  });
}

/** The kind-independent summary of a header (see readModelSummary). */
export function summarizeModelHeader(h: ModelHeaderBase): ModelSummary {
  const category = typeof h['category'] === 'string' ? h['category'] : undefined;
  const precision = h['int8Calibration'] !== undefined ? 'int8' : 'fp32';
  if (h.kind === 'svm') {
    return {
      kind: 'svm',
      method: 'svm',
      classes: Array.isArray(h['classes']) ? (h['classes'] as unknown[]).map(String) : [],
      layer: String(h['layer'] ?? ''),
      createdAt: h.createdAt,
      weightsHash: String(h['weightsHash'] ?? ''),
      category,
      precision,
    };
  }
  if (h.kind === 'hybrid') {
    // The defect types a hybrid model was trained on (it names one when there are two or more).
    const state = h['hybrid'] as { defectLabels?: unknown } | undefined;
    const classes = Array.isArray(state?.defectLabels) ? state.defectLabels.map(String) : [];
    return { kind: 'hybrid', method: String(h['method'] ?? ''), classes, layer: 'res3d,res4f', createdAt: h.createdAt, weightsHash: String(h['weightsHash'] ?? ''), category, precision };
  }
  return { kind: 'one-class', method: String(h['method'] ?? ''), classes: [], layer: 'res3d,res4f', createdAt: h.createdAt, weightsHash: String(h['weightsHash'] ?? ''), category, precision };
}

/** A model file's summary from its header line alone (the payload is neither read nor checked). */
export async function readModelSummary(file: string): Promise<ModelSummary> {
  return summarizeModelHeader(await readModelHeader(file));
}

export type { PatchCoreHeader };
