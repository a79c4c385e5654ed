// ImageNet-1k head of the model: labels, softmax/top-k helpers and a one-call classifier.
import { readFileSync } from 'node:fs';

import type { Engine, EngineSession } from './engine.js';
import { LoupeError, messageOf, WeightsError } from './errors.js';
import { extractFeatures } from './features.js';
import type { DecodeOptions, ImageSource } from './image/decode.js';
import { resolveWeights } from './weights/resolve.js';

export const IMAGENET_CLASSES = 1000;

const labelCache = new Map<string, readonly string[]>();

/** Reads labels.json (keys "0".."999") into an array indexed by class; default: the weights' labels. */
export function loadImageNetLabels(path?: string): readonly string[] {
  const file = path ?? resolveWeights().labels;
  if (!file) throw new WeightsError('WEIGHTS_MISSING', 'no ImageNet labels.json beside the weights', {});
  const cached = labelCache.get(file);
  if (cached) return cached;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new WeightsError('WEIGHTS_CORRUPT', `cannot read ImageNet labels ${file}: ${messageOf(err)}`, { input: file, cause: err });
  }
  const labels: string[] = [];
  for (let i = 0; i < IMAGENET_CLASSES; i++) {
    const label = (parsed as Record<string, unknown> | null)?.[String(i)];
    if (typeof label !== 'string') throw new WeightsError('WEIGHTS_CORRUPT', `labels ${file} has no string for class "${i}"`, { input: file });
    labels.push(label);
  }
  labelCache.set(file, labels);
  return labels;
}

/** Numerically stable softmax (max-subtracted, float64 accumulation). */
export function softmax(logits: ArrayLike<number>): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const out = new Float32Array(logits.length);
  let sum = 0;
  const tmp = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    tmp[i] = Math.exp(logits[i]! - max);
    sum += tmp[i]!;
  }
  for (let i = 0; i < logits.length; i++) out[i] = tmp[i]! / sum;
  return out;
}

export interface Scored {
  readonly index: number;
  readonly score: number;
}

/** The k largest entries, best first; ties keep the lower index first. */
export function topK(values: ArrayLike<number>, k: number): Scored[] {
  if (!Number.isInteger(k) || k < 1) throw new LoupeError('INVALID_ARGUMENT', `k must be a positive integer, got ${k}`);
  const best: Scored[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && v <= best[k - 1]!.score) continue;
    let pos = best.length;
    while (pos > 0 && best[pos - 1]!.score < v) pos--;
    best.splice(pos, 0, { index: i, score: v });
    if (best.length > k) best.pop();
  }
  return best;
}

export interface ImageNetPrediction {
  readonly index: number;
  readonly label: string;
  readonly prob: number;
}

export interface ImageNetResult {
  readonly index: number;
  readonly name: string;
  /** Best first. */
  readonly top: readonly ImageNetPrediction[];
}

export interface ClassifyOptions {
  engine?: Engine | EngineSession;
  /** How many classes per image; default 5. */
  topK?: number;
  batchSize?: number;
  decode?: Omit<DecodeOptions, 'name'>;
  signal?: AbortSignal;
  /** labels.json; default the one beside the weights. */
  labels?: string;
  onProgress?: (p: { done: number; total: number }) => void;
  /** 'throw' (default): the first image that cannot be read or decoded fails the call; 'skip': it is left out and reported to onSkip. */
  onInvalidImage?: 'throw' | 'skip';
  onSkip?: (error: LoupeError, index: number) => void;
}

/** ImageNet top-k {index, label, prob} per image, from the engine's 'probabilities' tap. */
export async function classifyImageNet(images: readonly ImageSource[], options: ClassifyOptions = {}): Promise<ImageNetResult[]> {
  const labels = loadImageNetLabels(options.labels ?? engineLabels(options.engine));
  const k = options.topK ?? 5;
  const feats = await extractFeatures(images, {
    layer: 'probabilities',
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.decode ? { decode: options.decode } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.onInvalidImage ? { onInvalidImage: options.onInvalidImage } : {}),
    ...(options.onSkip ? { onSkip: options.onSkip } : {}),
  });
  return feats.map((f) => ({
    index: f.index,
    name: f.name,
    top: topK(f.features.probabilities, k).map((s) => ({ index: s.index, label: labels[s.index]!, prob: s.score })),
  }));
}

function engineLabels(engine: Engine | EngineSession | undefined): string | undefined {
  return engine && 'weights' in engine ? engine.weights?.labels : undefined;
}
