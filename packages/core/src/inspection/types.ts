// The inspection contract: what every model kind answers for one image, whoever asks (a library user, the
// CLI, the gRPC server). See inspector.ts.
import type { TapOutputs } from '../engine.js';
import type { LoupeError } from '../errors.js';
import type { ImageSource } from '../image/decode.js';
import type { TapName } from '../model.js';
import type { TensorBatch } from '../preprocess.js';

export type Verdict = 'good' | 'anomalous';

/**
 * Where the CNN runs: core's Engine or EngineSession, or anything with their run() (the server's dynamic
 * batcher, which packs the views of many callers into one engine batch).
 */
export interface TapRunner {
  run<T extends TapName>(input: TensorBatch, taps: readonly T[]): Promise<TapOutputs<T>>;
}

/** The strongest point of an anomaly map: column and row in image pixels, raw value. */
export interface MapPeak {
  readonly x: number;
  readonly y: number;
  readonly value: number;
}

/**
 * Where a one-class model sees the anomaly: a raw map at the image's own (upright) size, scaled down to
 * MAX_MAP_SIDE (1024) pixels per side for larger images (memory stays bounded per image).
 */
export interface AnomalyMap {
  readonly width: number;
  readonly height: number;
  /** The upright image's size (larger than width x height when the map was capped). */
  readonly imageWidth: number;
  readonly imageHeight: number;
  /** Raw values, row-major [height][width], in the units of `threshold`. */
  readonly values: Float32Array;
  /** The model's pixel threshold: values at or above it are defect pixels. */
  readonly threshold: number;
  /** The map's maximum, located in image pixels. */
  readonly peak: MapPeak;
}

export interface ClassScore {
  readonly name: string;
  /** In [0, 1]; the scores of one image sum to 1. */
  readonly score: number;
}

export interface InspectionTimings {
  /** Reading and decoding the image into the model's views. */
  readonly decodeMs: number;
  /** The CNN (with a shared batcher: the wait for the batch and its run). */
  readonly inferenceMs: number;
  /** The model: features, kNN, maps, classifier. */
  readonly postprocessMs: number;
  /** Views in the run the Inspector submitted with this image (a batching `runner` may pack it with more). */
  readonly batchSize: number;
}

/** The answer for one image, the same for every model kind. */
export interface InspectionResult {
  /** The path, the given name, or "<buffer>". */
  readonly name: string;
  readonly verdict: Verdict;
  /** In [0, 1]: 0.5 is the model's threshold, and `verdict` is 'anomalous' exactly when score >= 0.5. */
  readonly score: number;
  /** The model's own score before normalisation (one-class: PatchCore distance; SVM: the defect margin). */
  readonly rawScore: number;
  /** The defect class when the model knows one (SVM) and the verdict is anomalous; else null. */
  readonly defectType: string | null;
  /** Per-class scores of a classifier (softmax of its class scores). */
  readonly classScores?: readonly ClassScore[];
  /**
   * A classifier's likeliest defect class, whatever the verdict (the one it names when the part is
   * anomalous): what names the defect type of a part another model flagged.
   */
  readonly likeliestDefect?: string;
  /** Where the strongest anomaly is, in image pixels (one-class models). */
  readonly peak?: MapPeak;
  /** The anomaly map, when asked for (`heatmap: true`) and the model makes one. */
  readonly heatmap?: AnomalyMap;
  readonly timings: InspectionTimings;
}

export interface InspectOptions {
  /** Where the CNN runs; default the engine the inspector was opened with. */
  runner?: TapRunner;
  /** Also return the anomaly map (one-class models). */
  heatmap?: boolean;
  /** Largest accepted width*height of an image (default the decoder's, 100 MP). */
  limitInputPixels?: number;
  signal?: AbortSignal;
}

export interface InspectManyOptions extends InspectOptions {
  /** Images per engine batch; default 8. The next batch is decoded while the engine runs this one. */
  batchSize?: number;
  /**
   * 'report' (default): an image that cannot be read or decoded yields an outcome with its error and the
   * others go on. 'throw': the first such image fails the iteration.
   */
  onInvalidImage?: 'report' | 'throw';
  /** After each image; `total` is undefined for async iterables. */
  onProgress?: (done: number, total: number | undefined) => void;
}

/** One image of inspectMany, in input order: its result or why it has none. */
export type InspectionOutcome =
  | { readonly index: number; readonly name: string; readonly result: InspectionResult; readonly error?: undefined }
  | { readonly index: number; readonly name: string; readonly error: LoupeError; readonly result?: undefined };

export type ImageInput = ImageSource;
