// The quality experiments on cached features (see cache.ts): one change at a time against a baseline, for
// every dev category and split seed, under the held-out protocol of hybrid models (hybridHoldOut: F of
// test/good and of each defect type held out, group-aware with groups.csv, --shots N per type).
import {
  auroc,
  holdOutValidation,
  hybridHoldOut,
  loadMask,
  patchLabelsFromMask,
  patchScoresToMap,
  PixelMetricsAccumulator,
  trainLogistic,
  logisticLogits,
  trainMlp,
  mlpLogits,
  type MlpModel,
  SparseRandomProjection,
  type LogisticModel,
} from '../../../packages/core/src/internal.js';
import { bankScores, D, embed, log, native, P, type BankScores, type CategoryData, type FeatureConfig, type TapStore } from './cache.js';

export interface Protocol {
  split: number;
  shots: number;
  /** Good training images held out of the bank (validation for thresholds / fusion statistics). */
  valFraction: number;
}

export interface SeedContext {
  cat: CategoryData;
  store: TapStore;
  seed: number;
  f: FeatureConfig;
  bankItems: number[];
  valItems: number[];
  trainDefects: number[];
  test: number[];
  y: number[];
  bs: BankScores;
  bankSet: Set<number>;
  /** Flipped views of the defects (flip augmentation), when loaded. */
  augment?: Partial<Record<'hflip' | 'vflip', TapStore>>;
  /** Flipped views of every image (test-time flips), when loaded. */
  tta?: Partial<Record<'hflip' | 'vflip' | 'hvflip', TapStore>>;
  /** The up448 view (2x input as four 224 tiles), for a tiled head, when loaded. */
  tiles?: TapStore;
  /** The official protocol (train/good vs test/) instead of the hybrid hold-out. */
  official: boolean;
}

export async function seedContext(
  cat: CategoryData,
  store: TapStore,
  seed: number,
  proto: Protocol,
  f: FeatureConfig,
  cacheRoot: string,
  opts: { official?: boolean; key?: string; coresetSeed?: number; ratio?: number } = {},
): Promise<SeedContext> {
  const items = cat.items.map((it, i) => ({ ...it, i }));
  let trainGood: typeof items;
  let trainDefects: typeof items = [];
  let test: typeof items;
  if (opts.official) {
    trainGood = items.filter((i) => i.mvtecSplit === 'train');
    test = items.filter((i) => i.mvtecSplit === 'test');
  } else {
    const s = hybridHoldOut(items, { split: proto.split, shots: proto.shots, seed, ...(cat.groups ? { groups: cat.groups } : {}) });
    trainGood = s.trainGood;
    trainDefects = s.trainDefects;
    test = s.test;
  }
  const { bank, validation } = holdOutValidation(trainGood, proto.valFraction, opts.official ? seed : 0);
  const bankItems = bank.map((b) => b.i);
  const key = `${opts.key ?? (opts.official ? 'official' : 'hybrid')}-s${seed}-v${proto.valFraction}`;
  const bs = await bankScores(store, cat, bankItems, f, key, cacheRoot, { ...(opts.coresetSeed !== undefined ? { coresetSeed: opts.coresetSeed } : {}), ...(opts.ratio !== undefined ? { ratio: opts.ratio } : {}) });
  return {
    cat,
    store,
    seed,
    f,
    bankItems,
    valItems: validation.map((v) => v.i),
    trainDefects: trainDefects.map((d) => d.i),
    test: test.map((t) => t.i),
    y: test.map((t) => (t.label === 'good' ? 0 : 1)),
    bs,
    bankSet: new Set(bankItems),
    official: Boolean(opts.official),
  };
}

// ------------------------------------------------------------------------------------------------
// PatchCore image scores

/** Patch scores of item i: mean of the first kk neighbour distances (kk = 1: the NN distance). */
export function patchScores(ctx: SeedContext, i: number, kk = 1): Float32Array {
  const { dist, k } = ctx.bs;
  const d = dist[i]!;
  const n = d.length / k;
  const out = new Float32Array(n);
  const first = looFirst(ctx, i);
  for (let p = 0; p < n; p++) {
    let s = 0;
    const f = first ? first[p]! : 0;
    for (let j = 0; j < kk; j++) s += d[p * k + Math.min(k - 1, f + j)]!;
    out[p] = s / kk;
  }
  return out;
}

const looCache = new WeakMap<SeedContext, Map<number, Int8Array | null>>();
/**
 * For a bank image: per patch, the rank of its first neighbour from ANOTHER image (leave-own-image-out:
 * what the patch would see were the image not in the bank); null for images not in the bank.
 */
export function looFirst(ctx: SeedContext, i: number): Int8Array | null {
  let m = looCache.get(ctx);
  if (!m) looCache.set(ctx, (m = new Map()));
  if (m.has(i)) return m.get(i)!;
  let out: Int8Array | null = null;
  if (ctx.bankSet.has(i)) {
    const { idx, k, rowImage } = ctx.bs;
    const n = idx[i]!.length / k;
    out = new Int8Array(n);
    for (let p = 0; p < n; p++) {
      let j = 0;
      while (j < k - 1 && rowImage[idx[i]![p * k + j]!] === i) j++;
      out[p] = j;
    }
  }
  m.set(i, out);
  return out;
}

/** The nearest bank row of patch p of item i (leave-own-image-out for bank images). */
export function nnRow(ctx: SeedContext, i: number, p: number): number {
  const f = looFirst(ctx, i);
  return ctx.bs.idx[i]![p * ctx.bs.k + (f ? f[p]! : 0)]!;
}

export function maxOf(x: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
  return m;
}

export function topMean(x: ArrayLike<number>, t: number): number {
  const s = Array.from(x).sort((a, b) => b - a);
  let sum = 0;
  for (let i = 0; i < Math.min(t, s.length); i++) sum += s[i]!;
  return sum / Math.min(t, s.length);
}

const supportCache = new WeakMap<BankScores, Promise<Int32Array>>();
/** The b nearest bank rows of every bank row (reweighting). */
function bankSupport(bs: BankScores, b: number): Promise<Int32Array> {
  let p = supportCache.get(bs);
  if (!p) {
    p = (async () => {
      const a = await native();
      const ix = await a.createKnnIndex(bs.bank, bs.n, D, { threads: 2 });
      return (await ix.search(bs.bank, bs.n, b)).idx;
    })();
    supportCache.set(bs, p);
  }
  return p;
}

/** PatchCore's reweighted image score (b = 9), from the cached NN and the image's embedding. */
export async function reweighted(ctx: SeedContext, i: number, rows?: Float32Array): Promise<number> {
  const b = 9;
  const sup = await bankSupport(ctx.bs, b);
  const ps = patchScores(ctx, i);
  let pStar = 0;
  for (let p = 1; p < ps.length; p++) if (ps[p]! > ps[pStar]!) pStar = p;
  const m = nnRow(ctx, i, pStar);
  const x = (rows ?? embed(ctx.store, i, ctx.f)).subarray(pStar * D, (pStar + 1) * D);
  const ds: number[] = [];
  const support = [m, ...Array.from(sup.subarray(m * b, (m + 1) * b)).filter((r) => r !== m)].slice(0, b);
  for (const r of support) {
    let s = 0;
    for (let c = 0; c < D; c++) {
      const t = x[c]! - ctx.bs.bank[r * D + c]!;
      s += t * t;
    }
    ds.push(Math.sqrt(s));
  }
  const mx = Math.max(...ds);
  const e = ds.map((v) => Math.exp(v - mx));
  const w = 1 - e[0]! / e.reduce((a, v) => a + v, 0);
  return w * ps[pStar]!;
}

// ------------------------------------------------------------------------------------------------
// Maps and pixel metrics

/** A patch score grid (one view, or 4 tiles of the 448 view stitched) as a 256x256 map. */
export function toMap(ctx: SeedContext, patch: Float32Array, side = 256, sigma = 4): Float32Array {
  if (ctx.store.views === 1) return patchScoresToMap(patch, 28, { inputSize: 224, sigma, outHeight: side, outWidth: side });
  const g = new Float32Array(56 * 56);
  for (let t = 0; t < 4; t++)
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) g[((t >> 1) * 28 + y) * 56 + (t & 1) * 28 + x] = patch[t * P + y * 28 + x]!;
  return patchScoresToMap(g, 56, { inputSize: 448, sigma: sigma * 2, outHeight: side, outWidth: side });
}

const maskCache = new Map<string, Uint8Array>();
export async function mask256(path: string | undefined): Promise<Uint8Array | null> {
  if (!path) return null;
  let m = maskCache.get(path);
  if (!m) {
    m = await loadMask(path, 256, 256);
    maskCache.set(path, m);
  }
  return m;
}

/** Pixel AUROC over the test images (good ones all-normal; defective ones with a non-empty mask). */
export async function pixelAuroc(ctx: SeedContext, mapOf: (i: number) => Float32Array): Promise<number | null> {
  const samples: { scores: Float32Array; mask: Uint8Array | null }[] = [];
  for (const i of ctx.test) {
    const it = ctx.cat.items[i]!;
    if (it.label === 'good') samples.push({ scores: mapOf(i), mask: null });
    else {
      const m = await mask256(it.maskPath);
      if (m && m.some((v) => v !== 0)) samples.push({ scores: mapOf(i), mask: m });
    }
  }
  if (!samples.some((s) => s.mask)) return null;
  let min = Infinity, max = -Infinity;
  for (const s of samples) for (const v of s.scores) (v < min && (min = v), v > max && (max = v));
  const acc = new PixelMetricsAccumulator({ min, max }, { bins: 16384, maxFpr: 0.3 });
  for (const s of samples) acc.add({ scores: s.scores, mask: s.mask, width: 256, height: 256 });
  return acc.result().pixelAuroc;
}

export function imageAuroc(ctx: SeedContext, score: (i: number) => number): number {
  return auroc(ctx.test.map(score), ctx.y);
}

// ------------------------------------------------------------------------------------------------
// The supervised head

export interface HeadConfig {
  /**
   * Patch features: the embedding, its residual to the nearest bank row, both, + the NN distance; 'xm' the
   * embedding minus its image's mean patch (per view), 'xg' the embedding beside its image's mean patch.
   */
  input: 'x' | 'r' | 'xr' | 'xd' | 'rd' | 'xm' | 'xg';
  /** Projection of each part to this many dims (0 = none). */
  proj: number;
  /** Negatives: 'val' = validation goods (not in the bank), 'bank' = bank goods, 'all'. */
  negatives: 'val' | 'bank' | 'all';
  /** Images of negatives at most. */
  negImages: number;
  /** 'mask' or 'image' (top-4 PatchCore patches of each defect). */
  labels: 'mask' | 'image';
  l2: number;
  epochs: number;
  maxNegatives: number;
  positiveFraction?: number;
  ignoreRing?: number;
  /** Hard negatives: the top `hardPerImage` patches (by leave-own-image-out distance) of every bank image. */
  hardPerImage?: number;
  /** Flipped copies of the labelled defects as more positives (their taps in ctx.augment). */
  augment?: ('hflip' | 'vflip')[];
  /** Negatives: this many random patches of EVERY negative-pool image (instead of all patches of negImages). */
  patchesPerImage?: number;
  /** A one-hidden-layer MLP head instead of the logistic one. */
  mlp?: { hidden: number; epochs: number; l2: number; lr?: number };
  /** Seed of the sparse projection (default 1). */
  projSeed?: number;
  /** Average the patch logits of this many heads (projection seeds projSeed, projSeed+1, ...). */
  ensemble?: number;
  /** The head's own embedding (pool, layer weight); the bank's (ctx.f) when undefined. */
  feat?: FeatureConfig;
  /** Ensemble member e reads memberFeat[e % length] (a multi-neighbourhood ensemble); else all read feat. */
  memberFeat?: FeatureConfig[];
  /** The head reads the 2x input as four 224 tiles (ctx.tiles: 4 x 784 patches, each 4 source px); the bank stays at 1x. */
  tiles?: boolean;
}

export const DEFAULT_HEAD: HeadConfig = { input: 'x', proj: 256, negatives: 'bank', negImages: 60, labels: 'mask', l2: 1e-2, epochs: 30, maxNegatives: 20000 };

export class HeadFeatures {
  private readonly proj: SparseRandomProjection | null;
  readonly dim: number;
  constructor(
    private readonly ctx: SeedContext,
    readonly cfg: HeadConfig,
  ) {
    this.proj = cfg.proj > 0 ? new SparseRandomProjection({ inDim: D, outDim: cfg.proj, seed: cfg.projSeed ?? 1 }) : null;
    const part = cfg.proj > 0 ? cfg.proj : D;
    this.dim = cfg.input === 'xr' || cfg.input === 'xg' ? 2 * part : cfg.input === 'xd' || cfg.input === 'rd' ? part + 1 : part;
  }

  private readonly cache = new Map<number, Float32Array>();

  /** [views*784][dim] head features of item i (cached). */
  rows(i: number): Float32Array {
    let r = this.cache.get(i);
    if (!r) {
      r = this.compute(i);
      this.cache.set(i, r);
    }
    return r;
  }

  rowsUncached(i: number): Float32Array {
    return this.cache.get(i) ?? this.compute(i);
  }

  /** Head features of a flipped view of item i (embedding only). */
  flippedRows(i: number, store: TapStore): Float32Array {
    if (this.cfg.input !== 'x') throw new Error('flip augmentation needs the embedding-only head');
    const x = embed(store, i, this.cfg.feat ?? this.ctx.f);
    return this.proj ? this.proj.apply(x, x.length / D) : x;
  }

  private compute(i: number, emb?: Float32Array): Float32Array {
    if (this.cfg.tiles && !this.ctx.tiles) throw new Error('a tiled head needs ctx.tiles');
    const x = emb ?? embed(this.cfg.tiles ? this.ctx.tiles! : this.ctx.store, i, this.cfg.feat ?? this.ctx.f);
    const n = x.length / D;
    const { bank } = this.ctx.bs;
    const dist1 = this.cfg.input === 'xd' || this.cfg.input === 'rd' ? patchScores(this.ctx, i) : null;
    const part = this.proj ? this.cfg.proj : D;
    const need = this.cfg.input === 'r' || this.cfg.input === 'xr' || this.cfg.input === 'rd';
    let r: Float32Array | null = null;
    if (this.cfg.input === 'xm' || this.cfg.input === 'xg') {
      // The image's mean patch per view: 'xm' subtracts it (local deviation only), 'xg' appends it (context).
      const g = new Float32Array(n * D);
      for (let v = 0; v < n / P; v++) {
        const m = new Float64Array(D);
        for (let p = v * P; p < (v + 1) * P; p++) for (let c = 0; c < D; c++) m[c] = m[c]! + x[p * D + c]!;
        for (let c = 0; c < D; c++) m[c] = m[c]! / P;
        for (let p = v * P; p < (v + 1) * P; p++) for (let c = 0; c < D; c++) g[p * D + c] = this.cfg.input === 'xm' ? x[p * D + c]! - m[c]! : m[c]!;
      }
      if (this.cfg.input === 'xm') {
        const pg = this.proj ? this.proj.apply(g, n) : g;
        return pg;
      }
      r = g;
    } else if (need) {
      r = new Float32Array(n * D);
      for (let p = 0; p < n; p++) {
        const j = nnRow(this.ctx, i, p);
        for (let c = 0; c < D; c++) r[p * D + c] = x[p * D + c]! - bank[j * D + c]!;
      }
    }
    const px = this.cfg.input === 'r' || this.cfg.input === 'rd' ? null : this.proj ? this.proj.apply(x, n) : x;
    const pr = r ? (this.proj ? this.proj.apply(r, n) : r) : null;
    const out = new Float32Array(n * this.dim);
    for (let p = 0; p < n; p++) {
      let o = p * this.dim;
      if (px) (out.set(px.subarray(p * part, (p + 1) * part), o), (o += part));
      if (pr) (out.set(pr.subarray(p * part, (p + 1) * part), o), (o += part));
      if (dist1) out[o] = dist1[p]!;
    }
    return out;
  }
}

export interface TrainedHead {
  feats: HeadFeatures;
  model: LogisticModel | null;
  mlp?: MlpModel;
}

function flipMask(m: Uint8Array, how: 'hflip' | 'vflip'): Uint8Array {
  const out = new Uint8Array(m.length);
  for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) out[y * 256 + x] = m[(how === 'vflip' ? 255 - y : y) * 256 + (how === 'hflip' ? 255 - x : x)]!;
  return out;
}

function maskLabelOptions(cfg: HeadConfig): { positiveFraction?: number; ignoreRing?: number } {
  return { ...(cfg.positiveFraction !== undefined ? { positiveFraction: cfg.positiveFraction } : {}), ...(cfg.ignoreRing !== undefined ? { ignoreRing: cfg.ignoreRing } : {}) };
}

/** Index in a tiled head's 4 x 784 patches of cell (Y, X) of the stitched 56 x 56 grid (tiles row-major). */
function tileCell(Y: number, X: number): number {
  return ((Y >= 28 ? 2 : 0) + (X >= 28 ? 1 : 0)) * 784 + (Y % 28) * 28 + (X % 28);
}

/** Patch labels of the four 224 tiles of the 2x input: each tile is a 128 px quadrant of the 256 px mask. */
function tileLabels(m: Uint8Array, cfg: HeadConfig): Int8Array {
  const out = new Int8Array(4 * 784);
  const crop = new Uint8Array(256 * 256);
  for (let t = 0; t < 4; t++) {
    const oy = (t >> 1) * 128, ox = (t & 1) * 128;
    for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) crop[y * 256 + x] = m[(oy + (y >> 1)) * 256 + ox + (x >> 1)]!;
    const l = patchLabelsFromMask(crop, 256, 256, maskLabelOptions(cfg));
    out.set(l, t * 784);
  }
  return out;
}

/** A tiled head's 4 x 784 logits as the 28 x 28 grid of the 1x image (2 x 2 max of the stitched 56 x 56 map). */
export function tilesTo28(l: Float32Array): Float32Array {
  if (l.length === 784) return l;
  const out = new Float32Array(784).fill(-Infinity);
  for (let Y = 0; Y < 56; Y++)
    for (let X = 0; X < 56; X++) {
      const o = (Y >> 1) * 28 + (X >> 1);
      out[o] = Math.max(out[o]!, l[tileCell(Y, X)]!);
    }
  return out;
}

export async function trainHead(ctx: SeedContext, cfg: HeadConfig, seed = 0, opts: { defects?: readonly number[]; feats?: HeadFeatures } = {}): Promise<TrainedHead | null> {
  const feats = opts.feats ?? new HeadFeatures(ctx, cfg);
  const negPool = cfg.negatives === 'val' ? ctx.valItems : cfg.negatives === 'bank' ? ctx.bankItems : [...ctx.bankItems, ...ctx.valItems];
  const rng = (await import('./cache.js')).createRng(`head-neg:${ctx.seed}`);
  const negImgs = rng.shuffle([...negPool]).slice(0, cfg.negImages);
  const pos: Float32Array[] = [];
  const neg: Float32Array[] = [];
  const d = feats.dim;
  const labelsOf = async (i: number, flip?: 'hflip' | 'vflip'): Promise<Int8Array> => {
    const it = ctx.cat.items[i]!;
    let m = cfg.labels === 'mask' ? await mask256(it.maskPath) : null;
    if (m && m.some((v) => v !== 0)) {
      if (cfg.tiles) return tileLabels(m, cfg);
      if (flip) m = flipMask(m, flip);
      return patchLabelsFromMask(m, 256, 256, maskLabelOptions(cfg));
    }
    if (flip) return new Int8Array(784).fill(-1);
    const ps = patchScores(ctx, i);
    const order = Array.from(ps.keys()).sort((a, b) => ps[b]! - ps[a]!);
    const labels = new Int8Array(cfg.tiles ? 4 * 784 : ps.length).fill(-1);
    for (const p of order.slice(0, 4)) {
      if (!cfg.tiles) labels[p] = 1;
      // The 2 x 2 fine cells of a 1x patch, in their tile.
      else
        for (let d = 0; d < 4; d++) labels[tileCell(2 * Math.floor(p / 28) + (d >> 1), 2 * (p % 28) + (d & 1))] = 1;
    }
    return labels;
  };
  const take = (rows: Float32Array, labels: Int8Array): void => {
    for (let p = 0; p < labels.length; p++) {
      if (labels[p] === 1) pos.push(rows.subarray(p * d, (p + 1) * d));
      else if (labels[p] === 0) neg.push(rows.subarray(p * d, (p + 1) * d));
    }
  };
  for (const i of opts.defects ?? ctx.trainDefects) {
    take(feats.rows(i), await labelsOf(i));
    for (const a of cfg.augment ?? []) {
      const store = ctx.augment?.[a];
      if (!store || !store.has(i)) throw new Error(`no ${a} taps for item ${i}`);
      take(feats.flippedRows(i, store), await labelsOf(i, a));
    }
  }
  if (cfg.patchesPerImage) {
    // Every image of the pool, a few random patches each (all lighting conditions, a bounded count).
    for (const i of negPool) {
      const rows = feats.rowsUncached(i);
      const n = rows.length / d;
      const pick = rng.shuffle(Array.from({ length: n }, (_, p) => p)).slice(0, cfg.patchesPerImage);
      for (const p of pick) neg.push(rows.slice(p * d, (p + 1) * d));
    }
  } else
    for (const i of negImgs) {
      const rows = feats.rows(i);
      for (let p = 0; p < rows.length / d; p++) neg.push(rows.subarray(p * d, (p + 1) * d));
    }
  if (cfg.hardPerImage) {
    const chosen = new Set(negImgs);
    for (const i of ctx.bankItems) {
      if (chosen.has(i)) continue;
      const ps = patchScores(ctx, i);
      const order = Array.from(ps.keys()).sort((a, b) => ps[b]! - ps[a]!).slice(0, cfg.hardPerImage);
      // Not cached: one image's rows at a time.
      const rows = feats.rowsUncached(i);
      for (const p of order) neg.push(rows.slice(p * d, (p + 1) * d));
    }
  }
  if (pos.length === 0) return null;
  const negKept = neg.length > cfg.maxNegatives ? rng.shuffle(neg).slice(0, cfg.maxNegatives) : neg;
  const all = [...pos, ...negKept];
  const X = new Float32Array(all.length * d);
  all.forEach((r, j) => X.set(r, j * d));
  const y = new Uint8Array(all.length);
  y.fill(1, 0, pos.length);
  if (cfg.mlp) return { feats, model: null, mlp: trainMlp(X, all.length, d, y, { hidden: cfg.mlp.hidden, epochs: cfg.mlp.epochs, l2: cfg.mlp.l2, learningRate: cfg.mlp.lr ?? 1e-3, seed }) };
  const model = trainLogistic(X, all.length, d, y, { l2: cfg.l2, epochs: cfg.epochs, seed });
  return { feats, model };
}

export function headPatchLogits(h: TrainedHead, i: number): Float32Array {
  return headLogitsOf(h, h.feats.rows(i));
}

/** The head's logits of head-feature rows. */
export function headLogitsOf(h: TrainedHead, rows: Float32Array): Float32Array {
  if (h.mlp) return mlpLogits(h.mlp, rows, rows.length / h.feats.dim);
  return logisticLogits(h.model!, rows, rows.length / h.feats.dim);
}

// ------------------------------------------------------------------------------------------------

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}
export function sd(xs: number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
}
export function stats(xs: number[]): string {
  return `${mean(xs).toFixed(4)} +- ${sd(xs).toFixed(4)}`;
}
export { log };
