// The evaluation protocols through the public API, with the real engine on a small real MVTec subset (a
// temp folder of links to bottle images: train/good, test/good (two of them training images under other
// names), test/broken_large and test/contamination with their ground-truth masks).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  Engine,
  evaluateClassifier,
  evaluateOneClass,
  Inspector,
  trainClassifier,
  trainOneClass,
  type LabelledImage,
  type OneClassEvaluation,
  type SvmModel,
} from '../../src/index.js';
import { bottle, bottleMask, bottleSkipReason, labelledFolder, mvtecSubset } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('evaluation', skip);

const tmp = tempDir('loupe-evaluation-');
afterAll(() => tmp.cleanup());

/** AUROC by its definition: P(defect scores above good), ties counted half (the oracle). */
function aurocOracle(scores: readonly number[], labels: readonly number[]): number {
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++) {
    if (labels[i] !== 1) continue;
    for (let j = 0; j < scores.length; j++) {
      if (labels[j] !== 0) continue;
      pairs++;
      wins += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  }
  return wins / pairs;
}

describe.skipIf(!!skip)('evaluation', () => {
  let engine: Engine;
  let subset: ReturnType<typeof mvtecSubset>;
  let inspector: Inspector;
  let evaluation: OneClassEvaluation;

  beforeAll(async () => {
    engine = await Engine.open();
    subset = mvtecSubset(join(tmp.dir, 'bottle'), { train: 12, testGood: 6, seen: 2, defects: { broken_large: 5, contamination: 3 } });
    const { model } = await trainOneClass({ engine, good: subset.root, coresetRatio: 0.05 });
    inspector = await Inspector.open(model, { engine });
    evaluation = await evaluateOneClass(inspector, subset.root);
  });

  it('evaluateOneClass on an MVTec folder: counts, image and pixel AUROC in [0, 1], PRO, F1-max', () => {
    const e = evaluation;
    expect(e.category).toBe('bottle');
    expect(e.images).toBe(16);
    expect(e.good).toBe(8);
    expect(e.defective).toBe(8);
    expect(e.records.length).toBe(16);
    for (const v of [e.imageAuroc, e.pixelAuroc, e.pro, e.f1Max]) {
      expect(v).not.toBeNull();
      expect(v!).toBeGreaterThanOrEqual(0);
      expect(v!).toBeLessThanOrEqual(1);
    }
    // The image AUROC is that of the records' raw scores; a model of 12 good bottles tells these defects apart.
    const labels = e.records.map((r) => (r.defect ? 1 : 0));
    expect(e.imageAuroc!).toBeCloseTo(aurocOracle(e.records.map((r) => r.rawScore), labels), 9);
    expect(e.imageAuroc!).toBeGreaterThan(0.8);
    expect(e.pixelAuroc!).toBeGreaterThan(0.8);
    // Every good image and every defective one with a (non-empty) mask enters the pixel metrics.
    expect(e.pixelImages).toBe(16);
    expect(e.emptyMasks).toBe(0);
    expect(e.missingMasks).toEqual([]);
    expect(e.threshold).toEqual({ image: inspector.thresholds.image, pixel: inspector.thresholds.pixel });
    expect(e.falseAlarms).toBe(e.records.filter((r) => !r.defect && r.verdict === 'anomalous').length);
    expect(e.missed).toBe(e.records.filter((r) => r.defect && r.verdict === 'good').length);
    for (const r of e.records) expect(r.verdict === 'anomalous').toBe(r.score >= 0.5);
    expect(e.msPerImage).toBeGreaterThan(0);
  });

  it('perDefectType: one row per defect type, each against all good images', () => {
    const e = evaluation;
    expect(e.perDefectType.map((d) => [d.type, d.images])).toEqual([
      ['broken_large', 5],
      ['contamination', 3],
    ]);
    const goods = e.records.filter((r) => !r.defect);
    for (const d of e.perDefectType) {
      const rs = e.records.filter((r) => r.image.label === d.type);
      const sub = [...goods, ...rs];
      expect(d.imageAuroc!).toBeCloseTo(aurocOracle(sub.map((r) => r.rawScore), sub.map((r) => (r.defect ? 1 : 0))), 9);
      expect(d.flagged).toBe(rs.filter((r) => r.verdict === 'anomalous').length);
    }
  });

  it('seenInTraining counts the training images put into the test set (by content, whatever their name)', async () => {
    expect(evaluation.seenInTraining).toBe(2);
    // The same test set as a list of labelled images gives the same figures.
    const items: LabelledImage[] = [
      ...[...subset.testGood, ...subset.seen].map((path) => ({ path, label: 'good' })),
      ...subset.defects.map((path) => ({ path, label: path.includes('broken_large') ? 'broken_large' : 'contamination', maskPath: bottleMask(path) })),
    ];
    const fromList = await evaluateOneClass(inspector, items);
    expect(fromList.seenInTraining).toBe(2);
    expect(fromList.images).toBe(16);
    expect(fromList.imageAuroc).toBeCloseTo(evaluation.imageAuroc!, 9);
    expect(fromList.pixelAuroc).toBeCloseTo(evaluation.pixelAuroc!, 6);
    // Without masks there are no pixel figures; without the seen images, nothing was seen.
    const unseen = await evaluateOneClass(
      inspector,
      items.filter((i) => !subset.seen.includes(i.path)).map(({ path, label }) => ({ path, label })),
    );
    expect(unseen.seenInTraining).toBe(0);
    expect(unseen.pixelAuroc).toBeNull();
    expect(unseen.pro).toBeNull();
    expect(unseen.images).toBe(14);
  });

  it('evaluateOneClass refuses an SVM model and an empty test set', async () => {
    const data = labelledFolder(join(tmp.dir, 'tiny-svm'), { good: bottle('train/good', 3, 100), broken_large: bottle('test/broken_large', 3, 12) });
    const { model } = await trainClassifier({ engine, data, cache: false, lambda: 0.01 });
    const svm = await Inspector.open(model, { engine });
    await expect(evaluateOneClass(svm, subset.root)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(evaluateOneClass(inspector, [])).rejects.toMatchObject({ code: 'DATASET_EMPTY' });
  });

  it('evaluateClassifier: confusion and figures on other images, seenInTraining on the training ones, unknown labels as errors', async () => {
    const train = labelledFolder(join(tmp.dir, 'svm-train'), {
      good: bottle('train/good', 6, 120),
      broken_large: bottle('test/broken_large', 6, 5),
      contamination: bottle('test/contamination', 6, 3),
    });
    const test = labelledFolder(join(tmp.dir, 'svm-test'), {
      good: bottle('test/good', 4, 10),
      broken_large: bottle('test/broken_large', 4, 14),
      contamination: bottle('test/contamination', 4, 14),
    });
    const { model } = await trainClassifier({ engine, data: train, cache: false });
    const svm: SvmModel = model;
    const e = await evaluateClassifier(svm, test, { engine, cache: false });
    expect(e.dataset!.root).toBe(test);
    expect(e.items.length).toBe(12);
    expect(e.metrics.total).toBe(12);
    expect(e.metrics.confusion.classes).toEqual(['broken_large', 'contamination', 'good']);
    expect(e.metrics.confusion.counts.flat().reduce((a, b) => a + b, 0)).toBe(12);
    const correct = e.items.filter((it, i) => it.label === e.predicted[i]).length;
    expect(e.metrics.accuracy).toBeCloseTo(correct / 12, 12);
    expect(e.seenInTraining).toBe(0);
    expect(e.unknownLabels).toEqual([]);
    // The verdicts are the Inspector's.
    const inspector = await Inspector.open(svm, { engine });
    for (const [i, it] of e.items.entries()) {
      const r = await inspector.inspect(it.path);
      expect(r.verdict).toBe(e.verdicts[i]!.verdict);
      expect(r.rawScore).toBeCloseTo(e.verdicts[i]!.rawScore, 4);
    }

    const onTraining = await evaluateClassifier(svm, train, { engine, cache: false });
    expect(onTraining.seenInTraining).toBe(18);

    const withUnknown = await evaluateClassifier(
      svm,
      [...bottle('test/broken_small', 2).map((path) => ({ path, label: 'broken_small' })), ...bottle('test/good', 2, 16).map((path) => ({ path, label: 'good' }))],
      { engine, cache: false },
    );
    expect(withUnknown.unknownLabels).toEqual(['broken_small']);
    expect(withUnknown.metrics.total).toBe(4);
    expect(withUnknown.metrics.confusion.classes).toContain('broken_small');
    expect(withUnknown.predicted.filter((p) => p === 'broken_small')).toEqual([]); // never right
    expect(withUnknown.metrics.accuracy).toBeLessThanOrEqual(0.5);
  });
});
