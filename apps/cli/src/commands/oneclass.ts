// loupe train|evaluate for one-class (PatchCore) models, and evaluate for hybrid ones (the same protocol on
// their fused scores): core's trainOneClass / evaluateOneClass / writeOneClassReport do the work; this file
// checks the outputs, draws progress and formats the results.
// (predict is one command for every model kind: predict.ts.)
import * as path from 'node:path';

import {
  DECODABLE_IMAGE_EXTENSIONS,
  evaluateOneClass,
  formatSkipReport,
  GOOD_LABEL,
  Inspector,
  saveModel,
  trainOneClass,
  writeOneClassReport,
  type HybridModel,
  type OneClassModel,
  type SkippedFile,
} from '@loupe/core';

import { stageProgress } from '../classification.js';
import { openEngine, runOptions, write, type RunContext } from '../context.js';
import { formatSeconds, roundSignificant as round } from '../format.js';
import { checkOutputDir, checkWritableOutput, createOutputFolder, modelExtensionNote } from '../outputs.js';
import { ProgressBar } from '../progress.js';

export interface OneClassTrainOptions {
  /** The model file (its extension already settled). */
  out: string;
  defects?: string;
  coreset: number;
  projection?: number;
  storage: 'fp32' | 'fp16';
  maxBankMb?: number;
  tile?: boolean;
  seed: number;
  json: boolean;
}
export interface OneClassEvaluateOptions {
  json: boolean;
  report?: string;
}

function nullableRound(x: number | null): number | null {
  return x === null || !Number.isFinite(x) ? null : round(x);
}

function fixed(x: number | null, digits = 4): string {
  return x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
}

/** Files left out of a folder, as one note (files that are not images at all, beside an MVTec layout, are not news). */
function reportSkipped(ctx: RunContext, root: string | undefined, skipped: readonly SkippedFile[]): void {
  const real = skipped.filter((s) => s.reason !== 'outside-layout' || DECODABLE_IMAGE_EXTENSIONS.includes(path.extname(s.path).toLowerCase()));
  if (real.length > 0) ctx.stderr.write(`loupe: note: in ${root ?? 'the images'}: ${formatSkipReport(real, 10)}\n`);
}

// ------------------------------------------------------------------------------------------------
// train

export async function trainOneClassCommand(dir: string, o: OneClassTrainOptions, ctx: RunContext): Promise<number> {
  await checkWritableOutput(o.out); // before the minutes of feature extraction, not after
  const t0 = performance.now();
  const engine = await openEngine(ctx);
  const loadMs = performance.now() - t0;
  const progress = stageProgress(ctx);
  let t;
  try {
    t = await trainOneClass({
      engine,
      good: dir,
      ...(o.defects !== undefined ? { defects: o.defects } : {}),
      coresetRatio: o.coreset,
      storage: o.storage,
      seed: o.seed,
      tile: Boolean(o.tile),
      ...(o.projection !== undefined ? { projectionDim: o.projection } : {}),
      ...(o.maxBankMb !== undefined ? { maxBankMB: o.maxBankMb } : {}),
      ...runOptions(ctx),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.clear();
  }
  reportSkipped(ctx, t.root, t.skipped);
  await createOutputFolder(o.out);
  const saved = await saveModel(o.out, t.model);
  const pc = t.model.patchcore;
  const th = pc.thresholds;
  const category = t.model.category ?? path.basename(dir);
  const timings = {
    modelLoadS: round(loadMs / 1000, 4),
    scanS: t.timings.scanS,
    featuresS: t.timings.featuresS,
    coresetS: t.timings.coresetS,
    thresholdsS: t.timings.thresholdsS,
    totalS: t.timings.totalS,
  };
  if (o.json) {
    const summary = {
      model: path.resolve(o.out),
      mode: 'one-class',
      method: 'patchcore',
      category,
      layout: t.layout,
      trainImages: t.bankImages,
      validationImages: t.validationImages,
      defectImages: t.defectImages,
      bankEntries: pc.bank.n,
      bankDim: pc.bank.d,
      bankMB: round(pc.bankMB, 4),
      storage: pc.bank.storage,
      sourcePatches: pc.bank.sourcePatches,
      coreset: o.coreset,
      tile: Boolean(o.tile),
      thresholds: { image: round(th.image), pixel: round(th.pixel), method: th.method },
      bytes: saved.bytes,
      timings,
      backend: engine.backend,
    };
    await write(ctx.stdout, `${JSON.stringify(summary)}\n`);
  } else {
    const pct = (100 * pc.bank.n) / Math.max(1, pc.bank.sourcePatches);
    const how = th.method === 'quantile' ? `${th.quantile ?? 0.99} quantile of ${th.goodCount} held-out good image${th.goodCount === 1 ? '' : 's'}` : `F1-optimal over ${th.goodCount} good + ${th.defectCount} defective`;
    const lines = [
      `trained a one-class (PatchCore) model on ${category} (${t.layout === 'mvtec' ? 'MVTec train/good' : 'a folder of good images'}): ${t.bankImages} good images in the memory bank, ${t.validationImages} held out to set the thresholds${t.defectImages > 0 ? `, with ${t.defectImages} defective` : ''}`,
      `memory bank: ${pc.bank.n} x ${pc.bank.d} ${pc.bank.storage} = ${pc.bankMB.toFixed(1)} MB (${pct.toFixed(2)}% of ${pc.bank.sourcePatches} patches, coreset ratio ${o.coreset}${o.tile ? ', 224 tiles' : ''})`,
      `thresholds (raw distance): image ${th.image.toFixed(3)}, pixel ${th.pixel.toFixed(3)} (${how}); a normalised score of 0.5 is the image threshold`,
      `time: features ${formatSeconds(t.timings.featuresS * 1000)}, coreset ${formatSeconds(t.timings.coresetS * 1000)}, thresholds ${formatSeconds(t.timings.thresholdsS * 1000)} on ${engine.backend}, ${engine.device}; model load ${formatSeconds(loadMs)}`,
      `wrote ${o.out} (${(saved.bytes / 2 ** 20).toFixed(1)} MB)`,
    ];
    await write(ctx.stdout, `${lines.join('\n')}\n`);
  }
  for (const w of t.warnings) ctx.stderr.write(`loupe: warning: ${w}\n`);
  const note = modelExtensionNote(o.out);
  if (note) ctx.stderr.write(`loupe: note: ${note}\n`);
  return 0;
}

// ------------------------------------------------------------------------------------------------
// evaluate

export async function evaluateOneClassCommand(modelFile: string, model: OneClassModel | HybridModel, dir: string, o: OneClassEvaluateOptions, ctx: RunContext): Promise<number> {
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);
  const engine = await openEngine(ctx);
  const inspector = await Inspector.open(model, { engine, name: modelFile, backend: ctx.opts.backend, threads: ctx.budget.engineThreads });
  let bar: ProgressBar | undefined;
  let e;
  try {
    e = await evaluateOneClass(inspector, dir, {
      batchSize: ctx.opts.batchSize,
      signal: ctx.signal,
      onProgress: (done, total) => {
        bar ??= new ProgressBar('evaluate', total, ctx.stderr, ctx.opts.progress && Boolean(ctx.stderr.isTTY));
        bar.update(done);
      },
    });
  } finally {
    bar?.clear();
  }
  const root = path.resolve(dir);
  reportSkipped(ctx, root, e.skipped);
  // A test image the model was trained on scores like a memorised one: the figures would flatter it.
  if (e.seenInTraining > 0) ctx.stderr.write(`loupe: warning: ${e.seenInTraining} of the ${e.images} test images were used to train this model; its figures are not a held-out measure\n`);
  // Another category scores as "all anomalous" or worse; a renamed copy of the same one is fine, hence a note.
  if (model.category !== undefined && model.category !== e.category) ctx.stderr.write(`loupe: note: ${modelFile} was trained on '${model.category}' images; this is '${e.category}'\n`);
  if (e.missingMasks.length > 0) {
    const shown = e.missingMasks.slice(0, 3).join(', ');
    ctx.stderr.write(`loupe: warning: ${e.missingMasks.length} defect image(s) have no ground_truth mask (${shown}${e.missingMasks.length > 3 ? ', ...' : ''}): they count in the image AUROC but not in the pixel metrics\n`);
  }
  if (e.good === 0 || e.defective === 0) ctx.stderr.write(`loupe: note: ${root}/test has ${e.good} good and ${e.defective} defective images; image AUROC needs both\n`);

  let reportPath: string | undefined;
  if (o.report) reportPath = (await writeOneClassReport(o.report, e, inspector, { engine, modelFile })).html;

  const summary = {
    imageAuroc: nullableRound(e.imageAuroc),
    pixelAuroc: nullableRound(e.pixelAuroc),
    pro: nullableRound(e.pro),
    f1Max: nullableRound(e.f1Max),
    balancedAccuracy: nullableRound(e.balancedAccuracy),
    ...(e.defectTypeAccuracy ? { defectTypeAccuracy: nullableRound(e.defectTypeAccuracy.accuracy) } : {}),
    msPerImage: round(e.msPerImage, 4),
  };
  if (o.json) {
    // Details first; the summary is always the LAST line (scripts read it with `tail -1`).
    const perDefectType: Record<string, { images: number; imageAuroc: number | null; flagged: number }> = {};
    for (const p of e.perDefectType) perDefectType[p.type] = { images: p.images, imageAuroc: nullableRound(p.imageAuroc), flagged: p.flagged };
    const details = {
      model: modelFile,
      category: e.category,
      images: e.images,
      seenInTraining: e.seenInTraining,
      good: e.good,
      defective: e.defective,
      perDefectType,
      threshold: { image: round(e.threshold.image), pixel: round(e.threshold.pixel) },
      falseAlarms: e.falseAlarms,
      missed: e.missed,
      pixelImages: e.pixelImages,
      ...(reportPath ? { report: reportPath } : {}),
    };
    await write(ctx.stdout, `${JSON.stringify(details)}\n${JSON.stringify(summary)}\n`);
    return 0;
  }
  const w = Math.max(11, ...e.perDefectType.map((p) => p.type.length));
  const hasMasks = e.pixelAuroc !== null;
  const lines = [
    `${e.category}: ${e.images} test images (${e.good} good, ${e.defective} defective) in ${formatSeconds(e.msPerImage * e.images)} (${e.msPerImage.toFixed(1)} ms/image) on ${engine.backend}, ${engine.device}`,
    '',
    `  ${'defect type'.padEnd(w)}  images  image AUROC  flagged at threshold`,
    ...e.perDefectType.map((p) => `  ${p.type.padEnd(w)}  ${String(p.images).padStart(6)}  ${fixed(p.imageAuroc).padStart(11)}  ${p.flagged}/${p.images}`),
    `  ${GOOD_LABEL.padEnd(w)}  ${String(e.good).padStart(6)}  ${'-'.padStart(11)}  ${e.falseAlarms}/${e.good} (false alarms)`,
    `  ${'all'.padEnd(w)}  ${String(e.images).padStart(6)}  ${fixed(e.imageAuroc).padStart(11)}`,
    '',
    `image AUROC ${fixed(e.imageAuroc)}   pixel AUROC ${fixed(e.pixelAuroc)}   PRO ${fixed(e.pro)}   image F1-max ${fixed(e.f1Max)}${hasMasks ? '' : '   (no masks in ground_truth/: no pixel metrics)'}`,
    `at the model's threshold (score 0.5 = raw ${e.threshold.image.toFixed(3)}): ${e.defective - e.missed}/${e.defective} defective flagged, ${e.falseAlarms}/${e.good} good flagged (balanced accuracy ${fixed(e.balancedAccuracy)})`,
    ...(e.defectTypeAccuracy ? [`defect type: right for ${(100 * e.defectTypeAccuracy.accuracy).toFixed(1)}% of ${e.defectTypeAccuracy.images} defective images of the types the model knows`] : []),
  ];
  if (e.emptyMasks > 0) lines.push(`note: ${e.emptyMasks} defective image(s) with an empty mask are left out of the pixel metrics`);
  if (reportPath) lines.push(`report: ${reportPath}`);
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
