// loupe evaluate MODEL DIR: a trained classifier on a labelled dataset (same layouts as train):
// confusion matrix, per-class P/R/F1, accuracy, balanced accuracy, macro-F1, and the HTML report.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { readModelHeader, type DatasetItem } from '@loupe/core';

import {
  checkWeights,
  countsTable,
  evaluateSvm,
  featureCacheSetting,
  featuresOf,
  formatMetrics,
  loadClassifier,
  metricsJson,
  samplesByLabel,
  scanWithProgress,
  writeReport,
} from '../classification.js';
import { openEngine, write, type RunContext } from '../context.js';
import { formatSeconds } from '../format.js';
import { evaluateOneClassCommand } from './oneclass.js';
import { checkOutputDir } from '../outputs.js';

export interface EvaluateCommandOptions {
  json?: boolean;
  report?: string;
  cache: boolean;
}

/** The training montage: the model's recorded training images when they still exist, else DIR's. */
function montageSamples(extra: Record<string, unknown>, items: readonly DatasetItem[], classes: readonly string[]): { label: string; images: string[] }[] {
  const recorded = extra['trainSamples'];
  if (Array.isArray(recorded)) {
    const groups = recorded
      .filter((g): g is { label: string; images: string[] } => typeof g === 'object' && g !== null && typeof g.label === 'string' && Array.isArray(g.images))
      .map((g) => ({ label: g.label, images: g.images.filter((p) => typeof p === 'string' && existsSync(p)) }));
    if (groups.some((g) => g.images.length > 0)) return groups;
  }
  return samplesByLabel(items, classes);
}

export async function evaluateCommand(modelFile: string, dir: string, o: EvaluateCommandOptions, ctx: RunContext): Promise<number> {
  const header = await readModelHeader(modelFile);
  if (header.kind === 'one-class') return evaluateOneClassCommand(modelFile, dir, { json: Boolean(o.json), ...(o.report !== undefined ? { report: o.report } : {}) }, ctx);
  const c = await loadClassifier(modelFile);
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);
  const t0 = performance.now();
  const ds = await scanWithProgress(dir, ctx);
  const unknown = ds.labels.filter((l) => !c.model.classes.includes(l));
  if (unknown.length > 0) ctx.stderr.write(`loupe: warning: ${ds.root} has label(s) the model does not know: ${unknown.join(', ')} (their images count as errors)\n`);

  const engine = await openEngine(ctx);
  checkWeights(c, engine);
  const items = [...ds.items];
  const feats = await featuresOf(items.map((i) => i.path), engine, c.layer, c.fit, ctx, { label: 'evaluate', cacheDir: featureCacheSetting(!o.cache) });
  const e = evaluateSvm(c.model, feats.features, items.map((i) => i.label));
  const m = e.metrics;

  // Evaluating on training images flatters the model: say so, by content hash.
  const trainHashes = new Set(Array.isArray(c.extra['trainHashes']) ? (c.extra['trainHashes'] as unknown[]).filter((h) => typeof h === 'string') : []);
  const seenInTraining = items.filter((i) => i.sha256 !== undefined && trainHashes.has(i.sha256)).length;
  if (seenInTraining > 0) {
    ctx.stderr.write(`loupe: warning: ${seenInTraining} of the ${items.length} images were used to train this model; their accuracy is not a held-out measure\n`);
  }

  let reportHtml: string | undefined;
  if (o.report) {
    const r = await writeReport(o.report, {
      title: `Loupe evaluation: ${ds.root}`,
      subtitle: `model ${resolve(modelFile)} (${c.layer}, ${c.model.coding.name})`,
      evaluation: e,
      items,
      samples: montageSamples(c.extra, items, c.model.classes),
      engine,
      tables: [countsTable('Images per label', { images: items }, m.confusion.classes)],
      notes: [
        `Dataset layout: ${ds.layout}; ${ds.skipped.length} file(s) skipped.`,
        ...(seenInTraining > 0 ? [`${seenInTraining} of these images were used to train the model.`] : []),
      ],
    });
    reportHtml = r.html;
  }

  if (o.json) {
    await write(ctx.stdout, `${JSON.stringify({ ...metricsJson(m), model: resolve(modelFile), dataset: ds.root, seenInTraining, ...(reportHtml ? { report: reportHtml } : {}) })}\n`);
    return 0;
  }
  const lines = [
    `model     ${resolve(modelFile)} (${c.model.classes.length} classes, ${c.layer}, ${c.model.coding.name})`,
    `dataset   ${ds.root} (${ds.layout}, ${items.length} images, ${ds.skipped.length} skipped)`,
    `features  ${items.length} images (${feats.cached} from the cache) on ${engine.backend}`,
    '',
    formatMetrics(m, 'evaluated'),
    ...(reportHtml ? ['', `report    ${reportHtml}`] : []),
    `time      ${formatSeconds(performance.now() - t0)}`,
  ];
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
