// The one wrapper around @loupe/native: loads the model once per weights file (shared by every
// session and every Engine over it), makes sessions per backend/precision, runs tensor batches and
// turns the addon's coded Errors into typed LoupeErrors.
import type { BackendName, BuildInfo, Int8Calibration, NativeAddon, NativeModel, NativeSession, PrecisionName } from '@loupe/native';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';

import { EngineError, engineCodeOf, LoupeError, messageOf, WeightsError } from './errors.js';
import { INPUT_ELEMENTS, isTapName, TAP_NAMES, TAP_SHAPES, tapElements, type TapName } from './model.js';
import { requireNativeAddon } from './native-kernels.js';
import type { TensorBatch } from './preprocess.js';
import { threadBudget } from './threads.js';
import { resolveWeights, type ResolvedWeights } from './weights/resolve.js';

export type { BackendName, BuildInfo, Int8Calibration, PrecisionName };

/** The precision a session runs in unless asked otherwise (models trained in it, ImageNet commands). */
export const DEFAULT_PRECISION = 'fp32' satisfies PrecisionName;

/** Short digest of an INT8 calibration: names its sessions and its feature-cache entries. */
export function int8CalibrationId(c: Int8Calibration): string {
  const ranges = Object.keys(c.ranges)
    .sort()
    .map((k) => `${k}=${c.ranges[k]!}`)
    .join(',');
  return createHash('sha256').update(`${c.weightsHash}|${ranges}`).digest('hex').slice(0, 16);
}

let addonPromise: Promise<NativeAddon> | undefined;

/** Loads the native addon once; EngineError(ENGINE_UNAVAILABLE) with the build hint if it is not built. */
export function loadAddon(): Promise<NativeAddon> {
  addonPromise ??= new Promise<NativeAddon>((done) => done(requireNativeAddon())).then(
    (addon) => {
      checkTapContract(addon);
      return addon;
    },
    (err: unknown) => {
      addonPromise = undefined; // let a later call retry, e.g. after the addon was built
      throw err;
    },
  );
  return addonPromise;
}

function checkTapContract(addon: NativeAddon): void {
  const names = addon.tapNames();
  const same = names.length === TAP_NAMES.length && names.every((n, i) => n === TAP_NAMES[i]);
  const shapesOk = same && TAP_NAMES.every((t) => addon.tapShape(t).join('x') === TAP_SHAPES[t].join('x'));
  if (!same || !shapesOk) {
    throw new EngineError('Internal', `@loupe/native taps [${names.join(', ')}] do not match @loupe/core's [${TAP_NAMES.join(', ')}]: rebuild both`);
  }
}

/** What the addon was built with and can use here (no model needed). */
export async function nativeBuildInfo(): Promise<BuildInfo> {
  return (await loadAddon()).buildInfo();
}

// One load per model file per process: ResNet-50 is ~100 MB of floats.
const models = new Map<string, Promise<NativeModel>>();

function firstFileName(message: string): string | undefined {
  return /([\w.@-]+\.(?:bin|json|lwts))\b/.exec(message)?.[1];
}

function loadModelOnce(addon: NativeAddon, path: string): Promise<NativeModel> {
  const key = resolve(path);
  let p = models.get(key);
  if (!p) {
    p = addon.loadModel(key).catch((err: unknown) => {
      models.delete(key);
      const code = engineCodeOf(err);
      const msg = `cannot load the model weights ${key}: ${messageOf(err)}`;
      const input = firstFileName(messageOf(err)) ?? key;
      if (code === 'NotFound') throw new WeightsError('WEIGHTS_MISSING', msg, { input, cause: err });
      if (code === 'CorruptData' || code === 'IoError' || code === 'InvalidArgument') throw new WeightsError('WEIGHTS_CORRUPT', msg, { input, cause: err });
      throw new EngineError(code, msg, { input: key, cause: err });
    });
    models.set(key, p);
  }
  return p;
}

export interface SessionConfig {
  /** 'auto' (default): CUDA when a GPU + cuDNN are usable, else the best CPU backend. */
  backend?: BackendName;
  /**
   * DEFAULT_PRECISION ('fp32') unless set. 'bf16'/'fp16': CUDA only, move logits by ~1e-2. 'int8': the oneDNN
   * CPU backend, with int8Calibration (docs/benchmarks/int8.md has its accuracy against fp32).
   */
  precision?: PrecisionName;
  /** The activation ranges of 'int8' (required there, ignored otherwise): calibrateInt8() or a model file's. */
  int8Calibration?: Int8Calibration;
  /** Engine compute threads; default: the process thread budget's engine share (see threads.ts). */
  threads?: number;
  /** Largest batch one native run sees; bigger batches are split. Default 32. */
  maxBatch?: number;
}

export interface EngineOptions extends SessionConfig {
  /** A weights directory, model.json or .lwts; default resolveWeights() ($LOUPE_WEIGHTS or the cache). */
  weights?: string;
  /** Synthetic weights from this seed instead of real ones (tests, device checks). */
  seededWeights?: number;
}

/** Per-tap outputs of one batch: `batch * tapElements(tap)` floats each, image-major, NHWC. */
export type TapOutputs<T extends TapName> = { [K in T]: Float32Array };

/** One native session (one backend instance) over the engine's shared model. */
export class EngineSession {
  /** e.g. "cpu-onednn", "cpu-reference", "cuda-cudnn". */
  readonly backend: string;
  /** e.g. "x86_64 (2 threads)", "NVIDIA H200". */
  readonly device: string;
  readonly threads: number;
  readonly precision: PrecisionName;
  readonly maxBatch: number;
  /** The activation ranges of an 'int8' session. */
  readonly int8Calibration: Int8Calibration | undefined;
  /**
   * What besides the weights makes this session's features differ from another's: undefined for fp32,
   * else e.g. "int8-<calibration id>" (feature caches key on it).
   */
  readonly featureVariant: string | undefined;

  /** @internal */
  constructor(
    private readonly native: NativeSession,
    config: Required<Pick<SessionConfig, 'threads' | 'precision' | 'maxBatch'>> & Pick<SessionConfig, 'int8Calibration'>,
  ) {
    this.backend = native.backend;
    this.device = native.device;
    this.threads = config.threads;
    this.precision = config.precision;
    this.maxBatch = config.maxBatch;
    this.int8Calibration = config.precision === 'int8' ? config.int8Calibration : undefined;
    this.featureVariant = this.int8Calibration ? `int8-${int8CalibrationId(this.int8Calibration)}` : config.precision === 'fp32' ? undefined : config.precision;
  }

  /** The kernels its convolutions run on (oneDNN names, e.g. "int8 brgconv:avx512_core_vnni x16, ..."). */
  kernelInfo(): Promise<string> {
    return this.native.kernelInfo();
  }

  /**
   * Runs a preprocessed batch (see preprocess.ts) and returns the requested taps. Runs on one session
   * execute one at a time in submission order, off the JS thread.
   */
  async run<T extends TapName>(input: TensorBatch, taps: readonly T[]): Promise<TapOutputs<T>> {
    validateRun(input, taps);
    const unique = [...new Set(taps)];
    const parts: Float32Array[][] = [];
    // Split into maxBatch chunks; all chunks are queued at once so the engine never idles between them.
    const runs: Promise<Float32Array[]>[] = [];
    for (let start = 0; start < input.batch; start += this.maxBatch) {
      const n = Math.min(this.maxBatch, input.batch - start);
      const view = input.data.subarray(start * INPUT_ELEMENTS, (start + n) * INPUT_ELEMENTS);
      runs.push(this.native.run(view, n, unique));
    }
    // Keep every promise handled: if one chunk fails the rest must not become unhandled rejections.
    const settled = await Promise.allSettled(runs);
    for (const s of settled) {
      if (s.status === 'rejected') throw wrapRunError(s.reason, input.batch);
      parts.push(s.value);
    }
    const out = {} as TapOutputs<T>;
    unique.forEach((tap, i) => {
      const per = tapElements(tap);
      const chunks = parts.map((p) => p[i]!);
      const total = chunks.reduce((a, c) => a + c.length, 0);
      if (total !== input.batch * per) {
        throw new EngineError('Internal', `engine returned ${total} floats for tap ${tap}, expected ${input.batch} x ${per}`);
      }
      out[tap] = chunks.length === 1 ? chunks[0]! : concat(chunks, total);
    });
    return out;
  }

  /** Rejects every queued (not yet started) run with EngineError(Cancelled); returns how many. */
  cancelPending(): number {
    return this.native.cancelPending();
  }
}

function concat(chunks: Float32Array[], total: number): Float32Array {
  const out = new Float32Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

function validateRun(input: TensorBatch, taps: readonly string[]): void {
  if (!Number.isInteger(input.batch) || input.batch < 1) throw new LoupeError('INVALID_ARGUMENT', `batch must be a positive integer, got ${input.batch}`);
  if (input.data.length !== input.batch * INPUT_ELEMENTS) {
    throw new LoupeError('INVALID_ARGUMENT', `input holds ${input.data.length} floats, expected batch ${input.batch} x 224 x 224 x 3`);
  }
  if (taps.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'ask for at least one tap');
  for (const t of taps) if (!isTapName(t)) throw new LoupeError('INVALID_ARGUMENT', `unknown tap '${t}'; taps are ${TAP_NAMES.join(', ')}`);
}

function wrapRunError(err: unknown, batch: number): EngineError {
  if (err instanceof EngineError) return err;
  return new EngineError(engineCodeOf(err), `inference failed on a batch of ${batch}: ${messageOf(err)}`, { cause: err });
}

/** A loaded model plus a default session; further sessions share the model. */
export class Engine {
  /** The default session (backend/precision/threads from Engine.open). */
  readonly session: EngineSession;

  private constructor(
    private readonly addon: NativeAddon,
    private readonly model: NativeModel,
    /** Where the weights came from; undefined for seeded weights. */
    readonly weights: ResolvedWeights | undefined,
    private readonly defaults: SessionConfig,
    // Shared by every Engine derived from one (withSession): one native session per configuration.
    private readonly sessions = new Map<string, EngineSession>(),
  ) {
    this.session = this.openSession(defaults);
  }

  /**
   * This engine (same model, same session cache) with another default session, e.g. an int8 one: what
   * trainings, evaluations and inspections of an int8 model run on (see engineForModel).
   */
  withSession(config: SessionConfig): Engine {
    const merged: SessionConfig = { ...this.defaults, ...config };
    if (config.precision !== undefined && config.precision !== 'int8') delete merged.int8Calibration;
    return new Engine(this.addon, this.model, this.weights, merged, this.sessions);
  }

  /** The default session's precision. */
  get precision(): PrecisionName {
    return this.session.precision;
  }
  /** The default session's INT8 calibration (int8 engines). */
  get int8Calibration(): Int8Calibration | undefined {
    return this.session.int8Calibration;
  }
  /** See EngineSession.featureVariant. */
  get featureVariant(): string | undefined {
    return this.session.featureVariant;
  }

  /**
   * An INT8 calibrator over this model's fp32 activations: add preprocessed batches (the same tensors as
   * run()), then compute the ranges ('mse', the measured best, by default). Deterministic in the set of
   * images, whatever their order or batching.
   */
  async createCalibrator(options: { threads?: number } = {}): Promise<{ add(batch: TensorBatch): Promise<void>; compute(method?: 'mse' | 'percentile' | 'max'): Promise<Int8Calibration>; readonly images: number }> {
    let native: Awaited<ReturnType<NativeAddon['createCalibrator']>>;
    try {
      native = await this.addon.createCalibrator(this.model, { threads: options.threads ?? threadBudget().engineThreads });
    } catch (err) {
      throw new EngineError(engineCodeOf(err), `cannot calibrate INT8: ${messageOf(err)}`, { cause: err });
    }
    return {
      get images() {
        return native.images;
      },
      add: async (batch) => {
        validateRun(batch, ['fc1000']);
        await native.add(batch.data, batch.batch).catch((err: unknown) => {
          throw wrapRunError(err, batch.batch);
        });
      },
      compute: async (method) =>
        native.compute(method !== undefined ? { method } : {}).catch((err: unknown) => {
          throw new EngineError(engineCodeOf(err), `cannot compute the INT8 calibration: ${messageOf(err)}`, { cause: err });
        }),
    };
  }

  /** Loads the addon and the model (once per process per file) and opens the default session. */
  static async open(options: EngineOptions = {}): Promise<Engine> {
    const addon = await loadAddon();
    if (options.seededWeights !== undefined) {
      let model: NativeModel;
      try {
        model = addon.seededModel(options.seededWeights);
      } catch (err) {
        throw new EngineError(engineCodeOf(err), `cannot build seeded weights: ${messageOf(err)}`, { cause: err });
      }
      return new Engine(addon, model, undefined, options);
    }
    const weights = resolveWeights(options.weights === undefined ? {} : { path: options.weights });
    const model = await loadModelOnce(addon, weights.model);
    return new Engine(addon, model, weights, options);
  }

  /** sha256 of the source weights, as stored in model files. */
  get weightsHash(): string {
    return this.model.weightsHash;
  }
  get backend(): string {
    return this.session.backend;
  }
  get device(): string {
    return this.session.device;
  }

  buildInfo(): BuildInfo {
    return this.addon.buildInfo();
  }

  /** A session with other settings over the same model; cached per (backend, precision, calibration, threads, maxBatch). */
  openSession(config: SessionConfig = {}): EngineSession {
    const precision = config.precision ?? DEFAULT_PRECISION;
    if (precision === 'int8' && !config.int8Calibration) {
      throw new LoupeError('INVALID_ARGUMENT', "precision 'int8' needs an int8Calibration (calibrateInt8(), or the one a model file stores)");
    }
    const resolved = {
      // INT8 runs on the oneDNN CPU backend only: 'auto' must not pick a GPU for it.
      backend: config.backend ?? (precision === 'int8' ? 'cpu' : 'auto'),
      precision,
      threads: config.threads ?? threadBudget().engineThreads,
      maxBatch: config.maxBatch ?? 32,
      ...(precision === 'int8' ? { int8Calibration: config.int8Calibration! } : {}),
    } as const;
    const calibration = resolved.int8Calibration ? `/${int8CalibrationId(resolved.int8Calibration)}` : '';
    const key = `${resolved.backend}/${resolved.precision}${calibration}/${resolved.threads}/${resolved.maxBatch}`;
    const cached = this.sessions.get(key);
    if (cached) return cached;
    let native: NativeSession;
    try {
      native = this.addon.createSession(this.model, resolved);
    } catch (err) {
      throw new EngineError(engineCodeOf(err), `cannot create the ${resolved.backend} session (${resolved.precision}): ${messageOf(err)}`, { cause: err });
    }
    const session = new EngineSession(native, resolved);
    this.sessions.set(key, session);
    return session;
  }

  /** Runs a batch on the default session. */
  run<T extends TapName>(input: TensorBatch, taps: readonly T[]): Promise<TapOutputs<T>> {
    return this.session.run(input, taps);
  }

  /**
   * Writes this model as an ONNX graph (input "input": float32 NHWC [N,224,224,3], caffe-preprocessed,
   * as `packBatch` makes it; outputs the named taps, default fc1000), for other runtimes. Atomic. An int8
   * engine (or int8Calibration) writes the quantized model as QDQ.
   */
  async exportOnnx(path: string, options: { taps?: readonly TapName[]; opset?: number; dynamicBatch?: boolean; int8Calibration?: Int8Calibration } = {}): Promise<void> {
    const { taps, int8Calibration, ...rest } = options;
    // An int8 engine exports what it runs: the same integers and scales as QDQ (onnxruntime fuses them).
    const calibration = int8Calibration ?? this.int8Calibration;
    try {
      await this.addon.exportOnnx(this.model, path, { ...rest, ...(taps !== undefined ? { taps: [...taps] } : {}), ...(calibration ? { int8Calibration: calibration } : {}) });
    } catch (err) {
      throw new EngineError(engineCodeOf(err), `cannot export ONNX to ${path}: ${messageOf(err)}`, { cause: err });
    }
  }

  /** Cancels queued runs on every session of this engine; returns how many. */
  cancelPending(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.cancelPending();
    return n;
  }
}

let defaultEngine: Promise<Engine> | undefined;

/** A process-wide engine with default options, opened on first use (for apps that need just one). */
export function defaultEngineInstance(): Promise<Engine> {
  defaultEngine ??= Engine.open().catch((err: unknown) => {
    defaultEngine = undefined;
    throw err;
  });
  return defaultEngine;
}
