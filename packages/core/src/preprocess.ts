// THE one place that knows the Keras ResNet50 'caffe' preprocessing: RGB -> BGR, subtract the
// ImageNet channel means (in BGR order), NO scaling (no /255, no std). Output is NHWC float32.
import { LoupeError } from './errors.js';
import { INPUT_CHANNELS, INPUT_ELEMENTS, INPUT_SIZE } from './model.js';

/** ImageNet means in BGR order, as in keras.applications.imagenet_utils (mode 'caffe'). */
export const CAFFE_MEAN_BGR: readonly [number, number, number] = [103.939, 116.779, 123.68];

// Keras subtracts the means in float32 (numpy float32 array minus a Python float). Rounding the
// constants to float32 first makes `v - mean` (exact in double, rounded once on store) bit-identical.
const MEAN_B = Math.fround(CAFFE_MEAN_BGR[0]);
const MEAN_G = Math.fround(CAFFE_MEAN_BGR[1]);
const MEAN_R = Math.fround(CAFFE_MEAN_BGR[2]);

/** A batch of preprocessed images: `data` is NHWC float32 [batch][224][224][3], caffe-normalised BGR. */
export interface TensorBatch {
  readonly data: Float32Array;
  readonly batch: number;
}

/**
 * Writes one 224x224 RGB uint8 image (HWC, no alpha) into `out` at image slot `index` as caffe BGR.
 * Returns `out`.
 */
export function rgbToCaffe(rgb: Uint8Array, out: Float32Array = new Float32Array(INPUT_ELEMENTS), index = 0): Float32Array {
  if (rgb.length !== INPUT_ELEMENTS) {
    throw new LoupeError(
      'INVALID_ARGUMENT',
      `expected ${INPUT_SIZE}x${INPUT_SIZE}x${INPUT_CHANNELS} = ${INPUT_ELEMENTS} RGB bytes, got ${rgb.length}`,
    );
  }
  const base = index * INPUT_ELEMENTS;
  if (base + INPUT_ELEMENTS > out.length) {
    throw new LoupeError('INVALID_ARGUMENT', `image slot ${index} is outside a tensor of ${out.length} floats`);
  }
  for (let i = 0; i < INPUT_ELEMENTS; i += 3) {
    out[base + i] = rgb[i + 2]! - MEAN_B;
    out[base + i + 1] = rgb[i + 1]! - MEAN_G;
    out[base + i + 2] = rgb[i]! - MEAN_R;
  }
  return out;
}

/** Packs 224x224 RGB images into one NHWC caffe-normalised batch tensor. */
export function packBatch(images: ReadonlyArray<{ readonly rgb: Uint8Array }>): TensorBatch {
  const data = new Float32Array(images.length * INPUT_ELEMENTS);
  images.forEach((img, i) => rgbToCaffe(img.rgb, data, i));
  return { data, batch: images.length };
}

/** Inverse of rgbToCaffe (rounded and clamped to uint8): for reports that show what the model saw. */
export function caffeToRgb(tensor: Float32Array, index = 0): Uint8Array {
  const base = index * INPUT_ELEMENTS;
  const rgb = new Uint8Array(INPUT_ELEMENTS);
  const clamp = (v: number): number => Math.min(255, Math.max(0, Math.round(v)));
  for (let i = 0; i < INPUT_ELEMENTS; i += 3) {
    rgb[i] = clamp(tensor[base + i + 2]! + MEAN_R);
    rgb[i + 1] = clamp(tensor[base + i + 1]! + MEAN_G);
    rgb[i + 2] = clamp(tensor[base + i]! + MEAN_B);
  }
  return rgb;
}
