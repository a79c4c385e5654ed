// loupe train|evaluate|predict --mode one-class: PatchCore anomaly detection learnt from good parts only,
// with defect heatmaps. main.ts parses the options and dispatches here; everything numeric is @loupe/core.
//
// Scores: `rawScore` is the PatchCore distance, `score` its normalised value with the model's calibrated
// threshold at exactly 0.5 (core's normalizeScore), so "anomalous" is simply score >= 0.5.
import { mkdir, stat } from 'node:fs/promises';
import * as path from 'node:path';

import {
  auroc,
  captionedGridPng,
  DatasetError,
  escapeXml,
  extractFeatures,
  DECODABLE_IMAGE_EXTENSIONS,
  f1Max,
  fileContentHashes,
  findImageFiles,
  formatFromExtension,
  formatSkipReport,
  heatmapOverlayPng,
  loadAddon,
  loadPatchCore,
  LoupeError,
  ModelFileError,
  PixelMetricsAccumulator,
  predictSvm,
  resizeBilinear,
  rocCurve,
  rocCurvePng,
  savePatchCore,
  scanMvtecOneClass,
  scoreHistogramPng,
  thinCurve,
  writeFileAtomic,
  writeHeatmapOverlay,
  writeHtmlReport,
  writeMask,
  loadMask,
  PatchCoreModel,
  type AnomalyResult,
  type DatasetItem,
  type LoadedPatchCore,
  type Engine,
  type OneClassDataset,
  type PatchCoreConfig,
  type ReportFigure,
  type ReportTable,
} from '@loupe/core';

import { checkWeights as checkClassifierWeights, loadClassifier, type LoadedClassifier } from '../classification.js';
import { checkOutputDir, checkWritableOutput } from '../outputs.js';
import { checkReadable, openEngine, write, type RunContext } from '../context.js';
import { formatSeconds, printable } from '../format.js';
import { EXIT_OK, EXIT_SOME_FAILED } from '../errors.js';
import { ProgressBar } from '../progress.js';

export interface OneClassTrainOptions {
  out: string;
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
export interface OneClassPredictOptions {
  json: boolean;
  heatmaps?: string;
  classifier?: string;
}

/** Tile mode geometry (core only supports 224 tiles); 25% overlap as in the core README. */
const TILE = { size: 224, overlap: 0.25 } as const;
/** Pixel metrics are computed on maps and masks at most this many pixels per side (MVTec protocol: 256). */
const PIXEL_METRIC_SIDE = 256;
/** The label of defect-free images (MVTec) and of a classifier's defect-free class. */
const GOOD = 'good';

// ------------------------------------------------------------------------------------------------
// Shared helpers

function round(x: number, digits = 6): number {
  return Number.isFinite(x) ? Number(x.toPrecision(digits)) : x;
}

function fixed(x: number | null, digits = 4): string {
  return x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
}

/** Progress bars per training/scoring stage (a new bar when the stage changes). */
function stageProgress(ctx: RunContext, labels: Record<string, string>): { onProgress: (stage: string, done: number, total: number) => void; clear: () => void; marks: Map<string, number> } {
  let bar: ProgressBar | null = null;
  let current = '';
  const marks = new Map<string, number>();
  const enabled = ctx.opts.progress && Boolean(ctx.stderr.isTTY);
  return {
    marks,
    onProgress: (stage, done, total) => {
      marks.set(stage, performance.now()); // time of the stage's latest event (its end, once it moves on)
      if (stage !== current) {
        bar?.clear();
        current = stage;
        bar = new ProgressBar(labels[stage] ?? stage, total, ctx.stderr, enabled, stage === 'coreset' ? 'rows' : 'img');
      }
      bar?.update(done, done === total);
    },
    clear: () => bar?.clear(),
  };
}

async function scanCategory(dir: string): Promise<OneClassDataset> {
  // A full decode leaves undecodable files out (reported, as `dataset stats` does) instead of failing
  // mid-run; no dedupe, so the test set is exactly what is on disk.
  return scanMvtecOneClass(dir, { verify: 'decode', dedupe: false });
}

function reportSkipped(ctx: RunContext, ds: OneClassDataset): void {
  const real = ds.skipped.filter((s) => s.reason !== 'outside-layout' || formatFromExtension(s.path) !== undefined);
  if (real.length > 0) ctx.stderr.write(`loupe: note: in ${ds.root}: ${formatSkipReport(real, 10)}\n`);
}

/** Loads a one-class model file (before the engine opens, so a bad file costs no engine load). */
async function loadModel(file: string): Promise<LoadedPatchCore> {
  try {
    return await loadPatchCore(file);
  } catch (err) {
    if (err instanceof ModelFileError && err.field === 'kind') {
      throw new ModelFileError(err.code, file, `${err.message.replace(`${file}: kind: `, '')} (train one with \`loupe train CATEGORY_DIR --mode one-class\`)`, { field: 'kind', cause: err });
    }
    throw err;
  }
}

/** Features from other CNN weights would make the distances meaningless: refuse them. */
function checkWeights(file: string, modelHash: string | null, engine: Engine): void {
  if (modelHash && modelHash !== engine.weightsHash) {
    throw new ModelFileError(
      'MODEL_INCOMPATIBLE',
      file,
      `trained on CNN weights ${modelHash.slice(0, 12)}..., but the loaded weights are ${engine.weightsHash.slice(0, 12)}... (use the weights it was trained with, or retrain)`,
      { field: 'patchcore.weightsHash' },
    );
  }
}

function scoreOptions(ctx: RunContext): { batchSize: number; threads: number; backend: 'auto' | 'cpu' | 'cuda'; signal: AbortSignal } {
  return { batchSize: ctx.opts.batchSize, threads: ctx.budget.engineThreads, backend: ctx.opts.backend, signal: ctx.signal };
}

// ------------------------------------------------------------------------------------------------
// train

/** Fewer held-out good images than this make the threshold quantile little more than their maximum. */
const MIN_CALIBRATION_IMAGES = 10;

export async function trainOneClassCommand(dir: string, o: OneClassTrainOptions, ctx: RunContext): Promise<number> {
  if (!(o.coreset > 0 && o.coreset <= 1)) throw new LoupeError('INVALID_ARGUMENT', `--coreset must be a ratio in (0, 1], got ${o.coreset}`);
  if (o.projection !== undefined && !(Number.isInteger(o.projection) && o.projection >= 0 && o.projection <= 1536)) {
    throw new LoupeError('INVALID_ARGUMENT', `--projection must be an integer in [0, 1536] (0 = keep all 1536 dims), got ${o.projection}`);
  }
  if (o.maxBankMb !== undefined && !(o.maxBankMb > 0)) throw new LoupeError('INVALID_ARGUMENT', `--max-bank-mb must be > 0, got ${o.maxBankMb}`);
  await checkWritableOutput(o.out); // before the minutes of feature extraction, not after
  const ds = await scanCategory(dir);
  reportSkipped(ctx, ds);

  const t0 = performance.now();
  const engine = await openEngine(ctx);
  const loadMs = performance.now() - t0;
  const config: Partial<PatchCoreConfig> = { coresetRatio: o.coreset, storage: o.storage, seed: o.seed, tile: o.tile ? { ...TILE } : null };
  if (o.projection !== undefined) config.projectionDim = o.projection;
  if (o.maxBankMb !== undefined) config.maxBankMB = o.maxBankMb;

  const progress = stageProgress(ctx, { 'embed-train': 'features', coreset: 'coreset', embed: 'thresholds' });
  const t1 = performance.now();
  let model: PatchCoreModel;
  try {
    model = await PatchCoreModel.train(
      engine,
      ds.train.map((i) => i.path),
      { config, ...scoreOptions(ctx), onProgress: progress.onProgress },
    );
  } finally {
    progress.clear();
  }
  const t2 = performance.now();
  const featuresEnd = progress.marks.get('embed-train') ?? t1;
  const coresetEnd = progress.marks.get('coreset') ?? featuresEnd;
  // The training images by content, so `evaluate` can tell when a test set holds some of them.
  const saved = await savePatchCore(o.out, model, { trainHashes: await fileContentHashes(ds.train.map((i) => i.path)), category: ds.category });

  const th = model.thresholds;
  const timings = {
    modelLoadS: round(loadMs / 1000, 4),
    featuresS: round((featuresEnd - t1) / 1000, 4),
    coresetS: round((coresetEnd - featuresEnd) / 1000, 4),
    thresholdsS: round((t2 - coresetEnd) / 1000, 4),
    totalS: round((t2 - t1) / 1000, 4),
  };
  if (o.json) {
    const summary = {
      model: path.resolve(o.out),
      mode: 'one-class',
      method: 'patchcore',
      category: ds.category,
      trainImages: model.training.images,
      validationImages: model.training.validationImages,
      bankEntries: model.bank.n,
      bankDim: model.bank.d,
      bankMB: round(model.bankMB, 4),
      storage: model.bank.storage,
      sourcePatches: model.bank.sourcePatches,
      coreset: o.coreset,
      tile: Boolean(o.tile),
      thresholds: { image: round(th.image), pixel: round(th.pixel), method: th.method },
      bytes: saved.bytes,
      timings,
      backend: engine.backend,
    };
    await write(ctx.stdout, `${JSON.stringify(summary)}\n`);
  } else {
    const pct = (100 * model.bank.n) / Math.max(1, model.bank.sourcePatches);
    const how = th.method === 'quantile' ? `${th.quantile ?? 0.99} quantile of ${th.goodCount} held-out good image${th.goodCount === 1 ? '' : 's'}` : `F1-optimal over ${th.goodCount} good + ${th.defectCount} defective`;
    const lines = [
      `trained a one-class (PatchCore) model on ${ds.category}: ${model.training.images} good images in the memory bank, ${model.training.validationImages} held out to set the thresholds`,
      `memory bank: ${model.bank.n} x ${model.bank.d} ${model.bank.storage} = ${model.bankMB.toFixed(1)} MB (${pct.toFixed(2)}% of ${model.bank.sourcePatches} patches, coreset ratio ${o.coreset}${o.tile ? ', 224 tiles' : ''})`,
      `thresholds (raw distance): image ${th.image.toFixed(3)}, pixel ${th.pixel.toFixed(3)} (${how}); a normalised score of 0.5 is the image threshold`,
      `time: features ${formatSeconds(timings.featuresS * 1000)}, coreset ${formatSeconds(timings.coresetS * 1000)}, thresholds ${formatSeconds(timings.thresholdsS * 1000)} on ${engine.backend}, ${engine.device}; model load ${formatSeconds(loadMs)}`,
      `wrote ${o.out} (${(saved.bytes / 2 ** 20).toFixed(1)} MB)`,
    ];
    if (model.training.validationImages === 0) lines.push('note: only one training image, so the thresholds were set on the bank image itself (optimistic)');
    await write(ctx.stdout, `${lines.join('\n')}\n`);
  }
  // A 0.99 quantile of a handful of scores is their maximum, and the next good part often scores higher.
  if (model.training.validationImages < MIN_CALIBRATION_IMAGES) {
    ctx.stderr.write(
      `loupe: warning: the thresholds rest on ${model.training.validationImages} held-out good image${model.training.validationImages === 1 ? '' : 's'}; ` +
        `with fewer than ${MIN_CALIBRATION_IMAGES} expect good parts to be flagged (train on more good images: 10% are held out)\n`,
    );
  }
  return 0;
}

// ------------------------------------------------------------------------------------------------
// evaluate

interface EvalRecord {
  item: DatasetItem;
  defect: boolean;
  raw: number;
  score: number;
  flagged: boolean;
}

function downsizeFor(width: number, height: number): { w: number; h: number } {
  const s = Math.min(1, PIXEL_METRIC_SIDE / Math.max(width, height));
  return { w: Math.max(1, Math.round(width * s)), h: Math.max(1, Math.round(height * s)) };
}

export async function evaluateOneClassCommand(modelFile: string, dir: string, o: OneClassEvaluateOptions, ctx: RunContext): Promise<number> {
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);
  const loaded = await loadModel(modelFile);
  const model = loaded.model;
  const ds = await scanCategory(dir);
  reportSkipped(ctx, ds);
  if (ds.test.length === 0) throw new DatasetError('DATASET_EMPTY', `no usable test images under ${path.join(ds.root, 'test')}`, { input: ds.root });
  // A test image the model was trained on scores like a memorised one: the figures would flatter it.
  const trained = new Set(loaded.trainHashes);
  const seenInTraining = trained.size === 0 ? 0 : (await fileContentHashes(ds.test.map((i) => i.path))).filter((h) => trained.has(h)).length;
  if (seenInTraining > 0) {
    ctx.stderr.write(`loupe: warning: ${seenInTraining} of the ${ds.test.length} test images were used to train this model; its figures are not a held-out measure\n`);
  }
  // Another category scores as "all anomalous" or worse; a renamed copy of the same one is fine, hence a note.
  if (loaded.category !== undefined && loaded.category !== ds.category) {
    ctx.stderr.write(`loupe: note: ${modelFile} was trained on '${loaded.category}' images; this is '${ds.category}'\n`);
  }
  const engine = await openEngine(ctx);
  checkWeights(modelFile, model.weightsHash, engine);

  const hasMasks = ds.test.some((i) => i.maskPath !== undefined);
  if (hasMasks && ds.missingMasks.length > 0) {
    const shown = ds.missingMasks.slice(0, 3).join(', ');
    ctx.stderr.write(`loupe: warning: ${ds.missingMasks.length} defect image(s) have no ground_truth mask (${shown}${ds.missingMasks.length > 3 ? ', ...' : ''}): they count in the image AUROC but not in the pixel metrics\n`);
  }
  const records: EvalRecord[] = [];
  // Pixel samples at <= 256 px per side: memory stays ~256 KB per image whatever the image size.
  const pixel: { scores: Float32Array; mask: Uint8Array | null; width: number; height: number }[] = [];
  let emptyMasks = 0;
  // The kNN index is built once per model (part of loading it), not per image: outside the timing.
  await model.knnIndex(await loadAddon(), scoreOptions(ctx));
  const bar = new ProgressBar('evaluate', ds.test.length, ctx.stderr, ctx.opts.progress && Boolean(ctx.stderr.isTTY));
  const t0 = performance.now();
  let k = 0;
  try {
    for await (const r of model.scoreIter(engine, ds.test.map((i) => i.path), scoreOptions(ctx))) {
      const item = ds.test[k++]!;
      const defect = item.label !== GOOD;
      records.push({ item, defect, raw: r.rawScore, score: r.score, flagged: r.isAnomalous });
      if (hasMasks && (!defect || item.maskPath)) {
        const { w, h } = downsizeFor(r.width, r.height);
        const scores = w === r.width && h === r.height ? r.map : resizeBilinear(r.map, r.height, r.width, h, w);
        const mask = defect ? await loadMask(item.maskPath, w, h) : null;
        if (mask && !mask.some((v) => v !== 0)) emptyMasks++; // an empty mask has no region to find
        else pixel.push({ scores, mask, width: w, height: h });
      }
      bar.update(k);
    }
  } finally {
    bar.clear();
  }
  const msPerImage = (performance.now() - t0) / Math.max(1, records.length);

  const labels = records.map((r) => (r.defect ? 1 : 0));
  const raw = records.map((r) => r.raw);
  const nDefect = labels.reduce<number>((a, b) => a + b, 0);
  const nGood = records.length - nDefect;
  const bothClasses = nDefect > 0 && nGood > 0;
  if (!bothClasses) ctx.stderr.write(`loupe: note: ${ds.root}/test has ${nGood} good and ${nDefect} defective images; image AUROC needs both\n`);
  const imageAuroc = bothClasses ? auroc(raw, labels) : null;
  // Without good images, flagging everything scores F1 = 1: nothing is measured.
  const f1 = bothClasses ? f1Max(raw, labels).f1 : null;

  let pixelAuroc: number | null = null;
  let pro: number | null = null;
  if (hasMasks && pixel.some((p) => p.mask)) {
    let min = Infinity;
    let max = -Infinity;
    for (const p of pixel) for (const v of p.scores) (v < min && (min = v), v > max && (max = v));
    const acc = new PixelMetricsAccumulator({ min, max }, { bins: 16384, maxFpr: 0.3 });
    for (const p of pixel) acc.add(p);
    const pm = acc.result();
    pixelAuroc = pm.pixelAuroc;
    pro = pm.aupro;
  }
  pixel.length = 0;

  const goods = records.filter((r) => !r.defect);
  const perType = ds.defectTypes.map((t) => {
    const rs = records.filter((r) => r.item.label === t);
    const sub = [...goods, ...rs];
    return {
      type: t,
      images: rs.length,
      auroc: rs.length > 0 && goods.length > 0 ? auroc(sub.map((r) => r.raw), sub.map((r) => (r.defect ? 1 : 0))) : null,
      flagged: rs.filter((r) => r.flagged).length,
    };
  });
  const falseAlarms = goods.filter((r) => r.flagged).length;
  const missed = records.filter((r) => r.defect && !r.flagged).length;

  let reportPath: string | undefined;
  if (o.report) {
    reportPath = await writeEvaluationReport(o.report, {
      modelFile,
      model,
      engine,
      ds,
      records,
      perType,
      metrics: { imageAuroc, pixelAuroc, pro, f1Max: f1, msPerImage },
      emptyMasks,
      ctx,
    });
  }

  const summary = { imageAuroc: nullableRound(imageAuroc), pixelAuroc: nullableRound(pixelAuroc), pro: nullableRound(pro), f1Max: nullableRound(f1), msPerImage: round(msPerImage, 4) };
  if (o.json) {
    // Details first; the summary is always the LAST line (scripts read it with `tail -1`).
    const perDefectType: Record<string, { images: number; imageAuroc: number | null; flagged: number }> = {};
    for (const p of perType) perDefectType[p.type] = { images: p.images, imageAuroc: nullableRound(p.auroc), flagged: p.flagged };
    const details = {
      model: modelFile,
      category: ds.category,
      images: records.length,
      seenInTraining,
      good: nGood,
      defective: nDefect,
      perDefectType,
      threshold: { image: round(model.thresholds.image), pixel: round(model.thresholds.pixel) },
      falseAlarms,
      missed,
      pixelImages: hasMasks ? records.length - emptyMasks - records.filter((r) => r.defect && !r.item.maskPath).length : 0,
      ...(reportPath ? { report: reportPath } : {}),
    };
    await write(ctx.stdout, `${JSON.stringify(details)}\n${JSON.stringify(summary)}\n`);
  } else {
    const w = Math.max(11, ...perType.map((p) => p.type.length));
    const lines = [
      `${ds.category}: ${records.length} test images (${nGood} good, ${nDefect} defective) in ${formatSeconds(msPerImage * records.length)} (${msPerImage.toFixed(1)} ms/image) on ${engine.backend}, ${engine.device}`,
      '',
      `  ${'defect type'.padEnd(w)}  images  image AUROC  flagged at threshold`,
      ...perType.map((p) => `  ${p.type.padEnd(w)}  ${String(p.images).padStart(6)}  ${fixed(p.auroc).padStart(11)}  ${p.flagged}/${p.images}`),
      `  ${GOOD.padEnd(w)}  ${String(nGood).padStart(6)}  ${'-'.padStart(11)}  ${falseAlarms}/${nGood} (false alarms)`,
      `  ${'all'.padEnd(w)}  ${String(records.length).padStart(6)}  ${fixed(imageAuroc).padStart(11)}`,
      '',
      `image AUROC ${fixed(imageAuroc)}   pixel AUROC ${fixed(pixelAuroc)}   PRO ${fixed(pro)}   image F1-max ${fixed(f1)}${hasMasks ? '' : '   (no masks in ground_truth/: no pixel metrics)'}`,
      `at the model's threshold (score 0.5 = raw ${model.thresholds.image.toFixed(3)}): ${nDefect - missed}/${nDefect} defective flagged, ${falseAlarms}/${nGood} good flagged`,
    ];
    if (emptyMasks > 0) lines.push(`note: ${emptyMasks} defective image(s) with an empty mask are left out of the pixel metrics`);
    if (reportPath) lines.push(`report: ${reportPath}`);
    await write(ctx.stdout, `${lines.join('\n')}\n`);
  }
  return 0;
}

function nullableRound(x: number | null): number | null {
  return x === null || !Number.isFinite(x) ? null : round(x);
}

interface ReportInput {
  modelFile: string;
  model: PatchCoreModel;
  engine: Engine;
  ds: OneClassDataset;
  records: EvalRecord[];
  perType: { type: string; images: number; auroc: number | null; flagged: number }[];
  metrics: { imageAuroc: number | null; pixelAuroc: number | null; pro: number | null; f1Max: number | null; msPerImage: number };
  emptyMasks: number;
  ctx: RunContext;
}

/** Self-contained report.html (+ the figures as PNGs, + overlays/) for one evaluation. */
async function writeEvaluationReport(outDir: string, x: ReportInput): Promise<string> {
  const { model, records, ds } = x;
  const figures: ReportFigure[] = [];
  const labels = records.map((r) => (r.defect ? 1 : 0));
  if (records.some((r) => r.defect) && records.some((r) => !r.defect)) {
    const series = [];
    const all = rocCurve(records.map((r) => r.raw), labels);
    const t = thinCurve(all.fpr, all.tpr);
    series.push({ label: `all defects (AUROC ${fixed(x.metrics.imageAuroc, 3)})`, x: t.x, y: t.y });
    if (x.perType.length > 1 && x.perType.length <= 6) {
      for (const p of x.perType) {
        const sub = records.filter((r) => !r.defect || r.item.label === p.type);
        if (!sub.some((r) => r.defect)) continue;
        const c = rocCurve(sub.map((r) => r.raw), sub.map((r) => (r.defect ? 1 : 0)));
        const tc = thinCurve(c.fpr, c.tpr);
        series.push({ label: `${p.type} (${fixed(p.auroc, 3)})`, x: tc.x, y: tc.y });
      }
    }
    figures.push({ title: 'Image-level ROC curve', fileName: 'roc.png', png: await rocCurvePng(series, { title: `ROC: ${ds.category}` }), caption: 'Defective = positive; one point per distinct score.' });
  }
  figures.push({
    title: 'Score histogram: good vs defective',
    fileName: 'score-histogram.png',
    png: await scoreHistogramPng(
      { normal: records.filter((r) => !r.defect).map((r) => r.score), anomalous: records.filter((r) => r.defect).map((r) => r.score) },
      { threshold: 0.5, xLabel: 'normalised anomaly score (0.5 = threshold)', title: `Scores: ${ds.category}` },
    ),
    caption: `Normalised scores; the dashed line is the model's image threshold (raw ${model.thresholds.image.toFixed(3)}).`,
  });

  // Worst cases: the most anomalous images, the defects scored lowest (missed first) and the good images
  // scored highest (false alarms first). Only these few are scored again, for their full-size maps.
  const byScore = [...records].sort((a, b) => b.raw - a.raw);
  const top = byScore.slice(0, 8);
  const lowDefects = records.filter((r) => r.defect).sort((a, b) => a.raw - b.raw).slice(0, 4);
  const highGood = records.filter((r) => !r.defect).sort((a, b) => b.raw - a.raw).slice(0, 4);
  const picked = [...new Set([...top, ...lowDefects, ...highGood])];
  const maps = new Map<EvalRecord, AnomalyResult>();
  const rescored = await model.score(x.engine, picked.map((r) => r.item.path), scoreOptions(x.ctx));
  picked.forEach((r, i) => maps.set(r, rescored[i]!));
  const overlayDir = path.join(outDir, 'overlays');
  await mkdir(overlayDir, { recursive: true });
  const overlays = new Map<EvalRecord, Buffer>();
  const overlayFiles: string[] = [];
  for (const r of picked) {
    const m = maps.get(r)!;
    const png = await heatmapOverlayPng(r.item.path, m.map, m.width, m.height, { threshold: model.thresholds.pixel });
    overlays.set(r, png);
    const name = `${r.item.relPath.replace(/^test\//, '').replace(/[\\/]/g, '_').replace(/\.[^.]+$/, '')}.png`;
    await writeFileAtomic(path.join(overlayDir, name), png);
    overlayFiles.push(name);
  }
  const wrong = (r: EvalRecord): boolean => r.defect !== r.flagged;
  const caption = (r: EvalRecord): { image: Buffer; caption: string[]; color: string } => ({
    image: overlays.get(r)!,
    caption: [r.item.relPath.replace(/^test\//, ''), `score ${r.score.toFixed(3)} (raw ${r.raw.toFixed(2)})`, wrong(r) ? (r.defect ? 'MISSED' : 'FALSE ALARM') : r.defect ? 'flagged' : 'passed'],
    color: wrong(r) ? '#b00020' : '#222',
  });
  figures.push({
    title: 'Most anomalous test images',
    fileName: 'most-anomalous.png',
    png: await captionedGridPng(top.map(caption), { tile: 192, columns: 4 }),
    caption: 'Heatmap over the image on a fixed colour scale (green-yellow = the pixel threshold); white outline = pixels above the pixel threshold.',
  });
  if (lowDefects.length > 0 || highGood.length > 0) {
    figures.push({
      title: 'Hardest cases: lowest-scored defects and highest-scored good images',
      fileName: 'hardest-cases.png',
      png: await captionedGridPng([...lowDefects, ...highGood].map(caption), { tile: 192, columns: 4 }),
      caption: 'Red captions are wrong at the model threshold (missed defects, false alarms).',
    });
  }

  const tables: ReportTable[] = [
    {
      title: 'Per defect type',
      columns: ['defect type', 'images', 'image AUROC (vs all good)', 'flagged at threshold'],
      rows: [
        ...x.perType.map((p) => [p.type, p.images, p.auroc === null ? 'n/a' : p.auroc, `${p.flagged}/${p.images}`]),
        [GOOD, records.filter((r) => !r.defect).length, '-', `${records.filter((r) => !r.defect && r.flagged).length} false alarm(s)`],
      ],
    },
    {
      title: 'Model',
      columns: ['setting', 'value'],
      rows: [
        ['model file', x.modelFile],
        ['memory bank', `${model.bank.n} x ${model.bank.d} ${model.bank.storage} (${model.bankMB.toFixed(1)} MB, ${((100 * model.bank.n) / Math.max(1, model.bank.sourcePatches)).toFixed(2)}% of ${model.bank.sourcePatches} patches)`],
        ['image threshold (raw)', model.thresholds.image.toFixed(4)],
        ['pixel threshold (raw)', model.thresholds.pixel.toFixed(4)],
        ['threshold method', model.thresholds.method === 'quantile' ? `${model.thresholds.quantile ?? 0.99} quantile of ${model.thresholds.goodCount} held-out good images` : 'F1-optimal'],
        ['training images', `${model.training.images} (+ ${model.training.validationImages} held out)`],
        ['tiles', model.config.tile ? `224, overlap ${model.config.tile.overlap}` : 'no (whole image squashed to 224x224)'],
        ['engine', `${x.engine.backend}, ${x.engine.device}`],
      ],
    },
  ];
  const nDef = records.filter((r) => r.defect).length;
  const { imageAuroc, pixelAuroc, pro, f1Max: f1, msPerImage } = x.metrics;
  const written = await writeHtmlReport(outDir, {
    title: `One-class evaluation: ${ds.category}`,
    subtitle: `${ds.root}: ${records.length} test images (${records.length - nDef} good, ${nDef} defective)`,
    summary: [
      { label: 'image AUROC', value: fixed(imageAuroc) },
      { label: 'pixel AUROC', value: fixed(pixelAuroc) },
      { label: 'PRO (FPR <= 0.3)', value: fixed(pro) },
      { label: 'image F1-max', value: fixed(f1) },
      { label: 'ms / image', value: msPerImage.toFixed(1) },
    ],
    tables,
    figures,
    notes: [
      'Score: rawScore is the PatchCore distance from the most unusual patch of the image to the closest patch of the good training images; ' +
        'the normalised score puts the calibrated threshold at exactly 0.5 (0.5 * raw / t below it, 1 - 0.5 * t / raw above it; 0.75 = twice the threshold distance).',
      'AUROC, F1-max and PRO do not depend on the threshold. Pixel metrics use maps and masks resized to at most 256 px per side; PRO is the area under the per-region-overlap curve up to FPR 0.3, divided by 0.3.',
      ...(x.emptyMasks > 0 ? [`${x.emptyMasks} defective image(s) with an empty mask are left out of the pixel metrics.`] : []),
      `Overlays of the images shown are also in overlays/ (${overlayFiles.length} PNGs).`,
    ],
  });
  return written.html;
}

// ------------------------------------------------------------------------------------------------
// predict

/** Files as given; directories expand to the image files under them (recursively, sorted). */
async function expandInputs(inputs: readonly string[]): Promise<{ file: string; name: string }[]> {
  const out: { file: string; name: string }[] = [];
  const stemOf = (p: string): string => p.replace(/\.[^./\\]+$/, '');
  for (const input of inputs) {
    let st;
    try {
      st = await stat(input);
    } catch {
      out.push({ file: input, name: stemOf(path.basename(input)) }); // checkReadable names it
      continue;
    }
    if (!st.isDirectory()) {
      out.push({ file: input, name: stemOf(path.basename(input)) });
      continue;
    }
    // Output names keep the sub-folders (MVTec repeats 000.png in every defect folder).
    const found = (await findImageFiles(input)).map((p) => ({ file: p, name: stemOf(path.relative(input, p)).split(path.sep).join('_') }));
    if (found.length === 0) throw new DatasetError('DATASET_EMPTY', `${input}: no image files (${DECODABLE_IMAGE_EXTENSIONS.join(' ')}) in this directory`, { input });
    out.push(...found);
  }
  return out;
}

interface Prediction {
  file: string;
  verdict: 'good' | 'anomalous';
  score: number;
  rawScore: number;
  defectType: string | null;
  heatmap?: string;
  mask?: string;
}

export async function predictOneClassCommand(modelFile: string, inputs: string[], o: OneClassPredictOptions, ctx: RunContext): Promise<number> {
  if (o.heatmaps) await checkOutputDir(o.heatmaps, '--heatmaps', inputs);
  const expanded = await expandInputs(inputs);
  const files = expanded.map((e) => e.file);
  await checkReadable(files);
  const { model } = await loadModel(modelFile);
  const classifier = o.classifier ? await loadClassifier(o.classifier) : null;
  if (classifier && !classifier.model.classes.some((c) => c !== GOOD)) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', o.classifier!, 'the classifier has no defect classes (only good)', { field: 'classes' });
  }
  const engine = await openEngine(ctx);
  checkWeights(modelFile, model.weightsHash, engine);
  if (classifier) checkClassifierWeights(classifier, engine);
  if (o.heatmaps) await mkdir(o.heatmaps, { recursive: true });

  const bar = new ProgressBar('predict', files.length, ctx.stderr, ctx.opts.progress && files.length > 1 && Boolean(ctx.stderr.isTTY));
  const usedNames = new Set<string>();
  const all: Prediction[] = [];
  let failed = 0;
  const t0 = performance.now();
  const chunk = Math.max(1, ctx.opts.batchSize);
  const opts = scoreOptions(ctx);
  try {
    // Chunks keep output streaming and memory bounded (each result carries a full-size map).
    for (let s = 0; s < files.length; s += chunk) {
      const part = files.slice(s, s + chunk);
      const results = await scoreEach(model, engine, part, opts);
      const types = classifier ? await defectTypes(classifier, engine, part.filter((_, i) => !(results[i] instanceof LoupeError) && results[i]!.isAnomalous), ctx) : new Map<string, string>();
      for (let i = 0; i < part.length; i++) {
        const r = results[i]!;
        const file = part[i]!;
        if (r instanceof LoupeError) {
          failed++;
          if (o.json) await write(ctx.stdout, `${JSON.stringify({ file, error: { code: r.code, message: r.message } })}\n`);
          else await write(ctx.stdout, `${printable(file)}  ERROR  ${printable(r.message)}\n`);
          continue;
        }
        const p: Prediction = {
          file,
          verdict: r.isAnomalous ? 'anomalous' : 'good',
          score: round(r.score),
          rawScore: round(r.rawScore),
          defectType: r.isAnomalous ? (types.get(file) ?? null) : null,
        };
        if (o.heatmaps) {
          // Letters and digits of any script are kept ('Schraube_ä' stays readable); the rest becomes '_'.
          const base = expanded[s + i]!.name.replace(/[^\p{L}\p{N}_.-]+/gu, '_') || 'image';
          let stem = base;
          for (let n = 2; usedNames.has(stem); n++) stem = `${base}-${n}`;
          usedNames.add(stem);
          p.heatmap = path.join(o.heatmaps, `${stem}_heatmap.png`);
          p.mask = path.join(o.heatmaps, `${stem}_mask.png`);
          await writeHeatmapOverlay(p.heatmap, file, r.map, r.width, r.height, { threshold: model.thresholds.pixel });
          await writeMask(p.mask, r.map, r.width, r.height, model.thresholds.pixel);
        }
        all.push(p);
        await emit(ctx, p, o);
      }
      bar.update(Math.min(files.length, s + part.length));
    }
  } finally {
    bar.clear();
  }
  const ms = performance.now() - t0;
  if (o.heatmaps) await writeHeatmapIndex(o.heatmaps, modelFile, all);
  if (!o.json) {
    const flagged = all.filter((p) => p.verdict === 'anomalous').length;
    await write(
      ctx.stdout,
      `${all.length} image${all.length === 1 ? '' : 's'}: ${flagged} anomalous, ${all.length - flagged} good (score >= 0.5 = anomalous)${failed > 0 ? `, ${failed} could not be read or decoded` : ''} in ${formatSeconds(ms)} on ${engine.backend}, ${engine.device}` +
        `${o.heatmaps ? `; heatmaps and masks in ${o.heatmaps} (index.html)` : ''}\n`,
    );
  }
  return failed > 0 ? EXIT_SOME_FAILED : EXIT_OK;
}

/**
 * Scores a chunk; when one of its images cannot be read or decoded, scores the chunk image by image so
 * that image gets its error and the others their results (as SVM predict does). Other errors propagate.
 */
async function scoreEach(model: PatchCoreModel, engine: Engine, files: readonly string[], opts: ReturnType<typeof scoreOptions>): Promise<(AnomalyResult | LoupeError)[]> {
  const isImageError = (err: unknown): err is LoupeError => err instanceof LoupeError && err.code.startsWith('IMAGE_');
  try {
    return await model.score(engine, files, opts);
  } catch (err) {
    if (!isImageError(err)) throw err;
  }
  const out: (AnomalyResult | LoupeError)[] = [];
  for (const f of files) {
    try {
      out.push((await model.score(engine, [f], opts))[0]!);
    } catch (err) {
      if (!isImageError(err)) throw err;
      out.push(err);
    }
  }
  return out;
}

async function emit(ctx: RunContext, p: Prediction, o: OneClassPredictOptions): Promise<void> {
  if (o.json) {
    await write(ctx.stdout, `${JSON.stringify(p)}\n`);
    return;
  }
  const type = p.defectType ? `  ${p.defectType}` : '';
  await write(ctx.stdout, `${printable(p.file)}  ${p.verdict.padEnd(9)}  score ${p.score.toFixed(3)}  (raw ${p.rawScore.toFixed(3)})${type}\n`);
}

/** The classifier's best defect class per anomalous image: the one-class model decides IF, it decides WHICH. */
async function defectTypes(c: LoadedClassifier, engine: Engine, files: readonly string[], ctx: RunContext): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (files.length === 0) return out;
  const layer = c.layer;
  // The classifier's own preprocessing (layer, squash/crop), as its `loupe predict` would use.
  const feats = await extractFeatures(files, { engine, layer, batchSize: ctx.opts.batchSize, signal: ctx.signal, decode: { fit: c.fit } });
  const rows = feats.map((f) => f.features[layer]);
  const pred = predictSvm(c.model, rows);
  const k = c.model.classes.length;
  feats.forEach((f, i) => {
    // Skip the 'good' class: the image is anomalous by the one-class verdict, so name the likeliest defect.
    let best = -1;
    for (let j = 0; j < k; j++) if (c.model.classes[j] !== GOOD && (best < 0 || pred.scores[i * k + j]! > pred.scores[i * k + best]!)) best = j;
    out.set(files[f.index]!, c.model.classes[best]!);
  });
  return out;
}

async function writeHeatmapIndex(dir: string, modelFile: string, preds: readonly Prediction[]): Promise<void> {
  const h = escapeXml;
  const rel = (p: string): string => path.relative(dir, p).split(path.sep).map(encodeURIComponent).join('/');
  const rows = preds.map(
    (p) =>
      `<tr class="${p.verdict}"><td>${h(p.file)}</td><td>${h(p.verdict)}</td><td>${p.score.toFixed(3)}</td><td>${p.rawScore.toFixed(3)}</td><td>${h(p.defectType ?? '')}</td>` +
      `<td><a href="${rel(p.heatmap!)}"><img src="${rel(p.heatmap!)}" alt="heatmap"></a></td><td><a href="${rel(p.mask!)}"><img src="${rel(p.mask!)}" alt="mask"></a></td></tr>`,
  );
  const html = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8"><title>Loupe heatmaps</title>',
    '<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}' +
      'img{max-width:192px;max-height:192px}tr.anomalous td:nth-child(2){color:#b00020;font-weight:600}</style></head><body>',
    `<h1>Heatmaps</h1><p>Model ${h(modelFile)}. Score 0.5 = the model's threshold (anomalous at or above it). ` +
      'Heatmap colours are on a fixed scale (green-yellow = the pixel threshold); white outline and mask = pixels above the pixel threshold.</p>',
    '<table><thead><tr><th>file</th><th>verdict</th><th>score</th><th>raw</th><th>defect type</th><th>heatmap</th><th>mask</th></tr></thead><tbody>',
    ...rows,
    '</tbody></table></body></html>',
  ].join('\n');
  await writeFileAtomic(path.join(dir, 'index.html'), html);
}
