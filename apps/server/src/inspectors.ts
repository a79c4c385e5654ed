// A loaded model version: @loupe/core's Inspector (which owns every rule: decoding, the model kind, the
// threshold, the CNN weights check) with the server's dynamic batcher as its forward step. The server adds
// only transport concerns here: the content key that lets identical queued images share an engine view,
// the batch size the image ran in, and the heatmap PNG sized to fit in an answer.
import { Inspector, renderHeatmapPng, type Engine, type InspectionResult, type MapPeak } from '@loupe/core';

import type { DynamicBatcher, RunInfo } from './batcher.js';

export type ModelKindName = 'svm' | 'one-class' | 'hybrid';

export interface InspectInput {
  /** Encoded image bytes. */
  image: Buffer;
  /** Names the image in errors (the client's id). */
  name: string;
  wantHeatmap: boolean;
  signal: AbortSignal;
  maxImagePixels: number;
  /** Largest heatmap PNG an answer may carry (the message limit less room for the other fields). */
  maxHeatmapBytes: number;
  /** Hash of the image bytes, for sharing engine views between identical images (see batcher.ts). */
  contentKey?: string | undefined;
}

/** Core's answer for one image, plus what the transport adds (the heatmap PNG, the engine batch size). */
export interface Outcome {
  verdict: InspectionResult['verdict'];
  score: number;
  rawScore: number;
  /** null for good parts and for models that say where, not what (one-class; hybrid with one defect type). */
  defectType: string | null;
  /** Classifiers, and hybrid models with 2+ defect types (the types' probabilities); empty for one-class models. */
  classScores: { name: string; score: number }[];
  heatmapPng?: Buffer | undefined;
  peak?: MapPeak | undefined;
  decodeMs: number;
  inferenceMs: number;
  postprocessMs: number;
  /** Views in the engine batch the image ran in (images of other calls included). */
  batchSize: number;
}

export interface OpenModelOptions {
  engine: Engine;
  /** Where the one-class kNN search runs (the server's engine backend). */
  backend?: 'auto' | 'cpu' | 'cuda';
}

/** One loaded model version. */
export class ModelInspector {
  /** What decides the model's views of an image besides its bytes: identical keys may share engine views. */
  private readonly viewKey: string;

  private constructor(readonly core: Inspector) {
    const m = core.model;
    this.viewKey = m.kind === 'svm' ? `svm:${m.fit}` : `one-class:${JSON.stringify(m.patchcore.config.tile ?? null)}`;
  }

  /**
   * Opens a model file: core reads and validates it (layers, thresholds, shapes) and refuses one trained on
   * other CNN weights; any refusal rejects with core's error (a ModelFileError naming the file and field).
   */
  static async open(file: string, options: OpenModelOptions): Promise<ModelInspector> {
    return new ModelInspector(await Inspector.open(file, { engine: options.engine, ...(options.backend !== undefined ? { backend: options.backend } : {}) }));
  }

  get kind(): ModelKindName {
    return this.core.kind;
  }

  get description(): string {
    return this.core.description;
  }

  async inspect(input: InspectInput, batcher: DynamicBatcher): Promise<Outcome> {
    let info: RunInfo | undefined;
    const key = input.contentKey === undefined ? undefined : `${input.contentKey}|${this.viewKey}`;
    const source = { name: input.name, data: input.image };
    const r = await this.core.inspect(source, {
      // The model's own session (an int8 model's calibration, else the server's fp32 one).
      runner: batcher.runner(input.signal, (i) => (info = i), key, this.core.session),
      heatmap: input.wantHeatmap,
      limitInputPixels: input.maxImagePixels,
      signal: input.signal,
    });
    let heatmapPng: Buffer | undefined;
    let heatMs = 0;
    if (input.wantHeatmap && r.heatmap) {
      const t = performance.now();
      // The heatmap must leave room in the answer's message for the rest of it: a larger one would end the
      // whole stream (grpc-js refuses to send it), so core draws it smaller instead.
      heatmapPng = await renderHeatmapPng(source, r.heatmap, { maxBytes: input.maxHeatmapBytes, limitInputPixels: input.maxImagePixels });
      heatMs = performance.now() - t;
    }
    return {
      verdict: r.verdict,
      score: r.score,
      rawScore: r.rawScore,
      defectType: r.defectType,
      classScores: r.classScores ? r.classScores.map((c) => ({ name: c.name, score: c.score })) : [],
      heatmapPng,
      peak: r.peak,
      decodeMs: r.timings.decodeMs,
      inferenceMs: r.timings.inferenceMs,
      postprocessMs: r.timings.postprocessMs + heatMs,
      batchSize: info?.batchSize ?? r.timings.batchSize,
    };
  }
}
