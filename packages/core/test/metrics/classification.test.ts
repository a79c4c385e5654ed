import { describe, expect, it } from 'vitest';

import { classificationMetrics, confusionMatrix, formatConfusionMatrix, goodVsDefect } from '../../src/metrics/classification.js';

describe('confusion matrix', () => {
  it('counts true x predicted and row-normalises to percent', () => {
    const t = ['a', 'a', 'a', 'a', 'b', 'b', 'c'];
    const p = ['a', 'a', 'b', 'c', 'b', 'a', 'c'];
    const cm = confusionMatrix(t, p, ['a', 'b', 'c', 'd']);
    expect(cm.counts).toEqual([
      [2, 1, 1, 0],
      [1, 1, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 0],
    ]);
    expect(cm.rowPercent[0]).toEqual([50, 25, 25, 0]);
    expect(cm.rowPercent[1]).toEqual([50, 50, 0, 0]);
    expect(cm.rowPercent[3]).toEqual([0, 0, 0, 0]);
    expect(cm.total).toBe(7);
    expect(confusionMatrix(t, p).classes).toEqual(['a', 'b', 'c']);
    expect(() => confusionMatrix(['a'], ['z'], ['a'])).toThrow(/z/);
    expect(() => confusionMatrix(['a'], [], ['a'])).toThrow(/1 true labels but 0/);
    expect(formatConfusionMatrix(cm).split('\n')[1]).toMatch(/^a\s+2 \(50\.0%\)\s+1 \(25\.0%\)/);
  });
});

describe('classificationMetrics (hand-computed)', () => {
  // good: 6 (5 right, 1 -> scratch), scratch: 3 (2 right, 1 -> good), dent: 1 (-> scratch)
  const t = ['good', 'good', 'good', 'good', 'good', 'good', 'scratch', 'scratch', 'scratch', 'dent'];
  const p = ['good', 'good', 'good', 'good', 'good', 'scratch', 'scratch', 'scratch', 'good', 'scratch'];
  const m = classificationMetrics(t, p, { classes: ['good', 'scratch', 'dent'] });

  it('accuracy, per-class precision / recall / F1', () => {
    expect(m.accuracy).toBeCloseTo(7 / 10);
    expect(m.correct).toBe(7);
    const [good, scratch, dent] = m.perClass;
    // good: TP 5, predicted 6 (5 + 1 from scratch), support 6
    expect(good).toMatchObject({ label: 'good', support: 6, predicted: 6, truePositives: 5 });
    expect(good!.precision).toBeCloseTo(5 / 6);
    expect(good!.recall).toBeCloseTo(5 / 6);
    expect(good!.f1).toBeCloseTo(5 / 6);
    // scratch: TP 2, predicted 4 (2 + good + dent), support 3
    expect(scratch!.precision).toBeCloseTo(0.5);
    expect(scratch!.recall).toBeCloseTo(2 / 3);
    expect(scratch!.f1).toBeCloseTo((2 * 0.5 * (2 / 3)) / (0.5 + 2 / 3));
    // dent: never predicted -> precision 0, recall 0, F1 0
    expect(dent).toMatchObject({ support: 1, predicted: 0, precision: 0, recall: 0, f1: 0 });
  });

  it('mean per-class accuracy = balanced accuracy; macro-F1', () => {
    const mpa = (5 / 6 + 2 / 3 + 0) / 3;
    expect(m.meanPerClassAccuracy).toBeCloseTo(mpa);
    expect(m.balancedAccuracy).toBe(m.meanPerClassAccuracy);
    const f1s = [5 / 6, (2 * 0.5 * (2 / 3)) / (0.5 + 2 / 3), 0];
    expect(m.macroF1).toBeCloseTo(f1s.reduce((a, b) => a + b) / 3);
  });

  it('good-vs-defect: a wrong defect type still counts as a caught defect', () => {
    const g = m.goodVsDefect!;
    // good -> scratch: FP; scratch -> good: FN; dent -> scratch: TP (defect caught); 2 scratch right: TP
    expect(g).toMatchObject({ tn: 5, fp: 1, fn: 1, tp: 3 });
    expect(g.accuracy).toBeCloseTo(8 / 10);
    expect(g.defectRecall).toBeCloseTo(3 / 4);
    expect(g.goodRecall).toBeCloseTo(5 / 6);
    expect(goodVsDefect(['ok', 'bad'], ['ok', 'ok'], 'ok').accuracy).toBe(0.5);
    expect(classificationMetrics(['x', 'y'], ['x', 'y']).goodVsDefect).toBeUndefined();
  });

  it('classes absent from the test set are left out of the means', () => {
    const r = classificationMetrics(['a', 'a', 'b'], ['a', 'a', 'b'], { classes: ['a', 'b', 'c'] });
    expect(r.meanPerClassAccuracy).toBe(1);
    expect(r.macroF1).toBe(1);
    expect(r.accuracy).toBe(1);
  });

  it('paper-style known value: 99% accuracy on a 100-image bottle test set', () => {
    const truth = [...Array(25).fill('good'), ...Array(25).fill('dulled'), ...Array(25).fill('braided'), ...Array(25).fill('crooked')] as string[];
    const pred = [...truth];
    pred[30] = 'braided'; // one dulled bottle mistaken
    const r = classificationMetrics(truth, pred);
    expect(r.accuracy).toBeCloseTo(0.99);
    expect(r.meanPerClassAccuracy).toBeCloseTo((1 + 0.96 + 1 + 1) / 4);
    expect(r.confusion.rowPercent[r.confusion.classes.indexOf('dulled')]![r.confusion.classes.indexOf('braided')]).toBeCloseTo(4);
  });
});
