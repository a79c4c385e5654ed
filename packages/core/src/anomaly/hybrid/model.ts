// Hybrid (few-shot) anomaly model: a PatchCore memory bank learnt from good parts plus a supervised patch
// head learnt from the labelled defects a plant has, fused into one calibrated score with a fused heatmap,
// and a defect-type classifier when the defects come in two or more types.
//
//   PatchCore (memory bank) ------> patch distances s_p, image score S (reweighted max)
//   patch features (x, residual) -> head logits l_p, head image score H (top-k mean of the smoothed logits)
//   fused image score  F = (S - mu_S) / sd_S + w * (H - mu_H) / sd_H
//   fused patch map    f_p = (s_p - mu_s) / sd_s + w * (l_p - mu_l) / sd_l  -> upsampled + smoothed
//   test-time flips (head.flips, version 3): l_p is the mean of the head's logits on the image and on its
//   mirror images (each map flipped back); the memory bank reads the image alone
//   score = sigmoid(F - threshold): 0.5 at the model's threshold
// The statistics are those of good images that neither the bank nor the head saw, so both parts are on one
// scale before any defect is seen; the weight and the threshold come from training (training/hybrid.ts).
// Without labelled defects there is no head and the model answers as its PatchCore part alone.
import { LoupeError } from '../../errors.js';
import type { ImageSource } from '../../image/decode.js';
import { FLIP_NAMES, flipGrid, withFlips, type Flip } from '../../image/views.js';
import { INPUT_SIZE } from '../../model.js';
import type { PreparedImage } from '../../image/views.js';
import { FewShotHead, meanLogits, type FewShotHeadState, type ScoreStats } from '../fewshot/head.js';
import { gaussianBlur, patchScoresToMap } from '../patchcore/anomaly-map.js';
import { PATCH_GRID, PATCHES_PER_IMAGE, SparseRandomProjection, type ProjectionSpec } from '../patchcore/feature-extractor.js';
import type { MemoryBank } from '../patchcore/memory-bank.js';
import { viewBatches, type AnomalyResult, type PatchCoreEngine, type PatchCoreModel, type ScoreOptions } from '../patchcore/model.js';
import { softmaxProbabilities, type SoftmaxModel } from './softmax.js';

export const HYBRID_FORMAT = 'loupe-hybrid';
// 2: the head may be an MLP (FewShotHeadState.mlp) with ensemble members (head.ensemble); 3: test-time flips (head.flips)
export const HYBRID_VERSION = 3;

/** What the head reads per patch: the PatchCore embedding, its residual to the nearest bank row, the NN distance. */
export interface HeadInput {
  readonly embedding: boolean;
  readonly residual: boolean;
  readonly distance: boolean;
}

/** How the head's patch logits become an image score: top-k mean of the logit grid smoothed by sigma (grid cells). */
export interface HeadAggregation {
  readonly topK: number;
  readonly sigma: number;
}

export interface HybridHeadState {
  readonly input: HeadInput;
  readonly head: FewShotHeadState;
  /** Further heads (version 2), each on its own projection: the head's patch logits are the mean of all. */
  readonly ensemble?: readonly FewShotHeadState[];
  readonly aggregation: HeadAggregation;
  /** Test-time flips (version 3): the head's logits are averaged over the image and these mirror images. */
  readonly flips?: readonly Flip[];
}

export interface FusionPart {
  /** Statistics of the PatchCore score and of the head score on good images neither part saw. */
  readonly pc: ScoreStats;
  readonly head: ScoreStats;
  /** Weight of the head. */
  readonly weight: number;
  /** Threshold on the fused score (image: rawScore; pixel: the fused map). */
  readonly threshold: number;
}

export interface HybridFusionState {
  readonly image: FusionPart;
  readonly pixel: FusionPart;
}

export interface DefectTypeState {
  readonly classes: readonly string[];
  readonly projection: ProjectionSpec | null;
  readonly softmax: { d: number; k: number; w: number[]; b: number[]; mean: number[]; std: number[] };
  /** Patches (largest fused patch scores) whose class probabilities are averaged. */
  readonly topK: number;
}

export interface HybridState {
  readonly format: typeof HYBRID_FORMAT;
  readonly version: number;
  /** null: no labelled defects were given; the model is its memory bank alone. */
  readonly head: HybridHeadState | null;
  readonly fusion: HybridFusionState | null;
  /** The defect-type classifier (>= 2 defect types), else null. */
  readonly defectTypes: DefectTypeState | null;
  /** The defect types the model was trained on (its labelled defects' labels). */
  readonly defectLabels: readonly string[];
  readonly training: {
    readonly goodImages: number;
    readonly defectImages: number;
    /** Defect images whose mask labelled the head's patches (the others: image labels only). */
    readonly maskedDefects: number;
    readonly positivePatches: number;
    readonly negativePatches: number;
  };
}

export interface HybridResult extends AnomalyResult {
  /** The head's image score; null without a head. */
  readonly headScore: number | null;
  /** The fused image score (= rawScore). */
  readonly fusedScore: number;
  /** The likeliest defect type (>= 2 types), whatever the verdict; else null. */
  readonly likeliestDefect: string | null;
  /** The defect types' probabilities for the anomaly (>= 2 types). */
  readonly typeScores: readonly { readonly name: string; readonly score: number }[] | null;
}

/**
 * Throws INVALID_ARGUMENT naming `field` unless `flips` are distinct flip names a head reading `input` can
 * use (flipped views are embedded, never searched in the bank: an embedding-only head).
 */
export function checkHeadFlips(flips: unknown, input: HeadInput, field: string): asserts flips is readonly Flip[] {
  if (!(Array.isArray(flips) && flips.every((f) => FLIP_NAMES.includes(f as Flip)) && new Set(flips).size === flips.length)) {
    throw new LoupeError('INVALID_ARGUMENT', `${field} must be distinct names of ${FLIP_NAMES.join(', ')}, got ${JSON.stringify(flips)}`);
  }
  if (flips.length > 0 && (!input.embedding || input.residual || input.distance)) throw new LoupeError('INVALID_ARGUMENT', `${field} need a head that reads the embedding only (no residual or distance)`);
}

/** Width of one head input row. */
export function headInputDim(input: HeadInput, d: number): number {
  return (input.embedding ? d : 0) + (input.residual ? d : 0) + (input.distance ? 1 : 0);
}

/** Head input rows [n][headInputDim] of n patches from their embeddings, nearest bank rows and distances. */
export function headInputRows(embeddings: Float32Array, nnIdx: Int32Array, patchScores: Float32Array, bank: MemoryBank, input: HeadInput): Float32Array {
  const d = bank.d;
  const n = patchScores.length;
  if (embeddings.length !== n * d || nnIdx.length !== n) throw new LoupeError('INVALID_ARGUMENT', `head input: ${embeddings.length} floats and ${nnIdx.length} neighbours for ${n} patches of ${d}`);
  if (input.embedding && !input.residual && !input.distance) return embeddings;
  const w = headInputDim(input, d);
  const out = new Float32Array(n * w);
  const v = bank.vectors;
  for (let p = 0; p < n; p++) {
    let o = p * w;
    const e = p * d;
    if (input.embedding) {
      out.set(embeddings.subarray(e, e + d), o);
      o += d;
    }
    if (input.residual) {
      const r = nnIdx[p]! * d;
      for (let c = 0; c < d; c++) out[o + c] = embeddings[e + c]! - v[r + c]!;
      o += d;
    }
    if (input.distance) out[o] = patchScores[p]!;
  }
  return out;
}

/** Top-k mean of a grid (views x 28 x 28) after Gaussian smoothing of each view (sigma in cells; 0 = none). */
export function aggregateLogits(logits: Float32Array, agg: HeadAggregation): number {
  let x = logits;
  if (agg.sigma > 0) {
    x = new Float32Array(logits.length);
    for (let v = 0; v < logits.length / PATCHES_PER_IMAGE; v++) {
      const o = v * PATCHES_PER_IMAGE;
      x.set(gaussianBlur(logits.slice(o, o + PATCHES_PER_IMAGE), PATCH_GRID, PATCH_GRID, agg.sigma), o);
    }
  }
  const k = Math.max(1, Math.min(agg.topK, x.length));
  if (k === 1) {
    let m = -Infinity;
    for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
    return m;
  }
  const top = Float32Array.from(x).sort().subarray(x.length - k);
  let s = 0;
  for (let i = 0; i < k; i++) s += top[i]!;
  return s / k;
}

/**
 * The head's patch logits with test-time flips: the mean of the image's logits and of each mirror image's,
 * flipped back onto the image (flipped[i] belongs to flips[i]).
 */
export function flipMeanLogits(base: Float32Array, flipped: readonly Float32Array[], flips: readonly Flip[]): Float32Array {
  if (flipped.length !== flips.length) throw new LoupeError('INVALID_ARGUMENT', `${flipped.length} flipped logit maps for ${flips.length} flips`);
  if (flips.length === 0) return base;
  const out = Float32Array.from(base);
  const back = new Float32Array(PATCHES_PER_IMAGE);
  flips.forEach((f, i) => {
    flipGrid(flipped[i]!, PATCH_GRID, PATCH_GRID, 1, f, back);
    for (let p = 0; p < out.length; p++) out[p] = out[p]! + back[p]!;
  });
  for (let p = 0; p < out.length; p++) out[p] = out[p]! / (1 + flips.length);
  return out;
}

/** A batch of images with test-time flips (withFlips) split into their own views and their mirror images' views. */
function splitFlipViews(
  images: readonly PreparedImage[],
  taps: { res3d: Float32Array; res4f: Float32Array },
  flips: readonly Flip[],
): { images: PreparedImage[]; base: { res3d: Float32Array; res4f: Float32Array }; flipped: { res3d: Float32Array; res4f: Float32Array } } {
  const per = 1 + flips.length;
  for (const im of images) {
    if (im.views !== per || (im.flips ?? []).join() !== flips.join()) {
      throw new LoupeError('INVALID_ARGUMENT', `${im.name}: this hybrid model's head reads the image and its ${flips.join(' + ') || 'no'} flips (prepare it with withFlips); it has ${im.views} view(s)`);
    }
  }
  const n = images.length;
  const a = taps.res3d.length / (n * per);
  const b = taps.res4f.length / (n * per);
  const base = { res3d: new Float32Array(n * a), res4f: new Float32Array(n * b) };
  const flipped = { res3d: new Float32Array(n * flips.length * a), res4f: new Float32Array(n * flips.length * b) };
  for (let i = 0; i < n; i++) {
    base.res3d.set(taps.res3d.subarray(i * per * a, (i * per + 1) * a), i * a);
    base.res4f.set(taps.res4f.subarray(i * per * b, (i * per + 1) * b), i * b);
    flipped.res3d.set(taps.res3d.subarray((i * per + 1) * a, (i + 1) * per * a), i * flips.length * a);
    flipped.res4f.set(taps.res4f.subarray((i * per + 1) * b, (i + 1) * per * b), i * flips.length * b);
  }
  return { images: images.map((im) => ({ ...im, tensor: im.tensor.subarray(0, im.tensor.length / per), views: 1, flips: [] })), base, flipped };
}

/** A memory-bank result (with its embeddings) and the patch embeddings of each of its image's mirror images. */
export interface FlippedResult {
  readonly result: AnomalyResult;
  readonly flipped: readonly Float32Array[];
}

/**
 * Scores decoded images with test-time flips: the memory bank scores each image's own view; the mirror
 * images are only embedded (the head reads them). With no flips this is the bank's scoreViews.
 */
export async function scoreViewsWithFlips(
  patchcore: PatchCoreModel,
  images: readonly PreparedImage[],
  taps: { res3d: Float32Array; res4f: Float32Array },
  flips: readonly Flip[],
  options: ScoreOptions & { prepareMs?: number; cnnMs?: number } = {},
): Promise<FlippedResult[]> {
  // No flips: the views may be tiles (a hybrid without a head in tile mode), as the bank reads them.
  if (flips.length === 0) return (await patchcore.scoreViews(images, taps, options)).map((result) => ({ result, flipped: [] }));
  const parts = splitFlipViews(images, taps, flips);
  const results = await patchcore.scoreViews(parts.images, parts.base, options);
  const emb = patchcore.embedTaps(parts.flipped, images.length * flips.length);
  const size = PATCHES_PER_IMAGE * patchcore.bank.d;
  return results.map((result, i) => ({ result, flipped: flips.map((_, f) => emb.subarray((i * flips.length + f) * size, (i * flips.length + f + 1) * size)) }));
}

/** Decodes, runs the engine on and scores `sources` with test-time flips (see scoreViewsWithFlips), in order. */
export async function* scoreWithFlips(
  patchcore: PatchCoreModel,
  engine: PatchCoreEngine,
  sources: readonly ImageSource[],
  flips: readonly Flip[],
  options: ScoreOptions = {},
): AsyncGenerator<FlippedResult> {
  for await (const b of viewBatches(engine, sources, patchcore.config, options, (im) => withFlips(im, flips))) {
    yield* await scoreViewsWithFlips(patchcore, b.images, b, flips, { ...options, prepareMs: b.prepareMs, cnnMs: b.cnnMs });
  }
}

/** z(pc) + w * z(head). */
export function fuse(pc: number, head: number, part: Pick<FusionPart, 'pc' | 'head' | 'weight'>): number {
  return (pc - part.pc.mean) / part.pc.std + (part.weight * (head - part.head.mean)) / part.head.std;
}

/** The normalised score: sigmoid(fused - threshold), 0.5 at the threshold. */
export function fusedNormalized(fused: number, threshold: number): number {
  const z = fused - threshold;
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function checkState(s: HybridState, bankDim: number): void {
  if (s.format !== HYBRID_FORMAT) throw new LoupeError('INVALID_ARGUMENT', `not a hybrid model state (format ${String(s.format)})`);
  if (!(s.version >= 1 && s.version <= HYBRID_VERSION)) throw new LoupeError('INVALID_ARGUMENT', `hybrid model version ${String(s.version)} is not supported (1..${HYBRID_VERSION})`);
  if (!Array.isArray(s.defectLabels) || !s.defectLabels.every((l) => typeof l === 'string')) throw new LoupeError('INVALID_ARGUMENT', 'defectLabels must be a list of strings');
  if ((s.head === null) !== (s.fusion === null)) throw new LoupeError('INVALID_ARGUMENT', 'a hybrid model has both a head and its fusion, or neither');
  if (s.head) {
    const dim = headInputDim(s.head.input, bankDim);
    if (dim === 0) throw new LoupeError('INVALID_ARGUMENT', 'the head reads no patch features');
    for (const h of [s.head.head, ...(s.head.ensemble ?? [])]) {
      if (h?.inDim !== dim) throw new LoupeError('INVALID_ARGUMENT', `the head reads ${h?.inDim} features per patch; its input gives ${dim}`);
    }
    if (s.head.ensemble !== undefined && !(Array.isArray(s.head.ensemble) && s.version >= 2)) throw new LoupeError('INVALID_ARGUMENT', 'head.ensemble must be a list of heads (version 2)');
    if (s.head.flips !== undefined) {
      if (s.version < 3) throw new LoupeError('INVALID_ARGUMENT', `head.flips came with version 3 (this file says ${s.version})`);
      checkHeadFlips(s.head.flips, s.head.input, 'head.flips');
    }
    const a = s.head.aggregation;
    if (!(Number.isInteger(a.topK) && a.topK >= 1 && a.sigma >= 0 && a.sigma <= 28)) throw new LoupeError('INVALID_ARGUMENT', `bad head aggregation ${JSON.stringify(a)}`);
    for (const [name, part] of Object.entries(s.fusion!)) {
      const ok = (st: ScoreStats): boolean => Number.isFinite(st?.mean) && st.std > 0 && Number.isFinite(st.std);
      if (!part || !ok(part.pc) || !ok(part.head) || !Number.isFinite(part.weight) || part.weight < 0 || !Number.isFinite(part.threshold)) {
        throw new LoupeError('INVALID_ARGUMENT', `fusion.${name} must hold finite statistics (std > 0), a weight >= 0 and a finite threshold`);
      }
    }
  }
  if (s.defectTypes) {
    const t = s.defectTypes;
    const m = t.softmax;
    if (t.classes.length < 2 || m.k !== t.classes.length) throw new LoupeError('INVALID_ARGUMENT', 'the defect-type classifier needs its classes (2 or more)');
    const d = t.projection ? t.projection.outDim : s.head ? headInputDim(s.head.input, bankDim) : -1;
    if (m.d !== d || m.w.length !== m.k * m.d || m.b.length !== m.k || m.mean.length !== m.d || m.std.length !== m.d) throw new LoupeError('INVALID_ARGUMENT', 'the defect-type classifier has inconsistent sizes');
    if (t.projection && (!s.head || t.projection.inDim !== headInputDim(s.head.input, bankDim))) throw new LoupeError('INVALID_ARGUMENT', 'the defect-type projection does not match the head input');
  }
}

/** A PatchCore model and the hybrid state around it: scores images as the hybrid model. */
export class HybridScorer {
  /** The head and its ensemble members; null without a head. */
  private readonly head: readonly FewShotHead[] | null;
  private readonly typeProjection: SparseRandomProjection | null;
  private readonly typeModel: SoftmaxModel | null;

  constructor(
    readonly patchcore: PatchCoreModel,
    readonly state: HybridState,
  ) {
    checkState(state, patchcore.bank.d);
    if (state.head && patchcore.config.tile) throw new LoupeError('INVALID_ARGUMENT', 'hybrid models score whole images (no tile mode)');
    this.head = state.head ? [state.head.head, ...(state.head.ensemble ?? [])].map((h) => FewShotHead.fromState(h)) : null;
    const t = state.defectTypes;
    this.typeProjection = t?.projection ? new SparseRandomProjection(t.projection) : null;
    this.typeModel = t
      ? { d: t.softmax.d, k: t.softmax.k, w: Float32Array.from(t.softmax.w), b: Float32Array.from(t.softmax.b), mean: Float32Array.from(t.softmax.mean), std: Float32Array.from(t.softmax.std) }
      : null;
  }

  /** True when the model has a supervised head (labelled defects were given). */
  get hasHead(): boolean {
    return this.head !== null;
  }

  /** Image threshold on rawScore (fused without a head: PatchCore's). */
  get imageThreshold(): number {
    return this.state.fusion ? this.state.fusion.image.threshold : this.patchcore.thresholds.image;
  }

  get pixelThreshold(): number {
    return this.state.fusion ? this.state.fusion.pixel.threshold : this.patchcore.thresholds.pixel;
  }

  /** Test-time flips the head reads (none for models before version 3). */
  get flips(): readonly Flip[] {
    return this.head ? (this.state.head?.flips ?? []) : [];
  }

  /** An image decoded for this model: its own view, plus its mirror images when the head reads flips. */
  prepareViews(image: PreparedImage): PreparedImage {
    return withFlips(image, this.flips);
  }

  /** The head's patch logits of one PatchCore result kept with its embeddings (and its mirror images' embeddings). */
  headLogits(r: Pick<AnomalyResult, 'embeddings' | 'nnIdx' | 'patchScores'>, flipped: readonly Float32Array[] = []): Float32Array {
    if (!this.head || !this.state.head) throw new LoupeError('INVALID_ARGUMENT', 'this hybrid model has no head');
    if (!r.embeddings || !r.nnIdx || !r.patchScores) throw new LoupeError('INVALID_ARGUMENT', 'head logits need the PatchCore result with its embeddings (keepEmbeddings)');
    const n = r.patchScores.length;
    const rows = headInputRows(r.embeddings, r.nnIdx, r.patchScores, this.patchcore.bank, this.state.head.input);
    const logitsOf = (x: Float32Array): Float32Array => meanLogits(this.head!.map((h) => h.patchLogits(x, n)));
    // Flips need an embedding-only head (checkState), whose rows are the embeddings themselves.
    return flipMeanLogits(logitsOf(rows), flipped.map(logitsOf), this.flips);
  }

  /** The hybrid answer from a PatchCore result kept with its embeddings (and its mirror images' embeddings). */
  finish(r: AnomalyResult, options: { keepEmbeddings?: boolean } = {}, flipped: readonly Float32Array[] = []): HybridResult {
    const strip = (x: AnomalyResult): AnomalyResult => {
      if (options.keepEmbeddings) return x;
      const { embeddings: _e, patchScores: _p, nnIdx: _n, ...rest } = x;
      return rest;
    };
    const fusion = this.state.fusion;
    if (!this.head || !fusion || !this.state.head) return { ...strip(r), headScore: null, fusedScore: r.rawScore, likeliestDefect: null, typeScores: null };
    const logits = this.headLogits(r, flipped);
    const headScore = aggregateLogits(logits, this.state.head.aggregation);
    const fused = fuse(r.rawScore, headScore, fusion.image);
    const ps = r.patchScores!;
    const patch = new Float32Array(ps.length);
    for (let p = 0; p < ps.length; p++) patch[p] = fuse(ps[p]!, logits[p]!, fusion.pixel);
    const map = patchScoresToMap(patch, PATCH_GRID, { inputSize: INPUT_SIZE, sigma: this.patchcore.config.sigma, outHeight: r.height, outWidth: r.width });
    let arg = 0;
    for (let i = 1; i < map.length; i++) if (map[i]! > map[arg]!) arg = i;
    const mx = arg % r.width;
    const my = Math.floor(arg / r.width);
    const peak = {
      x: r.width === r.imageWidth ? mx : Math.min(r.imageWidth - 1, Math.floor(((mx + 0.5) * r.imageWidth) / r.width)),
      y: r.height === r.imageHeight ? my : Math.min(r.imageHeight - 1, Math.floor(((my + 0.5) * r.imageHeight) / r.height)),
      value: map[arg]!,
    };
    const types = this.defectTypeOf(r, patch);
    const threshold = fusion.image.threshold;
    return {
      ...strip(r),
      score: fusedNormalized(fused, threshold),
      rawScore: fused,
      isAnomalous: fused >= threshold,
      map,
      peak,
      headScore,
      fusedScore: fused,
      likeliestDefect: types?.best ?? null,
      typeScores: types?.scores ?? null,
    };
  }

  /** The defect type: class probabilities averaged over the patches with the largest fused scores. */
  private defectTypeOf(r: AnomalyResult, fusedPatch: Float32Array): { best: string; scores: { name: string; score: number }[] } | null {
    const t = this.state.defectTypes;
    if (!t || !this.typeModel || !this.state.head) return null;
    const k = Math.max(1, Math.min(t.topK, fusedPatch.length));
    const order = Array.from(fusedPatch.keys()).sort((a, b) => fusedPatch[b]! - fusedPatch[a]!).slice(0, k);
    const rows = headInputRows(r.embeddings!, r.nnIdx!, r.patchScores!, this.patchcore.bank, this.state.head.input);
    const w = headInputDim(this.state.head.input, this.patchcore.bank.d);
    const picked = new Float32Array(k * w);
    order.forEach((p, i) => picked.set(rows.subarray(p * w, (p + 1) * w), i * w));
    const X = this.typeProjection ? this.typeProjection.apply(picked, k) : picked;
    const probs = softmaxProbabilities(this.typeModel, X, k);
    const mean = new Float64Array(this.typeModel.k);
    for (let i = 0; i < k; i++) for (let c = 0; c < this.typeModel.k; c++) mean[c] = mean[c]! + probs[i * this.typeModel.k + c]! / k;
    let best = 0;
    for (let c = 1; c < mean.length; c++) if (mean[c]! > mean[best]!) best = c;
    return { best: t.classes[best]!, scores: t.classes.map((name, c) => ({ name, score: mean[c]! })) };
  }

  /**
   * Scores images decoded into their views (prepareViews) from the engine's taps (see
   * PatchCoreModel.scoreViews).
   */
  async scoreViews(images: readonly PreparedImage[], taps: { res3d: Float32Array; res4f: Float32Array }, options: ScoreOptions & { prepareMs?: number; cnnMs?: number } = {}): Promise<HybridResult[]> {
    const results = await scoreViewsWithFlips(this.patchcore, images, taps, this.flips, { ...options, keepEmbeddings: this.hasHead || options.keepEmbeddings === true });
    return results.map((x) => this.finish(x.result, { keepEmbeddings: options.keepEmbeddings ?? false }, x.flipped));
  }

  /** Scores images (decode, CNN, PatchCore, head), in input order. */
  async score(engine: PatchCoreEngine, sources: readonly ImageSource[], options: ScoreOptions = {}): Promise<HybridResult[]> {
    const out: HybridResult[] = [];
    for await (const x of scoreWithFlips(this.patchcore, engine, sources, this.flips, { ...options, keepEmbeddings: this.hasHead || options.keepEmbeddings === true })) {
      out.push(this.finish(x.result, { keepEmbeddings: options.keepEmbeddings ?? false }, x.flipped));
    }
    return out;
  }

  /** 'MLP 32 x3', 'logistic': the head's classifier and its ensemble size. */
  private headForm(): string {
    const h = this.head?.[0]?.classifier;
    if (!h) return 'none';
    const form = h.kind === 'mlp' ? `MLP ${h.model.hidden}` : 'logistic';
    const flips = this.flips.length > 0 ? `, test-time ${this.flips.join(' + ')}` : '';
    return (this.head!.length > 1 ? `${form} x${this.head!.length}` : form) + flips;
  }

  /** One line for logs and listings. */
  describe(): string {
    const s = this.state;
    if (!s.head || !s.fusion) return `hybrid without labelled defects (memory bank only): ${this.patchcore.describe()}`;
    const tr = s.training;
    const inputs = [s.head.input.embedding ? 'embedding' : '', s.head.input.residual ? 'residual' : '', s.head.input.distance ? 'distance' : ''].filter(Boolean).join('+');
    return (
      `hybrid: memory bank ${this.patchcore.bank.n} x ${this.patchcore.bank.d} + patch head (${this.headForm()} on ${inputs}, ${tr.defectImages} labelled defects, ${tr.maskedDefects} with masks` +
      `${s.defectTypes ? `; types ${s.defectTypes.classes.join(', ')}` : s.defectLabels.length === 1 ? `; type ${s.defectLabels[0]}` : ''}), fused threshold ${s.fusion.image.threshold.toFixed(3)}`
    );
  }
}
