import { describe, expect, it } from 'vitest';

import { buildTargets, codingMatrix, decodeLossWeighted, decodeVotes, learnerCount } from '../../src/classifier/coding.js';
import { toFeatureMatrix } from '../../src/classifier/features.js';
import { referenceTrainLinearSvms } from '../../src/classifier/reference-sgd.js';
import { applyStandardization, fitStandardization } from '../../src/classifier/standardize.js';
import { predictSvm, trainSvmClassifier } from '../../src/classifier/svm.js';
import { LoupeError } from '../../src/errors.js';
import { blobs } from './features-fixture.js';

const rows = (m: Int8Array, k: number, l: number): number[][] => Array.from({ length: k }, (_, i) => Array.from(m.subarray(i * l, (i + 1) * l)));

describe('ECOC coding (MATLAB designecoc)', () => {
  it('one-vs-one for 3 and 4 classes', () => {
    const c3 = codingMatrix('onevsone', 3);
    expect(c3.learners).toBe(3);
    expect(rows(c3.matrix, 3, 3)).toEqual([
      [1, 1, 0],
      [-1, 0, 1],
      [0, -1, -1],
    ]);
    const c4 = codingMatrix('onevsone', 4);
    expect(rows(c4.matrix, 4, 6)).toEqual([
      [1, 1, 1, 0, 0, 0],
      [-1, 0, 0, 1, 1, 0],
      [0, -1, 0, -1, 0, 1],
      [0, 0, -1, 0, -1, -1],
    ]);
    expect(learnerCount('onevsone', 5)).toBe(10);
  });

  it('one-vs-all', () => {
    const c = codingMatrix('onevsall', 3);
    expect(rows(c.matrix, 3, 3)).toEqual([
      [1, -1, -1],
      [-1, 1, -1],
      [-1, -1, 1],
    ]);
    expect(() => codingMatrix('onevsall', 1)).toThrow(LoupeError);
  });

  it('targets [L][n] follow the coding rows of each sample class', () => {
    const t = buildTargets(codingMatrix('onevsone', 3), [0, 2, 1, 0]);
    expect(rows(t, 3, 4)).toEqual([
      [1, 0, -1, 1], // learner (0,1)
      [1, -1, 0, 1], // learner (0,2)
      [0, -1, 1, 0], // learner (1,2)
    ]);
    expect(() => buildTargets(codingMatrix('onevsone', 3), [3])).toThrow(/out of range/);
  });

  it('loss-weighted hinge decoding, hand-computed', () => {
    // OvO, 3 classes, learner scores s = [2, 0.5, -1]:
    // class 0: (max(0,1-2)/2 + max(0,1-0.5)/2) / 2 = (0 + 0.25) / 2 = 0.125
    // class 1: (max(0,1+2)/2 + max(0,1-1)/2 ... learner 2 has m=+1, s=-1 -> max(0,2)/2 = 1) / 2 = (1.5 + 1) / 2 = 1.25
    // class 2: (m=-1,s=0.5 -> 0.75; m=-1,s=-1 -> 0) / 2 = 0.375
    const d = decodeLossWeighted(codingMatrix('onevsone', 3), Float32Array.from([2, 0.5, -1, -3, 0, 3]), 2);
    expect(d.classIndex[0]).toBe(0);
    expect(Array.from(d.scores.subarray(0, 3))).toEqual([-0.125, -1.25, -0.375]);
    // Row 2: s = [-3, 0, 3]: class0 (0 + 0.5)/2 = 0.25... m=+1,s=-3 -> 2; m=+1,s=0 -> 0.5 => 1.25;
    // class1: m=-1,s=-3 -> 0; m=+1,s=3 -> 0 => 0; class2: m=-1,s=0 -> 0.5; m=-1,s=3 -> 2 => 1.25
    expect(d.classIndex[1]).toBe(1);
    expect(Array.from(d.scores.subarray(3, 6))).toEqual([-1.25, -0, -1.25]);
  });

  it('voting, hand-computed: one confident learner outweighs the majority under the loss, not the vote', () => {
    // OvO, 3 classes, learners (0,1), (0,2), (1,2); s = [-0.2, -9, 0.3]:
    // votes: learner (0,1) s<0 -> class 1; (0,2) s<0 -> class 2; (1,2) s>0 -> class 1 => [0, 2, 1].
    // losses: class 0 (0.6 + 5) / 2 = 2.8; class 1 (m=-1,s=-0.2 -> 0.4; m=+1,s=0.3 -> 0.35) / 2 = 0.375;
    // class 2 (m=-1,s=-9 -> 0; m=-1,s=0.3 -> 0.65) / 2 = 0.325: the loss picks class 2, the vote class 1.
    const c = codingMatrix('onevsone', 3);
    const s = Float32Array.from([-0.2, -9, 0.3]);
    expect(decodeLossWeighted(c, s, 1).classIndex[0]).toBe(2);
    const v = decodeVotes(c, s, 1);
    expect(v.classIndex[0]).toBe(1);
    const scores = Array.from(v.scores);
    expect(scores.map(Math.floor)).toEqual([0, 2, 1]); // integer part: the votes
    expect(scores[1]).toBeCloseTo(2 + 1 / (2 * 1.375), 6); // fraction: 1 / (2 (1 + loss))
    expect(scores[0]).toBeCloseTo(0 + 1 / (2 * 3.8), 6);
  });

  it('voting ties go to the smaller loss, then to the first class; a zero score votes for no class', () => {
    const c = codingMatrix('onevsone', 3);
    // s = [1, -1, 0.5]: votes [1, 0, ... ] -> (0,1) class 0, (0,2) class 2, (1,2) class 1: one each.
    // losses: class 0 (0 + 1) / 2 = 0.5; class 1 (1 + 0.25) / 2 = 0.625; class 2 (0 + 0.75) / 2 = 0.375.
    const t = decodeVotes(c, Float32Array.from([1, -1, 0.5]), 1);
    expect(Array.from(t.scores).map(Math.floor)).toEqual([1, 1, 1]);
    expect(t.classIndex[0]).toBe(2);
    // All-zero scores: no votes, equal losses -> the first class.
    const z = decodeVotes(c, new Float32Array(3), 1);
    expect(Array.from(z.scores).map(Math.floor)).toEqual([0, 0, 0]);
    expect(z.classIndex[0]).toBe(0);
    // The decision is always the argmax of the scores.
    const rnd = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i * 12.9898) * 3);
    const r = decodeVotes(c, rnd, 100);
    for (let i = 0; i < 100; i++) {
      const row = Array.from(r.scores.subarray(i * 3, i * 3 + 3));
      expect(r.classIndex[i]).toBe(row.indexOf(Math.max(...row)));
    }
    expect(() => decodeVotes(c, new Float32Array(4), 2)).toThrow(/learner scores/);
  });

  it('OvA decoding uses every learner', () => {
    const d = decodeLossWeighted(codingMatrix('onevsall', 3), Float32Array.from([-1, 1, -1]), 1);
    expect(d.classIndex[0]).toBe(1);
    expect(d.scores[1]).toBeCloseTo(-0);
    expect(d.scores[0]).toBeCloseTo(-(1 + 1 + 0) / 3); // m=[1,-1,-1]: losses 1, 1, 0
  });
});

describe('standardisation', () => {
  it('fits mean/std (n-1) on training rows and floors constant features', () => {
    const x = toFeatureMatrix([
      [1, 10, 5],
      [3, 10, 5],
      [5, 10, 5],
    ]);
    const s = fitStandardization(x);
    expect(Array.from(s.mean)).toEqual([3, 10, 5]);
    expect(s.std[0]).toBeCloseTo(2);
    expect(s.std[1]).toBeGreaterThan(0);
    expect(s.std[1]).toBe(s.std[2]);
    expect(s.stdFloor).toBeCloseTo(Math.max(1e-6, 1e-3 * (2 / 3)));
    const z = applyStandardization(toFeatureMatrix([[5, 10, 5]]), s);
    expect(z.data[0]).toBeCloseTo(1);
    expect(z.data[1]).toBe(0);
    expect(() => applyStandardization(toFeatureMatrix([[1, 2]]), s)).toThrow(/3/);
  });

  it('rejects malformed features', () => {
    expect(() => toFeatureMatrix([[1, 2], [3]])).toThrow(/row 1/);
    expect(() => toFeatureMatrix([[1, NaN]])).toThrow(/non-finite/);
    expect(() => toFeatureMatrix({ data: new Float32Array(5), rows: 2, cols: 3 })).toThrow(/does not match/);
  });
});

describe('trainSvmClassifier with the reference Pegasos trainer', () => {
  const classes = ['good', 'scratched', 'crooked', 'broken', 'dented'];
  const train = blobs({ classes, perClass: 30, dim: 40, seed: 1 });
  // Same centres (same seed stream start), fresh noise: take rows from a bigger draw.
  const all = blobs({ classes, perClass: 60, dim: 40, seed: 1 });
  const testX = { data: all.x.data.slice(30 * 5 * 40), rows: 30 * 5, cols: 40 };
  const testLabels = all.labels.slice(30 * 5);

  for (const coding of ['onevsone', 'onevsall'] as const) {
    it(`${coding}: 100% on separable features (train and held-out)`, async () => {
      const model = await trainSvmClassifier(train.x, train.labels, { trainer: referenceTrainLinearSvms, trainerName: 'reference', coding, classes, epochs: 10, lambda: 1e-2, seed: 3 });
      expect(model.coding.learners).toBe(learnerCount(coding, 5));
      expect(model.weights.length).toBe(model.coding.learners * 40);
      expect(model.training).toMatchObject({ trainer: 'reference', samples: 150, classCounts: [30, 30, 30, 30, 30], schedule: 'averaged' });
      expect(predictSvm(model, train.x).labels).toEqual(train.labels);
      const p = predictSvm(model, testX);
      expect(p.labels).toEqual(testLabels);
      // The predicted class has the highest score.
      for (let i = 0; i < 10; i++) {
        const s = Array.from(p.scores.subarray(i * 5, i * 5 + 5));
        expect(s.indexOf(Math.max(...s))).toBe(p.classIndex[i]);
      }
    });
  }

  it('same seed -> identical model bytes; another seed -> different', async () => {
    const opts = { trainer: referenceTrainLinearSvms, epochs: 3, seed: 11 };
    const a = await trainSvmClassifier(train.x, train.labels, opts);
    const b = await trainSvmClassifier(train.x, train.labels, opts);
    const c = await trainSvmClassifier(train.x, train.labels, { ...opts, seed: 12 });
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(b.weights.buffer))).toBe(true);
    expect(Buffer.from(a.bias.buffer).equals(Buffer.from(b.bias.buffer))).toBe(true);
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(c.weights.buffer))).toBe(false);
    expect(a.classes).toEqual([...classes].sort());
  });

  it('pegasos schedule also separates; the trainer is called with the native contract', async () => {
    const calls: { n: number; d: number; k: number; targets: Int8Array; opts: unknown }[] = [];
    const model = await trainSvmClassifier(train.x, train.labels, {
      trainer: async (X, n, d, targets, k, o) => {
        calls.push({ n, d, k, targets, opts: o });
        expect(X.length).toBe(n * d);
        return referenceTrainLinearSvms(X, n, d, targets, k, o);
      },
      schedule: 'pegasos',
      lambda: 1e-3,
      epochs: 10,
      threads: 1,
      backend: 'cpu',
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ n: 150, d: 40, k: 10, opts: { lambda: 1e-3, epochs: 10, seed: 0, schedule: 'pegasos', threads: 1, backend: 'cpu' } });
    // OvO: each learner sees exactly two classes (60 samples), the rest are 0.
    const t = calls[0]!.targets;
    for (let j = 0; j < 10; j++) expect(t.subarray(j * 150, (j + 1) * 150).filter((v) => v !== 0).length).toBe(60);
    expect(predictSvm(model, testX).labels).toEqual(testLabels);
  });

  it('validates its inputs', async () => {
    const tr = { trainer: referenceTrainLinearSvms, epochs: 1 };
    await expect(trainSvmClassifier(train.x, train.labels.slice(1), tr)).rejects.toThrow(/labels/);
    await expect(trainSvmClassifier(train.x, train.labels.map(() => 'one'), tr)).rejects.toThrow(/at least 2 classes/);
    await expect(trainSvmClassifier(train.x, train.labels, { ...tr, classes: ['good', 'x'] })).rejects.toThrow(/not in the class list/);
    await expect(trainSvmClassifier(train.x, train.labels, { ...tr, classes: [...classes, 'never'] })).rejects.toThrow(/no training rows for class\(es\): never/);
    const model = await trainSvmClassifier(train.x, train.labels, tr);
    expect(() => predictSvm(model, [[1, 2, 3]])).toThrow(/40/);
    await expect(referenceTrainLinearSvms(new Float32Array(3), 2, 2, new Int8Array(2), 1)).rejects.toThrow(/X has 3/);
  });
});
