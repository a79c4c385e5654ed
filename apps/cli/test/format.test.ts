import { describe, expect, it } from 'vitest';

import { float32ArrayJson, float32ToString, formatProbability, listShort, printable, shapeText, stats } from '../src/format.js';
import { parseLayers } from '../src/main.js';

describe('float32ToString', () => {
  it('writes the shortest decimal that reads back as the same float32', () => {
    expect(float32ToString(Math.fround(0.1))).toBe('0.1');
    expect(float32ToString(Math.fround(0.9980572))).toBe('0.9980572');
    expect(float32ToString(1)).toBe('1');
    expect(float32ToString(-2.5)).toBe('-2.5');
    expect(float32ToString(Math.fround(7.9535705e-5))).toBe('0.000079535705');
    expect(float32ToString(Math.fround(3.4e38))).toBe('3.4e+38');
  });

  it('round-trips random float32 values exactly', () => {
    const a = new Float32Array(5000);
    let s = 12345;
    const view = new Uint32Array(a.buffer);
    for (let i = 0; i < a.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      view[i] = s;
      if (!Number.isFinite(a[i]!)) a[i] = i;
    }
    for (const v of a) {
      const text = float32ToString(v);
      expect(Math.fround(Number(text))).toBe(v);
      const significant = text.replace(/^-/, '').replace(/e.*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
      expect(significant.length).toBeLessThanOrEqual(9);
    }
  });

  it('keeps JSON valid for zeros and non-finite values', () => {
    expect(float32ToString(-0)).toBe('-0');
    expect(float32ToString(Number.NaN)).toBe('null');
    expect(float32ToString(Number.POSITIVE_INFINITY)).toBe('null');
    const json = float32ArrayJson(new Float32Array([0, -0, Number.NaN, 0.5]));
    expect(JSON.parse(json)).toEqual([0, -0, null, 0.5]);
  });
});

describe('summaries', () => {
  it('computes population stats in float64', () => {
    const s = stats(new Float32Array([1, 2, 3, 4]));
    expect(s).toEqual({ min: 1, max: 4, mean: 2.5, std: Math.sqrt(1.25) });
  });

  it('formats shapes, probabilities and lists', () => {
    expect(shapeText([28, 28, 512])).toBe('[28x28x512]');
    expect(shapeText([1, 1, 2048])).toBe('[2048]');
    expect(formatProbability(0.9980572)).toBe('99.81%');
    expect(formatProbability(0.00029635)).toBe('0.030%');
    expect(formatProbability(7.95e-7)).toBe('8.0e-5%');
    expect(listShort(['a', 'b', 'c', 'd', 'e'])).toBe('a, b, c and 2 more');
  });
});

describe('parseLayers', () => {
  it('accepts tap names, comma-separated', () => {
    expect(parseLayers('fc1000, avg_pool')).toEqual(['fc1000', 'avg_pool']);
    expect(parseLayers('res3d')).toEqual(['res3d']);
  });

  it('names the unknown layers and lists the known ones', () => {
    expect(() => parseLayers('fc1000,bogus,res9')).toThrow(/unknown layer 'bogus', 'res9'; layers are conv1, .*probabilities/);
    expect(() => parseLayers(' , ')).toThrow(/at least one layer/);
  });
});

describe('printable', () => {
  it('escapes control characters so a file name stays on its line; leaves the rest (unicode included)', () => {
    expect(printable('a\nb\tc\u007f.png')).toBe('a\\x0ab\\x09c\\x7f.png');
    expect(printable('Flasche ä 瓶.png')).toBe('Flasche ä 瓶.png');
  });
});
