// Exact small cases for the few-shot head's pure parts: patch labels, logistic regression, fusion, folds.
import { describe, expect, it } from 'vitest';

import { classifierFromState, classifierLogits, classifierState, fitFusion, FewShotHead, fuseScores, scoreStats } from '../../src/anomaly/fewshot/head.js';
import { mlpLogits, trainMlp } from '../../src/anomaly/fewshot/mlp.js';
import { groupKFold } from '../../src/anomaly/fewshot/kfold.js';
import { logisticLogits, trainLogistic } from '../../src/anomaly/fewshot/logistic.js';
import { cellCoverage, LABEL_IGNORE, LABEL_NEGATIVE, LABEL_POSITIVE, patchLabelsFromMask, patchLabelsFromScores } from '../../src/anomaly/fewshot/patch-labels.js';
import { createRng } from '../../src/datasets/random.js';

describe('patch labels', () => {
  it('measures cell coverage on the grid', () => {
    const mask = new Uint8Array(8 * 8);
    mask[0] = 1; // top-left pixel: 1/4 of cell (0,0) on a 4x4 grid of 2x2 cells
    for (let y = 6; y < 8; y++) for (let x = 6; x < 8; x++) mask[y * 8 + x] = 255;
    const c = cellCoverage(mask, 8, 8, 4);
    expect(c[0]).toBe(0.25);
    expect(c[15]).toBe(1);
    expect(c[5]).toBe(0);
  });

  it('labels positives, ignores weak cells and a ring around positives', () => {
    const mask = new Uint8Array(8 * 8);
    for (let y = 6; y < 8; y++) for (let x = 6; x < 8; x++) mask[y * 8 + x] = 1; // cell (3,3) full
    mask[0] = 1; // 25% of cell (0,0)
    const l = patchLabelsFromMask(mask, 8, 8, { grid: 4, positiveFraction: 0.5, ignoreRing: 1 });
    expect(l[15]).toBe(LABEL_POSITIVE);
    expect(l[0]).toBe(LABEL_IGNORE); // touched but below the fraction
    expect([l[10], l[11], l[14]]).toEqual([LABEL_IGNORE, LABEL_IGNORE, LABEL_IGNORE]); // ring
    expect(l[5]).toBe(LABEL_NEGATIVE);
    expect(Array.from(patchLabelsFromMask(new Uint8Array(64), 8, 8, { grid: 4 }))).toEqual(new Array(16).fill(LABEL_IGNORE));
  });

  it('takes the top-k PatchCore patches when only the image label is known', () => {
    const l = patchLabelsFromScores(Float32Array.from([0.1, 5, 0.2, 3]), 2);
    expect(Array.from(l)).toEqual([LABEL_IGNORE, LABEL_POSITIVE, LABEL_IGNORE, LABEL_POSITIVE]);
  });
});

describe('logistic regression', () => {
  it('separates a linearly separable problem and folds the standardisation into the logits', () => {
    const rng = createRng(1);
    const n = 400, d = 3;
    const X = new Float32Array(n * d);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i < 40 ? 1 : 0; // imbalanced 1:9
      X[i * d] = (y[i] ? 3 : -1) + 0.5 * rng.normal();
      X[i * d + 1] = 100 + 10 * rng.normal(); // noise with a large offset and scale
      X[i * d + 2] = rng.normal();
    }
    const m = trainLogistic(X, n, d, y, { epochs: 40, l2: 1e-3 });
    const z = logisticLogits(m, X, n);
    let correct = 0;
    for (let i = 0; i < n; i++) if ((z[i]! > 0 ? 1 : 0) === y[i]) correct++;
    expect(correct / n).toBeGreaterThan(0.97);
    expect(Math.abs(m.w[0]!)).toBeGreaterThan(Math.abs(m.w[1]!) * 3);
    // Same seed, same model.
    const m2 = trainLogistic(X, n, d, y, { epochs: 40, l2: 1e-3 });
    expect(Array.from(m2.w)).toEqual(Array.from(m.w));
  });

  it('rejects a single-class problem', () => {
    expect(() => trainLogistic(new Float32Array(4), 2, 2, Uint8Array.from([0, 0]))).toThrow(/both classes/);
  });
});

describe('MLP head', () => {
  // XOR of two features (plus a noise feature): no linear classifier does better than chance.
  const rng = createRng(7);
  const n = 800, d = 3;
  const X = new Float32Array(n * d);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const a = rng.next() < 0.5 ? -1 : 1, b = rng.next() < 0.5 ? -1 : 1;
    X[i * d] = a + 0.3 * rng.normal();
    X[i * d + 1] = b + 0.3 * rng.normal();
    X[i * d + 2] = 5 + 2 * rng.normal();
    y[i] = a === b ? 0 : 1;
  }
  const accuracy = (z: Float32Array): number => z.reduce((c, v, i) => c + ((v > 0 ? 1 : 0) === y[i] ? 1 : 0), 0) / n;

  it('learns a problem the logistic head cannot, seeded', () => {
    const m = trainMlp(X, n, d, y, { hidden: 16, epochs: 60, learningRate: 1e-2, seed: 3 });
    expect(accuracy(mlpLogits(m, X, n))).toBeGreaterThan(0.95);
    expect(accuracy(logisticLogits(trainLogistic(X, n, d, y, { epochs: 60 }), X, n))).toBeLessThan(0.7);
    const again = trainMlp(X, n, d, y, { hidden: 16, epochs: 60, learningRate: 1e-2, seed: 3 });
    expect(Array.from(again.w1)).toEqual(Array.from(m.w1));
    expect(() => trainMlp(X, n, d, new Uint8Array(n), {})).toThrow(/both classes/);
    expect(() => trainMlp(X, n, d, y, { hidden: 0 })).toThrow(/hidden/);
  });

  it('round-trips through its JSON state; a state with both or neither classifier, or wrong sizes, is refused', () => {
    const m = trainMlp(X, n, d, y, { hidden: 8, epochs: 5, seed: 1 });
    const state = JSON.parse(JSON.stringify(classifierState({ kind: 'mlp', model: m })));
    expect(Object.keys(state)).toEqual(['mlp']);
    const back = classifierFromState(state);
    expect(Array.from(classifierLogits(back, X, 10))).toEqual(Array.from(mlpLogits(m, X, 10)));
    const l = classifierState({ kind: 'logistic', model: trainLogistic(X, n, d, y, { epochs: 2 }) });
    expect(() => classifierFromState({ ...state, ...l })).toThrow(/exactly one/);
    expect(() => classifierFromState({})).toThrow(/exactly one/);
    expect(() => classifierFromState({ mlp: { ...state.mlp, w2: [1] } })).toThrow(/inconsistent mlp/);
  });
});

describe('few-shot head and fusion', () => {
  it('learns which patches are defects and scores images by their max patch', () => {
    const rng = createRng(2);
    const inDim = 16, patches = 9;
    const make = (defect: number): { rows: Float32Array; labels: Int8Array } => {
      const rows = new Float32Array(patches * inDim);
      for (let i = 0; i < rows.length; i++) rows[i] = rng.normal();
      const labels = new Int8Array(patches).fill(LABEL_NEGATIVE);
      if (defect >= 0) {
        for (let j = 0; j < inDim; j++) rows[defect * inDim + j] = rows[defect * inDim + j]! + (j < 4 ? 3 : 0);
        labels[defect] = LABEL_POSITIVE;
      }
      return { rows, labels };
    };
    const train = [...Array.from({ length: 10 }, () => make(-1)), ...Array.from({ length: 5 }, (_, i) => make(i))];
    const head = FewShotHead.train(train, inDim, { projectionDim: 0, epochs: 60 });
    expect(head.training).toEqual({ positives: 5, negatives: 10 * 9 + 5 * 8, images: 15 });
    const good = make(-1), bad = make(7);
    expect(head.imageScore(bad.rows, patches)).toBeGreaterThan(head.imageScore(good.rows, patches));
    const restored = FewShotHead.fromState(JSON.parse(JSON.stringify(head.toState())));
    expect(restored.imageScore(bad.rows, patches)).toBeCloseTo(head.imageScore(bad.rows, patches), 5);
  });

  it('standardises with good statistics and fuses', () => {
    const s = scoreStats([1, 2, 3]);
    expect(s.mean).toBe(2);
    expect(s.std).toBe(1);
    expect(fuseScores(4, 10, s, { mean: 0, std: 5 }, 1)).toBe(2 + 2);
    const f = fitFusion([1, 2, 3], [0, 5, 10], 1, 1);
    expect(f.threshold).toBeCloseTo(2, 10);
  });
});

describe('group k-fold', () => {
  it('keeps groups together, covers every item once and balances folds', () => {
    const groups = ['a', 'a', 'a', 'b', 'c', 'c', 'd', 'e', 'f', 'g'];
    const folds = groupKFold(groups.length, 3, 1, (i) => groups[i]);
    expect(folds.flat().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const f of folds) {
      const gs = new Set(f.map((i) => groups[i]));
      for (const other of folds) if (other !== f) for (const i of other) expect(gs.has(groups[i])).toBe(false);
      expect(f.length).toBeGreaterThanOrEqual(3);
    }
    expect(groupKFold(10, 3, 1, (i) => groups[i])).toEqual(folds);
    expect(() => groupKFold(2, 3)).toThrow();
  });
});
