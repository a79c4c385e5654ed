// PatchCore one-class model: train on good images only, score new images, locate the defect.
//
//   train:  good images -> ResNet-50 to res4f -> patch embeddings (feature-extractor.ts) -> greedy
//           k-center coreset memory bank (memory-bank.ts, native) ; a held-out fraction of the good
//           images is scored against the bank to calibrate the thresholds (threshold.ts).
//   score:  image -> embeddings -> exact 1-NN distance per patch (native kNN) -> reweighted image score
//           (scorer.ts) + anomaly map (anomaly-map.ts: 28x28 -> 224 bilinear -> Gaussian sigma 4 ->
//           bilinear to the image's own size), or per tile and stitched in tile mode (tiling.ts).
//
// Scores: `rawScore` is the PatchCore distance; `score` = normalizeScore(raw, threshold) puts the
// decision threshold at 0.5 (see threshold.ts for the exact mapping and what it means).
import { performance } from 'node:perf_hooks';

import { AbortError, LoupeError } from '../../errors.js';
import type { ImageSource } from '../../image/decode.js';
import { createRng } from '../../datasets/random.js';
import { INPUT_ELEMENTS, INPUT_SIZE } from '../../model.js';
import { gaussianBlur, mapSize, patchScoresToMap, resizeBilinear } from './anomaly-map.js';
import { EMBEDDING_DIM, PATCH_GRID, PATCHCORE_TAPS, PATCHES_PER_IMAGE, PatchFeatureExtractor, type EmbeddingScratch, type PatchTapRunner } from './feature-extractor.js';
import { loadMask } from '../../image/mask.js';
import { prepareImage, type PreparedImage } from '../../image/views.js';
import { bankMB, buildMemoryBank, decodeFloat16, encodeFloat16, type BankStorage, type MemoryBank } from './memory-bank.js';
import { createKnnSearcher, scoreEmbeddings, type EmbeddingScores, type KnnNative, type KnnSearcher } from './scorer.js';
import { calibrateThresholds, normalizeScore, type Thresholds } from './threshold.js';
import { TileStitcher } from '../../image/tiles.js';
import { inTurn } from '../../turns.js';

export const PATCHCORE_FORMAT = 'loupe-patchcore';
export const PATCHCORE_VERSION = 1;

export interface PatchCoreConfig {
  /** Random-projection output dim for the embeddings (0 = keep all 1536). */
  projectionDim: number;
  projectionSeed: number;
  /** Fraction of training patches kept in the memory bank. */
  coresetRatio: number;
  /** Projection dim the coreset's distance computations use (PatchCore: 128). */
  coresetProjectionDim: number;
  /** Seed of the coreset and of the validation hold-out. */
  seed: number;
  /** Caps on the bank (null = none). */
  maxBankEntries: number | null;
  maxBankMB: number | null;
  storage: BankStorage;
  /** b of the reweighting (PatchCore/anomalib: 9). */
  supportNeighbours: number;
  /** Gaussian sigma of the anomaly map, in model-input pixels (PatchCore: 4). */
  sigma: number;
  /** Tile mode: overlapping 224x224 tiles at native resolution; null = whole image squashed to 224. */
  tile: { size: number; overlap: number } | null;
  /** Fraction of the good training images held out (not in the bank) to calibrate thresholds. */
  validationFraction: number;
  /** Quantile of the good validation scores used as the threshold when no defects are given. */
  thresholdQuantile: number;
}

export const DEFAULT_PATCHCORE_CONFIG: Readonly<PatchCoreConfig> = {
  projectionDim: 0,
  projectionSeed: 0,
  coresetRatio: 0.01,
  coresetProjectionDim: 128,
  seed: 0,
  maxBankEntries: null,
  maxBankMB: null,
  storage: 'fp32',
  supportNeighbours: 9,
  sigma: 4,
  tile: null,
  validationFraction: 0.1,
  thresholdQuantile: 0.99,
};

/** The engine half of the model: core's Engine (or an EngineSession plus a weights hash). */
export type PatchCoreEngine = PatchTapRunner & { readonly weightsHash?: string };

export interface LabelledDefect {
  source: ImageSource;
  /** Ground-truth mask (grey > 127 = defect); omit when only the image label is known. */
  mask?: ImageSource | null;
}

export interface RunOptions {
  /** Views (images or tiles) per engine run. Default 8. */
  batchSize?: number;
  /** The native kernels; default the addon (core's loadAddon). Tests may pass typescriptKnn. */
  knn?: KnnNative;
  /** Threads for the native kNN/coreset (0 = all cores). */
  threads?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  signal?: AbortSignal;
  onProgress?: (stage: string, done: number, total: number) => void;
  /** Largest accepted width*height of a source image (default the decoder's, 100 MP). */
  limitInputPixels?: number;
}

export interface TrainOptions extends RunOptions {
  config?: Partial<PatchCoreConfig>;
  /** Explicit good validation images (then nothing is held out of the training images). */
  validation?: ImageSource[];
  /** Labelled defective images: thresholds become F1-optimal (image; pixel too when masks are given). */
  defects?: LabelledDefect[];
  /**
   * Sees the patch rows of every bank image as they are computed (whole-image mode): `rows` holds `images`
   * images' [784][dim] rows, the first being bank image `first`, and is reused afterwards (copy what you
   * keep). A hybrid model's trainer takes its head's negatives here, without a second CNN pass.
   */
  onBankRows?: (rows: Float32Array, first: number, images: number) => void;
}

export interface StageTimings {
  /** Decode + resize + caffe (overlapped with the previous batch's inference). */
  prepareMs: number;
  /** ResNet-50 forward to res4f. */
  cnnMs: number;
  /** Pooling, upsampling, concatenation (+ projection). */
  featuresMs: number;
  /** Native nearest-neighbour search + reweighting. */
  knnMs: number;
  /** Anomaly map: upsample, smooth, resize (and stitching). */
  mapMs: number;
}

export interface AnomalyResult {
  name: string;
  /** Normalised score in [0, 1): 0.5 = the image threshold. */
  score: number;
  /** PatchCore image score (reweighted nearest-neighbour distance). */
  rawScore: number;
  isAnomalous: boolean;
  /** Size of the map: the upright source image, scaled down to MAX_MAP_SIDE per side when larger. */
  width: number;
  height: number;
  /** The upright source image's size (the map's, unless the map was capped). */
  imageWidth: number;
  imageHeight: number;
  /** Raw smoothed anomaly map [height][width] (same units as the pixel threshold). */
  map: Float32Array;
  /** The map's maximum, located in source image pixels (the centre of the map pixel when capped). */
  peak: { x: number; y: number; value: number };
  /** This image's share of the batch stage timings. */
  timings: StageTimings;
  /** Only with keepEmbeddings: [views * 784][dim] patch embeddings and their 1-NN distances. */
  embeddings?: Float32Array;
  patchScores?: Float32Array;
  /** Only with keepEmbeddings: the bank row nearest to each patch. */
  nnIdx?: Int32Array;
}

export interface ScoreOptions extends RunOptions {
  /** Return each image's patch embeddings and patch scores (few-shot heads, analysis). */
  keepEmbeddings?: boolean;
}

export interface PatchCoreHeader {
  format: typeof PATCHCORE_FORMAT;
  version: number;
  config: PatchCoreConfig;
  weightsHash: string | null;
  bank: { n: number; d: number; storage: BankStorage; sourcePatches: number; mb: number };
  thresholds: Thresholds;
  /** Raw image scores of the good validation images (for score fusion and reports). */
  goodValidationScores: number[];
  training: { images: number; validationImages: number; seconds: number; createdAt: string };
}

/**
 * The seeded good-validation hold-out PatchCoreModel.train uses (round(fraction * n), at least 1 when
 * n >= 2 and fraction > 0, never all). Exported so a caller can recover the same split later (e.g. to
 * fit a few-shot fusion on images the bank never saw).
 */
export function holdOutValidation<T>(items: readonly T[], fraction: number, seed: number): { bank: T[]; validation: T[] } {
  if (!(fraction > 0) || items.length < 2) return { bank: [...items], validation: [] };
  const order = createRng(`patchcore-validation:${seed}`).shuffle(items.map((_, i) => i));
  const nVal = Math.min(items.length - 1, Math.max(1, Math.round(items.length * fraction)));
  const val = new Set(order.slice(0, nVal));
  return { bank: items.filter((_, i) => !val.has(i)), validation: items.filter((_, i) => val.has(i)) };
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}

async function defaultKnn(): Promise<KnnNative> {
  const { loadAddon } = await import('../../engine.js');
  return loadAddon();
}

function resolveConfig(partial: Partial<PatchCoreConfig> = {}): PatchCoreConfig {
  const c: PatchCoreConfig = { ...DEFAULT_PATCHCORE_CONFIG, ...partial };
  if (!(c.coresetRatio > 0 && c.coresetRatio <= 1)) throw new LoupeError('INVALID_ARGUMENT', `coresetRatio must be in (0, 1], got ${c.coresetRatio}`);
  if (!Number.isInteger(c.projectionDim) || c.projectionDim < 0 || c.projectionDim > EMBEDDING_DIM) {
    throw new LoupeError('INVALID_ARGUMENT', `projectionDim must be an integer in [0, ${EMBEDDING_DIM}], got ${c.projectionDim}`);
  }
  if (c.projectionDim === EMBEDDING_DIM) c.projectionDim = 0;
  if (!(c.validationFraction >= 0 && c.validationFraction < 1)) throw new LoupeError('INVALID_ARGUMENT', `validationFraction must be in [0, 1), got ${c.validationFraction}`);
  if (!(c.thresholdQuantile >= 0 && c.thresholdQuantile <= 1)) throw new LoupeError('INVALID_ARGUMENT', `thresholdQuantile must be in [0, 1], got ${c.thresholdQuantile}`);
  if (!Number.isInteger(c.supportNeighbours) || c.supportNeighbours < 1) throw new LoupeError('INVALID_ARGUMENT', `supportNeighbours must be >= 1`);
  if (c.storage !== 'fp32' && c.storage !== 'fp16') throw new LoupeError('INVALID_ARGUMENT', `storage must be fp32 or fp16`);
  if (c.tile) {
    if (c.tile.size !== INPUT_SIZE) throw new LoupeError('INVALID_ARGUMENT', `tile size must be ${INPUT_SIZE}`);
    if (!(c.tile.overlap >= 0 && c.tile.overlap < 1)) throw new LoupeError('INVALID_ARGUMENT', `tile overlap must be in [0, 1)`);
  }
  return c;
}

/** Throws INVALID_ARGUMENT naming the first setting of `partial` no PatchCore model can use. */
export function checkPatchCoreConfig(partial: Partial<PatchCoreConfig>): void {
  resolveConfig(partial);
}

/** Scratch sets kept for reuse by scoreViews (each holds a batch's embeddings: ~5 MB per image). */
const MAX_SCRATCH_SETS = 4;

/** One engine batch of decoded views and their taps. */
interface ViewBatch {
  images: PreparedImage[];
  res3d: Float32Array;
  res4f: Float32Array;
  views: number;
  /** Decode (overlapped with the previous batch's inference) and the engine run. */
  prepareMs: number;
  cnnMs: number;
}

/**
 * Decodes `sources` and runs the engine to res4f on them, in batches of about `batchSize` views. The next
 * batch is decoded while the engine runs the current one.
 */
export async function* viewBatches(
  engine: PatchTapRunner,
  sources: readonly ImageSource[],
  config: PatchCoreConfig,
  options: RunOptions,
  /** Applied to each decoded image before the engine runs (a hybrid head's test-time flips). */
  transform: (image: PreparedImage) => PreparedImage = (image) => image,
): AsyncGenerator<ViewBatch> {
  const batchSize = Math.max(1, options.batchSize ?? 8);
  const prepOpts = { tile: config.tile, ...(options.limitInputPixels !== undefined ? { limitInputPixels: options.limitInputPixels } : {}) };
  // Images per chunk: whole-image mode = batchSize; tile mode starts at 1 and adapts to tiles/image.
  let cursor = 0;
  let perChunk = config.tile ? 1 : batchSize;
  const prepare = async (start: number, count: number): Promise<{ images: PreparedImage[]; ms: number }> => {
    const t0 = performance.now();
    const images: PreparedImage[] = [];
    // One decode at a time (core's thread policy: the engine owns the cores).
    for (let i = start; i < Math.min(sources.length, start + count); i++) images.push(transform(await prepareImage(sources[i]!, prepOpts)));
    return { images, ms: performance.now() - t0 };
  };
  const handled = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => {}); // awaited later; an early rejection must not be "unhandled"
    return p;
  };
  let next = sources.length > 0 ? handled(prepare(0, perChunk)) : null;
  while (next) {
    checkAbort(options.signal);
    const { images, ms: prepareMs } = await next;
    cursor += images.length;
    if (config.tile && images.length > 0) {
      const tilesPerImage = Math.max(1, Math.round(images.reduce((a, im) => a + im.views, 0) / images.length));
      perChunk = Math.max(1, Math.floor(batchSize / tilesPerImage));
    }
    const input = packViews(images);
    const t1 = performance.now();
    const taps = engine.run(input, PATCHCORE_TAPS);
    next = cursor < sources.length ? handled(prepare(cursor, perChunk)) : null;
    const out = await taps;
    yield { images, res3d: out.res3d, res4f: out.res4f, views: input.batch, prepareMs, cnnMs: performance.now() - t1 };
    options.onProgress?.('embed', cursor, sources.length);
  }
}

/** The views of several prepared images as one engine batch. */
export function packViews(images: readonly PreparedImage[]): { data: Float32Array; batch: number } {
  const views = images.reduce((a, im) => a + im.views, 0);
  if (images.length === 1) return { data: images[0]!.tensor, batch: views };
  const data = new Float32Array(views * INPUT_ELEMENTS);
  let off = 0;
  for (const im of images) {
    data.set(im.tensor, off);
    off += im.tensor.length;
  }
  return { data, batch: views };
}

/** The map and score of one image of a batch from its views' kNN results. */
function assembleOne(im: PreparedImage, view: number, scores: EmbeddingScores, model: PatchCoreModel, rows: Float32Array, keepEmbeddings: boolean): Omit<AnomalyResult, 'timings'> {
  const { config, thresholds } = model;
  const d = model.bank.d;
  const out = mapSize(im.width, im.height);
  let raw: number;
  let map: Float32Array;
  if (!im.tiles) {
    const ps = scores.patchScores.subarray(view * PATCHES_PER_IMAGE, (view + 1) * PATCHES_PER_IMAGE);
    map = patchScoresToMap(ps, PATCH_GRID, { inputSize: INPUT_SIZE, sigma: config.sigma, outHeight: out.height, outWidth: out.width });
    raw = scores.imageScores[view]!;
  } else {
    const st = new TileStitcher(im.tiledWidth, im.tiledHeight);
    raw = -Infinity;
    im.tiles.forEach((tile, k) => {
      const v = view + k;
      const ps = scores.patchScores.subarray(v * PATCHES_PER_IMAGE, (v + 1) * PATCHES_PER_IMAGE);
      st.add(resizeBilinear(ps, PATCH_GRID, PATCH_GRID, INPUT_SIZE, INPUT_SIZE), tile, INPUT_SIZE);
      raw = Math.max(raw, scores.imageScores[v]!);
    });
    const smooth = gaussianBlur(st.result(), im.tiledHeight, im.tiledWidth, config.sigma);
    map = im.tiledWidth === out.width && im.tiledHeight === out.height ? smooth : resizeBilinear(smooth, im.tiledHeight, im.tiledWidth, out.height, out.width);
  }
  let arg = 0;
  for (let i = 1; i < map.length; i++) if (map[i]! > map[arg]!) arg = i;
  const mx = arg % out.width;
  const my = Math.floor(arg / out.width);
  const r: Omit<AnomalyResult, 'timings'> = {
    name: im.name,
    score: normalizeScore(raw, thresholds.image),
    rawScore: raw,
    isAnomalous: raw >= thresholds.image,
    width: out.width,
    height: out.height,
    imageWidth: im.width,
    imageHeight: im.height,
    map,
    // In source pixels: a capped map's pixel covers several, the peak is the centre of its block.
    peak: {
      x: out.width === im.width ? mx : Math.min(im.width - 1, Math.floor(((mx + 0.5) * im.width) / out.width)),
      y: out.height === im.height ? my : Math.min(im.height - 1, Math.floor(((my + 0.5) * im.height) / out.height)),
      value: map[arg]!,
    },
  };
  if (keepEmbeddings) {
    r.embeddings = rows.slice(view * PATCHES_PER_IMAGE * d, (view + im.views) * PATCHES_PER_IMAGE * d);
    r.patchScores = scores.patchScores.slice(view * PATCHES_PER_IMAGE, (view + im.views) * PATCHES_PER_IMAGE);
    r.nnIdx = scores.nnIdx.slice(view * PATCHES_PER_IMAGE, (view + im.views) * PATCHES_PER_IMAGE);
  }
  return r;
}

/**
 * Per-image maps and scores from one batch's kNN results. Each map is built in an event-loop turn of its
 * own (turns.ts; bounded by MAX_MAP_SIDE), so a server's other calls (health checks included) are answered
 * between them. `rows` must stay untouched until it resolves.
 */
async function assembleResults(
  batch: { images: readonly PreparedImage[]; rows: Float32Array },
  scores: EmbeddingScores,
  model: PatchCoreModel,
  keepEmbeddings: boolean,
): Promise<{ results: Omit<AnomalyResult, 'timings'>[]; mapMs: number }> {
  let mapMs = 0;
  const results: Omit<AnomalyResult, 'timings'>[] = [];
  let view = 0;
  for (const im of batch.images) {
    const first = view;
    results.push(
      await inTurn(() => {
        const t0 = performance.now();
        const r = assembleOne(im, first, scores, model, batch.rows, keepEmbeddings);
        mapMs += performance.now() - t0;
        return r;
      }),
    );
    view += im.views;
  }
  return { results, mapMs };
}

export class PatchCoreModel {
  private constructor(
    readonly config: PatchCoreConfig,
    readonly bank: MemoryBank,
    public thresholds: Thresholds,
    readonly weightsHash: string | null,
    public goodValidationScores: number[],
    readonly training: PatchCoreHeader['training'],
  ) {}

  /** Bank size in MiB as stored (fp32 or fp16). */
  get bankMB(): number {
    return bankMB(this.bank);
  }

  /** A feature extractor with this model's projection over `engine`. */
  extractor(engine: PatchTapRunner): PatchFeatureExtractor {
    return new PatchFeatureExtractor(engine, { projectionDim: this.config.projectionDim, projectionSeed: this.config.projectionSeed });
  }

  /** Trains on good images: memory bank from the training part, thresholds from the held-out part. */
  static async train(engine: PatchCoreEngine, goodImages: readonly ImageSource[], options: TrainOptions = {}): Promise<PatchCoreModel> {
    const t0 = performance.now();
    const config = resolveConfig(options.config);
    if (goodImages.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'PatchCore needs at least one good training image');
    let bankImages = [...goodImages];
    let validation: ImageSource[] = options.validation ? [...options.validation] : [];
    if (!options.validation) ({ bank: bankImages, validation } = holdOutValidation(goodImages, config.validationFraction, config.seed));
    const knn = options.knn ?? (await defaultKnn());
    const extractor = new PatchFeatureExtractor(engine, { projectionDim: config.projectionDim, projectionSeed: config.projectionSeed });
    const d = extractor.dim;

    // Embeddings of every bank view; one allocation when the view count is known (whole-image mode).
    const embedOpts = { ...options, onProgress: (_s: string, done: number, all: number) => options.onProgress?.('embed-train', done, all) };
    let features: Float32Array;
    if (!config.tile) {
      features = new Float32Array(bankImages.length * PATCHES_PER_IMAGE * d);
      let off = 0;
      for await (const b of viewBatches(engine, bankImages, config, embedOpts)) {
        const rows = extractor.fromTaps(b.res3d, b.res4f, b.views, true);
        options.onBankRows?.(rows, off / (PATCHES_PER_IMAGE * d), b.views);
        features.set(rows, off);
        off += rows.length;
      }
    } else {
      const chunks: Float32Array[] = [];
      let total = 0;
      for await (const b of viewBatches(engine, bankImages, config, embedOpts)) {
        // A copy: the reused buffer is overwritten by the next batch.
        const rows = extractor.fromTaps(b.res3d, b.res4f, b.views, true).slice();
        chunks.push(rows);
        total += rows.length;
      }
      features = new Float32Array(total);
      let off = 0;
      for (const c of chunks.splice(0)) {
        features.set(c, off);
        off += c.length;
      }
    }
    checkAbort(options.signal);
    const n = features.length / d;
    const bankOpts: Parameters<typeof buildMemoryBank>[4] = {
      coresetRatio: config.coresetRatio,
      storage: config.storage,
      seed: config.seed,
      coresetProjectionDim: config.coresetProjectionDim,
    };
    if (config.maxBankEntries !== null) bankOpts.maxEntries = config.maxBankEntries;
    if (config.maxBankMB !== null) bankOpts.maxMB = config.maxBankMB;
    if (options.threads !== undefined) bankOpts.threads = options.threads;
    if (options.backend !== undefined) bankOpts.backend = options.backend;
    const bank = await buildMemoryBank(knn, features, n, d, bankOpts, (done, total) => options.onProgress?.('coreset', done, total));
    features = new Float32Array(0);
    checkAbort(options.signal);

    const provisional: Thresholds = { image: Infinity, pixel: Infinity, method: 'quantile', quantile: config.thresholdQuantile, goodCount: 0, defectCount: 0 };
    const model = new PatchCoreModel(config, bank, provisional, engine.weightsHash ?? null, [], {
      images: bankImages.length,
      validationImages: validation.length,
      seconds: 0,
      createdAt: new Date().toISOString(),
    });
    if (validation.length > 0) {
      await model.calibrate(engine, validation, options.defects ?? [], { ...options, knn });
    } else {
      // A single training image: thresholds from the bank image itself (optimistic; say so).
      await model.calibrate(engine, bankImages, options.defects ?? [], { ...options, knn });
    }
    // A stage that ends inside one engine batch never reaches the per-batch checks: an interrupt
    // during the last one must still not hand back a model (the caller would save it).
    checkAbort(options.signal);
    model.training.seconds = (performance.now() - t0) / 1000;
    return model;
  }

  /**
   * Sets the thresholds from good images never in the bank (quantile), or F1-optimal when labelled
   * defects are given (pixel threshold F1-optimal too when they have masks).
   */
  async calibrate(engine: PatchCoreEngine, good: readonly ImageSource[], defects: readonly LabelledDefect[] = [], options: RunOptions = {}): Promise<Thresholds> {
    if (good.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'calibration needs at least one good image');
    const goodRes = await this.score(engine, good, options);
    const goodScores = goodRes.map((r) => r.rawScore);
    const goodMax = goodRes.map((r) => r.peak.value);
    let defectScores: number[] = [];
    let pixelScores: Float32Array | undefined;
    let pixelLabels: Uint8Array | undefined;
    if (defects.length > 0) {
      const defRes = await this.score(engine, defects.map((x) => x.source), options);
      defectScores = defRes.map((r) => r.rawScore);
      const masked = defects.map((x, i) => ({ x, r: defRes[i]! })).filter((p) => p.x.mask);
      if (masked.length > 0) {
        const all = [...goodRes.map((r) => ({ r, mask: null as ImageSource | null })), ...masked.map((p) => ({ r: p.r, mask: p.x.mask ?? null }))];
        const total = all.reduce((a, p) => a + p.r.map.length, 0);
        pixelScores = new Float32Array(total);
        pixelLabels = new Uint8Array(total);
        let off = 0;
        for (const p of all) {
          pixelScores.set(p.r.map, off);
          pixelLabels.set(await loadMask(p.mask, p.r.width, p.r.height), off);
          off += p.r.map.length;
        }
      }
    }
    const input: Parameters<typeof calibrateThresholds>[0] = { goodImageScores: goodScores, goodMapMaxima: goodMax, defectImageScores: defectScores, quantile: this.config.thresholdQuantile };
    if (pixelScores && pixelLabels) {
      input.pixelScores = pixelScores;
      input.pixelLabels = pixelLabels;
    }
    this.thresholds = calibrateThresholds(input);
    this.goodValidationScores = goodScores;
    return this.thresholds;
  }

  /** Scores images (results in input order). */
  async score(engine: PatchCoreEngine, sources: readonly ImageSource[], options: ScoreOptions = {}): Promise<AnomalyResult[]> {
    const out: AnomalyResult[] = [];
    for await (const r of this.scoreIter(engine, sources, options)) out.push(r);
    return out;
  }

  /** Streams results image by image (in input order). */
  async *scoreIter(engine: PatchCoreEngine, sources: readonly ImageSource[], options: ScoreOptions = {}): AsyncGenerator<AnomalyResult> {
    // The index first: a model whose bank cannot be searched fails before any image is decoded.
    await this.knnIndex(options.knn ?? (await defaultKnn()), options);
    for await (const b of viewBatches(engine, sources, this.config, options)) {
      yield* await this.scoreViews(b.images, b, { ...options, prepareMs: b.prepareMs, cnnMs: b.cnnMs });
    }
  }

  /**
   * Scores images already decoded into their views (image/views.ts prepareImage with this model's `tile`)
   * from the engine's res3d and res4f outputs for those views, in order. The inference half of the
   * pipeline is the caller's (a dynamic batcher, say); this is the post-processing half. Safe to call
   * concurrently.
   */
  async scoreViews(
    images: readonly PreparedImage[],
    taps: { res3d: Float32Array; res4f: Float32Array },
    options: ScoreOptions & { prepareMs?: number; cnnMs?: number } = {},
  ): Promise<AnomalyResult[]> {
    const views = images.reduce((a, im) => a + im.views, 0);
    const flipped = images.find((im) => im.flips?.length);
    if (flipped) throw new LoupeError('INVALID_ARGUMENT', `${flipped.name}: flipped views are a hybrid head's (HybridScorer.scoreViews), not the memory bank's`);
    // Embeddings go into a scratch set of this call's own (a pool: concurrent calls each take one, and a
    // fresh ~5 MB per image would cost more than the whole scoring in allocation and GC).
    const scratch = this.scratchPool.pop() ?? { emb: new Float32Array(0), proj: new Float32Array(0) };
    let t0: number, t1: number, t2: number;
    let assembled: Awaited<ReturnType<typeof assembleResults>>;
    try {
      t0 = performance.now();
      const rows = this.featureExtractor().fromTapsInto(taps.res3d, taps.res4f, views, scratch);
      t1 = performance.now();
      const index = await this.knnIndex(options.knn ?? (await defaultKnn()), options);
      const scores = await scoreEmbeddings(index, this.bank, rows, views, PATCHES_PER_IMAGE, { supportNeighbours: this.config.supportNeighbours });
      t2 = performance.now();
      // assembleResults copies what it keeps (keepEmbeddings slices), so the scratch is free afterwards.
      assembled = await assembleResults({ images, rows }, scores, this, options.keepEmbeddings ?? false);
    } finally {
      if (this.scratchPool.length < MAX_SCRATCH_SETS) this.scratchPool.push(scratch);
    }
    const { results, mapMs } = assembled;
    const share = 1 / Math.max(1, images.length);
    return results.map((r) => ({
      ...r,
      timings: {
        prepareMs: (options.prepareMs ?? 0) * share,
        cnnMs: (options.cnnMs ?? 0) * share,
        featuresMs: (t1 - t0) * share,
        knnMs: (t2 - t1) * share,
        mapMs: mapMs * share,
      },
    }));
  }

  /** The patch embeddings (bank space, [views * 784][d]) of `views` views' taps, in a fresh array. */
  embedTaps(taps: { res3d: Float32Array; res4f: Float32Array }, views: number): Float32Array {
    return this.featureExtractor().fromTapsInto(taps.res3d, taps.res4f, views, { emb: new Float32Array(0), proj: new Float32Array(0) });
  }

  private extractorCache: PatchFeatureExtractor | undefined;
  private readonly scratchPool: EmbeddingScratch[] = [];

  /** The model's patch feature extractor for taps computed elsewhere (its projection is built once). */
  private featureExtractor(): PatchFeatureExtractor {
    this.extractorCache ??= this.extractor({
      run: () => Promise.reject(new LoupeError('INVALID_ARGUMENT', 'this extractor only turns taps into embeddings')),
    });
    return this.extractorCache;
  }

  // One kNN index per (kernels, backend, threads), built on first use and kept with the model (the bank
  // never changes): building the CPU index's subspace costs ~0.4 s for a 1% bank.
  private readonly indexes = new WeakMap<KnnNative, Map<string, Promise<KnnSearcher>>>();

  /** The kNN index scoring uses (built once, then shared by every scoreIter call). */
  knnIndex(knn: KnnNative, options: Pick<RunOptions, 'backend' | 'threads'> = {}): Promise<KnnSearcher> {
    let byOpts = this.indexes.get(knn);
    if (!byOpts) this.indexes.set(knn, (byOpts = new Map()));
    const key = `${options.backend ?? ''}:${options.threads ?? ''}`;
    let index = byOpts.get(key);
    if (!index) {
      index = createKnnSearcher(knn, this.bank, options);
      index.catch(() => byOpts.delete(key)); // a failed build is retried next time
      byOpts.set(key, index);
    }
    return index;
  }

  /** The model as a JSON header plus one binary array (the bank, fp32 or fp16 bits). */
  serialize(): { header: PatchCoreHeader; bank: Float32Array | Uint16Array } {
    const header: PatchCoreHeader = {
      format: PATCHCORE_FORMAT,
      version: PATCHCORE_VERSION,
      config: this.config,
      weightsHash: this.weightsHash,
      bank: { n: this.bank.n, d: this.bank.d, storage: this.bank.storage, sourcePatches: this.bank.sourcePatches, mb: this.bankMB },
      thresholds: this.thresholds,
      goodValidationScores: this.goodValidationScores,
      training: this.training,
    };
    return { header, bank: this.bank.storage === 'fp16' ? encodeFloat16(this.bank.vectors) : this.bank.vectors };
  }

  /** Inverse of serialize(). */
  static deserialize(header: PatchCoreHeader, bank: Float32Array | Uint16Array): PatchCoreModel {
    if (header.format !== PATCHCORE_FORMAT) throw new LoupeError('INVALID_ARGUMENT', `not a PatchCore model (format ${String(header.format)})`);
    if (header.version > PATCHCORE_VERSION) throw new LoupeError('INVALID_ARGUMENT', `PatchCore model version ${header.version} is newer than this Loupe (${PATCHCORE_VERSION})`);
    const { n, d, storage, sourcePatches } = header.bank;
    const vectors = storage === 'fp16' ? (bank instanceof Uint16Array ? decodeFloat16(bank) : null) : bank instanceof Float32Array ? bank : null;
    if (!vectors || vectors.length !== n * d) throw new LoupeError('INVALID_ARGUMENT', `PatchCore bank: expected ${n} x ${d} ${storage} values`);
    const config = resolveConfig(header.config);
    // A file that loads but could never score (a reshaped bank, thresholds or smoothing no scorer can use)
    // is refused here, at load, rather than failing or misjudging every image later.
    const dim = config.projectionDim > 0 ? config.projectionDim : EMBEDDING_DIM;
    if (d !== dim) throw new LoupeError('INVALID_ARGUMENT', `PatchCore bank rows have ${d} dims; the config's features have ${dim}`);
    if (!(n >= 1)) throw new LoupeError('INVALID_ARGUMENT', 'PatchCore bank is empty');
    const t = header.thresholds;
    if (!t || !(t.image > 0) || !(t.pixel > 0) || Number.isNaN(t.image) || Number.isNaN(t.pixel)) {
      throw new LoupeError('INVALID_ARGUMENT', `thresholds must be positive numbers, got image ${String(t?.image)}, pixel ${String(t?.pixel)}`);
    }
    if (!(config.sigma >= 0 && config.sigma <= 64)) throw new LoupeError('INVALID_ARGUMENT', `sigma must be in [0, 64] (model-input pixels), got ${config.sigma}`);
    return new PatchCoreModel(config, { vectors, n, d, storage, sourcePatches }, header.thresholds, header.weightsHash, header.goodValidationScores ?? [], header.training);
  }

  /** One-line description for logs and reports. */
  describe(): string {
    const c = this.config;
    return (
      `PatchCore: bank ${this.bank.n} x ${this.bank.d} ${this.bank.storage} (${this.bankMB.toFixed(1)} MB, ` +
      `${((100 * this.bank.n) / this.bank.sourcePatches).toFixed(2)}% of ${this.bank.sourcePatches} patches), ` +
      `b=${c.supportNeighbours}, sigma=${c.sigma}${c.tile ? `, tiles 224 overlap ${c.tile.overlap}` : ''}; ` +
      `thresholds image ${fmt(this.thresholds.image)} pixel ${fmt(this.thresholds.pixel)} (${this.thresholds.method})`
    );
  }
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : String(x);
}

