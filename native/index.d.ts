// The JS surface of the native addon (native/binding/*.cc). Thin: every method maps to one engine call.
// Errors are thrown/rejected as Error objects with `code` = the engine StatusCode name
// ("InvalidArgument" | "NotFound" | "IoError" | "CorruptData" | "Unavailable" | "Cancelled" | "Internal").

export type BackendName = 'auto' | 'cpu' | 'cuda';
// 'bf16' | 'fp16': CUDA only. 'int8': the oneDNN CPU backend, from an Int8Calibration (options.int8Calibration).
export type PrecisionName = 'fp32' | 'bf16' | 'fp16' | 'int8';

export interface BuildInfo {
  onednn: boolean;
  cuda: boolean;        // CUDA backend compiled in
  cudaUsable: boolean;  // a GPU and cuDNN were found at run time
  cudaDetail: string;
  // oneDNN ('' without it): version ("2.6.3"), the best ISA it uses on this CPU ("avx512_core_bf16",
  // "avx2_vnni", "avx2", ...), and the kernel it picks here for a representative int8 (u8 x s8) and fp32
  // 3x3 conv, i.e. what an int8 / fp32 session runs on ("brgconv:avx512_core_vnni", "jit_int8:avx2", ...).
  onednnVersion: string;
  onednnIsa: string;
  onednnInt8Kernel: string;
  onednnFp32Kernel: string;
}

// INT8 activation ranges (engine: loupe/quantization.h). Plain data: store it (e.g. in a model file) and
// pass it back to createSession to get exactly the same int8 session. `ranges` maps every name of
// int8TensorNames() to the tensor's clipping range R > 0 (float32 units): the quantization step is R/255
// for the u8 (ReLU output) tensors and R/127 for the s8 ones (names ending in _branch2c / _branch1, and
// "input"). `weightsHash` is the calibrated model's (a session of other weights refuses it; '' = no check).
export interface Int8Calibration {
  weightsHash: string;
  method: string;   // 'percentile' | 'mse' | 'max' (informational)
  ranges: Record<string, number>;
}

export type CalibrationMethodName = 'percentile' | 'mse' | 'max';

export interface NativeCalibrator {
  readonly images: number;  // images added so far
  // Runs the fp32 network over a batch (the same NHWC float32 caffe-preprocessed input as session.run)
  // and accumulates per-tensor histograms. Off the JS thread; the input must stay attached until it settles.
  // Deterministic: the result does not depend on how images are split into batches or on their order.
  add(input: Float32Array, batch: number): Promise<void>;
  // The ranges from the images so far (rejects with "InvalidArgument" before any). 'mse' (default here:
  // see docs/benchmarks/int8.md) minimises each tensor's expected quantization error; 'percentile' clips at
  // options.percentile (default 99.99) of |x|; 'max' does not clip. Can be called repeatedly.
  compute(options?: { method?: CalibrationMethodName; percentile?: number }): Promise<Int8Calibration>;
}

export interface NativeModel {
  readonly weightsHash: string;  // sha256 of the source weights, stored in model files
}

export interface SessionOptions {
  backend?: BackendName;    // default 'auto' ('int8': the CPU; 'cuda' refuses int8)
  precision?: PrecisionName;
  int8Calibration?: Int8Calibration;  // required for 'int8', ignored otherwise
  threads?: number;         // engine compute threads (0 = all cores); the caller owns the thread budget
  maxBatch?: number;
}

export interface NativeSession {
  readonly backend: string;  // "cpu-onednn" | "cpu-reference" | "cuda-cudnn"
  readonly device: string;
  readonly precision: PrecisionName;
  // The kernels its convolutions run on, e.g. "int8 brgconv:avx512_core_vnni x16, brgconv_1x1:avx512_core_vnni
  // x36; fp32 brgconv:avx512_core x1" (oneDNN names; '' where the backend does not say). May build the
  // batch-1 plan first; waits for a run in flight.
  kernelInfo(): Promise<string>;
  // input: NHWC float32 [batch][224][224][3], caffe-normalised BGR. Runs off the JS thread; runs on one
  // session execute one at a time in submission order. Resolves one Float32Array per tap, in order.
  run(input: Float32Array, batch: number, taps: string[]): Promise<Float32Array[]>;
  // Rejects every queued (not yet started) run with code "Cancelled"; returns how many.
  cancelPending(): number;
}

export interface SvmTrainOptions {
  lambda?: number; eta0?: number; epochs?: number; seed?: number; schedule?: 'pegasos' | 'averaged';
  backend?: BackendName; threads?: number;
}

export type KnnMethodName = 'auto' | 'bruteForce' | 'pruned';

export interface KnnIndexOptions {
  backend?: BackendName;
  threads?: number;
  // 'pruned' (CPU): a lower bound on a principal subspace of the bank skips rows that cannot be among
  // the k nearest (same neighbours, far fewer flops on low-rank banks). 'auto': pruned for d >= 256,
  // large banks and at least half the variance on the subspace (createKnnIndex only).
  method?: KnnMethodName;
  subspaceDim?: number;   // the pruned index's subspace; 0 = min(128, d / 4)
}

export interface NativeKnnIndex {
  readonly size: number;
  readonly dim: number;
  readonly backend: 'cpu' | 'cuda';
  readonly method: 'bruteForce' | 'pruned';
  // The k nearest bank rows of each query ([nq][dim]), squared L2 ascending, ties to the lower index.
  search(queries: Float32Array, nq: number, k: number): Promise<{ dist: Float32Array; idx: Int32Array }>;
}

export interface NativeAddon {
  buildInfo(): BuildInfo;
  tapNames(): string[];                          // ["conv1","res2c","res3d","res4f","res5c","avg_pool","fc1000","probabilities"]
  tapShape(tap: string): [number, number, number];  // [H, W, C]
  loadModel(path: string): Promise<NativeModel>;  // TF.js model.json (+shards) or .lwts
  seededModel(seed: number): NativeModel;         // synthetic weights, for tests
  createSession(model: NativeModel, options?: SessionOptions): NativeSession;
  // An INT8 calibrator over the model's fp32 activations (oneDNN builds only: else rejects "Unavailable").
  createCalibrator(model: NativeModel, options?: { threads?: number }): Promise<NativeCalibrator>;
  // The tensors an Int8Calibration carries, in network order: "input", "conv1", "pool1", then per block B
  // (res2a..res5c) "B_branch2a", "B_branch2b", "B_branch2c", ["B_branch1",] "B".
  int8TensorNames(): string[];
  // X: [n][d] standardised, targets: [k][n] int8 (+1/-1/0). Off the JS thread.
  trainLinearSvms(X: Float32Array, n: number, d: number, targets: Int8Array, k: number,
                  options?: SvmTrainOptions): Promise<{ w: Float32Array; b: Float32Array }>;
  // One-shot exact kNN (brute force unless options.method says otherwise). dist: squared L2, ascending.
  knnSearch(bank: Float32Array, nb: number, queries: Float32Array, nq: number, d: number, k: number,
            options?: KnnIndexOptions): Promise<{ dist: Float32Array; idx: Int32Array }>;
  // An index over a bank (copied) for repeated exact searches; built off the JS thread.
  createKnnIndex(bank: Float32Array, nb: number, d: number, options?: KnnIndexOptions): Promise<NativeKnnIndex>;
  greedyCoreset(X: Float32Array, n: number, d: number, m: number,
                options?: { seed?: number; projectionDim?: number; backend?: BackendName; threads?: number },
                onProgress?: (done: number, total: number) => void): Promise<Int32Array>;
  // --- PatchCore patch features and anomaly maps (loupe/patch_maps.h). Synchronous (~1 ms per image),
  // on the JS thread. Results go into the caller's `dst` (exact length, not overlapping the inputs except
  // where noted); they return nothing. Bad sizes throw TypeError/RangeError naming the argument, engine
  // checks an Error with code "InvalidArgument".
  // 3x3 average pool (torch AvgPool2d(3, 1, 1), count_include_pad) of NHWC [n][h][w][c]; pixel p of image i
  // goes to dst[(i*h*w + p) * dstStride + ch]; dst.length = (n*h*w - 1) * dstStride + c (0 when n = 0).
  avgPool3x3(src: Float32Array, n: number, h: number, w: number, c: number, dst: Float32Array, dstStride: number): void;
  // PatchCore embeddings [n*h2*w2][c2+c3]: pooled res3d, then pooled res4f upsampled (bilinear) to h2 x w2.
  buildPatchEmbeddings(res3d: Float32Array, res4f: Float32Array, n: number,
                       res3dShape: readonly [number, number, number], res4fShape: readonly [number, number, number],
                       dst: Float32Array): void;
  // Rows [n][inDim] -> [n][outDim] through a projection stored by output column (CSR: start has outDim+1
  // entries from 0 to index.length; value[k] multiplies row[index[k]]). Double sums.
  sparseProjectRows(src: Float32Array, n: number, inDim: number, start: Int32Array, index: Int32Array,
                    value: Float32Array, outDim: number, dst: Float32Array): void;
  // torch bilinear (align_corners = false) sampling of one axis: output o = (1-lambda)*in[i0] + lambda*in[i1].
  bilinearAxis(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; lambda: Float32Array };
  // [sh][sw] -> [dh][dw], torch bilinear; equal sizes copy. dst may overlap src.
  resizeBilinear(src: Float32Array, sh: number, sw: number, dh: number, dw: number, dst: Float32Array): void;
  gaussianKernelSize(sigma: number): number;              // 2*floor(4*sigma+0.5)+1, sigma in [0, 131072]
  gaussianKernel1d(sigma: number, size: number): Float32Array;  // normalised, odd size
  reflectIndex(i: number, n: number): number;             // torch 'reflect' padding index into [0, n)
  // Separable Gaussian (anomalib kernel size, reflect borders); sigma <= 0 or NaN copies. dst may overlap src.
  gaussianBlur(src: Float32Array, h: number, w: number, sigma: number, dst: Float32Array): void;
  // Patch scores [gridH][gridW] -> resize to [mapH][mapW] -> blur (sigma <= 0: none) -> resize to
  // [outH][outW] (equal: none), into dst [outH][outW]. dst may overlap scores.
  patchScoresToMap(scores: Float32Array, gridH: number, gridW: number, mapH: number, mapW: number, sigma: number,
                   outH: number, outW: number, dst: Float32Array): void;
  // Writes the model as an ONNX graph (NHWC input "input" [N,224,224,3], caffe-preprocessed; outputs the
  // named taps, default fc1000). Off the JS thread; the file is written atomically. With int8Calibration:
  // the int8 session's model as QDQ (QuantizeLinear/DequantizeLinear, per-channel int8 weights, uint8
  // activations; opset >= 13), which onnxruntime runs as QLinearConv/QLinearAdd.
  exportOnnx(model: NativeModel, path: string,
             options?: { taps?: string[]; opset?: number; dynamicBatch?: boolean;
                         int8Calibration?: Int8Calibration }): Promise<void>;
}

declare const addon: NativeAddon;
export default addon;
