// Saving and loading a trained SVM classifier as a Loupe model file (kind 'svm').

import type { CodingMatrix, CodingName, DecodingName } from '../classifier/coding.js';
import type { LambdaSelection, SgdSchedule, SvmClassifier, SvmTrainingInfo } from '../classifier/svm.js';
import { ModelFileError } from './errors.js';
import { readModelFile, writeModelFile, type DecodedModel, type ModelHeaderBase } from './format.js';

/** What the model file records besides the classifier itself. */
export interface SvmModelMeta {
  /** sha256 of the CNN weights the features came from (NativeModel.weightsHash). */
  readonly weightsHash: string;
  /** Image preprocessing parameters (resize, crop, mean, channel order...), as JSON. */
  readonly preprocessing: Readonly<Record<string, unknown>>;
  /** Training/evaluation metrics to keep with the model (JSON). */
  readonly metrics?: unknown;
  /** Default now; pass a fixed value for byte-identical files. */
  readonly createdAt?: string;
  /** Any other JSON metadata (dataset name, split seed, tool version...). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** The class of defect-free parts (the verdict is 'good' for it). */
  readonly goodClass?: string;
  /** Decision threshold on the good-vs-defect margin (default 0, the classifier's own decision). */
  readonly threshold?: number;
  /** sha256 of every training image's file, so evaluation can say which it has seen. */
  readonly trainHashes?: readonly string[];
  /** The INT8 activation ranges of a model trained in int8 (it then always runs in int8). */
  readonly int8Calibration?: Readonly<Record<string, unknown>>;
  /** What the images were (the dataset folder's name). */
  readonly category?: string;
}

export interface SvmModelHeader extends ModelHeaderBase {
  readonly kind: 'svm';
  readonly classes: string[];
  readonly layer: string;
  readonly dim: number;
  readonly weightsHash: string;
  readonly preprocessing: Record<string, unknown>;
  readonly standardization: { readonly stdFloor: number; readonly mean: string; readonly std: string };
  readonly coding: { readonly name: CodingName; readonly classes: number; readonly learners: number; readonly matrix: number[][] };
  /** Absent in files written before voting existed: those decode 'lossweighted', as they were trained. */
  readonly decoding?: DecodingName;
  readonly svm: { readonly learners: number; readonly dim: number; readonly weights: string; readonly bias: string };
  readonly training: SvmTrainingInfo;
  readonly goodClass?: string;
  readonly threshold?: number;
  readonly trainHashes?: string[];
  readonly category?: string;
  readonly metrics?: unknown;
  readonly extra?: Record<string, unknown>;
}

export interface LoadedSvmModel {
  readonly file: string;
  readonly header: SvmModelHeader;
  readonly model: SvmClassifier;
}

const SECTION = {
  mean: 'standardization.mean',
  std: 'standardization.std',
  weights: 'svm.weights',
  bias: 'svm.bias',
} as const;

/** Writes the classifier and its metadata atomically. */
export async function saveSvmModel(file: string, model: SvmClassifier, meta: SvmModelMeta): Promise<{ bytes: number; sha256: string }> {
  const { coding } = model;
  const matrix: number[][] = [];
  for (let c = 0; c < coding.classes; c++) matrix.push(Array.from(coding.matrix.subarray(c * coding.learners, (c + 1) * coding.learners)));
  const header: Record<string, unknown> = {
    kind: 'svm',
    ...(meta.createdAt !== undefined ? { createdAt: meta.createdAt } : {}),
    classes: [...model.classes],
    layer: model.layer,
    dim: model.dim,
    weightsHash: meta.weightsHash,
    preprocessing: meta.preprocessing,
    standardization: { stdFloor: model.standardization.stdFloor, mean: SECTION.mean, std: SECTION.std },
    coding: { name: coding.name, classes: coding.classes, learners: coding.learners, matrix },
    decoding: model.decoding,
    svm: { learners: coding.learners, dim: model.dim, weights: SECTION.weights, bias: SECTION.bias },
    training: model.training,
    ...(meta.goodClass !== undefined ? { goodClass: meta.goodClass } : {}),
    ...(meta.threshold !== undefined ? { threshold: meta.threshold } : {}),
    ...(meta.trainHashes !== undefined ? { trainHashes: [...meta.trainHashes] } : {}),
    ...(meta.int8Calibration !== undefined ? { int8Calibration: meta.int8Calibration } : {}),
    ...(meta.category !== undefined ? { category: meta.category } : {}),
    ...(meta.metrics !== undefined ? { metrics: meta.metrics } : {}),
    ...(meta.extra !== undefined ? { extra: meta.extra } : {}),
  };
  return writeModelFile(file, header as { kind: 'svm' }, [
    { name: SECTION.mean, shape: [model.dim], data: model.standardization.mean },
    { name: SECTION.std, shape: [model.dim], data: model.standardization.std },
    { name: SECTION.weights, shape: [coding.learners, model.dim], data: model.weights },
    { name: SECTION.bias, shape: [coding.learners], data: model.bias },
  ]);
}

export interface LoadSvmOptions {
  /** When given, the model's weightsHash must match (features from another CNN are meaningless). */
  expectWeightsHash?: string;
  /** When given, the model's layer must match. */
  expectLayer?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function posInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Validates a decoded 'svm' model and builds the classifier. */
export function svmModelFromDecoded(decoded: DecodedModel, file: string, opts: LoadSvmOptions = {}): LoadedSvmModel {
  const h = decoded.header as Record<string, unknown>;
  const bad = (field: string, msg: string): never => {
    throw new ModelFileError('MODEL_CORRUPT', file, msg, { field });
  };
  if (h['kind'] !== 'svm') throw new ModelFileError('MODEL_INCOMPATIBLE', file, `this is a '${String(h['kind'])}' model, not an SVM classifier`, { field: 'kind' });
  const classes = h['classes'];
  if (!Array.isArray(classes) || classes.length < 2 || !classes.every((c) => typeof c === 'string' && c !== '') || new Set(classes).size !== classes.length) {
    bad('classes', 'must be 2 or more distinct non-empty strings');
  }
  const k = (classes as string[]).length;
  if (typeof h['layer'] !== 'string' || h['layer'] === '') bad('layer', 'missing');
  const dim = h['dim'];
  if (!posInt(dim)) bad('dim', `not a positive integer: ${JSON.stringify(dim)}`);
  const d = dim as number;
  if (typeof h['weightsHash'] !== 'string' || h['weightsHash'] === '') bad('weightsHash', 'missing');
  if (!isObject(h['preprocessing'])) bad('preprocessing', 'missing or not an object');
  const st = h['standardization'];
  if (!isObject(st) || typeof st['stdFloor'] !== 'number' || typeof st['mean'] !== 'string' || typeof st['std'] !== 'string') bad('standardization', 'missing or malformed');
  const coding = h['coding'];
  if (!isObject(coding)) return bad('coding', 'missing');
  const codingObj = coding as Record<string, unknown>;
  const name = codingObj['name'];
  if (name !== 'onevsone' && name !== 'onevsall') bad('coding.name', `unknown coding ${JSON.stringify(name)}`);
  const l = codingObj['learners'];
  if (!posInt(l)) bad('coding.learners', 'not a positive integer');
  const L = l as number;
  if (codingObj['classes'] !== k) bad('coding.classes', `${JSON.stringify(codingObj['classes'])} but ${k} classes`);
  const rows = codingObj['matrix'];
  if (!Array.isArray(rows) || rows.length !== k) bad('coding.matrix', `expected ${k} rows`);
  const matrix = new Int8Array(k * L);
  (rows as unknown[]).forEach((row, c) => {
    if (!Array.isArray(row) || row.length !== L || !row.every((v) => v === 1 || v === -1 || v === 0)) bad('coding.matrix', `row ${c} must have ${L} entries in {-1, 0, 1}`);
    matrix.set(row as number[], c * L);
  });
  for (let j = 0; j < L; j++) {
    let p = 0;
    let n = 0;
    for (let c = 0; c < k; c++) {
      const v = matrix[c * L + j] as number;
      if (v > 0) p++;
      else if (v < 0) n++;
    }
    if (p === 0 || n === 0) bad('coding.matrix', `learner ${j} has no positive or no negative class`);
  }
  const svm = h['svm'];
  if (!isObject(svm) || svm['learners'] !== L || svm['dim'] !== d || typeof svm['weights'] !== 'string' || typeof svm['bias'] !== 'string') {
    bad('svm', `must describe ${L} learners of dimension ${d}`);
  }
  const decoding = h['decoding'] ?? 'lossweighted';
  if (decoding !== 'vote' && decoding !== 'lossweighted') bad('decoding', `unknown decoding ${JSON.stringify(decoding)} (vote | lossweighted)`);
  const training = h['training'];
  if (!isObject(training)) bad('training', 'missing');
  const section = (field: string, nameOf: unknown, length: number): Float32Array => {
    const s = decoded.sections.get(nameOf as string);
    if (!(s instanceof Float32Array)) return bad(field, `section ${JSON.stringify(nameOf)} missing or not float32`);
    if (s.length !== length) bad(field, `section ${JSON.stringify(nameOf)} has ${s.length} values, expected ${length}`);
    for (let i = 0; i < s.length; i++) if (!Number.isFinite(s[i] as number)) bad(field, `non-finite value at index ${i}`);
    return s;
  };
  const stObj = st as Record<string, unknown>;
  const svmObj = svm as Record<string, unknown>;
  const mean = section('standardization.mean', stObj['mean'], d);
  const std = section('standardization.std', stObj['std'], d);
  for (let i = 0; i < d; i++) if (!((std[i] as number) > 0)) bad('standardization.std', `std ${i} is not positive`);
  const weights = section('svm.weights', svmObj['weights'], L * d);
  const bias = section('svm.bias', svmObj['bias'], L);
  if (opts.expectWeightsHash !== undefined && h['weightsHash'] !== opts.expectWeightsHash) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `the model was trained on features of CNN weights ${String(h['weightsHash'])}, but the loaded weights are ${opts.expectWeightsHash}`, { field: 'weightsHash' });
  }
  if (opts.expectLayer !== undefined && h['layer'] !== opts.expectLayer) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `the model uses layer '${String(h['layer'])}', expected '${opts.expectLayer}'`, { field: 'layer' });
  }
  const t = training as Record<string, unknown>;
  const codingMatrix: CodingMatrix = { name: name as CodingName, classes: k, learners: L, matrix };
  const model: SvmClassifier = {
    kind: 'svm',
    classes: classes as string[],
    layer: h['layer'] as string,
    dim: d,
    standardization: { mean, std, stdFloor: stObj['stdFloor'] as number },
    coding: codingMatrix,
    decoding: decoding as DecodingName,
    weights,
    bias,
    training: {
      lambda: Number(t['lambda']),
      ...(typeof t['eta0'] === 'number' ? { eta0: t['eta0'] } : {}),
      ...(isObject(t['lambdaSelection']) ? { lambdaSelection: t['lambdaSelection'] as unknown as LambdaSelection } : {}),
      epochs: Number(t['epochs']),
      seed: Number(t['seed']),
      schedule: (t['schedule'] === 'pegasos' ? 'pegasos' : 'averaged') as SgdSchedule,
      trainer: String(t['trainer'] ?? 'unknown'),
      samples: Number(t['samples']),
      classCounts: Array.isArray(t['classCounts']) ? (t['classCounts'] as number[]) : [],
    },
  };
  return { file, header: decoded.header as SvmModelHeader, model };
}

/** Reads, validates and rebuilds an SVM classifier. Errors are ModelFileError naming the file and field. */
export async function loadSvmModel(file: string, opts: LoadSvmOptions = {}): Promise<LoadedSvmModel> {
  const decoded = await readModelFile(file, { kinds: ['svm'] });
  return svmModelFromDecoded(decoded, file, opts);
}
