// Training through the public API with the real engine and real MVTec bottle images: one-class models from
// a plain folder of good photos and from an MVTec category (F1 thresholds with defects), the model file
// round trip, SVM classifiers (held-out split, k-fold, no good label), and calibration to a target FPR.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  calibrate,
  Engine,
  Inspector,
  LoupeError,
  loadModel,
  readModelSummary,
  saveModel,
  trainClassifier,
  trainOneClass,
  withModelExtension,
  type OneClassModel,
  type TrainingProgress,
  type TrainingStage,
} from '../../src/index.js';
import { bottle, bottleSkipReason, labelledFolder, mvtecSubset, place, sha256File } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('training', skip);

const tmp = tempDir('loupe-training-');
afterAll(() => tmp.cleanup());

/** Stages in the order first seen, and done <= total throughout. */
function stagesOf(events: readonly TrainingProgress[]): TrainingStage[] {
  for (const e of events) {
    expect(e.done).toBeGreaterThanOrEqual(0);
    expect(e.done).toBeLessThanOrEqual(e.total);
  }
  return [...new Set(events.map((e) => e.stage))];
}

describe.skipIf(!!skip)('training', () => {
  let engine: Engine;
  let folderModel: OneClassModel;

  beforeAll(async () => {
    engine = await Engine.open();
  });

  it('trainOneClass learns from a plain folder of good PNGs (what a plant has), with the metadata every model carries', async () => {
    const sources = bottle('train/good', 10, 40);
    const dir = join(tmp.dir, 'line-3-good');
    const copies = place(dir, sources, 'copy');
    place(join(dir, 'shift-2'), bottle('train/good', 2, 60), 'copy'); // sub-folders count too
    writeFileSync(join(dir, 'notes.txt'), 'camera 3, lens cleaned on Monday\n');
    const events: TrainingProgress[] = [];
    const t = await trainOneClass({ engine, good: dir, coresetRatio: 0.05, onProgress: (p) => events.push(p) });
    const m = t.model;
    folderModel = m;
    expect(t.layout).toBe('folder');
    expect(t.root).toBe(dir);
    expect(m.kind).toBe('one-class');
    expect(m.category).toBe('line-3-good');
    expect(t.bankImages + t.validationImages).toBe(12);
    expect(t.validationImages).toBeGreaterThanOrEqual(1);
    expect(t.skipped.map((s) => basename(s.path))).toEqual(['notes.txt']);
    expect(m.weightsHash).toBe(engine.weightsHash);
    expect(m.patchcore.weightsHash).toBe(engine.weightsHash);
    expect(new Set(m.trainHashes)).toEqual(new Set([...copies, ...bottle('train/good', 2, 60)].map(sha256File)));
    expect(m.patchcore.thresholds.method).toBe('quantile');
    expect(m.patchcore.thresholds.image).toBeGreaterThan(0);
    expect(m.patchcore.thresholds.pixel).toBeGreaterThan(0);
    expect(m.preprocessing).toMatchObject({ fit: 'squash', size: 224, normalization: 'caffe' });
    // A held-out image or two make a thin threshold: the trainer is told.
    expect(t.warnings.join('\n')).toMatch(/held-out good image/);
    expect(stagesOf(events)).toEqual(['scan', 'features', 'coreset', 'thresholds']);
    const last = new Map(events.map((e) => [e.stage, e]));
    expect(last.get('scan')).toMatchObject({ done: 13, total: 13 }); // notes.txt is looked at too
    expect(last.get('features')!.done).toBe(last.get('features')!.total);
    expect(t.timings.totalS).toBeGreaterThan(0);

    // A plain list of files trains the same way.
    const fromList = await trainOneClass({ engine, good: copies.slice(0, 3), coresetRatio: 0.05 });
    expect(fromList.layout).toBe('files');
    expect(fromList.model.category).toBeUndefined();
    expect(fromList.model.trainHashes).toEqual(copies.slice(0, 3).map(sha256File));
  });

  it('trainOneClass on an MVTec category uses train/good, and with defects sets F1 thresholds', async () => {
    const subset = mvtecSubset(join(tmp.dir, 'mvtec', 'bottle'), { train: 10, testGood: 3, defects: { broken_large: 3, contamination: 2 } });
    const plain = await trainOneClass({ engine, good: subset.root, coresetRatio: 0.05 });
    expect(plain.layout).toBe('mvtec');
    expect(plain.model.category).toBe('bottle');
    expect(plain.bankImages + plain.validationImages).toBe(10);
    expect(new Set(plain.model.trainHashes)).toEqual(new Set(subset.train.map(sha256File)));
    expect(plain.model.patchcore.thresholds.method).toBe('quantile');

    const events: TrainingProgress[] = [];
    const withDefects = await trainOneClass({ engine, good: subset.root, defects: subset.root, coresetRatio: 0.05, onProgress: (p) => events.push(p) });
    const th = withDefects.model.patchcore.thresholds;
    expect(withDefects.defectImages).toBe(5);
    expect(th.method).toBe('f1');
    expect(th.defectCount).toBe(5);
    expect(th.goodCount).toBe(withDefects.validationImages);
    expect(th.f1).toBeGreaterThan(0);
    // The F1 threshold separates these easy defects from the held-out good images.
    const inspector = await Inspector.open(withDefects.model, { engine });
    for (const f of subset.defects.slice(0, 3)) expect((await inspector.inspect(f)).verdict).toBe('anomalous');
    // The same bank as without defects: only the thresholds differ.
    expect(withDefects.model.patchcore.bank.n).toBe(plain.model.patchcore.bank.n);
    expect(th.image).not.toBe(plain.model.patchcore.thresholds.image);
    expect(stagesOf(events).filter((s) => s !== 'scan')).toEqual(['features', 'coreset', 'thresholds']);

    // A folder of defects that holds none: refused before the features are computed.
    const err = await trainOneClass({ engine, good: subset.root, defects: join(tmp.dir, 'nothing-here') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoupeError);
    expect((err as LoupeError).code).toBe('DATASET_NOT_FOUND');
  });

  it('saveModel / loadModel keep the training hashes, category, thresholds and weights hash (file and bytes)', async () => {
    const file = withModelExtension(join(tmp.dir, 'models', 'line-3'));
    expect(file).toBe(join(tmp.dir, 'models', 'line-3.loupe'));
    mkdirSync(join(tmp.dir, 'models'), { recursive: true });
    const written = await saveModel(file, folderModel);
    expect(written.bytes).toBe(readFileSync(file).length);
    for (const loaded of [await loadModel(file), await loadModel(readFileSync(file), { name: 'line-3 (bytes)' })]) {
      expect(loaded.kind).toBe('one-class');
      if (loaded.kind !== 'one-class') throw new Error('unreachable');
      expect(loaded.trainHashes).toEqual(folderModel.trainHashes);
      expect(loaded.category).toBe('line-3-good');
      expect(loaded.weightsHash).toBe(engine.weightsHash);
      expect(loaded.createdAt).toBe(folderModel.createdAt);
      expect(loaded.preprocessing).toEqual(folderModel.preprocessing);
      expect(loaded.patchcore.thresholds).toEqual(folderModel.patchcore.thresholds);
      expect(loaded.patchcore.bank.n).toBe(folderModel.patchcore.bank.n);
      expect(Array.from(loaded.patchcore.bank.vectors.subarray(0, 64))).toEqual(Array.from(folderModel.patchcore.bank.vectors.subarray(0, 64)));
    }
    const summary = await readModelSummary(file);
    expect(summary).toMatchObject({ kind: 'one-class', category: 'line-3-good', weightsHash: engine.weightsHash, layer: 'res3d,res4f' });
    // The loaded model scores exactly as the one in memory.
    const image = bottle('test/broken_small', 1)[0]!;
    const a = await (await Inspector.open(folderModel, { engine })).inspect(image);
    const b = await (await Inspector.open(file, { engine })).inspect(image);
    expect(b.rawScore).toBe(a.rawScore);
  });

  it('trainClassifier: SVM with a held-out split, then with k-fold (refitted on everything)', async () => {
    const data = labelledFolder(join(tmp.dir, 'svm'), {
      good: bottle('train/good', 8, 80),
      broken_large: bottle('test/broken_large', 8),
      contamination: bottle('test/contamination', 8),
    });
    const events: TrainingProgress[] = [];
    const split = await trainClassifier({ engine, data, holdOut: { split: 0.25 }, cache: false, onProgress: (p) => events.push(p) });
    expect(split.classes).toEqual(['broken_large', 'contamination', 'good']);
    expect(split.model.goodClass).toBe('good');
    expect(split.model.layer).toBe('fc1000');
    expect(split.model.category).toBe('svm');
    expect(split.model.weightsHash).toBe(engine.weightsHash);
    expect(split.heldOut!.kind).toBe('split');
    expect(split.heldOut!.items.length).toBe(6); // 2 of each label
    expect(split.train.length).toBe(18);
    expect(split.heldOut!.metrics.total).toBe(6);
    expect(split.heldOut!.predicted.length).toBe(6);
    // Only the images the saved model was fitted on are its training images.
    expect(new Set(split.model.trainHashes)).toEqual(new Set(split.train.map((i) => sha256File(i.path))));
    for (const i of split.heldOut!.items) expect(split.model.trainHashes).not.toContain(sha256File(i.path));
    expect((split.model.metrics as { heldOut: { total: number } }).heldOut.total).toBe(6);
    expect(stagesOf(events)).toEqual(['scan', 'features', 'svm']);
    // The held-out figures are what the model says of those images.
    const inspector = await Inspector.open(split.model, { engine });
    for (const [k, item] of split.heldOut!.items.entries()) {
      const r = await inspector.inspect(item.path);
      expect(r.verdict === 'good' ? 'good' : r.defectType).toBe(split.heldOut!.predicted[k]);
    }

    const kfold = await trainClassifier({ engine, data, holdOut: { kfold: 3 }, cache: false });
    expect(kfold.heldOut!.kind).toBe('kfold');
    expect(kfold.heldOut!.folds.length).toBe(3);
    expect(kfold.heldOut!.folds.reduce((a, f) => a + f.total, 0)).toBe(24);
    expect(new Set(kfold.heldOut!.items.map((i) => i.path))).toEqual(new Set(kfold.items.map((i) => i.path)));
    expect(kfold.heldOut!.metrics.total).toBe(24);
    expect(kfold.model.trainHashes.length).toBe(24);
    expect(kfold.heldOut!.metrics.accuracy).toBeGreaterThan(0.5);
  });

  it('trainClassifier refuses data without a good label (and a goodLabel that is not there)', async () => {
    const data = labelledFolder(join(tmp.dir, 'no-good'), {
      broken_large: bottle('test/broken_large', 2, 14),
      contamination: bottle('test/contamination', 2, 14),
    });
    const err = await trainClassifier({ engine, data, cache: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoupeError);
    expect((err as LoupeError).code).toBe('INVALID_ARGUMENT');
    expect((err as LoupeError).message).toMatch(/no label names the good parts/);
    expect((err as LoupeError).input).toBe(data);
    const named = await trainClassifier({ engine, data, goodLabel: 'ok', cache: false }).catch((e: unknown) => e);
    expect(named).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/no label 'ok'/) });
    // Naming one of the labels good is enough.
    const fine = await trainClassifier({ engine, data, goodLabel: 'contamination', cache: false });
    expect(fine.model.goodClass).toBe('contamination');
  });

  it('calibrate with targetFpr moves the threshold so that about that fraction of good images is flagged', async () => {
    const good = bottle('test/good', 20);
    const targetFpr = 0.2;
    const events: TrainingProgress[] = [];
    const { model, report } = await calibrate(folderModel, { engine, good, targetFpr, onProgress: (p) => events.push(p) });
    expect(report.method).toBe('target-fpr');
    expect(report.good).toBe(20);
    expect(report.defects).toBe(0);
    expect(report.seenInTraining).toBe(0);
    expect(report.before.image).toBe(folderModel.patchcore.thresholds.image);
    expect(report.after.image).not.toBe(report.before.image);
    expect(Math.abs(report.goodFlagged - targetFpr * 20)).toBeLessThanOrEqual(1);
    expect(model.kind).toBe('one-class');
    if (model.kind !== 'one-class') throw new Error('unreachable');
    expect(model.patchcore.thresholds.image).toBe(report.after.image);
    expect(model.trainHashes).toEqual(folderModel.trainHashes);
    expect(events.at(-1)).toEqual({ stage: 'thresholds', done: 20, total: 20 });
    // The new model flags that many of these good images when it inspects them (and the old one a different number).
    const count = async (m: typeof model): Promise<number> => {
      const inspector = await Inspector.open(m, { engine });
      let n = 0;
      for await (const o of inspector.inspectMany(good)) if (o.result!.verdict === 'anomalous') n++;
      return n;
    };
    expect(await count(model)).toBe(report.goodFlagged);
    expect(await count(folderModel)).not.toBe(report.goodFlagged);
    // Saved and loaded, the calibrated threshold stays.
    const file = join(tmp.dir, 'calibrated.loupe');
    await saveModel(file, model);
    const loaded = await loadModel(file);
    expect(loaded.kind === 'one-class' && loaded.patchcore.thresholds.image).toBe(report.after.image);

    // Training images among the calibration images are counted (their scores flatter the model).
    const seen = await calibrate(folderModel, { engine, good: [...good.slice(0, 8), ...bottle('train/good', 2, 60)], targetFpr: 0.25 });
    expect(seen.report.seenInTraining).toBe(2);
    // Out of range.
    await expect(calibrate(folderModel, { engine, good, targetFpr: 0.8 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
