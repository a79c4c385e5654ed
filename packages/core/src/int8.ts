// INT8 inference rules: how activation ranges are calibrated on images (a model's own training images; the
// ImageNet commands' default set), which session a model runs on (the precision it was trained and
// evaluated in, stored in its file), and what `--precision` may ask for. The engine (native) does the
// quantization itself (native/engine/include/loupe/quantization.h).
import { DEFAULT_PRECISION, type Engine, type Int8Calibration, type PrecisionName } from './engine.js';
import { AbortError, LoupeError } from './errors.js';
import { decodeImage, sourceName, type FitMode, type ImageSource } from './image/decode.js';
import { packBatch } from './preprocess.js';
import { renderSyntheticSample, SYNTHETIC_LABELS, SYNTHETIC_OBJECTS } from './synthetic/index.js';

/** Precisions a model can be trained (and then always run) in. */
export const MODEL_PRECISIONS = ['fp32', 'int8'] as const;
export type ModelPrecision = (typeof MODEL_PRECISIONS)[number];

/** Range method of calibrations: 'mse' measured best on the dev categories (docs/benchmarks/int8.md). */
export const DEFAULT_CALIBRATION_METHOD = 'mse' as const;
export type Int8CalibrationMethod = 'mse' | 'percentile' | 'max';
/**
 * Calibration images at most: evenly spaced over the given ones (~100 saturate the ranges: the tails of
 * 100 images' activations are millions of elements).
 */
export const MAX_CALIBRATION_IMAGES = 100;

export interface Int8CalibrateOptions {
  method?: Int8CalibrationMethod;
  /** How images are decoded (the model's fit); default 'squash'. */
  fit?: FitMode;
  maxImages?: number;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Every k-th image so that at most `max` remain (deterministic, spread over the whole set). */
function spread<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(items[Math.floor((i * items.length) / max)]!);
  return out;
}

/**
 * INT8 activation ranges of `engine`'s model from images (decoded as the model decodes them), computed on
 * its fp32 activations. Deterministic in the images chosen.
 */
export async function calibrateInt8(engine: Engine, images: readonly ImageSource[], options: Int8CalibrateOptions = {}): Promise<Int8Calibration> {
  if (images.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'INT8 calibration needs at least one image');
  const chosen = spread(images, options.maxImages ?? MAX_CALIBRATION_IMAGES);
  const batchSize = options.batchSize ?? 8;
  const calibrator = await engine.createCalibrator();
  for (let start = 0; start < chosen.length; start += batchSize) {
    if (options.signal?.aborted) throw new AbortError(options.signal.reason);
    const part = chosen.slice(start, start + batchSize);
    const decoded = [];
    for (const [i, src] of part.entries()) decoded.push(await decodeImage(src, { fit: options.fit ?? 'squash', name: sourceName(src, `<calibration image #${start + i}>`) }));
    await calibrator.add(packBatch(decoded));
    options.onProgress?.(Math.min(start + batchSize, chosen.length), chosen.length);
  }
  return calibrator.compute(options.method ?? DEFAULT_CALIBRATION_METHOD);
}

/** Synthetic images per label in the ImageNet commands' default calibration (3 objects: 36 images). */
const DEFAULT_SYNTHETIC_PER_LABEL = 3;
const defaultCalibrations = new WeakMap<Engine, Promise<Int8Calibration>>();

/**
 * The calibration of ImageNet commands run in INT8 (no model of their own to take one from): the embedded
 * synthetic set (rendered, deterministic) plus `extraImages` (the apps' bundled sample images). Never a
 * user's dataset folder: the same ranges on every machine. Computed once per engine.
 */
export function defaultInt8Calibration(engine: Engine, extraImages: readonly ImageSource[] = []): Promise<Int8Calibration> {
  let p = defaultCalibrations.get(engine);
  if (!p) {
    p = (async () => {
      const images: ImageSource[] = [...extraImages];
      for (const object of SYNTHETIC_OBJECTS) {
        for (const label of SYNTHETIC_LABELS[object]) {
          for (let i = 0; i < DEFAULT_SYNTHETIC_PER_LABEL; i++) {
            images.push({ name: `synthetic ${object}/${label}#${i}`, data: await renderSyntheticSample(object, label, i, { seed: 'int8-calibration', size: 256 }) });
          }
        }
      }
      return calibrateInt8(engine, images);
    })();
    p.catch(() => defaultCalibrations.delete(engine));
    defaultCalibrations.set(engine, p);
  }
  return p;
}

/** INVALID_ARGUMENT unless `p` is a precision models can be trained in. */
export function checkModelPrecision(p: string): ModelPrecision {
  if (!(MODEL_PRECISIONS as readonly string[]).includes(p)) throw new LoupeError('INVALID_ARGUMENT', `precision must be ${MODEL_PRECISIONS.join(' or ')}, got '${p}'`);
  return p as ModelPrecision;
}

/** The precision a model runs in: 'int8' when its file stores a calibration, else the default. */
export function modelPrecision(model: { readonly int8Calibration?: Int8Calibration | undefined }): PrecisionName {
  return model.int8Calibration ? 'int8' : DEFAULT_PRECISION;
}

/**
 * The engine a model runs on: `engine` itself for an fp32 model, else the same model's int8 session with
 * the model's own calibration, so inspection runs exactly what training and evaluation measured.
 */
export function engineForModel(engine: Engine, model: { readonly int8Calibration?: Int8Calibration | undefined }): Engine {
  // An fp32 model runs on the engine as opened (a CUDA bf16 engine stays bf16: asked for), never on int8.
  if (!model.int8Calibration) return engine.precision === 'int8' ? engine.withSession({ precision: DEFAULT_PRECISION }) : engine;
  return engine.withSession({ precision: 'int8', int8Calibration: model.int8Calibration });
}

/**
 * The engine a training in `precision` extracts its features on: fp32 as is; int8 calibrated on the
 * training images (`images`, decoded with `fit`). Returns the calibration for the model file.
 */
export async function trainingEngine(
  engine: Engine,
  precision: ModelPrecision | undefined,
  images: readonly ImageSource[],
  options: Omit<Int8CalibrateOptions, 'maxImages'> = {},
): Promise<{ engine: Engine; int8Calibration: Int8Calibration | undefined }> {
  const p = checkModelPrecision(precision ?? DEFAULT_PRECISION);
  if (p === 'fp32') return { engine: engineForModel(engine, {}), int8Calibration: undefined };
  // The calibrator runs the model's fp32 network whatever the engine's session is.
  const int8Calibration = await calibrateInt8(engine, images, options);
  return { engine: engine.withSession({ precision: 'int8', int8Calibration }), int8Calibration };
}
