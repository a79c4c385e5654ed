// ImageNet helpers without the engine: labels, softmax, top-k.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { loadImageNetLabels, resolveWeights, softmax, topK, weightsDir } from '../src/internal.js';
import { skipNote } from './support/env.js';

describe('imagenet helpers', () => {
  it('softmax is stable for large logits and sums to 1', () => {
    const p = softmax([1000, 1001, 1002]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(p[2]).toBeCloseTo(0.66524, 4);
    expect(softmax([-Infinity, 0])[1]).toBe(1);
  });

  it('topK returns the best first, lower index first on ties', () => {
    expect(topK([0.1, 0.5, 0.2, 0.5, 0.05], 3)).toEqual([
      { index: 1, score: 0.5 },
      { index: 3, score: 0.5 },
      { index: 2, score: 0.2 },
    ]);
    expect(topK([3, 1], 5).map((s) => s.index)).toEqual([0, 1]);
    expect(() => topK([1], 0)).toThrow();
  });

  it('loads the 1000 labels in class order', () => {
    if (!existsSync(weightsDir())) return skipNote('labels', `${weightsDir()} absent`);
    const labels = loadImageNetLabels(resolveWeights().labels);
    expect(labels).toHaveLength(1000);
    expect(labels[0]).toBe('tench');
    expect(labels[285]).toBe('Egyptian_cat');
    expect(labels[967]).toBe('espresso');
  });
});
