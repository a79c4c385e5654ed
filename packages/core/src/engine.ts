// The one wrapper around @loupe/native: loads the model once per weights file (shared by every
// session and every Engine over it), makes sessions per backend/precision, runs tensor batches and
// turns the addon's coded Errors into typed LoupeErrors.
import type { BackendName, BuildInfo, NativeAddon, NativeModel, NativeSession, PrecisionName } from '@loupe/native';
import { resolve } from 'node:path';

import { EngineError, engineCodeOf, LoupeError, messageOf, WeightsError } from './errors.js';
import { INPUT_ELEMENTS, isTapName, TAP_NAMES, TAP_SHAPES, tapElements, type TapName } from './model.js';
import { requireNativeAddon } from './native-kernels.js';
import type { TensorBatch } from './preprocess.js';
import { threadBudget } from './threads.js';
import { resolveWeights, type ResolvedWeights } from './weights/resolve.js';

export type { BackendName, BuildInfo, PrecisionName };

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
  /** 'fp32' (default). Reduced precisions are CUDA only and move logits by ~1e-2. */
  precision?: PrecisionName;
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

  /** @internal */
  constructor(
    private readonly native: NativeSession,
    config: Required<Pick<SessionConfig, 'threads' | 'precision' | 'maxBatch'>>,
  ) {
    this.backend = native.backend;
    this.device = native.device;
    this.threads = config.threads;
    this.precision = config.precision;
    this.maxBatch = config.maxBatch;
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
  private readonly sessions = new Map<string, EngineSession>();

  private constructor(
    private readonly addon: NativeAddon,
    private readonly model: NativeModel,
    /** Where the weights came from; undefined for seeded weights. */
    readonly weights: ResolvedWeights | undefined,
    defaults: SessionConfig,
  ) {
    this.session = this.openSession(defaults);
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

  /** A session with other settings over the same model; cached per (backend, precision, threads, maxBatch). */
  openSession(config: SessionConfig = {}): EngineSession {
    const resolved = {
      backend: config.backend ?? 'auto',
      precision: config.precision ?? 'fp32',
      threads: config.threads ?? threadBudget().engineThreads,
      maxBatch: config.maxBatch ?? 32,
    } as const;
    const key = `${resolved.backend}/${resolved.precision}/${resolved.threads}/${resolved.maxBatch}`;
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
   * as `packBatch` makes it; outputs the named taps, default fc1000), for other runtimes. Atomic.
   */
  async exportOnnx(path: string, options: { taps?: readonly TapName[]; opset?: number; dynamicBatch?: boolean } = {}): Promise<void> {
    const { taps, ...rest } = options;
    try {
      await this.addon.exportOnnx(this.model, path, { ...rest, ...(taps !== undefined ? { taps: [...taps] } : {}) });
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
