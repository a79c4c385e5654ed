// The facts about the ResNet-50 model that JavaScript needs; they mirror
// native/engine/include/loupe/resnet50.h, and Engine.open() checks them against the addon.
import { LoupeError } from './errors.js';

/** Side of the square model input, in pixels. */
export const INPUT_SIZE = 224;
/** Channels of the model input (BGR after preprocessing). */
export const INPUT_CHANNELS = 3;
/** Floats per image in the input tensor. */
export const INPUT_ELEMENTS = INPUT_SIZE * INPUT_SIZE * INPUT_CHANNELS;

/** Named outputs ("taps") the engine can return, in network order. Feature maps are NHWC. */
export const TAP_NAMES = ['conv1', 'res2c', 'res3d', 'res4f', 'res5c', 'avg_pool', 'fc1000', 'probabilities'] as const;
export type TapName = (typeof TAP_NAMES)[number];

/** [H, W, C] per image; vectors are [1, 1, C]. */
export const TAP_SHAPES: Readonly<Record<TapName, readonly [number, number, number]>> = {
  conv1: [112, 112, 64],
  res2c: [56, 56, 256],
  res3d: [28, 28, 512],
  res4f: [14, 14, 1024],
  res5c: [7, 7, 2048],
  avg_pool: [1, 1, 2048],
  fc1000: [1, 1, 1000],       // logits, before softmax
  probabilities: [1, 1, 1000], // softmax of fc1000
};

export function tapElements(tap: TapName): number {
  const shape = TAP_SHAPES[tap] as readonly [number, number, number] | undefined;
  if (!shape) throw new LoupeError('INVALID_ARGUMENT', `unknown tap '${String(tap)}'; taps are ${TAP_NAMES.join(', ')}`);
  const [h, w, c] = shape;
  return h * w * c;
}

export function isTapName(name: string): name is TapName {
  return (TAP_NAMES as readonly string[]).includes(name);
}
