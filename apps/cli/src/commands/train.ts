// loupe train DIR --out MODEL: the paper's classifier. Scan (folder-per-label or one MVTec category),
// optionally balance, split (stratified, group-aware with --groups) or k-fold, CNN features (cached),
// standardised ECOC linear SVM, evaluation on the held-back part, self-describing model file.
import { promises as fs } from 'node:fs';
import { resolve } from 'node:path';

import {
  classificationMetrics,
  formatCountsTable,
  kFold,
  labelCounts,
  loadGroups,
  saveSvmModel,
  stratifiedSplit,
  undersample,
  type ClassificationMetrics,
  type DatasetItem,
  type DecodingName,
  type GroupMap,
  type SvmClassifier,
} from '@loupe/core';

import {
  countsTable,
  evaluateSvm,
  featureCacheSetting,
  featuresOf,
  formatMetrics,
  GOOD_LABEL,
  metricsJson,
  preprocessingRecord,
  r6,
  samplesByLabel,
  scanWithProgress,
  trainSvm,
  writeReport,
  type SvmLayer,
} from '../classification.js';
import { openEngine, write, type RunContext } from '../context.js';
import { formatSeconds } from '../format.js';
import { checkOutputDir, checkWritableOutput } from '../outputs.js';
import { trainOneClassCommand } from './oneclass.js';

export interface TrainCommandOptions {
  out: string;
  mode: 'svm' | 'one-class';
  layer: SvmLayer;
  split: number;
  balance?: boolean;
  coding: 'ovo' | 'ova';
  decoding: DecodingName;
  seed: number;
  groups?: string;
  kfold?: number;
  report?: string;
  json?: boolean;
  crop?: boolean;
  lambda?: number;
  epochs: number;
  /** false with --no-cache */
  cache: boolean;
  // --mode one-class
  coreset: number;
  projection?: number;
  storage: 'fp32' | 'fp16';
  maxBankMb?: number;
  tile?: boolean;
}

export async function trainCommand(dir: string, o: TrainCommandOptions, ctx: RunContext): Promise<number> {
  if (o.mode === 'one-class') {
    return trainOneClassCommand(
      dir,
      {
        out: o.out,
        coreset: o.coreset,
        storage: o.storage,
        seed: o.seed,
        json: Boolean(o.json),
        ...(o.projection !== undefined ? { projection: o.projection } : {}),
        ...(o.maxBankMb !== undefined ? { maxBankMb: o.maxBankMb } : {}),
        ...(o.tile ? { tile: true } : {}),
      },
      ctx,
    );
  }
  await checkWritableOutput(o.out);
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);

  const t0 = performance.now();
  const ds = await scanWithProgress(dir, ctx);
  if (ds.labels.length < 2) {
    throw new Error(`${ds.root}: a classifier needs at least 2 labels, found ${ds.labels.length} (${ds.labels.join(', ')})${ds.layout === 'folder-per-label' ? '; put each class in its own <label>/ folder' : ''}`);
  }
  const groups: GroupMap | undefined = o.groups ? await loadGroups(o.groups, ds) : undefined;
  const items: DatasetItem[] = o.balance ? undersample(ds.items, { seed: o.seed }) : [...ds.items];
  const classes = [...ds.labels];
  const coding = o.coding === 'ova' ? 'onevsall' : 'onevsone';
  const fit = o.crop ? 'crop' : 'squash';
  const settings = { layer: o.layer, coding, decoding: o.decoding, seed: o.seed, epochs: o.epochs, ...(o.lambda !== undefined ? { lambda: o.lambda } : {}) } as const;
  if (!o.json && ds.skipped.length > 0) ctx.stderr.write(`loupe: ${ds.skipped.length} file(s) skipped (see \`loupe dataset stats ${dir}\`)\n`);

  const engine = await openEngine(ctx);
  const t1 = performance.now();
  const feats = await featuresOf(items.map((i) => i.path), engine, o.layer, fit, ctx, { label: o.layer, cacheDir: featureCacheSetting(!o.cache) });
  const featMs = performance.now() - t1;
  const row = new Map(items.map((it, i) => [it.relPath, i]));
  const featuresFor = (part: readonly DatasetItem[]): Float32Array[] => part.map((it) => feats.features[row.get(it.relPath) as number] as Float32Array);
  const labelsOf = (part: readonly DatasetItem[]): string[] => part.map((it) => it.label);

  let heldOut: { metrics: ClassificationMetrics; items: DatasetItem[]; predicted: string[] };
  let train: DatasetItem[];
  let splitInfo: Record<string, unknown>;
  let model: SvmClassifier;
  const folds: ClassificationMetrics[] = [];
  const trainWithContext = async (part: DatasetItem[], what: string): ReturnType<typeof trainSvm> => {
    const missing = classes.filter((c) => !part.some((it) => it.label === c));
    if (missing.length > 0) {
      throw new Error(`${ds.root}: the ${what} has no images of ${missing.join(', ')}; with so few images (or with --groups) use a smaller --split or fewer folds`);
    }
    return trainSvm(featuresFor(part), labelsOf(part), classes, settings, ctx, groups ? part.map((it) => groups.get(it.relPath) as string) : undefined);
  };

  if (o.kfold !== undefined) {
    const parts = kFold(items, { k: o.kfold, seed: o.seed, ...(groups ? { groups } : {}) });
    const truth: string[] = [];
    const pred: string[] = [];
    const tested: DatasetItem[] = [];
    for (const [i, p] of parts.entries()) {
      const foldModel = await trainWithContext(p.train, `training part of fold ${i + 1}`);
      const e = evaluateSvm(foldModel, featuresFor(p.test), labelsOf(p.test));
      folds.push(e.metrics);
      truth.push(...labelsOf(p.test));
      pred.push(...e.predicted);
      tested.push(...p.test);
    }
    // Every image is tested exactly once over the folds, so the pooled confusion is an honest total.
    heldOut = { metrics: classificationMetrics(truth, pred, { classes, goodLabel: GOOD_LABEL }), items: tested, predicted: pred };
    train = items;
    model = await trainWithContext(items, 'dataset'); // the saved model is refitted on everything
    splitInfo = { kind: 'kfold', k: o.kfold, seed: o.seed, groupAware: Boolean(groups) };
  } else {
    const split = stratifiedSplit(items, { testRatio: o.split, seed: o.seed, ...(groups ? { groups } : {}) });
    if (split.test.length === 0) throw new Error(`${ds.root}: --split ${o.split} leaves no images to evaluate on`);
    train = split.train;
    model = await trainWithContext(split.train, 'training part');
    const e = evaluateSvm(model, featuresFor(split.test), labelsOf(split.test));
    heldOut = { metrics: e.metrics, items: split.test, predicted: e.predicted };
    splitInfo = { kind: 'holdout', testRatio: o.split, seed: o.seed, groupAware: Boolean(groups), train: split.train.length, test: split.test.length };
  }
  const m = heldOut.metrics;
  const summary = metricsJson(m);
  const foldsJson = folds.map((f) => ({ accuracy: r6(f.accuracy), balancedAccuracy: r6(f.balancedAccuracy), total: f.total }));

  const written = await saveSvmModel(o.out, model, {
    weightsHash: engine.weightsHash,
    preprocessing: preprocessingRecord(fit),
    metrics: { heldOut: summary, split: splitInfo, ...(folds.length ? { folds: foldsJson } : {}) },
    extra: {
      dataset: { root: ds.root, layout: ds.layout, labels: classes, images: items.length, skipped: ds.skipped.length, balanced: Boolean(o.balance), groups: o.groups ? resolve(o.groups) : null },
      split: splitInfo,
      // Content hashes of the training images: evaluate warns when it is shown any of them.
      trainHashes: train.map((i) => i.sha256).filter((h): h is string => typeof h === 'string'),
      trainSamples: samplesByLabel(train, classes),
    },
  });

  let reportHtml: string | undefined;
  if (o.report) {
    const r = await writeReport(o.report, {
      title: `Loupe classifier: ${ds.root}`,
      subtitle: `${o.layer} features, ${coding} linear SVM, ${o.kfold !== undefined ? `${o.kfold}-fold cross-validation` : `${Math.round(o.split * 100)}% held back`} (seed ${o.seed})`,
      evaluation: { metrics: m, predicted: heldOut.predicted, scores: new Float32Array(0) },
      items: heldOut.items,
      samples: samplesByLabel(train, classes),
      engine,
      tables: [countsTable('Images per label', o.kfold !== undefined ? { images: items } : { train, 'held back': heldOut.items }, classes)],
      notes: [`Model: ${resolve(o.out)}. Dataset layout: ${ds.layout}; ${ds.skipped.length} file(s) skipped.`],
    });
    reportHtml = r.html;
  }

  if (o.json) {
    const out = {
      ...summary,
      ...(folds.length ? { folds: foldsJson } : {}),
      model: resolve(o.out),
      layer: o.layer,
      coding,
      decoding: model.decoding,
      lambda: model.training.lambda,
      C: model.training.lambdaSelection?.C ?? null,
      epochs: model.training.epochs,
      train: o.kfold !== undefined ? items.length : train.length,
      test: heldOut.items.length,
      skipped: ds.skipped.length,
      ...(reportHtml ? { report: reportHtml } : {}),
    };
    await write(ctx.stdout, `${JSON.stringify(out)}\n`);
    return 0;
  }
  const lines = [
    `dataset   ${ds.root} (${ds.layout}, ${items.length} images${o.balance ? ' after balancing' : ''}, ${classes.length} labels, ${ds.skipped.length} skipped)`,
    o.kfold !== undefined
      ? `split     stratified ${o.kfold}-fold cross-validation${groups ? ', group-aware' : ''}, seed ${o.seed}; the saved model is refitted on all images`
      : `split     stratified, ${Math.round(o.split * 100)}% held back${groups ? ', group-aware' : ''}, seed ${o.seed}: ${train.length} train / ${heldOut.items.length} held back`,
    `features  ${o.layer}, ${items.length} images (${feats.cached} from the cache) in ${formatSeconds(featMs)} on ${engine.backend}`,
    `svm       ${coding}, ${model.coding.learners} learner(s), ${model.decoding} decoding, lambda ${model.training.lambda.toPrecision(3)}${model.training.lambdaSelection ? ` (C ${model.training.lambdaSelection.C}, by ${model.training.lambdaSelection.folds}-fold${model.training.lambdaSelection.groupAware ? ' group-aware' : ''} CV)` : ''}, ${model.training.epochs} epochs (native SGD)`,
    '',
    o.kfold !== undefined
      ? formatCountsTable({ images: labelCounts(items, classes) })
      : formatCountsTable({ train: labelCounts(train, classes), 'held back': labelCounts(heldOut.items, classes) }),
    '',
    `Evaluation on the held-back ${o.kfold !== undefined ? 'folds (pooled)' : 'part'} (${m.total} images):`,
    formatMetrics(m),
    ...(folds.length ? ['', `per fold: ${folds.map((f, i) => `${i + 1}: ${(100 * f.accuracy).toFixed(1)}%`).join(', ')}`] : []),
    '',
    `model     ${resolve(o.out)} (${Math.round(written.bytes / 1024)} KiB)`,
    ...(reportHtml ? [`report    ${reportHtml}`] : []),
    `time      ${formatSeconds(performance.now() - t0)}`,
  ];
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
