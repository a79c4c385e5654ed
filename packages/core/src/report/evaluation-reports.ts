// The HTML reports of an evaluation, built from core's evaluation results: the classifier report (confusion
// matrix, training montage, conv1 filters, misclassified images) and the one-class report (ROC, score
// histogram, heatmaps of the hardest cases, per-defect table). The CLI only chooses the folder.
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { heatmapOverlayPng } from '../anomaly/patchcore/visualize.js';
import { labelCounts } from '../datasets/counts.js';
import type { Engine } from '../engine.js';
import type { LabelledImage } from '../evaluation/classifier.js';
import type { OneClassEvaluation, OneClassRecord } from '../evaluation/one-class.js';
import type { Inspector } from '../inspection/inspector.js';
import type { InspectionResult } from '../inspection/types.js';
import type { ClassificationMetrics } from '../metrics/classification.js';
import { rocCurve, thinCurve } from '../metrics/roc.js';
import { writeFileAtomic } from '../modelfile/atomic.js';
import { GOOD_LABEL } from '../modelfile/models.js';
import { readConv1Kernel } from '../weights/conv1.js';
import { rocCurvePng, scoreHistogramPng } from './charts.js';
import { writeClassificationReport, writeHtmlReport, type ReportFigure, type ReportTable, type WrittenReport } from './html.js';
import { captionedGridPng } from './montage.js';

/** Label counts of named parts (e.g. train / held back) as a report table. */
export function countsTable(title: string, parts: Readonly<Record<string, readonly { label: string }[]>>, labels: readonly string[]): ReportTable {
  const names = Object.keys(parts);
  const counts = names.map((n) => labelCounts(parts[n] ?? [], labels));
  return {
    title,
    columns: ['label', ...names],
    rows: [...labels.map((l) => [l, ...counts.map((c) => c.find((x) => x.label === l)?.count ?? 0)]), ['total', ...names.map((n) => (parts[n] ?? []).length)]],
  };
}

/** conv1 filters for the report; a note instead when the weights are not TF.js (e.g. .lwts). */
async function conv1For(engine: Engine): Promise<{ weights?: Float32Array; note?: string }> {
  const model = engine.weights?.model;
  if (!model || !model.endsWith('.json')) return { note: 'conv1 filters not shown: the weights are not a TF.js model.json' };
  try {
    return { weights: await readConv1Kernel(model) };
  } catch (err) {
    return { note: `conv1 filters not shown: ${err instanceof Error ? err.message : String(err)}` };
  }
}

export interface ClassifierReportInput {
  readonly title: string;
  readonly subtitle?: string;
  readonly metrics: ClassificationMetrics;
  /** The evaluated images and the class predicted for each. */
  readonly items: readonly LabelledImage[];
  readonly predicted: readonly string[];
  /** Training images per label for the montage (paths). */
  readonly samples: readonly { label: string; images: readonly string[] }[];
  /** The engine (its weights give the conv1 figure). */
  readonly engine: Engine;
  readonly tables?: readonly ReportTable[];
  readonly notes?: readonly string[];
}

/** The classification report: confusion matrix, training montage, conv1 filters, misclassified images. */
export async function writeClassifierReport(dir: string, a: ClassifierReportInput): Promise<WrittenReport> {
  const conv1 = await conv1For(a.engine);
  const wrong = a.items
    .map((it, i) => ({ it, p: a.predicted[i]! }))
    .filter((x) => x.p !== x.it.label)
    .map((x) => ({ image: x.it.path, trueLabel: x.it.label, predictedLabel: x.p, note: basename(x.it.relPath ?? x.it.path) }));
  return writeClassificationReport(dir, {
    title: a.title,
    ...(a.subtitle !== undefined ? { subtitle: a.subtitle } : {}),
    metrics: a.metrics,
    samplesByLabel: a.samples.filter((s) => s.images.length > 0),
    ...(wrong.length > 0 ? { misclassified: wrong } : {}), // no empty figure when all are right
    ...(conv1.weights ? { conv1Weights: conv1.weights } : {}),
    tables: a.tables ?? [],
    notes: [...(a.notes ?? []), ...(conv1.note ? [conv1.note] : [])],
  });
}

function fixed(x: number | null, digits = 4): string {
  return x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
}

/** The relative name of a test image in captions ('broken_large/000.png'). */
function shortName(r: OneClassRecord): string {
  return (r.image.relPath ?? r.image.path).replace(/^test\//, '');
}

/** Self-contained report.html (+ the figures as PNGs, + overlays/) for a one-class evaluation. */
export async function writeOneClassReport(dir: string, e: OneClassEvaluation, inspector: Inspector, options: { engine?: Engine; modelFile?: string } = {}): Promise<WrittenReport> {
  const model = inspector.model;
  if (model.kind !== 'one-class' && model.kind !== 'hybrid') throw new Error('writeOneClassReport needs a one-class or hybrid inspector');
  const pc = model.patchcore;
  // A hybrid model with a head answers with its fused score and map (thresholds on those).
  const hybrid = model.kind === 'hybrid' && model.hybrid.hasHead ? model.hybrid : null;
  const { records } = e;
  const figures: ReportFigure[] = [];
  const labels = records.map((r) => (r.defect ? 1 : 0));
  if (e.good > 0 && e.defective > 0) {
    const series = [];
    const all = rocCurve(records.map((r) => r.rawScore), labels);
    const t = thinCurve(all.fpr, all.tpr);
    series.push({ label: `all defects (AUROC ${fixed(e.imageAuroc, 3)})`, x: t.x, y: t.y });
    if (e.perDefectType.length > 1 && e.perDefectType.length <= 6) {
      for (const p of e.perDefectType) {
        const sub = records.filter((r) => !r.defect || r.image.label === p.type);
        if (!sub.some((r) => r.defect)) continue;
        const c = rocCurve(sub.map((r) => r.rawScore), sub.map((r) => (r.defect ? 1 : 0)));
        const tc = thinCurve(c.fpr, c.tpr);
        series.push({ label: `${p.type} (${fixed(p.imageAuroc, 3)})`, x: tc.x, y: tc.y });
      }
    }
    figures.push({ title: 'Image-level ROC curve', fileName: 'roc.png', png: await rocCurvePng(series, { title: `ROC: ${e.category}` }), caption: 'Defective = positive; one point per distinct score.' });
  }
  figures.push({
    title: 'Score histogram: good vs defective',
    fileName: 'score-histogram.png',
    png: await scoreHistogramPng(
      { normal: records.filter((r) => !r.defect).map((r) => r.score), anomalous: records.filter((r) => r.defect).map((r) => r.score) },
      { threshold: 0.5, xLabel: 'normalised anomaly score (0.5 = threshold)', title: `Scores: ${e.category}` },
    ),
    caption: `Normalised scores; the dashed line is the model's image threshold (raw ${inspector.thresholds.image.toFixed(3)}).`,
  });

  // Worst cases: the most anomalous images, the defects scored lowest (missed first) and the good images
  // scored highest (false alarms first). Only these few are inspected again, for their full-size maps.
  const top = [...records].sort((a, b) => b.rawScore - a.rawScore).slice(0, 8);
  const lowDefects = records.filter((r) => r.defect).sort((a, b) => a.rawScore - b.rawScore).slice(0, 4);
  const highGood = records.filter((r) => !r.defect).sort((a, b) => b.rawScore - a.rawScore).slice(0, 4);
  const picked = [...new Set([...top, ...lowDefects, ...highGood])];
  const maps = new Map<OneClassRecord, InspectionResult>();
  for (const r of picked) maps.set(r, await inspector.inspect(r.image.path, { heatmap: true }));
  const overlayDir = join(dir, 'overlays');
  await mkdir(overlayDir, { recursive: true });
  const overlays = new Map<OneClassRecord, Buffer>();
  const overlayFiles: string[] = [];
  for (const r of picked) {
    const m = maps.get(r)!.heatmap!;
    const png = await heatmapOverlayPng(r.image.path, m.values, m.width, m.height, { threshold: m.threshold });
    overlays.set(r, png);
    const name = `${shortName(r).replace(/[\\/]/g, '_').replace(/\.[^.]+$/, '')}.png`;
    await writeFileAtomic(join(overlayDir, name), png);
    overlayFiles.push(name);
  }
  const wrong = (r: OneClassRecord): boolean => r.defect !== (r.verdict === 'anomalous');
  const caption = (r: OneClassRecord): { image: Buffer; caption: string[]; color: string } => ({
    image: overlays.get(r)!,
    caption: [shortName(r), `score ${r.score.toFixed(3)} (raw ${r.rawScore.toFixed(2)})`, wrong(r) ? (r.defect ? 'MISSED' : 'FALSE ALARM') : r.defect ? 'flagged' : 'passed'],
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
  const th = pc.thresholds;
  const hs = hybrid?.state;
  const modelRows: (string | number)[][] = hybrid
    ? [
        ['head', hybrid.describe()],
        ['image threshold (fused)', hybrid.imageThreshold.toFixed(4)],
        ['pixel threshold (fused map)', hybrid.pixelThreshold.toFixed(4)],
        ['labelled defects', `${hs!.training.defectImages} (${hs!.training.maskedDefects} with masks): ${hs!.defectLabels.join(', ')}`],
        ...(e.defectTypeAccuracy ? [['defect type accuracy', `${(100 * e.defectTypeAccuracy.accuracy).toFixed(1)}% of ${e.defectTypeAccuracy.images} defective images`]] : []),
      ]
    : [
        ['image threshold (raw)', th.image.toFixed(4)],
        ['pixel threshold (raw)', th.pixel.toFixed(4)],
        ['threshold method', th.method === 'quantile' ? `${th.quantile ?? 0.99} quantile of ${th.goodCount} held-out good images` : `F1-optimal over ${th.goodCount} good + ${th.defectCount} defective`],
      ];
  const tables: ReportTable[] = [
    {
      title: 'Per defect type',
      columns: ['defect type', 'images', 'image AUROC (vs all good)', 'flagged at threshold'],
      rows: [...e.perDefectType.map((p) => [p.type, p.images, p.imageAuroc === null ? 'n/a' : p.imageAuroc, `${p.flagged}/${p.images}`]), [GOOD_LABEL, e.good, '-', `${e.falseAlarms} false alarm(s)`]],
    },
    {
      title: 'Model',
      columns: ['setting', 'value'],
      rows: [
        ['model file', options.modelFile ?? inspector.source],
        ['memory bank', `${pc.bank.n} x ${pc.bank.d} ${pc.bank.storage} (${pc.bankMB.toFixed(1)} MB, ${((100 * pc.bank.n) / Math.max(1, pc.bank.sourcePatches)).toFixed(2)}% of ${pc.bank.sourcePatches} patches)`],
        ...modelRows,
        ['training images', `${pc.training.images} (+ ${pc.training.validationImages} held out)`],
        ['tiles', pc.config.tile ? `224, overlap ${pc.config.tile.overlap}` : 'no (whole image squashed to 224x224)'],
        ...(options.engine ? [['engine', `${options.engine.backend}, ${options.engine.device}`]] : []),
      ],
    },
  ];
  return writeHtmlReport(dir, {
    title: `${hybrid ? 'Hybrid' : 'One-class'} evaluation: ${e.category}`,
    subtitle: `${e.images} test images (${e.good} good, ${e.defective} defective)`,
    summary: [
      { label: 'image AUROC', value: fixed(e.imageAuroc) },
      { label: 'pixel AUROC', value: fixed(e.pixelAuroc) },
      { label: 'PRO (FPR <= 0.3)', value: fixed(e.pro) },
      { label: 'image F1-max', value: fixed(e.f1Max) },
      { label: 'balanced accuracy at threshold', value: fixed(e.balancedAccuracy) },
      { label: 'ms / image', value: e.msPerImage.toFixed(1) },
    ],
    tables,
    figures,
    notes: [
      hybrid
        ? 'Score: rawScore is the fused score, z(PatchCore distance) + w * z(head score), both standardised on good images neither part saw; ' +
          'the normalised score is sigmoid(fused - threshold), exactly 0.5 at the threshold. The heatmap is the fused patch map, upsampled and smoothed.'
        : 'Score: rawScore is the PatchCore distance from the most unusual patch of the image to the closest patch of the good training images; ' +
          'the normalised score puts the calibrated threshold at exactly 0.5 (0.5 * raw / t below it, 1 - 0.5 * t / raw above it; 0.75 = twice the threshold distance).',
      'AUROC, F1-max and PRO do not depend on the threshold. Pixel metrics use maps and masks resized to at most 256 px per side; PRO is the area under the per-region-overlap curve up to FPR 0.3, divided by 0.3.',
      ...(e.emptyMasks > 0 ? [`${e.emptyMasks} defective image(s) with an empty mask are left out of the pixel metrics.`] : []),
      ...(e.seenInTraining > 0 ? [`${e.seenInTraining} of these images were used to train the model: its figures are not a held-out measure.`] : []),
      `Overlays of the images shown are also in overlays/ (${overlayFiles.length} PNGs).`,
    ],
  });
}
