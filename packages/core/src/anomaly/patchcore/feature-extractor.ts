// PatchCore patch features (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection")
// from the engine's ResNet-50 stage outputs, as in anomalib's PatchCore:
//   res3d ("layer2", 28x28x512) and res4f ("layer3", 14x14x1024), each 3x3 average-pooled (stride 1,
//   zero padding 1, divide by 9 everywhere = torch AvgPool2d(3, 1, 1) with count_include_pad), res4f
//   bilinearly upsampled to 28x28 (align_corners = false), concatenated along channels -> 1536 dims per
//   patch, optionally reduced by a seeded sparse random projection (Li et al. "very sparse" projection,
//   the same family as sklearn's SparseRandomProjection that anomalib uses for its coreset).
// Everything works on flat NHWC Float32Arrays; one patch row is [dim] floats, rows are ordered
// image-major, then y, then x (row = ((image * 28) + y) * 28 + x).
// The arithmetic lives in the C++ engine (native/engine/include/loupe/patch_maps.h, synchronous, ~1 ms
// per image); these functions check and marshal.
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';
import { TAP_SHAPES } from '../../model.js';
import { runKernel } from '../../native-kernels.js';
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
): void {
  runKernel('avgPool3x3Into', (a) =>
    a.avgPool3x3(src.subarray(srcOff, srcOff + h * w * c), 1, h, w, c, dst.subarray(dstOff, dstOff + (h * w - 1) * dstStride + c), dstStride),
  );
}

/** 3x3 average pooling (see avgPool3x3Into) of n images NHWC [n][h][w][c]. */
export function avgPool3x3(src: Float32Array, n: number, h: number, w: number, c: number, out?: Float32Array): Float32Array {
  const plane = h * w * c;
  if (src.length !== n * plane) throw new LoupeError('INVALID_ARGUMENT', `avgPool3x3: expected ${n * plane} floats, got ${src.length}`);
  const dst = out ?? new Float32Array(n * plane);
  runKernel('avgPool3x3', (a) => a.avgPool3x3(src, n, h, w, c, dst.subarray(0, n * plane), c));
  return dst;
}

/** Source index pair and weight for one output coordinate of torch's bilinear (align_corners=false). */
export interface BilinearAxis {
  i0: Int32Array;
  i1: Int32Array;
  /** Weight of i1 (i0 gets 1 - lambda). */
  lambda: Float32Array;
}

/** torch/anomalib bilinear sampling (align_corners = false, size given) for one axis. */
export function bilinearAxis(inSize: number, outSize: number): BilinearAxis {
  return runKernel('bilinearAxis', (a) => a.bilinearAxis(inSize, outSize));
}

/**
 * Builds PatchCore embeddings [n * 784][1536] from res3d [n][28][28][512] and res4f [n][14][14][1024]
 * (NHWC, as the engine returns them). Channels 0..511 are pooled res3d, 512..1535 pooled+upsampled res4f.
 * `out` may be longer than needed (the rows go at its start).
 */
export function buildPatchEmbeddings(res3d: Float32Array, res4f: Float32Array, n: number, out?: Float32Array): Float32Array {
  const [h2, w2, c2] = TAP_SHAPES.res3d;
  const [h3, w3, c3] = TAP_SHAPES.res4f;
  const d = c2 + c3;
  if (res3d.length !== n * h2 * w2 * c2) throw new LoupeError('INVALID_ARGUMENT', `res3d: expected ${n * h2 * w2 * c2} floats, got ${res3d.length}`);
  if (res4f.length !== n * h3 * w3 * c3) throw new LoupeError('INVALID_ARGUMENT', `res4f: expected ${n * h3 * w3 * c3} floats, got ${res4f.length}`);
  const dst = out ?? new Float32Array(n * h2 * w2 * d);
  if (dst.length < n * h2 * w2 * d) throw new LoupeError('INVALID_ARGUMENT', 'buildPatchEmbeddings: output too small');
  runKernel('buildPatchEmbeddings', (a) => a.buildPatchEmbeddings(res3d, res4f, n, TAP_SHAPES.res3d, TAP_SHAPES.res4f, dst.subarray(0, n * h2 * w2 * d)));
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

  /** Projects rows [n][inDim] -> [n][outDim] (natively, double sums in the matrix's order). */
  apply(src: Float32Array, n: number, out?: Float32Array): Float32Array {
    const { inDim, outDim } = this.spec;
    if (src.length < n * inDim) throw new LoupeError('INVALID_ARGUMENT', `projection: expected ${n * inDim} floats, got ${src.length}`);
    const dst = out ?? new Float32Array(n * outDim);
    if (dst.length < n * outDim) throw new LoupeError('INVALID_ARGUMENT', `projection: output holds ${dst.length} floats, needs ${n * outDim}`);
    runKernel('SparseRandomProjection.apply', (a) =>
      a.sparseProjectRows(src.subarray(0, n * inDim), n, inDim, this.start, this.index, this.value, outDim, dst.subarray(0, n * outDim)),
    );
    return dst;
  }
}

/** Reusable buffers of fromTapsInto (start with empty arrays). */
export interface EmbeddingScratch {
  emb: Float32Array;
  proj: Float32Array;
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

  /**
   * fromTaps into caller-owned scratch (grown as needed): for callers that score concurrently, each with
   * its own scratch, and keep nothing of the result after it is consumed.
   */
  fromTapsInto(res3d: Float32Array, res4f: Float32Array, batch: number, scratch: EmbeddingScratch): Float32Array {
    const rows = batch * PATCHES_PER_IMAGE;
    if (scratch.emb.length < rows * EMBEDDING_DIM) scratch.emb = new Float32Array(rows * EMBEDDING_DIM);
    const emb = buildPatchEmbeddings(res3d, res4f, batch, scratch.emb.subarray(0, rows * EMBEDDING_DIM));
    if (!this.projection) return emb;
    const out = rows * this.projection.spec.outDim;
    if (scratch.proj.length < out) scratch.proj = new Float32Array(out);
    return this.projection.apply(emb, rows, scratch.proj.subarray(0, out));
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
