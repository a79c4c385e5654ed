// PatchCore patch features (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection")
// from the engine's ResNet-50 stage outputs, as in anomalib's PatchCore:
//   res3d ("layer2", 28x28x512) and res4f ("layer3", 14x14x1024), each 3x3 average-pooled (stride 1,
//   zero padding 1, divide by 9 everywhere = torch AvgPool2d(3, 1, 1) with count_include_pad), res4f
//   bilinearly upsampled to 28x28 (align_corners = false), concatenated along channels -> 1536 dims per
//   patch, optionally reduced by a seeded sparse random projection (Li et al. "very sparse" projection,
//   the same family as sklearn's SparseRandomProjection that anomalib uses for its coreset).
// Everything works on flat NHWC Float32Arrays; one patch row is [dim] floats, rows are ordered
// image-major, then y, then x (row = ((image * 28) + y) * 28 + x).
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';
import { TAP_SHAPES } from '../../model.js';
import type { TensorBatch } from '../../preprocess.js';

/** Stage outputs PatchCore uses, in concatenation order. */
export const PATCHCORE_TAPS = ['res3d', 'res4f'] as const;
/** Side of the patch grid (res3d resolution). */
export const PATCH_GRID = TAP_SHAPES.res3d[0];
/** Patches per 224x224 input. */
export const PATCHES_PER_IMAGE = PATCH_GRID * PATCH_GRID;
/** Channels of the concatenated embedding before any projection (512 + 1024). */
export const EMBEDDING_DIM = TAP_SHAPES.res3d[2] + TAP_SHAPES.res4f[2];

/**
 * 3x3 average pooling of one image (NHWC plane at `srcOff`, [h][w][c]), stride 1, zero padding 1,
 * always divided by 9 (torch's count_include_pad). Output pixel (y, x) goes to
 * dst[dstOff + (y * w + x) * dstStride + ch]: dstStride > c writes into wider rows (the embedding).
 * Separable: a vertical 3-row sum (contiguous) then a horizontal 3-sum; edges in their own loops so
 * the inner loops have no branches. `rowBuf` must hold w * c floats.
 */
export function avgPool3x3Into(
  src: Float32Array,
  srcOff: number,
  h: number,
  w: number,
  c: number,
  dst: Float32Array,
  dstOff: number,
  dstStride: number,
  rowBuf: Float32Array = new Float32Array(w * c),
): void {
  const rs = w * c;
  const inv9 = 1 / 9;
  for (let y = 0; y < h; y++) {
    const r0 = srcOff + y * rs;
    // Vertical sum of rows y-1, y, y+1 (those that exist).
    if (y > 0 && y < h - 1) {
      const a = r0 - rs, b = r0 + rs;
      for (let i = 0; i < rs; i++) rowBuf[i] = src[a + i]! + src[r0 + i]! + src[b + i]!;
    } else if (h === 1) {
      for (let i = 0; i < rs; i++) rowBuf[i] = src[r0 + i]!;
    } else {
      const o = y === 0 ? r0 + rs : r0 - rs;
      for (let i = 0; i < rs; i++) rowBuf[i] = src[r0 + i]! + src[o + i]!;
    }
    // Horizontal sum of columns x-1, x, x+1, scaled by 1/9.
    const orow = dstOff + y * w * dstStride;
    if (w === 1) {
      for (let ch = 0; ch < c; ch++) dst[orow + ch] = rowBuf[ch]! * inv9;
      continue;
    }
    for (let ch = 0; ch < c; ch++) dst[orow + ch] = (rowBuf[ch]! + rowBuf[c + ch]!) * inv9;
    for (let x = 1; x < w - 1; x++) {
      const o = orow + x * dstStride;
      const m = x * c;
      for (let ch = 0; ch < c; ch++) dst[o + ch] = (rowBuf[m - c + ch]! + rowBuf[m + ch]! + rowBuf[m + c + ch]!) * inv9;
    }
    const ol = orow + (w - 1) * dstStride;
    const ml = (w - 1) * c;
    for (let ch = 0; ch < c; ch++) dst[ol + ch] = (rowBuf[ml - c + ch]! + rowBuf[ml + ch]!) * inv9;
  }
}

/** 3x3 average pooling (see avgPool3x3Into) of n images NHWC [n][h][w][c]. */
export function avgPool3x3(src: Float32Array, n: number, h: number, w: number, c: number, out?: Float32Array): Float32Array {
  const plane = h * w * c;
  if (src.length !== n * plane) throw new LoupeError('INVALID_ARGUMENT', `avgPool3x3: expected ${n * plane} floats, got ${src.length}`);
  const dst = out ?? new Float32Array(n * plane);
  const rowBuf = new Float32Array(w * c);
  for (let img = 0; img < n; img++) avgPool3x3Into(src, img * plane, h, w, c, dst, img * plane, c, rowBuf);
  return dst;
}

/** Source index pair and weight for one output coordinate of torch's bilinear (align_corners=false). */
export interface BilinearAxis {
  i0: Int32Array;
  i1: Int32Array;
  /** Weight of i1 (i0 gets 1 - lambda). */
  lambda: Float32Array;
}

/** Precomputes torch/anomalib bilinear sampling (align_corners = false, size given) for one axis. */
export function bilinearAxis(inSize: number, outSize: number): BilinearAxis {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const lambda = new Float32Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    let src = (o + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    let a = Math.floor(src);
    if (a > inSize - 1) a = inSize - 1;
    const b = a < inSize - 1 ? a + 1 : a;
    i0[o] = a;
    i1[o] = b;
    lambda[o] = src - a;
  }
  return { i0, i1, lambda };
}

/**
 * Builds PatchCore embeddings [n * 784][1536] from res3d [n][28][28][512] and res4f [n][14][14][1024]
 * (NHWC, as the engine returns them). Channels 0..511 are pooled res3d, 512..1535 pooled+upsampled res4f.
 */
export function buildPatchEmbeddings(res3d: Float32Array, res4f: Float32Array, n: number, out?: Float32Array): Float32Array {
  const [h2, w2, c2] = TAP_SHAPES.res3d;
  const [h3, w3, c3] = TAP_SHAPES.res4f;
  const d = c2 + c3;
  if (res3d.length !== n * h2 * w2 * c2) throw new LoupeError('INVALID_ARGUMENT', `res3d: expected ${n * h2 * w2 * c2} floats, got ${res3d.length}`);
  if (res4f.length !== n * h3 * w3 * c3) throw new LoupeError('INVALID_ARGUMENT', `res4f: expected ${n * h3 * w3 * c3} floats, got ${res4f.length}`);
  const dst = out ?? new Float32Array(n * h2 * w2 * d);
  if (dst.length < n * h2 * w2 * d) throw new LoupeError('INVALID_ARGUMENT', 'buildPatchEmbeddings: output too small');
  const rowBuf = new Float32Array(Math.max(w2 * c2, w3 * c3));
  const p3 = new Float32Array(h3 * w3 * c3); // pooled res4f of one image
  const hx = new Float32Array(h3 * w2 * c3); // horizontally upsampled rows [14][28][1024]
  const ay = bilinearAxis(h3, h2);
  const ax = bilinearAxis(w3, w2);
  for (let img = 0; img < n; img++) {
    const base = img * h2 * w2 * d;
    // res3d: pooled straight into channels [0, 512) of each embedding row.
    avgPool3x3Into(res3d, img * h2 * w2 * c2, h2, w2, c2, dst, base, d, rowBuf);
    // res4f: pool, then separable bilinear 14x14 -> 28x28 into channels [512, 1536).
    avgPool3x3Into(res4f, img * h3 * w3 * c3, h3, w3, c3, p3, 0, c3, rowBuf);
    for (let y = 0; y < h3; y++) {
      for (let x = 0; x < w2; x++) {
        const l = ax.lambda[x]!, k = 1 - l;
        const a = (y * w3 + ax.i0[x]!) * c3, b = (y * w3 + ax.i1[x]!) * c3;
        const o = (y * w2 + x) * c3;
        for (let ch = 0; ch < c3; ch++) hx[o + ch] = k * p3[a + ch]! + l * p3[b + ch]!;
      }
    }
    for (let y = 0; y < h2; y++) {
      const l = ay.lambda[y]!, k = 1 - l;
      const r0 = ay.i0[y]! * w2 * c3, r1 = ay.i1[y]! * w2 * c3;
      for (let x = 0; x < w2; x++) {
        const o = base + (y * w2 + x) * d + c2;
        const a = r0 + x * c3, b = r1 + x * c3;
        for (let ch = 0; ch < c3; ch++) dst[o + ch] = k * hx[a + ch]! + l * hx[b + ch]!;
      }
    }
  }
  return dst;
}

/** Serialisable description of a projection: the matrix is regenerated from it. */
export interface ProjectionSpec {
  inDim: number;
  outDim: number;
  seed: number;
}

/**
 * Seeded very sparse random projection (Li, Hastie, Church 2006; sklearn's SparseRandomProjection with
 * density = 1/sqrt(inDim)): each matrix entry is +-sqrt(1/(density*outDim)) with probability density/2
 * each, 0 otherwise. Distances are preserved in expectation (Johnson-Lindenstrauss). Stored by output
 * column (CSR), so applying it costs ~outDim * sqrt(inDim) multiply-adds per row.
 */
export class SparseRandomProjection {
  readonly spec: ProjectionSpec;
  private readonly start: Int32Array;
  private readonly index: Int32Array;
  private readonly value: Float32Array;

  constructor(spec: ProjectionSpec) {
    const { inDim, outDim, seed } = spec;
    if (!Number.isInteger(inDim) || !Number.isInteger(outDim) || inDim < 1 || outDim < 1) {
      throw new LoupeError('INVALID_ARGUMENT', `projection dims must be positive integers, got ${inDim} -> ${outDim}`);
    }
    this.spec = { inDim, outDim, seed };
    const density = 1 / Math.sqrt(inDim);
    const scale = Math.sqrt(1 / (density * outDim));
    const rng = createRng(`patchcore-projection:${seed}:${inDim}:${outDim}`);
    const start = new Int32Array(outDim + 1);
    const idx: number[] = [];
    const val: number[] = [];
    for (let j = 0; j < outDim; j++) {
      start[j] = idx.length;
      for (let i = 0; i < inDim; i++) {
        const u = rng.next();
        if (u < density) {
          idx.push(i);
          val.push(u < density / 2 ? scale : -scale);
        }
      }
      if (idx.length === start[j]) {
        // Never leave an output dimension empty (possible for tiny inDim).
        idx.push(rng.int(inDim));
        val.push(rng.next() < 0.5 ? scale : -scale);
      }
    }
    start[outDim] = idx.length;
    this.start = start;
    this.index = Int32Array.from(idx);
    this.value = Float32Array.from(val);
  }

  get nonZeros(): number {
    return this.index.length;
  }

  /** Projects rows [n][inDim] -> [n][outDim]. */
  apply(src: Float32Array, n: number, out?: Float32Array): Float32Array {
    const { inDim, outDim } = this.spec;
    if (src.length < n * inDim) throw new LoupeError('INVALID_ARGUMENT', `projection: expected ${n * inDim} floats, got ${src.length}`);
    const dst = out ?? new Float32Array(n * outDim);
    const start = this.start, index = this.index, value = this.value;
    for (let r = 0; r < n; r++) {
      const s = r * inDim;
      const o = r * outDim;
      for (let j = 0; j < outDim; j++) {
        let acc = 0;
        const e = start[j + 1]!;
        for (let k = start[j]!; k < e; k++) acc += value[k]! * src[s + index[k]!]!;
        dst[o + j] = acc;
      }
    }
    return dst;
  }
}

/** Anything that runs the network to the named taps: core's Engine or EngineSession. */
export interface PatchTapRunner {
  run(input: TensorBatch, taps: readonly ('res3d' | 'res4f')[]): Promise<{ res3d: Float32Array; res4f: Float32Array }>;
}

export interface PatchFeatureExtractorOptions {
  /** Reduce 1536 dims to this many with a seeded sparse random projection; 0/undefined = keep 1536. */
  projectionDim?: number;
  projectionSeed?: number;
}

/** Runs the engine to res4f (nothing deeper is computed) and turns the taps into patch embeddings. */
export class PatchFeatureExtractor {
  readonly projection: SparseRandomProjection | null;

  constructor(
    private readonly runner: PatchTapRunner,
    options: PatchFeatureExtractorOptions = {},
  ) {
    const p = options.projectionDim ?? 0;
    this.projection = p > 0 && p < EMBEDDING_DIM ? new SparseRandomProjection({ inDim: EMBEDDING_DIM, outDim: p, seed: options.projectionSeed ?? 0 }) : null;
  }

  /** Feature dimension of the rows extract() returns. */
  get dim(): number {
    return this.projection ? this.projection.spec.outDim : EMBEDDING_DIM;
  }

  /** input: a caffe-normalised NHWC batch (core's packBatch). Returns [batch * 784][dim]. */
  async extract(input: TensorBatch): Promise<Float32Array> {
    const taps = await this.runner.run(input, PATCHCORE_TAPS);
    return this.fromTaps(taps.res3d, taps.res4f, input.batch);
  }

  /**
   * The pure half of extract(): taps -> (projected) embeddings. With `reuse`, the result (and the
   * unprojected scratch) live in buffers that the NEXT reuse call overwrites: for loops that consume
   * each batch before asking for the next one.
   */
  fromTaps(res3d: Float32Array, res4f: Float32Array, batch: number, reuse = false): Float32Array {
    const rows = batch * PATCHES_PER_IMAGE;
    const emb = buildPatchEmbeddings(res3d, res4f, batch, reuse ? this.scratch('emb', rows * EMBEDDING_DIM) : undefined);
    if (!this.projection) return emb;
    return this.projection.apply(emb, rows, reuse ? this.scratch('proj', rows * this.projection.spec.outDim) : undefined);
  }

  private readonly buffers = new Map<string, Float32Array>();
  private scratch(key: string, length: number): Float32Array {
    let b = this.buffers.get(key);
    if (!b || b.length < length) {
      b = new Float32Array(length);
      this.buffers.set(key, b);
    }
    return b.subarray(0, length);
  }
}
