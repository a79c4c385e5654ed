// images -> decoded 224x224 RGB -> caffe tensor batches -> engine taps -> per-image features.
// Decoding of batch i+1 runs while the engine infers batch i (see threads.ts for why that overlap
// is cheap), so on a CPU the pipeline runs at the engine's speed.
import { Engine, EngineSession, defaultEngineInstance, type TapOutputs } from './engine.js';
import { AbortError, EngineError, LoupeError } from './errors.js';
import { decodeImage, sourceName, type DecodedImage, type DecodeOptions, type ImageSource } from './image/decode.js';
import { tapElements, type TapName } from './model.js';
import { packBatch } from './preprocess.js';
import { threadBudget } from './threads.js';

export interface FeatureProgress {
  /** Images finished (features produced or skipped). */
  readonly done: number;
  readonly total: number;
  readonly skipped: number;
  readonly batch: number;
  readonly batches: number;
  readonly elapsedMs: number;
}

interface CommonExtractOptions {
  /** An engine, or a specific session of one; default: the process-wide default engine. */
  engine?: Engine | EngineSession;
  /** Images per engine run; default 32. */
  batchSize?: number;
  /** How images are decoded (fit 'squash' | 'crop', limitInputPixels). */
  decode?: Omit<DecodeOptions, 'name'>;
  onProgress?: (p: FeatureProgress) => void;
  /** Cancels queued decodes and runs; the promise/iterator rejects with AbortError. */
  signal?: AbortSignal;
  /** Also return each decoded 224x224 RGB image (for reports and heatmaps). */
  keepImages?: boolean;
  /** 'throw' (default): the first bad image fails the call. 'skip': bad images are left out and reported to onSkip. */
  onInvalidImage?: 'throw' | 'skip';
  onSkip?: (error: LoupeError, index: number) => void;
}

export type ExtractOptions<T extends TapName> = CommonExtractOptions & ({ layers: readonly T[]; layer?: never } | { layer: T; layers?: never });

export interface ImageFeatures<T extends TapName> {
  /** Position of the image in the input array. */
  readonly index: number;
  /** Path, given name, or "<buffer #i>". */
  readonly name: string;
  /** One Float32Array per requested layer, NHWC for feature maps (see TAP_SHAPES). */
  readonly features: TapOutputs<T>;
  /** Present when keepImages is set. */
  readonly image?: DecodedImage;
}

const IMAGE_ERROR_CODES = new Set(['IMAGE_DECODE', 'IMAGE_TOO_LARGE', 'IMAGE_EMPTY', 'IMAGE_READ']);

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}

/** Rejects as soon as the signal fires, without waiting for `p` (whose rejection is then ignored). */
function raceAbort<V>(p: Promise<V>, signal: AbortSignal | undefined, onAbort: () => void): Promise<V> {
  if (!signal) return p;
  return new Promise<V>((resolve, reject) => {
    const abort = (): void => {
      onAbort();
      reject(new AbortError(signal.reason));
    };
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(e);
      },
    );
  });
}

async function mapLimit<I, O>(items: readonly I[], limit: number, fn: (item: I) => Promise<O>): Promise<O[]> {
  const out: O[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function describeImages(names: readonly string[]): string {
  const shown = names.slice(0, 3).join(', ');
  return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown;
}

/**
 * Streams feature batches: yields one array per engine batch, in input order. Use this for large
 * sets (a res3d map is 1.6 MB per image) and extractFeatures() when everything fits in memory.
 */
export async function* streamFeatures<T extends TapName>(
  images: readonly ImageSource[],
  options: ExtractOptions<T>,
): AsyncGenerator<ImageFeatures<T>[], void, undefined> {
  const layers: readonly T[] = options.layers ?? [options.layer as T];
  if (layers.length === 0 || layers.some((l) => l === undefined)) throw new LoupeError('INVALID_ARGUMENT', 'name at least one layer');
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new LoupeError('INVALID_ARGUMENT', `batchSize must be a positive integer, got ${batchSize}`);
  const { signal } = options;
  throwIfAborted(signal);

  const budget = threadBudget();
  const session = options.engine instanceof EngineSession ? options.engine : (options.engine ?? (await defaultEngineInstance())).session;
  const total = images.length;
  const batches = Math.ceil(total / batchSize);
  const started = Date.now();
  let done = 0;
  let skipped = 0;

  type Decoded = { index: number; image: DecodedImage } | { index: number; error: LoupeError };
  const decodeBatch = (b: number): Promise<Decoded[]> => {
    const indices = Array.from({ length: Math.min(batchSize, total - b * batchSize) }, (_, k) => b * batchSize + k);
    return mapLimit(indices, budget.decodeConcurrency, async (index): Promise<Decoded> => {
      throwIfAborted(signal); // queued decodes stop as soon as the signal fires
      try {
        return { index, image: await decodeImage(images[index]!, { ...options.decode, name: sourceName(images[index]!, `<buffer #${index}>`) }) };
      } catch (err) {
        if (options.onInvalidImage === 'skip' && err instanceof LoupeError && IMAGE_ERROR_CODES.has(err.code)) return { index, error: err };
        throw err;
      }
    });
  };
  const handled = (p: Promise<Decoded[]>): Promise<Decoded[]> => {
    p.catch(() => {}); // awaited later; this only keeps an early rejection from being "unhandled"
    return p;
  };

  let pending: Promise<Decoded[]> | undefined = batches > 0 ? handled(decodeBatch(0)) : undefined;
  try {
    for (let b = 0; b < batches; b++) {
      const decoded = await raceAbort(pending!, signal, () => {});
      // Start decoding the next batch now: it overlaps with this batch's inference.
      pending = b + 1 < batches ? handled(decodeBatch(b + 1)) : undefined;

      const good: { index: number; image: DecodedImage }[] = [];
      for (const d of decoded) {
        if ('error' in d) {
          skipped++;
          options.onSkip?.(d.error, d.index);
        } else good.push(d);
      }
      const results: ImageFeatures<T>[] = [];
      if (good.length > 0) {
        const tensor = packBatch(good.map((g) => g.image));
        let outputs: TapOutputs<T>;
        try {
          outputs = await raceAbort(session.run(tensor, layers), signal, () => session.cancelPending());
        } catch (err) {
          if (err instanceof EngineError) {
            const names = good.map((g) => g.image.name);
            throw new EngineError(err.engineCode, `${err.message} (images: ${describeImages(names)})`, { input: names[0], cause: err });
          }
          throw err;
        }
        good.forEach((g, k) => {
          const features = {} as TapOutputs<T>;
          for (const tap of layers) {
            const per = tapElements(tap);
            // A copy, so one image's features do not pin the whole batch buffer.
            features[tap] = outputs[tap].slice(k * per, (k + 1) * per);
          }
          results.push(options.keepImages ? { index: g.index, name: g.image.name, features, image: g.image } : { index: g.index, name: g.image.name, features });
        });
      }
      done += decoded.length;
      options.onProgress?.({ done, total, skipped, batch: b + 1, batches, elapsedMs: Date.now() - started });
      yield results;
    }
  } finally {
    // Early exit (error, abort, consumer break): the prefetched decode is abandoned, its errors ignored.
    pending = undefined;
  }
}

/** Extracts the requested layers for every image; see streamFeatures for large sets. */
export async function extractFeatures<T extends TapName>(images: readonly ImageSource[], options: ExtractOptions<T>): Promise<ImageFeatures<T>[]> {
  const all: ImageFeatures<T>[] = [];
  for await (const batch of streamFeatures(images, options)) all.push(...batch);
  return all;
}
