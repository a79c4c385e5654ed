// The product path: trainSvmClassifier on the native C++ SGD kernel (native/build/Release/loupe_native.node),
// checked against the TS reference trainer as an oracle.
import { describe, expect, it } from 'vitest';

import { buildTargets, codingMatrix } from '../../src/classifier/coding.js';
import { referenceTrainLinearSvms } from '../../src/classifier/reference-sgd.js';
import { applyStandardization, fitStandardization } from '../../src/classifier/standardize.js';
import { nativeSvmTrainer, predictSvm, SVM_DEFAULTS, trainSvmClassifier } from '../../src/classifier/svm.js';
import { loadAddon } from '../../src/engine.js';
import { addonPath, hasAddon, skipNote } from '../support/env.js';
import { blobs } from './features-fixture.js';

if (!hasAddon) skipNote('native SVM trainer', `addon not built (${addonPath}); build it with npx nx run native:build`);

describe.skipIf(!hasAddon)('trainSvmClassifier on the native kernel', () => {
  const classes = ['good', 'scratched', 'crooked', 'broken', 'dented'];
  const all = blobs({ classes, perClass: 60, dim: 40, seed: 1 });
  const train = { data: all.x.data.slice(0, 150 * 40), rows: 150, cols: 40 };
  const trainLabels = all.labels.slice(0, 150);
  const testX = { data: all.x.data.slice(150 * 40), rows: 150, cols: 40 };
  const testLabels = all.labels.slice(150);

  for (const coding of ['onevsone', 'onevsall'] as const) {
    it(`${coding}: 100% on separable features, same as the reference trainer`, async () => {
      const trainer = nativeSvmTrainer(await loadAddon());
      const opts = { coding, classes, epochs: 10, lambda: 1e-2, seed: 3, threads: 1 };
      const model = await trainSvmClassifier(train, trainLabels, { ...opts, trainer, trainerName: 'native' });
      expect(predictSvm(model, train).labels).toEqual(trainLabels);
      expect(predictSvm(model, testX).labels).toEqual(testLabels);
      const ref = await trainSvmClassifier(train, trainLabels, { ...opts, trainer: referenceTrainLinearSvms });
      expect(predictSvm(ref, testX).labels).toEqual(predictSvm(model, testX).labels);
    });
  }

  it('default lambda: C chosen by stratified 5-fold CV on the training rows, recorded in the model', async () => {
    const trainer = nativeSvmTrainer(await loadAddon());
    const auto = await trainSvmClassifier(train, trainLabels, { trainer, classes, seed: 3, threads: 1 });
    const sel = auto.training.lambdaSelection;
    expect(sel).toBeDefined();
    expect(sel!.folds).toBe(5);
    expect(sel!.grid).toEqual(SVM_DEFAULTS.cGrid);
    expect(sel!.cvAccuracy).toHaveLength(sel!.grid.length);
    for (const a of sel!.cvAccuracy) expect(a).toBeGreaterThan(0.8); // separable blobs: every C is decent
    // The criterion is the balanced accuracy; ties go to the larger C (the last maximum).
    const bal = sel!.cvBalancedAccuracy!;
    expect(bal).toHaveLength(sel!.grid.length);
    const best = Math.max(...bal);
    expect(bal.lastIndexOf(best)).toBe(sel!.grid.indexOf(sel!.C));
    expect(auto.training.lambda).toBeCloseTo(1 / (sel!.C * train.rows), 12);
    expect(predictSvm(auto, testX).labels).toEqual(testLabels);
    // An explicit lambda skips the search; a class with one row makes CV impossible (C = 1 then).
    const fixed = await trainSvmClassifier(train, trainLabels, { trainer, classes, lambda: 1e-3 });
    expect(fixed.training.lambdaSelection).toBeUndefined();
    const tiny = await trainSvmClassifier({ data: train.data.slice(0, 6 * 40), rows: 6, cols: 40 }, trainLabels.slice(0, 6), { trainer, classes });
    expect(tiny.training.lambdaSelection).toBeUndefined();
    expect(tiny.training.lambda).toBeCloseTo(1 / 6, 12);
  });

  it('the CV criterion is the balanced accuracy: on a good-heavy overlapping set it differs from accuracy', async () => {
    const trainer = nativeSvmTrainer(await loadAddon());
    const b = blobs({ classes: ['good', 'dent'], perClass: 80, dim: 20, seed: 5, separation: 0.35 });
    // Keep every good row and one dent in eight: 80 good, 10 dent.
    const keep: number[] = [];
    let dents = 0;
    b.labels.forEach((l, i) => {
      if (l === 'good' || dents++ % 8 === 0) keep.push(i);
    });
    const x = { data: new Float32Array(keep.length * 20), rows: keep.length, cols: 20 };
    keep.forEach((r, i) => x.data.set(b.x.data.subarray(r * 20, (r + 1) * 20), i * 20));
    const m = await trainSvmClassifier(x, keep.map((i) => b.labels[i]!), { trainer, seed: 1, threads: 1 });
    const sel = m.training.lambdaSelection!;
    const bal = sel.cvBalancedAccuracy!;
    expect(bal.some((v, g) => Math.abs(v - (sel.cvAccuracy[g] as number)) > 0.02)).toBe(true);
    expect(bal.lastIndexOf(Math.max(...bal))).toBe(sel.grid.indexOf(sel.C));
    for (const v of bal) expect(v).toBeLessThanOrEqual(1);
  });

  it('groups make the C search group-aware: images of one part never on both sides of a fold', async () => {
    const trainer = nativeSvmTrainer(await loadAddon());
    // 40 parts, each photographed 3 times identically, labels random per part: nothing to learn.
    // Row folds put copies of a part on both sides and score memorisation; group folds see chance.
    const d = 64;
    const parts = 40;
    let state = 7;
    const rand = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const partRow = Array.from({ length: parts }, () => Float32Array.from({ length: d }, () => rand() * 2 - 1));
    const partLabel = Array.from({ length: parts }, (_, p) => (p % 2 === 0 ? 'good' : 'dent'));
    const x = { data: new Float32Array(parts * 3 * d), rows: parts * 3, cols: d };
    const labels: string[] = [];
    const groups: string[] = [];
    for (let r = 0; r < parts * 3; r++) {
      const p = r % parts;
      x.data.set(partRow[p]!, r * d);
      labels.push(partLabel[p]!);
      groups.push(`part-${p}`);
    }
    const leaky = (await trainSvmClassifier(x, labels, { trainer, seed: 1, threads: 1 })).training.lambdaSelection!;
    const honest = (await trainSvmClassifier(x, labels, { trainer, seed: 1, threads: 1, groups })).training.lambdaSelection!;
    expect(leaky.groupAware).toBeUndefined();
    expect(Math.max(...leaky.cvAccuracy)).toBeGreaterThanOrEqual(0.9);
    expect(honest.groupAware).toBe(true);
    expect(honest.folds).toBe(5);
    expect(Math.max(...honest.cvAccuracy)).toBeLessThan(0.8); // chance is 0.5
    expect(Math.max(...honest.cvAccuracy)).toBeLessThan(Math.max(...leaky.cvAccuracy) - 0.15);
    // A class seen on one part only cannot be kept whole in 2+ folds: row folds, and the model says so.
    const oneDentPart = groups.map((g, i) => (labels[i] === 'dent' ? 'dent-part' : g));
    const fallback = (await trainSvmClassifier(x, labels, { trainer, seed: 1, threads: 1, groups: oneDentPart })).training.lambdaSelection!;
    expect(fallback.groupAware).toBe(false);
    expect(fallback.folds).toBe(5);
    await expect(trainSvmClassifier(x, labels, { trainer, groups: groups.slice(1) })).rejects.toThrow(/groups has 119 entries for 120 training rows/);
  });

  it('same seed -> bit-identical weights; threads do not change the result', async () => {
    const trainer = nativeSvmTrainer(await loadAddon());
    const opts = { trainer, epochs: 5, seed: 21, lambda: 1e-3 };
    const a = await trainSvmClassifier(train, trainLabels, { ...opts, threads: 1 });
    const b = await trainSvmClassifier(train, trainLabels, { ...opts, threads: 2 });
    const c = await trainSvmClassifier(train, trainLabels, { ...opts, threads: 1, seed: 22 });
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(b.weights.buffer))).toBe(true);
    expect(Buffer.from(a.bias.buffer).equals(Buffer.from(b.bias.buffer))).toBe(true);
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(c.weights.buffer))).toBe(false);
  });

  it('the TS reference reproduces the native kernel (same sample order and step) up to float rounding', async () => {
    const addon = await loadAddon();
    const z = applyStandardization(train, fitStandardization(train));
    const coding = codingMatrix('onevsall', 5);
    const targets = buildTargets(coding, trainLabels.map((l) => classes.indexOf(l)));
    for (const schedule of ['pegasos', 'averaged'] as const) {
      const o = { lambda: 1e-2, epochs: 4, seed: 9, schedule };
      const nat = await addon.trainLinearSvms(z.data, z.rows, z.cols, targets, coding.learners, { ...o, threads: 1 });
      const ref = await referenceTrainLinearSvms(z.data, z.rows, z.cols, targets, coding.learners, o);
      let maxAbs = 0;
      let maxW = 0;
      for (let i = 0; i < nat.w.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(nat.w[i]! - ref.w[i]!));
        maxW = Math.max(maxW, Math.abs(ref.w[i]!));
      }
      console.info(`[oracle] ${schedule}: max |w_native - w_ref| / max |w| = ${(maxAbs / maxW).toExponential(2)}`);
      expect(maxAbs / maxW).toBeLessThan(1e-5);
      for (let j = 0; j < coding.learners; j++) expect(nat.b[j]!).toBeCloseTo(ref.b[j]!, 3);
    }
  });

  it('binary learners agree with the reference on the hinge objective (within 10%)', async () => {
    const addon = await loadAddon();
    const s = fitStandardization(train);
    const z = applyStandardization(train, s);
    const idx = trainLabels.map((l) => classes.indexOf(l));
    const coding = codingMatrix('onevsone', 5);
    const targets = buildTargets(coding, idx);
    const lambda = 1e-2;
    const o = { lambda, epochs: 30, seed: 5, schedule: 'averaged' as const };
    const nat = await addon.trainLinearSvms(z.data, z.rows, z.cols, targets, coding.learners, { ...o, threads: 1 });
    const ref = await referenceTrainLinearSvms(z.data, z.rows, z.cols, targets, coding.learners, o);
    const objective = (w: Float32Array, b: Float32Array, j: number): number => {
      let reg = 0;
      for (let c = 0; c < z.cols; c++) reg += w[j * z.cols + c]! ** 2;
      let loss = 0;
      let m = 0;
      for (let i = 0; i < z.rows; i++) {
        const y = targets[j * z.rows + i]!;
        if (y === 0) continue;
        let s2 = b[j]!;
        for (let c = 0; c < z.cols; c++) s2 += w[j * z.cols + c]! * z.data[i * z.cols + c]!;
        loss += Math.max(0, 1 - y * s2);
        m++;
      }
      return (lambda / 2) * reg + loss / m;
    };
    for (let j = 0; j < coding.learners; j++) {
      const on = objective(nat.w, nat.b, j);
      const or = objective(ref.w, ref.b, j);
      expect(on).toBeLessThan(or * 1.1 + 1e-3);
    }
  });
});
