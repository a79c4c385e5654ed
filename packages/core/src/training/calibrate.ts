// Setting a model's threshold on images of the line it will watch, for any model kind: the model scores good
// images (and optionally defective ones) through an Inspector, and the threshold becomes
//   - with targetFpr: the (1 - targetFpr) quantile of the good images' raw scores (about that fraction of
//     good parts will be flagged);
//   - else with defects: the F1-optimal threshold over good + defective images;
//   - else: the model's own quantile (one-class: 0.99) of the good scores.
// One-class models move their pixel threshold the same way (quantile of the good maps' maxima, or
// pixel-F1-optimal with MVTec masks); hybrid models move the thresholds of their fused score and map the
// same way. The result is a new model; saveModel writes it.
import { f1OptimalThreshold, f1OptimalThresholdBinned, quantile, type Thresholds } from '../anomaly/patchcore/threshold.js';
import { PatchCoreModel } from '../anomaly/patchcore/model.js';
import type { Engine } from '../engine.js';
import { LoupeError } from '../errors.js';
import { fileContentHashes } from '../features-cache.js';
import { loadMask } from '../image/mask.js';
import { Inspector } from '../inspection/inspector.js';
import type { InspectionResult } from '../inspection/types.js';
import type { HybridModel, LoupeModel } from '../modelfile/models.js';
import { HybridScorer } from '../anomaly/hybrid/model.js';
import { resolveImageSet, type ImageSet } from './images.js';
import type { TrainingProgress } from './one-class.js';

export interface CalibrateOptions {
  engine: Engine;
  /** Good parts of the line: a folder (an MVTec category: its train/good) or files. */
  good: ImageSet;
  /** Defective parts, optional: a folder (an MVTec category: its defective test images, with masks) or files. */
  defects?: ImageSet;
  /** Fraction of good parts the threshold may flag, in (0, 0.5]. */
  targetFpr?: number;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: TrainingProgress) => void;
}

export interface CalibrationReport {
  readonly method: 'target-fpr' | 'f1' | 'quantile';
  readonly before: { readonly image: number; readonly pixel?: number };
  readonly after: { readonly image: number; readonly pixel?: number };
  readonly good: number;
  readonly defects: number;
  /** Good images the model was trained on (a one-class model scores those near 0: they make the threshold optimistic). */
  readonly seenInTraining: number;
  /** At the new threshold, on the calibration images. */
  readonly goodFlagged: number;
  readonly defectsFlagged: number;
}

export interface Calibration {
  readonly model: LoupeModel;
  readonly report: CalibrationReport;
}

async function scoreAll(inspector: Inspector, files: readonly string[], o: CalibrateOptions, heatmap: boolean, onDone: (n: number) => void): Promise<InspectionResult[]> {
  const out: InspectionResult[] = [];
  for await (const r of inspector.inspectMany(files, { heatmap, onInvalidImage: 'throw', batchSize: o.batchSize ?? 8, ...(o.signal ? { signal: o.signal } : {}) })) {
    out.push(r.result!);
    onDone(out.length);
  }
  return out;
}

/** A new model whose thresholds are set on `good` (and `defects`) images; see the file header. */
export async function calibrate(model: LoupeModel, o: CalibrateOptions): Promise<Calibration> {
  if (o.targetFpr !== undefined && !(o.targetFpr > 0 && o.targetFpr <= 0.5)) throw new LoupeError('INVALID_ARGUMENT', `targetFpr must be in (0, 0.5], got ${o.targetFpr}`);
  const good = await resolveImageSet(o.good, { role: 'good' });
  const defects = o.defects !== undefined ? await resolveImageSet(o.defects, { role: 'defects' }) : undefined;
  const inspector = await Inspector.open(model, { engine: o.engine });
  const total = good.files.length + (defects?.files.length ?? 0);
  const report = (n: number): void => o.onProgress?.({ stage: 'thresholds', done: n, total });
  const wantMaps = model.kind !== 'svm';
  const goodRes = await scoreAll(inspector, good.files, o, wantMaps, report);
  const defRes = defects ? await scoreAll(inspector, defects.files, o, wantMaps && defects.masks.some(Boolean), (n) => report(good.files.length + n)) : [];
  const goodRaw = goodRes.map((r) => r.rawScore);
  const defRaw = defRes.map((r) => r.rawScore);
  const method: CalibrationReport['method'] = o.targetFpr !== undefined ? 'target-fpr' : defRaw.length > 0 ? 'f1' : 'quantile';
  const q = o.targetFpr !== undefined ? 1 - o.targetFpr : model.kind !== 'svm' ? model.patchcore.config.thresholdQuantile : 0.99;
  const imageThreshold = method === 'f1' ? f1OptimalThreshold([...goodRaw, ...defRaw], [...goodRaw.map(() => 0), ...defRaw.map(() => 1)]).threshold : quantile(goodRaw, q);
  if (!Number.isFinite(imageThreshold)) throw new LoupeError('INVALID_ARGUMENT', 'the calibration images give no usable threshold (are the defective images scored like good ones?)');

  let next: LoupeModel;
  let before: CalibrationReport['before'];
  let after: CalibrationReport['after'];
  if (model.kind === 'svm') {
    before = { image: model.threshold };
    after = { image: imageThreshold };
    next = { ...model, threshold: imageThreshold };
  } else {
    const hybrid = model.kind === 'hybrid' && model.hybrid.hasHead ? model.hybrid : null;
    const old = hybrid ? { image: hybrid.imageThreshold, pixel: hybrid.pixelThreshold } : model.patchcore.thresholds;
    let pixel = quantile(goodRes.map((r) => r.peak!.value), q);
    const masked = defects ? defRes.map((r, i) => ({ r, mask: defects.masks[i] })).filter((x) => x.mask) : [];
    if (method !== 'target-fpr' && masked.length > 0) {
      const all = [...goodRes.map((r) => ({ r, mask: undefined as string | undefined })), ...masked];
      const size = all.reduce((a, x) => a + x.r.heatmap!.values.length, 0);
      const scores = new Float32Array(size);
      const labels = new Uint8Array(size);
      let off = 0;
      for (const x of all) {
        const m = x.r.heatmap!;
        scores.set(m.values, off);
        labels.set(await loadMask(x.mask ?? null, m.width, m.height), off);
        off += m.values.length;
      }
      const r = f1OptimalThresholdBinned(scores, labels);
      if (Number.isFinite(r.threshold)) pixel = r.threshold;
    }
    // Fused (hybrid) maps are z-scores and may be negative; PatchCore distances are not.
    if (!(hybrid ? Number.isFinite(pixel) : pixel > 0)) pixel = old.pixel;
    const thresholds: Thresholds = {
      image: imageThreshold,
      pixel,
      method: method === 'f1' ? 'f1' : 'quantile',
      ...(method === 'f1' ? {} : { quantile: q }),
      goodCount: goodRaw.length,
      defectCount: defRaw.length,
    };
    before = { image: old.image, pixel: old.pixel };
    after = { image: thresholds.image, pixel: thresholds.pixel };
    if (hybrid) {
      // The thresholds of the fused score and map; the memory bank's own stay as they were.
      const fusion = hybrid.state.fusion!;
      const state = { ...hybrid.state, fusion: { image: { ...fusion.image, threshold: imageThreshold }, pixel: { ...fusion.pixel, threshold: pixel } } };
      next = { ...(model as HybridModel), hybrid: new HybridScorer(model.patchcore, state) };
    } else {
      const { header, bank } = model.patchcore.serialize();
      const patchcore = PatchCoreModel.deserialize({ ...header, thresholds, goodValidationScores: goodRaw }, bank);
      // A hybrid model without a head answers as its memory bank: its thresholds are the bank's.
      next = model.kind === 'hybrid' ? { ...model, patchcore, hybrid: new HybridScorer(patchcore, model.hybrid.state) } : { ...model, patchcore };
    }
  }
  const trained = new Set(model.trainHashes);
  const seenInTraining = trained.size === 0 ? 0 : (await fileContentHashes(good.files)).filter((h) => trained.has(h)).length;
  return {
    model: next,
    report: {
      method,
      before,
      after,
      good: goodRaw.length,
      defects: defRaw.length,
      seenInTraining,
      goodFlagged: goodRaw.filter((s) => s >= imageThreshold).length,
      defectsFlagged: defRaw.filter((s) => s >= imageThreshold).length,
    },
  };
}
