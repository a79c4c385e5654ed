import { describe, expect, it } from 'vitest';

import { createRng } from '../../src/datasets/random.js';
import { auroc, f1Max, rocCurve, thinCurve, trapezoid } from '../../src/metrics/roc.js';

/** O(P*N) Mann-Whitney oracle: P(pos > neg) + 1/2 P(tie). */
function bruteAuroc(scores: number[], labels: number[]): number {
  let s = 0;
  let c = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!labels[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (labels[j]) continue;
      c++;
      if (scores[i]! > scores[j]!) s += 1;
      else if (scores[i] === scores[j]) s += 0.5;
    }
  }
  return s / c;
}

describe('ROC / AUROC', () => {
  it('hand-computed curve with distinct scores', () => {
    // sorted desc: 0.9(+) 0.8(-) 0.7(+) 0.3(-) ; P=2, N=2
    const c = rocCurve([0.3, 0.9, 0.7, 0.8], [0, 1, 1, 0]);
    expect(c.thresholds).toEqual([Infinity, 0.9, 0.8, 0.7, 0.3]);
    expect(c.tpr).toEqual([0, 0.5, 0.5, 1, 1]);
    expect(c.fpr).toEqual([0, 0, 0.5, 0.5, 1]);
    // pairs: (0.9>0.8, 0.9>0.3, 0.7<0.8, 0.7>0.3) = 3/4
    expect(auroc([0.3, 0.9, 0.7, 0.8], [0, 1, 1, 0])).toBeCloseTo(0.75);
  });

  it('ties count one half', () => {
    expect(auroc([1, 1, 1, 1], [1, 0, 1, 0])).toBeCloseTo(0.5);
    // pos {2, 1}, neg {1, 0}: pairs 2>1, 2>0, 1=1 (1/2), 1>0 => 3.5/4
    expect(auroc([2, 1, 1, 0], [true, true, false, false])).toBeCloseTo(0.875);
    const c = rocCurve([2, 1, 1, 0], [1, 1, 0, 0]);
    expect(c.thresholds).toEqual([Infinity, 2, 1, 0]); // the tie is one point
  });

  it('perfect, inverted, and random-oracle agreement', () => {
    expect(auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])).toBe(0);
    const rng = createRng(4);
    for (let trial = 0; trial < 5; trial++) {
      const scores = Array.from({ length: 200 }, () => Math.round(rng.next() * 20) / 20); // many ties
      const labels = scores.map((s) => (rng.next() < 0.3 + 0.4 * s ? 1 : 0));
      expect(auroc(scores, labels)).toBeCloseTo(bruteAuroc(scores, labels), 10);
    }
  });

  it('needs both classes; rejects NaN and length mismatch', () => {
    expect(() => auroc([1, 2], [1, 1])).toThrow(/both positive and negative/);
    expect(() => auroc([1, NaN], [1, 0])).toThrow(/NaN/);
    expect(() => auroc([1], [1, 0])).toThrow(/1 scores but 2 labels/);
  });
});

describe('F1-max', () => {
  it('hand-computed', () => {
    // desc: 0.9+ 0.8- 0.7+ 0.6+ 0.2- ; P = 3
    // t=0.9: P=1 R=1/3 F1=0.5 ; t=0.8: P=.5 R=1/3 F1=0.4 ; t=0.7: P=2/3 R=2/3 F1=2/3
    // t=0.6: P=3/4 R=1 F1=6/7 ; t=0.2: P=3/5 R=1 F1=0.75
    const r = f1Max([0.9, 0.8, 0.7, 0.6, 0.2], [1, 0, 1, 1, 0]);
    expect(r.f1).toBeCloseTo(6 / 7);
    expect(r.threshold).toBe(0.6);
    expect(r.precision).toBeCloseTo(0.75);
    expect(r.recall).toBe(1);
  });
  it('ties are one threshold', () => {
    const r = f1Max([1, 1, 0], [1, 0, 0]);
    // t=1: TP1 FP1 -> P .5 R 1 F1 2/3 ; t=0: P 1/3 R 1 F1 .5
    expect(r.f1).toBeCloseTo(2 / 3);
    expect(r.threshold).toBe(1);
  });
});

describe('curve helpers', () => {
  it('trapezoid and thinning', () => {
    expect(trapezoid([0, 0.5, 1], [0, 1, 1])).toBeCloseTo(0.75);
    const x = Array.from({ length: 1001 }, (_, i) => i / 1000);
    const t = thinCurve(x, x, 11);
    expect(t.x).toHaveLength(11);
    expect(t.x[0]).toBe(0);
    expect(t.x[10]).toBe(1);
  });
});
