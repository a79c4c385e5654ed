// loupe evaluate MODEL DIR: a trained model on a labelled dataset. SVM models: core's evaluateClassifier
// (confusion matrix, per-class P/R/F1, accuracies, seenInTraining) and writeClassifierReport; one-class
// and hybrid models: oneclass.ts. This file formats.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import {
  classificationFigures,
  countsTable,
  evaluateClassifier,
  loadModel,
  samplesByLabel,
  writeClassifierReport,
  type LabelledImage,
  type SvmModel,
} from '@loupe/core';

import { cacheOption, cacheWriteWarning, formatMetrics, progressEnabled, scanWithProgress } from '../classification.js';
import { openEngine, write, type RunContext } from '../context.js';
import { formatSeconds } from '../format.js';
import { checkOutputDir } from '../outputs.js';
import { ProgressBar } from '../progress.js';
import { evaluateOneClassCommand } from './oneclass.js';

export interface EvaluateCommandOptions {
  json?: boolean;
  report?: string;
  cache: boolean;
}

/** The training montage: the model's recorded training images when they still exist, else DIR's. */
function montageSamples(model: SvmModel, items: readonly LabelledImage[]): { label: string; images: string[] }[] {
  const recorded = model.extra?.['trainSamples'];
  if (Array.isArray(recorded)) {
    const groups = recorded
      .filter((g): g is { label: string; images: string[] } => typeof g === 'object' && g !== null && typeof g.label === 'string' && Array.isArray(g.images))
      .map((g) => ({ label: g.label, images: g.images.filter((p) => typeof p === 'string' && existsSync(p)) }));
    if (groups.some((g) => g.images.length > 0)) return groups;
  }
  return samplesByLabel(items, model.classifier.classes);
}

export async function evaluateCommand(modelFile: string, dir: string, o: EvaluateCommandOptions, ctx: RunContext): Promise<number> {
  const model = await loadModel(modelFile);
  if (model.kind === 'one-class' || model.kind === 'hybrid') return evaluateOneClassCommand(modelFile, model, dir, { json: Boolean(o.json), ...(o.report !== undefined ? { report: o.report } : {}) }, ctx);
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);
  const t0 = performance.now();
  const ds = await scanWithProgress(dir, ctx);
  const classes = model.classifier.classes;
  const unknown = ds.labels.filter((l) => !classes.includes(l));
  if (unknown.length > 0) ctx.stderr.write(`loupe: warning: ${ds.root} has label(s) the model does not know: ${unknown.join(', ')} (their images count as errors)\n`);

  const engine = await openEngine(ctx);
  const bar = new ProgressBar('evaluate', ds.items.length, ctx.stderr, progressEnabled(ctx, ds.items.length));
  let e;
  try {
    e = await evaluateClassifier(model, ds, { engine, source: modelFile, ...cacheOption(o.cache), batchSize: ctx.opts.batchSize, signal: ctx.signal, onProgress: (done) => bar.update(done) });
  } finally {
    bar.clear();
  }
  cacheWriteWarning(ctx, e.features.writeFailures);
  const m = e.metrics;
  // Evaluating on training images flatters the model: say so, by content hash.
  if (e.seenInTraining > 0) ctx.stderr.write(`loupe: warning: ${e.seenInTraining} of the ${e.items.length} images were used to train this model; their accuracy is not a held-out measure\n`);

  let reportHtml: string | undefined;
  if (o.report) {
    const r = await writeClassifierReport(o.report, {
      title: `Loupe evaluation: ${ds.root}`,
      subtitle: `model ${resolve(modelFile)} (${model.layer}, ${model.classifier.coding.name})`,
      metrics: m,
      items: e.items,
      predicted: e.predicted,
      samples: montageSamples(model, e.items),
      engine,
      tables: [countsTable('Images per label', { images: e.items }, m.confusion.classes)],
      notes: [`Dataset layout: ${ds.layout}; ${ds.skipped.length} file(s) skipped.`, ...(e.seenInTraining > 0 ? [`${e.seenInTraining} of these images were used to train the model.`] : [])],
    });
    reportHtml = r.html;
  }

  if (o.json) {
    await write(ctx.stdout, `${JSON.stringify({ ...classificationFigures(m), model: resolve(modelFile), dataset: ds.root, seenInTraining: e.seenInTraining, ...(reportHtml ? { report: reportHtml } : {}) })}\n`);
    return 0;
  }
  const lines = [
    `model     ${resolve(modelFile)} (${classes.length} classes, ${model.layer}, ${model.classifier.coding.name})`,
    `dataset   ${ds.root} (${ds.layout}, ${e.items.length} images, ${ds.skipped.length} skipped)`,
    `features  ${e.items.length} images (${e.features.cached} from the cache) on ${engine.backend}`,
    '',
    formatMetrics(m, 'evaluated', model.goodClass),
    ...(reportHtml ? ['', `report    ${reportHtml}`] : []),
    `time      ${formatSeconds(performance.now() - t0)}`,
  ];
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
