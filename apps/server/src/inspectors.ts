// What a loaded model does with one image: decode, run the engine through the shared batcher, apply the
// model. One implementation per model kind: SVM classifiers (core's predictSvm on one CNN tap) and
// one-class PatchCore models (core's PatchCoreModel.score on res3d+res4f, with an optional heatmap).
import {
  decodeImage,
  heatmapOverlayPng,
  isTapName,
  loadAddon,
  loadPatchCore,
  loadSvmModel,
  predictSvm,
  rgbToCaffe,
  INPUT_ELEMENTS,
  type FitMode,
  type PatchCoreModel,
  type SvmClassifier,
  type TapName,
} from '@loupe/core';

import type { DynamicBatcher, RunInfo } from './batcher.js';

export type ModelKindName = 'svm' | 'one-class';

export interface InspectInput {
  /** Encoded image bytes. */
  image: Buffer;
  /** Name used in decode errors. */
  name: string;
  wantHeatmap: boolean;
  signal: AbortSignal;
  maxImagePixels: number;
  /** Largest heatmap PNG an answer may carry (the message limit less room for the other fields). */
  maxHeatmapBytes: number;
  /** Hash of the image bytes, for sharing engine views between identical images (see batcher.ts). */
  contentKey?: string | undefined;
}

export interface Outcome {
  anomalous: boolean;
  score: number;
  rawScore: number;
  defectType: string;
  classScores: { name: string; score: number }[];
  heatmapPng?: Buffer | undefined;
  peak?: { x: number; y: number } | undefined;
  decodeMs: number;
  inferenceMs: number;
  postprocessMs: number;
  batchSize: number;
}

export interface Inspector {
  readonly kind: ModelKindName;
  readonly method: string;
  readonly classes: readonly string[];
  readonly taps: readonly TapName[];
  readonly weightsHash: string | null;
  readonly description: string;
  inspect(input: InspectInput, batcher: DynamicBatcher): Promise<Outcome>;
}

const GOOD_NAMES = /^(good|ok|normal|pass|no[_-]?defect)$/i;

function softmax(x: Float32Array | number[]): number[] {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  const e = Array.from(x, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export class SvmInspector implements Inspector {
  readonly kind = 'svm' as const;
  readonly method = 'svm';
  readonly classes: readonly string[];
  readonly taps: readonly TapName[];
  readonly goodIndex: number;
  private readonly fit: FitMode;

  constructor(
    readonly model: SvmClassifier,
    readonly weightsHash: string | null,
    preprocessing: Record<string, unknown>,
    extra: Record<string, unknown> | undefined,
  ) {
    if (!isTapName(model.layer)) throw new Error(`the model uses layer '${model.layer}', which this engine does not have`);
    this.classes = model.classes;
    this.taps = [model.layer];
    const declared = typeof extra?.['goodClass'] === 'string' ? model.classes.indexOf(extra['goodClass']) : -1;
    const byName = model.classes.findIndex((c) => GOOD_NAMES.test(c));
    this.goodIndex = declared >= 0 ? declared : byName >= 0 ? byName : 0;
    this.fit = preprocessing['fit'] === 'crop' ? 'crop' : 'squash';
  }

  get description(): string {
    return `SVM (${this.model.coding.name}) on ${this.model.layer}: ${this.classes.length} classes (${this.classes.join(', ')}), good class '${this.classes[this.goodIndex]}'`;
  }

  async inspect(input: InspectInput, batcher: DynamicBatcher): Promise<Outcome> {
    const t0 = performance.now();
    const img = await decodeImage(input.image, { name: input.name, fit: this.fit, limitInputPixels: input.maxImagePixels });
    const tensor = rgbToCaffe(img.rgb, new Float32Array(INPUT_ELEMENTS));
    const t1 = performance.now();
    const layer = this.taps[0]!;
    const key = input.contentKey === undefined ? undefined : `${input.contentKey}|svm:${this.fit}`;
    const { out, info } = await batcher.submit({ data: tensor, batch: 1 }, [layer], input.signal, key);
    const t2 = performance.now();
    const pred = predictSvm(this.model, { data: out[layer], rows: 1, cols: this.model.dim });
    const probs = softmax(pred.scores);
    const cls = pred.classIndex[0]!;
    const anomalous = cls !== this.goodIndex;
    const t3 = performance.now();
    return {
      anomalous,
      score: 1 - probs[this.goodIndex]!,
      rawScore: pred.scores[cls]!,
      defectType: anomalous ? this.classes[cls]! : '',
      classScores: this.classes.map((name, i) => ({ name, score: probs[i]! })),
      decodeMs: t1 - t0,
      inferenceMs: t2 - t1,
      postprocessMs: t3 - t2,
      batchSize: info.batchSize,
    };
  }
}

export class PatchCoreInspector implements Inspector {
  readonly kind = 'one-class' as const;
  readonly method = 'patchcore';
  readonly classes = ['good', 'anomaly'] as const;
  readonly taps: readonly TapName[] = ['res3d', 'res4f'];

  constructor(readonly model: PatchCoreModel) {}

  get weightsHash(): string | null {
    return this.model.weightsHash;
  }

  get description(): string {
    return this.model.describe();
  }

  async inspect(input: InspectInput, batcher: DynamicBatcher): Promise<Outcome> {
    let info: RunInfo = { batchSize: 0, batchJobs: 0, waitAndRunMs: 0 };
    const key = input.contentKey === undefined ? undefined : `${input.contentKey}|patchcore:${JSON.stringify(this.model.config.tile)}`;
    const runner = batcher.runner(input.signal, (i) => (info = i), key);
    const source = { name: input.name, data: input.image };
    // batchSize here is views per engine call for THIS image (its tiles); batching across images is
    // the shared batcher's job.
    const [r] = await this.model.score(runner, [source], { batchSize: 1024, signal: input.signal, limitInputPixels: input.maxImagePixels });
    if (!r) throw new Error('PatchCore returned no result');
    const t = performance.now();
    // The heatmap must leave room in the answer's message for the rest of it: a larger one would end the
    // whole stream (grpc-js refuses to send it), so it is drawn smaller instead.
    const heatmapPng = input.wantHeatmap
      ? await heatmapOverlayPng(source, r.map, r.width, r.height, { threshold: this.model.thresholds.pixel, maxBytes: input.maxHeatmapBytes, limitInputPixels: input.maxImagePixels })
      : undefined;
    const heatMs = performance.now() - t;
    return {
      anomalous: r.isAnomalous,
      score: r.score,
      rawScore: r.rawScore,
      defectType: r.isAnomalous ? 'anomaly' : '',
      classScores: [
        { name: 'good', score: 1 - r.score },
        { name: 'anomaly', score: r.score },
      ],
      heatmapPng,
      peak: { x: r.peak.x, y: r.peak.y },
      decodeMs: r.timings.prepareMs,
      inferenceMs: info.waitAndRunMs || r.timings.cnnMs,
      postprocessMs: r.timings.featuresMs + r.timings.knnMs + r.timings.mapMs + heatMs,
      batchSize: info.batchSize,
    };
  }
}

/** Reads a model file (either kind) and builds its inspector. */
export async function loadInspector(file: string, kind: ModelKindName, expectWeightsHash: string | undefined): Promise<Inspector> {
  if (kind === 'svm') {
    const loaded = await loadSvmModel(file, expectWeightsHash ? { expectWeightsHash } : {});
    return new SvmInspector(loaded.model, loaded.header.weightsHash, loaded.header.preprocessing, loaded.header.extra);
  }
  const loaded = await loadPatchCore(file, expectWeightsHash ? { expectWeightsHash } : {});
  // Build the kNN index now (~0.5 s for a 1% bank) rather than inside the first inspection.
  await loaded.model.knnIndex(await loadAddon());
  return new PatchCoreInspector(loaded.model);
}
