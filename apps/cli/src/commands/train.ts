// loupe train DIR --out MODEL: the paper's classifier through core's trainClassifier (scan, optional
// balancing, stratified split or k-fold, cached CNN features, ECOC linear SVM, held-back figures), then
// saveModel. This file only checks the outputs, reports progress and formats what core returns.
import { resolve } from 'node:path';

import {
  countsTable,
  formatCountsTable,
  labelCounts,
  samplesByLabel,
  saveModel,
  trainClassifier,
  writeClassifierReport,
  type DecodingName,
  type Flip,
} from '@loupe/core';

import { cacheOption, cacheWriteWarning, formatMetrics, scanWithProgress, stageProgress } from '../classification.js';
import { openEngine, runOptions, write, type RunContext } from '../context.js';
import { formatSeconds } from '../format.js';
import { checkOutputDir, checkWritableOutput, createOutputFolder, modelExtensionNote, modelOutputPath } from '../outputs.js';
import { trainHybridCommand } from './hybrid.js';
import { trainOneClassCommand } from './oneclass.js';

export interface TrainCommandOptions {
  out: string;
  mode: 'svm' | 'one-class' | 'hybrid';
  layer: 'fc1000' | 'avg_pool';
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
  defects?: string;
  coreset: number;
  projection?: number;
  storage: 'fp32' | 'fp16';
  maxBankMb?: number;
  tile?: boolean;
  // --mode hybrid
  shots?: number;
  flips?: Flip[];
  /** Whether --split was given (hybrid holds nothing out without it). */
  splitGiven?: boolean;
}

/** The held-back figures core keeps in the model file (metrics.heldOut, metrics.folds). */
interface HeldOutRecord {
  heldOut: Record<string, unknown>;
  folds?: { accuracy: number; balancedAccuracy: number; total: number }[];
}

export async function trainCommand(dir: string, o: TrainCommandOptions, ctx: RunContext): Promise<number> {
  const out = modelOutputPath(o.out);
  if (o.mode === 'hybrid') {
    return trainHybridCommand(
      dir,
      {
        out,
        seed: o.seed,
        coreset: o.coreset,
        storage: o.storage,
        json: Boolean(o.json),
        ...(o.splitGiven ? { split: o.split } : {}),
        ...(o.shots !== undefined ? { shots: o.shots } : {}),
        ...(o.flips !== undefined ? { flips: o.flips } : {}),
        ...(o.groups !== undefined ? { groups: o.groups } : {}),
        ...(o.projection !== undefined ? { projection: o.projection } : {}),
        ...(o.maxBankMb !== undefined ? { maxBankMb: o.maxBankMb } : {}),
        ...(o.report !== undefined ? { report: o.report } : {}),
      },
      ctx,
    );
  }
  if (o.mode === 'one-class') {
    return trainOneClassCommand(
      dir,
      {
        out,
        coreset: o.coreset,
        storage: o.storage,
        seed: o.seed,
        json: Boolean(o.json),
        ...(o.defects !== undefined ? { defects: o.defects } : {}),
        ...(o.projection !== undefined ? { projection: o.projection } : {}),
        ...(o.maxBankMb !== undefined ? { maxBankMb: o.maxBankMb } : {}),
        ...(o.tile ? { tile: true } : {}),
      },
      ctx,
    );
  }
  await checkWritableOutput(out);
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);

  const t0 = performance.now();
  const ds = await scanWithProgress(dir, ctx);
  if (!o.json && ds.skipped.length > 0) ctx.stderr.write(`loupe: ${ds.skipped.length} file(s) skipped (see \`loupe dataset stats ${dir}\`)\n`);
  const engine = await openEngine(ctx);
  const coding = o.coding === 'ova' ? 'onevsall' : 'onevsone';
  const kfold = o.kfold !== undefined;
  const progress = stageProgress(ctx, { features: o.layer });
  let t;
  try {
    t = await trainClassifier({
      engine,
      data: ds,
      layer: o.layer,
      fit: o.crop ? 'crop' : 'squash',
      coding,
      decoding: o.decoding,
      epochs: o.epochs,
      seed: o.seed,
      ...(o.lambda !== undefined ? { lambda: o.lambda } : {}),
      ...(o.groups !== undefined ? { groups: o.groups } : {}),
      balance: Boolean(o.balance),
      holdOut: kfold ? { kfold: o.kfold! } : { split: o.split },
      ...cacheOption(o.cache),
      ...runOptions(ctx),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.clear();
  }
  cacheWriteWarning(ctx, t.features.writeFailures);
  const h = t.heldOut!;
  const c = t.model.classifier;
  const classes = t.classes;
  const figures = t.model.metrics as HeldOutRecord;

  await createOutputFolder(out);
  const written = await saveModel(out, t.model);
  const note = modelExtensionNote(out);
  if (note) ctx.stderr.write(`loupe: note: ${note}\n`);

  let reportHtml: string | undefined;
  if (o.report) {
    const r = await writeClassifierReport(o.report, {
      title: `Loupe classifier: ${ds.root}`,
      subtitle: `${o.layer} features, ${coding} linear SVM, ${kfold ? `${o.kfold}-fold cross-validation` : `${Math.round(o.split * 100)}% held back`} (seed ${o.seed})`,
      metrics: h.metrics,
      items: h.items,
      predicted: h.predicted,
      samples: samplesByLabel(t.train, classes),
      engine,
      tables: [countsTable('Images per label', kfold ? { images: t.items } : { train: t.train, 'held back': h.items }, classes)],
      notes: [`Model: ${resolve(out)}. Dataset layout: ${ds.layout}; ${ds.skipped.length} file(s) skipped.`],
    });
    reportHtml = r.html;
  }

  const m = h.metrics;
  const sel = c.training.lambdaSelection;
  if (o.json) {
    const record = {
      ...figures.heldOut,
      ...(figures.folds ? { folds: figures.folds } : {}),
      model: resolve(out),
      layer: o.layer,
      coding,
      decoding: c.decoding,
      lambda: c.training.lambda,
      C: sel?.C ?? null,
      epochs: c.training.epochs,
      train: t.train.length,
      test: h.items.length,
      skipped: t.skipped.length,
      ...(reportHtml ? { report: reportHtml } : {}),
    };
    await write(ctx.stdout, `${JSON.stringify(record)}\n`);
    return 0;
  }
  const lines = [
    `dataset   ${ds.root} (${ds.layout}, ${t.items.length} images${o.balance ? ' after balancing' : ''}, ${classes.length} labels, ${ds.skipped.length} skipped)`,
    kfold
      ? `split     stratified ${o.kfold}-fold cross-validation${h.groupAware ? ', group-aware' : ''}, seed ${o.seed}; the saved model is refitted on all images`
      : `split     stratified, ${Math.round(o.split * 100)}% held back${h.groupAware ? ', group-aware' : ''}, seed ${o.seed}: ${t.train.length} train / ${h.items.length} held back`,
    `features  ${o.layer}, ${t.items.length} images (${t.features.cached} from the cache) in ${formatSeconds(t.features.seconds * 1000)} on ${engine.backend}`,
    `svm       ${coding}, ${c.coding.learners} learner(s), ${c.decoding} decoding, lambda ${c.training.lambda.toPrecision(3)}${sel ? ` (C ${sel.C}, by ${sel.folds}-fold${sel.groupAware ? ' group-aware' : ''} CV)` : ''}, ${c.training.epochs} epochs (native SGD)`,
    '',
    kfold ? formatCountsTable({ images: labelCounts(t.items, classes) }) : formatCountsTable({ train: labelCounts(t.train, classes), 'held back': labelCounts(h.items, classes) }),
    '',
    `Evaluation on the held-back ${kfold ? 'folds (pooled)' : 'part'} (${m.total} images):`,
    formatMetrics(m, 'held-back', t.model.goodClass),
    ...(h.folds.length ? ['', `per fold: ${h.folds.map((f, i) => `${i + 1}: ${(100 * f.accuracy).toFixed(1)}%`).join(', ')}`] : []),
    '',
    `model     ${resolve(out)} (${Math.round(written.bytes / 1024)} KiB)`,
    ...(reportHtml ? [`report    ${reportHtml}`] : []),
    `time      ${formatSeconds(performance.now() - t0)}`,
  ];
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
