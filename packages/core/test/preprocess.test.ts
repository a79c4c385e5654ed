// Keras 'caffe' preprocessing: BGR order, ImageNet means, no scaling, NHWC.
import { describe, expect, it } from 'vitest';

import { CAFFE_MEAN_BGR, caffeToRgb, INPUT_ELEMENTS, LoupeError, packBatch, rgbToCaffe } from '../src/internal.js';

function image(fill: (i: number) => number): Uint8Array {
  const rgb = new Uint8Array(INPUT_ELEMENTS);
  for (let i = 0; i < rgb.length; i++) rgb[i] = fill(i);
  return rgb;
}

describe('preprocess', () => {
  it('swaps RGB to BGR and subtracts the BGR means without scaling', () => {
    const rgb = image((i) => [10, 20, 30][i % 3]!);
    const x = rgbToCaffe(rgb);
    expect(CAFFE_MEAN_BGR).toEqual([103.939, 116.779, 123.68]);
    expect(x[0]).toBe(Math.fround(30 - Math.fround(103.939))); // B
    expect(x[1]).toBe(Math.fround(20 - Math.fround(116.779))); // G
    expect(x[2]).toBe(Math.fround(10 - Math.fround(123.68)));  // R
    expect(x[0]).toBeCloseTo(-73.939, 4);
    // Range check: white and black land in about [-124, 152].
    const white = rgbToCaffe(image(() => 255));
    const black = rgbToCaffe(image(() => 0));
    expect(Math.max(...white.subarray(0, 3))).toBeCloseTo(151.061, 3);
    expect(Math.min(...black.subarray(0, 3))).toBeCloseTo(-123.68, 3);
  });

  it('matches float32 subtraction exactly (as numpy float32 does)', () => {
    // Every (value, channel) pair occurs: pixel p holds value p % 256 in all three channels.
    const rgb = image((i) => Math.floor(i / 3) % 256);
    const x = rgbToCaffe(rgb);
    const f32 = new Float32Array(1);
    let mismatches = 0;
    for (let p = 0; p < 256 * 3; p++) {
      const v = p % 256;
      for (let c = 0; c < 3; c++) {
        f32[0] = Math.fround(v) - Math.fround(CAFFE_MEAN_BGR[c]!);
        if (x[p * 3 + c] !== f32[0]) mismatches++;
      }
    }
    expect(mismatches).toBe(0);
  });

  it('packs a batch image-major (NHWC) and round-trips to RGB', () => {
    const a = image((i) => i % 256);
    const b = image((i) => (i * 7) % 256);
    const t = packBatch([{ rgb: a }, { rgb: b }]);
    expect(t.batch).toBe(2);
    expect(t.data.length).toBe(2 * INPUT_ELEMENTS);
    // Byte comparisons: toEqual on 150k-element typed arrays is needlessly slow.
    const bytes = (v: ArrayBufferView): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    expect(bytes(t.data.subarray(INPUT_ELEMENTS)).equals(bytes(rgbToCaffe(b)))).toBe(true);
    expect(bytes(caffeToRgb(t.data, 0)).equals(bytes(a))).toBe(true);
    expect(bytes(caffeToRgb(t.data, 1)).equals(bytes(b))).toBe(true);
  });

  it('rejects wrong sizes', () => {
    expect(() => rgbToCaffe(new Uint8Array(10))).toThrow(LoupeError);
    expect(() => rgbToCaffe(image(() => 0), new Float32Array(INPUT_ELEMENTS), 1)).toThrow(/outside/);
  });
});
