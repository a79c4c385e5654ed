// The one-class evaluation protocol (MVTec AD): image AUROC and F1-max on the raw scores, pixel AUROC and
// PRO (area under the per-region-overlap curve to FPR 0.3) on the anomaly maps against the ground-truth
// masks, a per-defect-type table, and the counts at the model's own threshold. `loupe evaluate`, the HTML
// report and tools/eval all call evaluateOneClass, so every published figure is reproducible from the CLI.
// Hybrid models (memory bank + supervised head) are evaluated by the same protocol on their fused scores and
// maps, with the balanced accuracy at their threshold and, when they name defect types, the type accuracy.
import { basename } from 'node:path';

import { scanMvtecOneClass } from '../datasets/scan.js';
import type { OneClassDataset, SkippedFile } from '../datasets/types.js';
import { DatasetError } from '../datasets/errors.js';
import { LoupeError } from '../errors.js';
import { fileContentHashes } from '../features-cache.js';
import { resizeBilinear } from '../anomaly/patchcore/anomaly-map.js';
import { loadMask } from '../image/mask.js';
import type { Inspector } from '../inspection/inspector.js';
import type { InspectionResult } from '../inspection/types.js';
import { PixelMetricsAccumulator } from '../metrics/pixel.js';
import { auroc, f1Max } from '../metrics/roc.js';
import { GOOD_LABEL } from '../modelfile/models.js';
import type { LabelledImage } from './classifier.js';

/** Pixel metrics are computed on maps and masks at most this many pixels per side (the MVTec protocol's 256). */
export const PIXEL_METRIC_SIDE = 256;

export interface OneClassRecord {
  readonly image: LabelledImage;
  readonly defect: boolean;
  readonly verdict: InspectionResult['verdict'];
  readonly score: number;
  readonly rawScore: number;
  /** Hybrid models that name defect types: the likeliest type, whatever the verdict. */
  readonly likeliestDefect?: string;
}

export interface DefectTypeFigures {
  readonly type: string;
  readonly images: number;
  /** This type's images against all good images; null without both. */
  readonly imageAuroc: number | null;
  /** Images of this type flagged at the model's threshold. */
  readonly flagged: number;
}

export interface OneClassEvaluation {
  /** The test set's name (an MVTec category's). */
  readonly category: string;
  readonly images: number;
  readonly good: number;
  readonly defective: number;
  /** Test images the model was trained on (by content): their scores flatter the model. */
  readonly seenInTraining: number;
  /** Null without both good and defective images (nothing to rank). */
  readonly imageAuroc: number | null;
  readonly f1Max: number | null;
  /** Null without masks. */
  readonly pixelAuroc: number | null;
  readonly pro: number | null;
  readonly perDefectType: readonly DefectTypeFigures[];
  /** The model's raw thresholds. */
  readonly threshold: { readonly image: number; readonly pixel: number };
  /** Good images flagged, defective ones passed, at the model's threshold. */
  readonly falseAlarms: number;
  readonly missed: number;
  /** (good passed / good + defective flagged / defective) / 2 at the model's threshold; null without both. */
  readonly balancedAccuracy: number | null;
  /**
   * Models that name defect types (hybrid, two or more types): the share of defective images of a type the
   * model knows whose likeliest type is theirs, and how many there were; null otherwise.
   */
  readonly defectTypeAccuracy: { readonly accuracy: number; readonly images: number } | null;
  /** Images in the pixel metrics (good ones, and defective ones with a non-empty mask). */
  readonly pixelImages: number;
  /** Defective images whose mask is empty (left out of the pixel metrics). */
  readonly emptyMasks: number;
  /** Defective images without a mask, when others have one. */
  readonly missingMasks: readonly string[];
  /** Wall time per image of the inspection (decode, CNN, scoring, maps). */
  readonly msPerImage: number;
  /** Every image, in order, with the model's answer. */
  readonly records: readonly OneClassRecord[];
  /** Files of the folder left out, and why. */
  readonly skipped: readonly SkippedFile[];
}

export interface EvaluateOneClassOptions {
  /** Images per engine batch; default 8. */
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Pixel metrics at most this many pixels per side; default PIXEL_METRIC_SIDE. */
  pixelSide?: number;
}

function downsize(width: number, height: number, side: number): { w: number; h: number } {
  const s = Math.min(1, side / Math.max(width, height));
  return { w: Math.max(1, Math.round(width * s)), h: Math.max(1, Math.round(height * s)) };
}

/**
 * Evaluates a one-class inspector on a test set: an MVTec category folder (its test/ images, masks from
 * ground_truth/), a scanned OneClassDataset, or labelled images (label 'good' or a defect type; maskPath
 * optional).
 */
export async function evaluateOneClass(inspector: Inspector, test: string | OneClassDataset | readonly LabelledImage[], options: EvaluateOneClassOptions = {}): Promise<OneClassEvaluation> {
  const model = inspector.model;
  if (model.kind !== 'one-class' && model.kind !== 'hybrid') throw new LoupeError('INVALID_ARGUMENT', `evaluateOneClass needs a one-class or hybrid model; ${inspector.source} is '${model.kind}'`);
  let items: readonly LabelledImage[];
  let category: string;
  let skipped: readonly SkippedFile[] = [];
  let root: string | undefined;
  if (typeof test === 'string' || 'test' in test) {
    // A full decode leaves undecodable files out (reported) instead of failing mid-run; no dedupe, so
    // the test set is exactly what is on disk.
    const ds = typeof test === 'string' ? await scanMvtecOneClass(test, { verify: 'decode', dedupe: false }) : test;
    items = ds.test;
    category = ds.category;
    skipped = ds.skipped;
    root = ds.root;
  } else {
    items = test;
    category = model.category ?? 'images';
  }
  if (items.length === 0) throw new DatasetError('DATASET_EMPTY', `no usable test images${root ? ` under ${root}/test` : ''}`, root ? { input: root } : {});
  const hasMasks = items.some((i) => i.maskPath !== undefined);
  const missingMasks = hasMasks ? items.filter((i) => i.label !== GOOD_LABEL && i.maskPath === undefined).map((i) => i.relPath ?? i.path) : [];
  const side = options.pixelSide ?? PIXEL_METRIC_SIDE;

  const records: OneClassRecord[] = [];
  const pixel: { scores: Float32Array; mask: Uint8Array | null; width: number; height: number }[] = [];
  let emptyMasks = 0;
  const t0 = performance.now();
  let k = 0;
  for await (const o of inspector.inspectMany(
    items.map((i) => i.path),
    { heatmap: hasMasks, batchSize: options.batchSize ?? 8, onInvalidImage: 'throw', ...(options.signal ? { signal: options.signal } : {}) },
  )) {
    const item = items[k++]!;
    const r = o.result!;
    const defect = item.label !== GOOD_LABEL;
    records.push({ image: item, defect, verdict: r.verdict, score: r.score, rawScore: r.rawScore, ...(r.likeliestDefect !== undefined ? { likeliestDefect: r.likeliestDefect } : {}) });
    const map = r.heatmap;
    if (map && (!defect || item.maskPath)) {
      const { w, h } = downsize(map.width, map.height, side);
      const scores = w === map.width && h === map.height ? map.values : resizeBilinear(map.values, map.height, map.width, h, w);
      const mask = defect ? await loadMask(item.maskPath, w, h) : null;
      if (mask && !mask.some((v) => v !== 0)) emptyMasks++; // an empty mask has no region to find
      else pixel.push({ scores, mask, width: w, height: h });
    }
    options.onProgress?.(k, items.length);
  }
  const msPerImage = (performance.now() - t0) / Math.max(1, records.length);

  const labels = records.map((r) => (r.defect ? 1 : 0));
  const raw = records.map((r) => r.rawScore);
  const defective = labels.reduce<number>((a, b) => a + b, 0);
  const good = records.length - defective;
  const both = defective > 0 && good > 0;
  let pixelAuroc: number | null = null;
  let pro: number | null = null;
  if (pixel.some((p) => p.mask)) {
    let min = Infinity;
    let max = -Infinity;
    for (const p of pixel) for (const v of p.scores) (v < min && (min = v), v > max && (max = v));
    const acc = new PixelMetricsAccumulator({ min, max }, { bins: 16384, maxFpr: 0.3 });
    for (const p of pixel) acc.add(p);
    const pm = acc.result();
    pixelAuroc = pm.pixelAuroc;
    pro = pm.aupro;
  }
  const goods = records.filter((r) => !r.defect);
  const types = [...new Set(items.filter((i) => i.label !== GOOD_LABEL).map((i) => i.label))].sort();
  const perDefectType = types.map((type) => {
    const rs = records.filter((r) => r.image.label === type);
    const sub = [...goods, ...rs];
    return {
      type,
      images: rs.length,
      imageAuroc: rs.length > 0 && goods.length > 0 ? auroc(sub.map((r) => r.rawScore), sub.map((r) => (r.defect ? 1 : 0))) : null,
      flagged: rs.filter((r) => r.verdict === 'anomalous').length,
    };
  });
  const trained = new Set(model.trainHashes);
  const seenInTraining = trained.size === 0 ? 0 : (await fileContentHashes(items.map((i) => i.path))).filter((h) => trained.has(h)).length;
  const t = { image: inspector.thresholds.image, pixel: inspector.thresholds.pixel ?? NaN };
  const flaggedGood = goods.filter((r) => r.verdict === 'anomalous').length;
  const passedDefects = records.filter((r) => r.defect && r.verdict === 'good').length;
  const known = new Set(inspector.classes);
  const typed = known.size >= 2 ? records.filter((r) => r.defect && known.has(r.image.label) && r.likeliestDefect !== undefined) : [];
  return {
    category: category ?? (root ? basename(root) : 'images'),
    images: records.length,
    good,
    defective,
    seenInTraining,
    imageAuroc: both ? auroc(raw, labels) : null,
    // Without good images, flagging everything scores F1 = 1: nothing is measured.
    f1Max: both ? f1Max(raw, labels).f1 : null,
    pixelAuroc,
    pro,
    perDefectType,
    threshold: { image: t.image, pixel: t.pixel },
    falseAlarms: flaggedGood,
    missed: passedDefects,
    balancedAccuracy: both ? ((good - flaggedGood) / good + (defective - passedDefects) / defective) / 2 : null,
    defectTypeAccuracy: typed.length > 0 ? { accuracy: typed.filter((r) => r.likeliestDefect === r.image.label).length / typed.length, images: typed.length } : null,
    pixelImages: pixel.length,
    emptyMasks,
    missingMasks,
    msPerImage,
    records,
    skipped,
  };
}
