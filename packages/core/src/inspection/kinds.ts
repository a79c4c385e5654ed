// What each model kind does around the CNN: prepare (image -> model views) and finish (taps -> verdicts).
// The Inspector drives them; evaluation applies the same verdict rules (svmVerdicts) to cached features.
import type { TapOutputs } from '../engine.js';
import { LoupeError } from '../errors.js';
import type { AnomalyResult } from '../anomaly/patchcore/model.js';
import type { KnnNative } from '../anomaly/patchcore/scorer.js';
import { toFeatureMatrix, type FeaturesInput } from '../classifier/features.js';
import { predictSvm } from '../classifier/svm.js';
import { decodeImage, type ImageSource } from '../image/decode.js';
import { prepareImage, type PreparedImage } from '../image/views.js';
import { PATCHCORE_TAPS } from '../anomaly/patchcore/feature-extractor.js';
import type { TapName } from '../model.js';
import { rgbToCaffe } from '../preprocess.js';
import type { HybridModel, OneClassModel, SvmModel } from '../modelfile/models.js';
import type { HybridResult } from '../anomaly/hybrid/model.js';
import type { ClassScore, InspectionResult, Verdict } from './types.js';

/** One image decoded into the model's views. */
export interface Prepared {
  readonly name: string;
  /** Caffe-normalised views, [views][224][224][3]. */
  readonly tensor: Float32Array;
  readonly views: number;
  readonly decodeMs: number;
}

export interface FinishOptions {
  readonly heatmap: boolean;
  /** Per image: the engine time of its batch (shared) and the batch's size in views. */
  readonly inferenceMs: number;
  readonly batchSize: number;
}

/** The two halves of a model kind around the engine run. */
export interface KindHandler<P extends Prepared = Prepared> {
  readonly taps: readonly TapName[];
  prepare(source: ImageSource, options: { limitInputPixels?: number }): Promise<P>;
  /** `outputs`: the taps of every view of `items`, in order. */
  finish(items: readonly P[], outputs: TapOutputs<TapName>, options: FinishOptions): Promise<InspectionResult[]>;
}

// ------------------------------------------------------------------------------------------------
// SVM classifiers

/** An SVM's answer for one image: the inspection fields plus the class the classifier picked. */
export interface SvmVerdict {
  readonly verdict: Verdict;
  readonly score: number;
  readonly rawScore: number;
  readonly defectType: string | null;
  /** The predicted class: the good class when the verdict is good, else the defect type. */
  readonly label: string;
  /** The best defect class, whatever the verdict. */
  readonly likeliestDefect: string;
  readonly classScores: ClassScore[];
}

function softmax(x: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]!);
  const e = Array.from({ length: x.length }, (_, i) => Math.exp(x[i]! - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/**
 * The verdict rule of SVM models, for rows of raw features of the model's layer. With class scores s
 * (higher = likelier: votes + loss tie-break, or the negated loss), g the good class and d the best defect
 * class, the margin m = s[d] - s[g] is the raw score; the part is anomalous when m >= threshold (0: the
 * classifier's own choice), and score = sigmoid(m - threshold), so 0.5 is the threshold as for every kind.
 * An exact tie between the good class and a defect class is flagged (an argmax would take whichever comes
 * first; an inspection that cannot tell should not pass the part).
 */
export function svmVerdicts(model: SvmModel, features: FeaturesInput): SvmVerdict[] {
  const x = toFeatureMatrix(features, 'features');
  const { classifier, goodClass, threshold } = model;
  const pred = predictSvm(classifier, x);
  const k = classifier.classes.length;
  const g = classifier.classes.indexOf(goodClass);
  if (g < 0) throw new LoupeError('INVALID_ARGUMENT', `the good class '${goodClass}' is not one of the model's classes`);
  const out: SvmVerdict[] = [];
  for (let i = 0; i < x.rows; i++) {
    const s = pred.scores.subarray(i * k, (i + 1) * k);
    let d = -1;
    for (let j = 0; j < k; j++) if (j !== g && (d < 0 || s[j]! > s[d]!)) d = j;
    const margin = s[d]! - s[g]!;
    const anomalous = margin >= threshold;
    const defect = classifier.classes[d]!;
    const probs = softmax(s);
    out.push({
      verdict: anomalous ? 'anomalous' : 'good',
      score: 1 / (1 + Math.exp(-(margin - threshold))),
      rawScore: margin,
      defectType: anomalous ? defect : null,
      label: anomalous ? defect : goodClass,
      likeliestDefect: defect,
      classScores: classifier.classes.map((name, j) => ({ name, score: probs[j]! })),
    });
  }
  return out;
}

export function svmHandler(model: SvmModel): KindHandler {
  const layer = model.layer;
  return {
    taps: [layer],
    async prepare(source, options) {
      const t0 = performance.now();
      const img = await decodeImage(source, { fit: model.fit, ...(options.limitInputPixels !== undefined ? { limitInputPixels: options.limitInputPixels } : {}) });
      return { name: img.name, tensor: rgbToCaffe(img.rgb), views: 1, decodeMs: performance.now() - t0 };
    },
    async finish(items, outputs, o) {
      const t0 = performance.now();
      const dim = model.classifier.dim;
      const feats = outputs[layer];
      if (!feats || feats.length !== items.length * dim) throw new LoupeError('ENGINE', `the engine returned ${feats?.length ?? 0} floats of ${layer} for ${items.length} images`);
      const verdicts = svmVerdicts(model, { data: feats, rows: items.length, cols: dim });
      const share = (performance.now() - t0) / items.length;
      return items.map((p, i) => {
        const v = verdicts[i]!;
        return {
          name: p.name,
          verdict: v.verdict,
          score: v.score,
          rawScore: v.rawScore,
          defectType: v.defectType,
          classScores: v.classScores,
          likeliestDefect: v.likeliestDefect,
          timings: { decodeMs: p.decodeMs, inferenceMs: o.inferenceMs, postprocessMs: share, batchSize: o.batchSize },
        };
      });
    },
  };
}

// ------------------------------------------------------------------------------------------------
// One-class (PatchCore) models

interface PreparedViews extends Prepared {
  readonly image: PreparedImage;
}

/** A PatchCore result as an inspection result (heatmap on request). */
export function oneClassResult(model: OneClassModel, r: Omit<AnomalyResult, 'timings'>, heatmap: boolean, timings: InspectionResult['timings']): InspectionResult {
  const { pixel } = model.patchcore.thresholds;
  return {
    name: r.name,
    verdict: r.isAnomalous ? 'anomalous' : 'good',
    score: r.score,
    rawScore: r.rawScore,
    defectType: null,
    peak: r.peak,
    ...(heatmap ? { heatmap: { width: r.width, height: r.height, imageWidth: r.imageWidth, imageHeight: r.imageHeight, values: r.map, threshold: pixel, peak: r.peak } } : {}),
    timings,
  };
}

/** The PatchCore-based kinds' (one-class, hybrid) view(s) of an image: whole, or tiles with `tile`. */
async function prepareViews(tile: OneClassModel['patchcore']['config']['tile'], source: ImageSource, options: { limitInputPixels?: number }): Promise<PreparedViews> {
  const t0 = performance.now();
  const image = await prepareImage(source, { tile, ...(options.limitInputPixels !== undefined ? { limitInputPixels: options.limitInputPixels } : {}) });
  return { name: image.name, tensor: image.tensor, views: image.views, decodeMs: performance.now() - t0, image };
}

function patchTaps(outputs: TapOutputs<TapName>, kind: string): { res3d: Float32Array; res4f: Float32Array } {
  const res3d = outputs['res3d'];
  const res4f = outputs['res4f'];
  if (!res3d || !res4f) throw new LoupeError('ENGINE', `the engine returned no res3d/res4f for a ${kind} model`);
  return { res3d, res4f };
}

export function oneClassHandler(model: OneClassModel, knn: { native: KnnNative; threads?: number; backend?: 'auto' | 'cpu' | 'cuda' }): KindHandler<PreparedViews> {
  const pc = model.patchcore;
  return {
    taps: PATCHCORE_TAPS,
    prepare: (source, options) => prepareViews(pc.config.tile, source, options),
    async finish(items, outputs, o) {
      const { res3d, res4f } = patchTaps(outputs, 'one-class');
      const results = await pc.scoreViews(
        items.map((p) => p.image),
        { res3d, res4f },
        { knn: knn.native, ...(knn.threads !== undefined ? { threads: knn.threads } : {}), ...(knn.backend !== undefined ? { backend: knn.backend } : {}) },
      );
      return results.map((r, i) => {
        const t = r.timings;
        return oneClassResult(model, r, o.heatmap, {
          decodeMs: items[i]!.decodeMs,
          inferenceMs: o.inferenceMs,
          postprocessMs: t.featuresMs + t.knnMs + t.mapMs,
          batchSize: o.batchSize,
        });
      });
    },
  };
}

// ------------------------------------------------------------------------------------------------
// Hybrid (memory bank + supervised head) models

/** A hybrid result as an inspection result: the fused score, the fused map, the defect type (>= 2 types). */
export function hybridResult(model: HybridModel, r: Omit<HybridResult, 'timings'>, heatmap: boolean, timings: InspectionResult['timings']): InspectionResult {
  const pixel = model.hybrid.pixelThreshold;
  const anomalous = r.isAnomalous;
  return {
    name: r.name,
    verdict: anomalous ? 'anomalous' : 'good',
    score: r.score,
    rawScore: r.rawScore,
    defectType: anomalous ? r.likeliestDefect : null,
    ...(r.typeScores ? { classScores: r.typeScores } : {}),
    ...(r.likeliestDefect !== null ? { likeliestDefect: r.likeliestDefect } : {}),
    peak: r.peak,
    ...(heatmap ? { heatmap: { width: r.width, height: r.height, imageWidth: r.imageWidth, imageHeight: r.imageHeight, values: r.map, threshold: pixel, peak: r.peak } } : {}),
    timings,
  };
}

export function hybridHandler(model: HybridModel, knn: { native: KnnNative; threads?: number; backend?: 'auto' | 'cpu' | 'cuda' }): KindHandler<PreparedViews> {
  const pc = model.patchcore;
  return {
    taps: PATCHCORE_TAPS,
    async prepare(source, options) {
      // The head's test-time flips, if any, are more views for the engine to run.
      const p = await prepareViews(pc.config.tile, source, options);
      const image = model.hybrid.prepareViews(p.image);
      return { ...p, image, tensor: image.tensor, views: image.views };
    },
    async finish(items, outputs, o) {
      const { res3d, res4f } = patchTaps(outputs, 'hybrid');
      const t0 = performance.now();
      const results = await model.hybrid.scoreViews(
        items.map((p) => p.image),
        { res3d, res4f },
        { knn: knn.native, ...(knn.threads !== undefined ? { threads: knn.threads } : {}), ...(knn.backend !== undefined ? { backend: knn.backend } : {}) },
      );
      const share = (performance.now() - t0) / Math.max(1, items.length);
      return results.map((r, i) =>
        hybridResult(model, r, o.heatmap, { decodeMs: items[i]!.decodeMs, inferenceMs: o.inferenceMs, postprocessMs: share, batchSize: o.batchSize }),
      );
    },
  };
}
