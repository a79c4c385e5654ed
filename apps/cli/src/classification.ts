// The paper's pipeline as the train/evaluate/predict/demo commands share it: dataset -> cached CNN
// features -> standardised multiclass linear SVM (native SGD, ECOC) -> metrics -> model file, report.
import { promises as fs } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

import {
  CAFFE_MEAN_BGR,
  classificationMetrics,
  extractFeaturesCached,
  formatConfusionMatrix,
  labelCounts,
  loadAddon,
  loadSvmModel,
  ModelFileError,
  nativeSvmTrainer,
  predictSvm,
  readConv1Kernel,
  scanDataset,
  tapElements,
  trainSvmClassifier,
  writeClassificationReport,
  type ClassificationMetrics,
  type CodingName,
  type DecodingName,
  type LoupeError,
  type Dataset,
  type DatasetItem,
  type Engine,
  type FitMode,
  type ReportTable,
  type SvmClassifier,
  type TapName,
  type VerifyLevel,
  type WrittenReport,
} from '@loupe/core';

import type { RunContext } from './context.js';
import { ProgressBar } from './progress.js';

/** CNN taps a linear SVM is trained on (vectors; the feature maps are far too wide for it). */
export const SVM_LAYERS = ['fc1000', 'avg_pool'] as const;
export type SvmLayer = (typeof SVM_LAYERS)[number];

export const GOOD_LABEL = 'good';

/** What the model file records as the image preprocessing: everything that changes the features. */
export function preprocessingRecord(fit: FitMode): Record<string, unknown> {
  return {
    fit,
    size: 224,
    resize: 'bicubic',
    colorOrder: 'BGR',
    normalization: 'caffe',
    meanBGR: [...CAFFE_MEAN_BGR],
    exifOrientation: true,
    iccProfiles: 'ignored',
  };
}

/**
 * Scans a dataset (MVTec category or folder-per-label, auto-detected) with a progress bar. Default 'decode': every image is decoded as the CNN will see it,
 * so train, evaluate and `dataset stats` skip (and report) the same files, a truncated one included,
 * rather than failing minutes into a run (costs well under a tenth of the CNN's time per image).
 */
export async function scanWithProgress(dir: string, ctx: RunContext, verify: VerifyLevel = 'decode'): Promise<Dataset> {
  let bar: ProgressBar | undefined;
  try {
    return await scanDataset(dir, {
      verify,
      onProgress: (done, total) => {
        bar ??= new ProgressBar('scanning', total, ctx.stderr, progressEnabled(ctx, total));
        bar.update(done);
      },
    });
  } finally {
    bar?.clear();
  }
}

function progressEnabled(ctx: RunContext, total: number): boolean {
  return ctx.opts.progress && total > 1 && Boolean(ctx.stderr.isTTY);
}

/** Where the feature cache lives: $LOUPE_FEATURE_CACHE ('off' disables it), else $LOUPE_HOME/features. */
export function featureCacheSetting(noCache: boolean | undefined): string | false | undefined {
  if (noCache) return false;
  const env = process.env['LOUPE_FEATURE_CACHE'];
  if (env === undefined || env.trim() === '') return undefined;
  return env.trim().toLowerCase() === 'off' ? false : resolve(env);
}

export interface FeatureRun {
  readonly features: Float32Array[];
  readonly cached: number;
  readonly computed: number;
  /** With skipInvalid: the images that could not be read or decoded (their features are empty). */
  readonly invalid: readonly { readonly index: number; readonly error: LoupeError }[];
}

/** Features of files through the cache, with a progress bar on a terminal. */
export async function featuresOf(
  files: readonly string[],
  engine: Engine,
  layer: TapName,
  fit: FitMode,
  ctx: RunContext,
  opts: { label?: string; cacheDir?: string | false; skipInvalid?: boolean } = {},
): Promise<FeatureRun> {
  const bar = new ProgressBar(opts.label ?? 'features', files.length, ctx.stderr, progressEnabled(ctx, files.length));
  try {
    const r = await extractFeaturesCached(files, {
      engine,
      layer,
      fit,
      batchSize: ctx.opts.batchSize,
      signal: ctx.signal,
      ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.skipInvalid ? { onInvalidImage: 'skip' as const } : {}),
      onProgress: (p) => bar.update(p.done),
    });
    if (r.writeFailures > 0) ctx.stderr.write(`loupe: warning: ${r.writeFailures} feature cache entr${r.writeFailures === 1 ? 'y' : 'ies'} could not be written (features were still computed)\n`);
    return { features: r.features, cached: r.cached, computed: r.computed, invalid: r.invalid };
  } finally {
    bar.clear();
  }
}

export interface SvmSettings {
  readonly layer: SvmLayer;
  readonly coding: CodingName;
  readonly decoding?: DecodingName;
  readonly seed: number;
  /** L2 strength; default: chosen by cross-validation in @loupe/core (SVM_DEFAULTS). */
  readonly lambda?: number;
  readonly epochs?: number;
}

/** Trains the ECOC linear SVM on training features with the native SGD kernel; `groups` (one per row) make its C search group-aware. */
export async function trainSvm(features: readonly Float32Array[], labels: readonly string[], classes: readonly string[], s: SvmSettings, ctx: RunContext, groups?: readonly string[]): Promise<SvmClassifier> {
  const trainer = nativeSvmTrainer(await loadAddon());
  return trainSvmClassifier(features, labels, {
    trainer,
    trainerName: 'native',
    coding: s.coding,
    ...(s.decoding !== undefined ? { decoding: s.decoding } : {}),
    ...(s.lambda !== undefined ? { lambda: s.lambda } : {}),
    ...(s.epochs !== undefined ? { epochs: s.epochs } : {}),
    ...(groups ? { groups } : {}),
    seed: s.seed,
    layer: s.layer,
    classes,
    threads: ctx.budget.engineThreads,
    backend: ctx.opts.backend,
  });
}

export interface Evaluation {
  readonly metrics: ClassificationMetrics;
  readonly predicted: string[];
  /** Per-class scores [n][K] (higher = more likely). */
  readonly scores: Float32Array;
}

/**
 * Predicts and scores held-out items. True labels the model does not know are kept as extra classes
 * (always wrong), so the numbers never silently drop images.
 */
export function evaluateSvm(model: SvmClassifier, features: readonly Float32Array[], truth: readonly string[]): Evaluation {
  const pred = predictSvm(model, features);
  const extra = [...new Set(truth)].filter((l) => !model.classes.includes(l)).sort();
  const metrics = classificationMetrics(truth, pred.labels, { classes: [...model.classes, ...extra], goodLabel: GOOD_LABEL });
  return { metrics, predicted: pred.labels, scores: pred.scores };
}

/** good-vs-defect accuracy, or null when there is no 'good' class to speak of. */
export function binaryAccuracy(m: ClassificationMetrics): number | null {
  return m.goodVsDefect ? m.goodVsDefect.accuracy : null;
}

/** Rounded for JSON output (metrics are ratios of small integers: 6 digits say everything). */
export function r6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** The interface object of train/evaluate --json: the acceptance checks read these keys. */
export function metricsJson(m: ClassificationMetrics): Record<string, unknown> {
  return {
    accuracy: r6(m.accuracy),
    balancedAccuracy: r6(m.balancedAccuracy),
    binaryAccuracy: binaryAccuracy(m) === null ? null : r6(binaryAccuracy(m) as number),
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

const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;

/**
 * Human summary of an evaluation: confusion matrix (counts + row %), per-class P/R/F1, headline numbers.
 * `evaluated`: what the images are called in notes ('held-back' after train, 'evaluated' in evaluate).
 */
export function formatMetrics(m: ClassificationMetrics, evaluated = 'held-back'): string {
  const lines: string[] = [];
  lines.push('Confusion matrix (rows: true class, columns: predicted; counts and row %):');
  lines.push(...formatConfusionMatrix(m.confusion).split('\n').map((l) => `  ${l}`));
  lines.push('');
  const head = ['class', 'support', 'precision', 'recall', 'F1'];
  // A class with no held-back images has no recall (and no precision without predictions): n/a, not 0%.
  const rows = m.perClass.map((c) => [c.label, String(c.support), c.predicted > 0 ? pct(c.precision) : 'n/a', c.support > 0 ? pct(c.recall) : 'n/a', c.support > 0 || c.predicted > 0 ? pct(c.f1) : 'n/a']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')}`;
  lines.push(fmt(head), ...rows.map(fmt), '');
  lines.push(`accuracy            ${pct(m.accuracy)}  (${m.correct}/${m.total})`);
  lines.push(`balanced accuracy   ${pct(m.balancedAccuracy)}  (mean per-class accuracy)`);
  lines.push(`macro F1            ${pct(m.macroF1)}`);
  if (m.goodVsDefect) {
    const g = m.perClass.find((c) => c.label === GOOD_LABEL)?.support ?? 0;
    const d = m.total - g;
    lines.push(`good vs defect      ${pct(m.goodVsDefect.accuracy)}  (defects caught ${d > 0 ? pct(m.goodVsDefect.defectRecall) : 'n/a'}, good passed ${g > 0 ? pct(m.goodVsDefect.goodRecall) : 'n/a'})`);
  }
  const absent = m.perClass.filter((c) => c.support === 0).map((c) => c.label);
  if (absent.length > 0) lines.push(`note: no ${evaluated} images of ${absent.join(', ')}: those figures are not measured (balanced accuracy leaves them out)`);
  return lines.join('\n');
}

/** Label counts of named parts (e.g. train/test) as a report table. */
export function countsTable(title: string, parts: Readonly<Record<string, readonly { label: string }[]>>, labels: readonly string[]): ReportTable {
  const names = Object.keys(parts);
  const counts = names.map((n) => labelCounts(parts[n] ?? [], labels));
  return {
    title,
    columns: ['label', ...names],
    rows: [
      ...labels.map((l) => [l, ...counts.map((c) => c.find((x) => x.label === l)?.count ?? 0)]),
      ['total', ...names.map((n) => (parts[n] ?? []).length)],
    ],
  };
}

/** conv1 filters for the report; undefined (with a note) when the weights are not TF.js (e.g. .lwts). */
export async function conv1For(engine: Engine): Promise<{ weights?: Float32Array; note?: string }> {
  const model = engine.weights?.model;
  if (!model || !model.endsWith('.json')) return { note: 'conv1 filters not shown: the weights are not a TF.js model.json' };
  try {
    return { weights: await readConv1Kernel(model) };
  } catch (err) {
    return { note: `conv1 filters not shown: ${err instanceof Error ? err.message : String(err)}` };
  }
}

export interface ReportArgs {
  readonly title: string;
  readonly subtitle?: string;
  readonly evaluation: Evaluation;
  readonly items: readonly { path: string; relPath: string; label: string }[];
  /** Training images per label for the montage (paths). */
  readonly samples: readonly { label: string; images: readonly string[] }[];
  readonly engine: Engine;
  readonly tables?: readonly ReportTable[];
  readonly notes?: readonly string[];
}

/** The HTML classification report (confusion PNG, training montage, conv1 filters, misclassified). */
export async function writeReport(dir: string, a: ReportArgs): Promise<WrittenReport> {
  const conv1 = await conv1For(a.engine);
  const { evaluation: e } = a;
  const wrong = a.items
    .map((it, i) => ({ it, p: e.predicted[i] as string }))
    .filter((x) => x.p !== x.it.label)
    .map((x) => ({ image: x.it.path, trueLabel: x.it.label, predictedLabel: x.p, note: basename(x.it.relPath) }));
  return writeClassificationReport(dir, {
    title: a.title,
    ...(a.subtitle !== undefined ? { subtitle: a.subtitle } : {}),
    metrics: e.metrics,
    samplesByLabel: a.samples.filter((s) => s.images.length > 0),
    ...(wrong.length > 0 ? { misclassified: wrong } : {}), // no empty figure when all are right
    ...(conv1.weights ? { conv1Weights: conv1.weights } : {}),
    tables: a.tables ?? [],
    notes: [...(a.notes ?? []), ...(conv1.note ? [conv1.note] : [])],
  });
}

/** Up to `n` images per label, for the training montage. */
export function samplesByLabel(items: readonly DatasetItem[], labels: readonly string[], n = 6): { label: string; images: string[] }[] {
  return labels.map((label) => ({ label, images: items.filter((i) => i.label === label).slice(0, n).map((i) => i.path) }));
}

export interface LoadedClassifier {
  readonly file: string;
  readonly model: SvmClassifier;
  readonly layer: SvmLayer;
  readonly fit: FitMode;
  readonly weightsHash: string;
  readonly extra: Record<string, unknown>;
}

/** Loads and checks an SVM model file; every problem names the file and the header field. */
export async function loadClassifier(file: string): Promise<LoadedClassifier> {
  const loaded = await loadSvmModel(file);
  const { header } = loaded;
  const layer = header.layer;
  if (!(SVM_LAYERS as readonly string[]).includes(layer)) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `unknown layer ${JSON.stringify(layer)}; SVM models use ${SVM_LAYERS.join(' or ')}`, { field: 'layer' });
  }
  const dim = tapElements(layer as TapName);
  if (loaded.model.dim !== dim) throw new ModelFileError('MODEL_CORRUPT', file, `${loaded.model.dim} features, but ${layer} has ${dim}`, { field: 'dim' });
  const fit = header.preprocessing['fit'] ?? 'squash';
  if (fit !== 'squash' && fit !== 'crop') throw new ModelFileError('MODEL_INCOMPATIBLE', file, `unknown fit mode ${JSON.stringify(fit)} (squash | crop)`, { field: 'preprocessing.fit' });
  return { file, model: loaded.model, layer: layer as SvmLayer, fit, weightsHash: header.weightsHash, extra: header.extra ?? {} };
}

/** Features from other CNN weights mean nothing to the model: refuse, naming both hashes. */
export function checkWeights(c: LoadedClassifier, engine: Engine): void {
  if (c.weightsHash !== engine.weightsHash) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', c.file, `the model was trained on features of CNN weights ${c.weightsHash}, but the loaded weights are ${engine.weightsHash} (check --weights / LOUPE_WEIGHTS)`, { field: 'weightsHash' });
  }
}
