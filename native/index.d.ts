// The JS surface of the native addon (native/binding/*.cc). Thin: every method maps to one engine call.
// Errors are thrown/rejected as Error objects with `code` = the engine StatusCode name
// ("InvalidArgument" | "NotFound" | "IoError" | "CorruptData" | "Unavailable" | "Cancelled" | "Internal").

export type BackendName = 'auto' | 'cpu' | 'cuda';
export type PrecisionName = 'fp32' | 'bf16' | 'fp16';

export interface BuildInfo {
  onednn: boolean;
  cuda: boolean;        // CUDA backend compiled in
  cudaUsable: boolean;  // a GPU and cuDNN were found at run time
  cudaDetail: string;
}

export interface NativeModel {
  readonly weightsHash: string;  // sha256 of the source weights, stored in model files
}

export interface SessionOptions {
  backend?: BackendName;    // default 'auto'
  precision?: PrecisionName;
  threads?: number;         // engine compute threads (0 = all cores); the caller owns the thread budget
  maxBatch?: number;
}

export interface NativeSession {
  readonly backend: string;  // "cpu-onednn" | "cpu-reference" | "cuda-cudnn"
  readonly device: string;
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

export interface NativeAddon {
  buildInfo(): BuildInfo;
  tapNames(): string[];                          // ["conv1","res2c","res3d","res4f","res5c","avg_pool","fc1000","probabilities"]
  tapShape(tap: string): [number, number, number];  // [H, W, C]
  loadModel(path: string): Promise<NativeModel>;  // TF.js model.json (+shards) or .lwts
  seededModel(seed: number): NativeModel;         // synthetic weights, for tests
  createSession(model: NativeModel, options?: SessionOptions): NativeSession;
  // X: [n][d] standardised, targets: [k][n] int8 (+1/-1/0). Off the JS thread.
  trainLinearSvms(X: Float32Array, n: number, d: number, targets: Int8Array, k: number,
                  options?: SvmTrainOptions): Promise<{ w: Float32Array; b: Float32Array }>;
  knnSearch(bank: Float32Array, nb: number, queries: Float32Array, nq: number, d: number, k: number,
            options?: { backend?: BackendName; threads?: number }): Promise<{ dist: Float32Array; idx: Int32Array }>;
  greedyCoreset(X: Float32Array, n: number, d: number, m: number,
                options?: { seed?: number; projectionDim?: number; backend?: BackendName; threads?: number },
                onProgress?: (done: number, total: number) => void): Promise<Int32Array>;
  // Writes the model as an ONNX graph (NHWC input "input" [N,224,224,3], caffe-preprocessed; outputs the
  // named taps, default fc1000). Off the JS thread; the file is written atomically.
  exportOnnx(model: NativeModel, path: string,
             options?: { taps?: string[]; opset?: number; dynamicBatch?: boolean }): Promise<void>;
}

declare const addon: NativeAddon;
export default addon;
