// Hybrid (few-shot) models through the public API, with the real engine and real MVTec bottle images:
// trainHybrid on an MVTec category (held-out protocol, shots, masks, two defect types -> defect types), on
// a category with one defect type, without masks, without defects (one-class, and it says so), from
// folder-per-label; the model file round trip and validation at load; the Inspector contract; evaluation
// (balanced accuracy, type accuracy) and calibration of hybrid models.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  calibrate,
  DEFAULT_HYBRID_HEAD,
  Engine,
  evaluateOneClass,
  hybridHoldOut,
  Inspector,
  loadModel,
  ModelFileError,
  readModelSummary,
  saveModel,
  trainHybrid,
  type HybridTraining,
  type LabelledImage,
  type TrainingProgress,
} from '../../src/index.js';
import { HybridScorer, scoreViewsWithFlips } from '../../src/anomaly/hybrid/model.js';
import { PATCHCORE_TAPS } from '../../src/anomaly/patchcore/feature-extractor.js';
import { flipGrid, prepareImage, withFlips, type Flip } from '../../src/image/views.js';
import { bottle, bottleSkipReason, labelledFolder, mvtecSubset, sha256File } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('hybrid training', skip);

const tmp = tempDir('loupe-hybrid-');
afterAll(() => tmp.cleanup());

describe('hybridHoldOut (the held-out protocol)', () => {
  const items = [
    ...Array.from({ length: 10 }, (_, i) => ({ relPath: `train/good/${i}.png`, label: 'good', mvtecSplit: 'train' as const })),
    ...Array.from({ length: 8 }, (_, i) => ({ relPath: `test/good/${i}.png`, label: 'good', mvtecSplit: 'test' as const })),
    ...Array.from({ length: 12 }, (_, i) => ({ relPath: `test/crack/${i}.png`, label: 'crack', mvtecSplit: 'test' as const })),
    ...Array.from({ length: 6 }, (_, i) => ({ relPath: `test/hole/${i}.png`, label: 'hole', mvtecSplit: 'test' as const })),
  ];

  it('holds out F of test/good and of each defect type, never train/good; shots cap each type; seeded', () => {
    const s = hybridHoldOut(items, { split: 0.5, shots: 3, seed: 0 });
    expect(s.test.filter((i) => i.label === 'good').length).toBe(4);
    expect(s.test.filter((i) => i.label === 'crack').length).toBe(6);
    expect(s.test.filter((i) => i.label === 'hole').length).toBe(3);
    expect(s.test.some((i) => i.mvtecSplit === 'train')).toBe(false);
    expect(s.trainGood.length).toBe(14);
    expect(s.trainDefects.filter((i) => i.label === 'crack').length).toBe(3);
    expect(s.trainDefects.filter((i) => i.label === 'hole').length).toBe(3);
    expect(s.unusedDefects.length).toBe(3);
    const all = [...s.trainGood, ...s.trainDefects, ...s.unusedDefects, ...s.test].map((i) => i.relPath);
    expect(new Set(all).size).toBe(items.length);
    // The held-out side does not depend on shots; the seed changes it.
    expect(hybridHoldOut(items, { split: 0.5, shots: 1, seed: 0 }).test).toEqual(s.test);
    expect(hybridHoldOut(items, { split: 0.5, shots: 3, seed: 1 }).test).not.toEqual(s.test);
    // No split: everything trains.
    expect(hybridHoldOut(items, { seed: 0 }).test).toEqual([]);
  });

  it('keeps groups whole, and spreads shots over groups', () => {
    const groups = new Map(items.map((i) => [i.relPath, `${i.label}:${Math.floor(Number(i.relPath.split('/').pop()!.split('.')[0]) / 3)}`]));
    const s = hybridHoldOut(items, { split: 0.5, shots: 2, seed: 0, groups });
    const side = new Map<string, string>();
    for (const [name, list] of [['test', s.test], ['train', [...s.trainGood, ...s.trainDefects, ...s.unusedDefects]]] as const) {
      for (const i of list) {
        if (i.mvtecSplit === 'train') continue;
        const g = groups.get(i.relPath)!;
        expect(side.get(g) ?? name).toBe(name);
        side.set(g, name);
      }
    }
    // Two shots of a type come from two groups when it has them.
    for (const type of ['crack', 'hole']) {
      const picked = s.trainDefects.filter((i) => i.label === type);
      if (new Set([...s.trainDefects, ...s.unusedDefects].filter((i) => i.label === type).map((i) => groups.get(i.relPath))).size >= 2) {
        expect(new Set(picked.map((i) => groups.get(i.relPath))).size).toBe(picked.length);
      }
    }
  });
});

describe.skipIf(!!skip)('hybrid models (memory bank + supervised head)', () => {
  let engine: Engine;
  let subset: ReturnType<typeof mvtecSubset>;
  let t: HybridTraining;
  const events: TrainingProgress[] = [];

  beforeAll(async () => {
    engine = await Engine.open();
    subset = mvtecSubset(join(tmp.dir, 'bottle'), { train: 16, testGood: 8, defects: { broken_large: 6, contamination: 6 } });
    t = await trainHybrid({ engine, data: subset.root, split: 0.5, shots: 2, seed: 0, coresetRatio: 0.05, validationFraction: 0.3, onProgress: (p) => events.push(p) });
  });

  it('trains on good + a few labelled defects per type, holds out half of test/good and of each type, and evaluates them', () => {
    const c = t.counts;
    expect(t.layout).toBe('mvtec');
    expect(t.goodLabel).toBe('good');
    expect(t.defectTypes).toEqual(['broken_large', 'contamination']);
    expect(c.heldOutGood).toBe(4);
    expect(c.heldOutDefects).toBe(6);
    expect(c.trainGood).toBe(16 + 4);
    expect(c.trainDefects).toBe(4); // 2 shots x 2 types
    expect(c.maskedDefects).toBe(4);
    expect(c.unusedDefects).toBe(2);
    expect(c.bankImages + c.validationImages).toBe(c.trainGood);
    expect(t.warnings).toEqual([]);
    // Training hashes: the good training images and the labelled defects, no held-out image.
    const trained = new Set(t.model.trainHashes);
    expect(trained.size).toBe(c.trainGood + c.trainDefects);
    for (const i of t.split.test) expect(trained.has(sha256File(i.path))).toBe(false);
    const e = t.heldOut!;
    expect(e.images).toBe(10);
    expect(e.seenInTraining).toBe(0);
    expect(e.imageAuroc).toBeGreaterThan(0.9);
    expect(e.pixelAuroc).toBeGreaterThan(0.8);
    expect(e.balancedAccuracy).toBeGreaterThan(0.5);
    expect(e.defectTypeAccuracy!.images).toBe(6);
    expect(t.heldOutOneClass!.images).toBe(10);
    expect(t.heldOutOneClass).not.toBe(e);
    expect([...new Set(events.map((p) => p.stage))].filter((s) => s !== 'scan')).toEqual(['features', 'coreset', 'thresholds', 'head', 'evaluate']);
  });

  it('answers the Inspector contract: fused score (0.5 = threshold), fused heatmap, a defect type of the two it knows', async () => {
    const m = t.model;
    expect(m.kind).toBe('hybrid');
    expect(m.hybrid.hasHead).toBe(true);
    expect(m.hybrid.state.defectTypes!.classes).toEqual(['broken_large', 'contamination']);
    expect(m.category).toBe('bottle');
    const inspector = await Inspector.open(m, { engine });
    expect(inspector.kind).toBe('hybrid');
    expect(inspector.classes).toEqual(['broken_large', 'contamination']);
    expect(inspector.description).toMatch(/^hybrid: memory bank/);
    let flagged = 0;
    for (const item of t.split.test) {
      const r = await inspector.inspect(item.path, { heatmap: true });
      expect(r.score >= 0.5).toBe(r.verdict === 'anomalous');
      expect(r.rawScore >= inspector.thresholds.image).toBe(r.verdict === 'anomalous');
      expect(r.heatmap!.width).toBe(256);
      expect(r.heatmap!.threshold).toBe(inspector.thresholds.pixel);
      expect(r.likeliestDefect === 'broken_large' || r.likeliestDefect === 'contamination').toBe(true);
      expect(r.classScores!.map((s) => s.name)).toEqual(['broken_large', 'contamination']);
      expect(r.classScores!.reduce((a, s) => a + s.score, 0)).toBeCloseTo(1, 5);
      expect(r.defectType).toBe(r.verdict === 'anomalous' ? r.likeliestDefect : null);
      if (item.label !== 'good' && r.verdict === 'anomalous') flagged++;
    }
    expect(flagged).toBeGreaterThanOrEqual(4);
  });

  it('round-trips through the model file (file and bytes), validated at load', async () => {
    const file = join(tmp.dir, 'bottle-hybrid.loupe');
    await saveModel(file, t.model);
    const summary = await readModelSummary(file);
    expect(summary).toMatchObject({ kind: 'hybrid', method: 'patchcore+head', classes: ['broken_large', 'contamination'], category: 'bottle', weightsHash: engine.weightsHash });
    const image = t.split.test.find((i) => i.label !== 'good')!.path;
    const a = await (await Inspector.open(t.model, { engine })).inspect(image, { heatmap: true });
    for (const loaded of [await loadModel(file), await loadModel(readFileSync(file), { name: 'bytes' })]) {
      expect(loaded.kind).toBe('hybrid');
      if (loaded.kind !== 'hybrid') throw new Error('unreachable');
      expect(loaded.trainHashes).toEqual(t.model.trainHashes);
      expect(loaded.hybrid.state).toEqual(JSON.parse(JSON.stringify(t.model.hybrid.state)));
      const b = await (await Inspector.open(loaded, { engine })).inspect(image, { heatmap: true });
      expect(b.rawScore).toBeCloseTo(a.rawScore, 4);
      expect(b.defectType).toBe(a.defectType);
      expect(b.peak).toEqual(a.peak);
    }
    // A head that does not fit its memory bank is refused at load, naming the field.
    const text = readFileSync(file);
    const nl = text.indexOf(10);
    const withHeader = (edit: (h: any) => void, name: string): string => {
      const header = JSON.parse(text.subarray(0, nl).toString('utf8'));
      edit(header);
      const out = join(tmp.dir, name);
      writeFileSync(out, Buffer.concat([Buffer.from(JSON.stringify(header)), text.subarray(nl)]));
      return out;
    };
    const bad = withHeader((h) => (h.hybrid.head.head.inDim = 7), 'bad-hybrid.loupe');
    const err = await loadModel(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err).toMatchObject({ code: 'MODEL_CORRUPT', field: 'hybrid' });
    // The default head is an MLP (version 2) with test-time flips (version 3); a version-1 file's logistic
    // head still loads and answers, and a version-2 file (no flips) too.
    const head = t.model.hybrid.state.head!.head;
    expect(t.model.hybrid.state.version).toBe(3);
    expect(t.model.hybrid.state.head!.flips).toEqual(['hflip', 'vflip']);
    const v2 = await loadModel(withHeader((h) => ((h.hybrid.version = 2), delete h.hybrid.head.flips), 'v2-hybrid.loupe'));
    if (v2.kind !== 'hybrid') throw new Error('unreachable');
    expect(v2.hybrid.flips).toEqual([]);
    const r2 = await (await Inspector.open(v2, { engine })).inspect(image);
    expect(Number.isFinite(r2.rawScore)).toBe(true);
    expect(r2.rawScore).not.toBeCloseTo(a.rawScore, 3);
    for (const [flips, name] of [[['hflip', 'hflip'], 'twice'], [['rot90'], 'unknown']] as const) {
      const f = withHeader((h) => (h.hybrid.head.flips = flips), `flips-${name}.loupe`);
      expect(await loadModel(f).catch((e: unknown) => e)).toMatchObject({ code: 'MODEL_CORRUPT', field: 'hybrid' });
    }
    expect(head.mlp!.hidden).toBe(DEFAULT_HYBRID_HEAD.hidden);
    // Four more members, each on its own projection.
    const members = [head, ...t.model.hybrid.state.head!.ensemble!];
    expect(members.length).toBe(DEFAULT_HYBRID_HEAD.members);
    expect(DEFAULT_HYBRID_HEAD.members).toBe(5);
    expect(new Set(members.map((m) => m.projection!.seed)).size).toBe(5);
    expect(head.logistic).toBeUndefined();
    const d = head.mlp!.d;
    const logistic = { d, b: 0, w: new Array(d).fill(0).map((_, j) => (j === 0 ? 1 : 0)), mean: new Array(d).fill(0), std: new Array(d).fill(1) };
    const v1 = withHeader((h) => {
      h.hybrid.version = 1;
      delete h.hybrid.head.ensemble;
      delete h.hybrid.head.flips;
      delete h.hybrid.head.head.mlp;
      h.hybrid.head.head.logistic = logistic;
    }, 'v1-hybrid.loupe');
    const old = await loadModel(v1);
    if (old.kind !== 'hybrid') throw new Error('unreachable');
    const r = await (await Inspector.open(old, { engine })).inspect(image);
    expect(Number.isFinite(r.rawScore)).toBe(true);
    expect(r.rawScore).not.toBeCloseTo(a.rawScore, 3);
    const both = withHeader((h) => (h.hybrid.head.head.logistic = logistic), 'both-hybrid.loupe');
    expect(await loadModel(both).catch((e: unknown) => e)).toMatchObject({ code: 'MODEL_CORRUPT', field: 'hybrid' });
  });

  it("test-time flips: the head's patch logits are the mean over the image and its mirror images, flipped back; the bank reads the image alone", async () => {
    const m = t.model;
    const flips = m.hybrid.flips;
    expect(flips).toEqual(['hflip', 'vflip']);
    const plain = new HybridScorer(m.patchcore, { ...m.hybrid.state, head: { ...m.hybrid.state.head!, flips: [] } });
    const image = await prepareImage(t.split.test.find((i) => i.label !== 'good')!.path);
    // Each view on its own through the engine and the model without flips.
    const alone = async (tensor: Float32Array): Promise<{ logits: Float32Array; raw: number }> => {
      const taps = await engine.run({ data: tensor, batch: 1 }, PATCHCORE_TAPS);
      const [r] = await plain.scoreViews([{ ...image, tensor }], taps, { keepEmbeddings: true });
      const [bank] = await m.patchcore.scoreViews([{ ...image, tensor }], taps);
      return { logits: plain.headLogits(r!), raw: bank!.rawScore };
    };
    const own = await alone(image.tensor);
    const mirrored = await Promise.all(flips.map((f: Flip) => alone(flipGrid(image.tensor, 224, 224, 3, f))));
    const expected = new Float32Array(784);
    for (let y = 0; y < 28; y++)
      for (let x = 0; x < 28; x++) {
        const p = y * 28 + x;
        expected[p] = (own.logits[p]! + mirrored[0]!.logits[y * 28 + 27 - x]! + mirrored[1]!.logits[(27 - y) * 28 + x]!) / 3;
      }
    // The model with flips, from one engine batch of the three views.
    const views = withFlips(image, flips);
    expect(views.views).toBe(3);
    const taps = await engine.run({ data: views.tensor, batch: 3 }, PATCHCORE_TAPS);
    const [x] = await scoreViewsWithFlips(m.patchcore, [views], taps, flips, { keepEmbeddings: true });
    expect(x!.flipped.length).toBe(2);
    const logits = m.hybrid.headLogits(x!.result, x!.flipped);
    let maxDiff = 0;
    let maxExpected = -Infinity;
    for (let p = 0; p < 784; p++) {
      maxDiff = Math.max(maxDiff, Math.abs(logits[p]! - expected[p]!));
      maxExpected = Math.max(maxExpected, expected[p]!);
    }
    expect(maxDiff).toBeLessThan(1e-3);
    // The mirror images are other inputs to the head, not the image again.
    expect(Math.max(...mirrored[0]!.logits.map((v, p) => Math.abs(v - own.logits[p]!)))).toBeGreaterThan(0.01);
    const [r] = await m.hybrid.scoreViews([views], taps);
    expect(r!.headScore!).toBeCloseTo(maxExpected, 3);
    // The fused score's memory-bank part is the image's own (flips do not reach the bank).
    const withoutHead = (x: { rawScore: number; headScore: number | null }): number => x.rawScore - (m.hybrid.state.fusion!.image.weight * (x.headScore! - m.hybrid.state.fusion!.image.head.mean)) / m.hybrid.state.fusion!.image.head.std;
    expect(withoutHead(r!)).toBeCloseTo((own.raw - m.hybrid.state.fusion!.image.pc.mean) / m.hybrid.state.fusion!.image.pc.std, 3);
    // And scoring from the files (decode, engine, flips) gives the same answer.
    const [fromFile] = await m.hybrid.score(engine, [t.split.test.find((i) => i.label !== 'good')!.path]);
    expect(fromFile!.rawScore).toBeCloseTo(r!.rawScore, 3);
    // Images prepared without their flips are refused, naming the image.
    await expect(m.hybrid.scoreViews([image], await engine.run({ data: image.tensor, batch: 1 }, PATCHCORE_TAPS))).rejects.toThrow(/flips/);
  });

  it('refuses test-time flips it cannot use before reading any image, naming the option', async () => {
    await expect(trainHybrid({ engine, data: subset.root, head: { flips: ['hflip', 'hflip'] } })).rejects.toThrow(/head flips must be distinct names of hflip, vflip, got \["hflip","hflip"\]/);
    // A head reading residuals would need the flipped views searched in the bank: no flips by default, refused when asked.
    await expect(trainHybrid({ engine, data: subset.root, head: { input: { residual: true }, flips: ['vflip'] } })).rejects.toThrow(/head flips need a head that reads the embedding only/);
  });

  it('evaluateOneClass measures a hybrid inspector by the same protocol (balanced accuracy, type accuracy), and calibrate moves its fused thresholds', async () => {
    const inspector = await Inspector.open(t.model, { engine });
    const test: readonly LabelledImage[] = t.split.test;
    const e = await evaluateOneClass(inspector, test);
    expect(e.imageAuroc).toBeCloseTo(t.heldOut!.imageAuroc!, 6);
    expect(e.balancedAccuracy).toBeCloseTo(t.heldOut!.balancedAccuracy!, 6);
    const defects = e.records.filter((r) => r.defect);
    const good = e.records.filter((r) => !r.defect);
    expect(e.balancedAccuracy).toBeCloseTo(((good.length - e.falseAlarms) / good.length + (defects.length - e.missed) / defects.length) / 2, 10);
    expect(e.defectTypeAccuracy!.accuracy).toBeCloseTo(defects.filter((r) => r.likeliestDefect === r.image.label).length / defects.length, 10);

    const goodDir = labelledFolder(join(tmp.dir, 'calibration'), { good: bottle('train/good', 6, 100) });
    const c = await calibrate(t.model, { engine, good: join(goodDir, 'good'), targetFpr: 0.2 });
    expect(c.model.kind).toBe('hybrid');
    expect(c.report.before.image).toBe(t.model.hybrid.imageThreshold);
    if (c.model.kind !== 'hybrid') throw new Error('unreachable');
    expect(c.model.hybrid.imageThreshold).toBe(c.report.after.image);
    expect(c.report.after.image).not.toBe(c.report.before.image);
    expect(c.report.goodFlagged).toBeLessThanOrEqual(2);
  });

  it('with one defect type: a head, no defect type to name', async () => {
    const one = mvtecSubset(join(tmp.dir, 'one-type', 'bottle'), { train: 14, testGood: 6, defects: { broken_large: 6 } });
    const r = await trainHybrid({ engine, data: one.root, split: 0.5, shots: 3, seed: 0, coresetRatio: 0.05, validationFraction: 0.3, compareOneClass: false, head: { members: 1 } });
    expect(r.defectTypes).toEqual(['broken_large']);
    expect(r.counts.trainDefects).toBe(3);
    expect(r.model.hybrid.hasHead).toBe(true);
    expect(r.model.hybrid.state.defectTypes).toBeNull();
    expect(r.model.hybrid.state.defectLabels).toEqual(['broken_large']);
    expect(r.heldOut!.defectTypeAccuracy).toBeNull();
    expect(r.heldOutOneClass).toBeNull();
    const inspector = await Inspector.open(r.model, { engine });
    expect(inspector.classes).toEqual([]);
    const res = await inspector.inspect(r.split.test.find((i) => i.label !== 'good')!.path);
    expect(res.defectType).toBeNull();
    expect(res.classScores).toBeUndefined();
  });

  it('without masks: image labels train the head, pixel AUROC is null, and the trainer says so', async () => {
    const noMasks = mvtecSubset(join(tmp.dir, 'no-masks', 'bottle'), { train: 14, testGood: 6, defects: { broken_large: 4, contamination: 4 } });
    rmSync(join(noMasks.root, 'ground_truth'), { recursive: true });
    const r = await trainHybrid({ engine, data: noMasks.root, split: 0.5, shots: 2, seed: 0, coresetRatio: 0.05, validationFraction: 0.3, compareOneClass: false, head: { classifier: 'logistic', members: 1 } });
    expect(r.counts.maskedDefects).toBe(0);
    expect(r.counts.trainDefects).toBe(4);
    expect(r.model.hybrid.hasHead).toBe(true);
    expect(r.warnings.join('\n')).toMatch(/no mask/);
    expect(r.heldOut!.pixelAuroc).toBeNull();
    expect(r.heldOut!.imageAuroc).not.toBeNull();
  });

  it('without labelled defects it is the one-class model, and says so', async () => {
    const goodOnly = mvtecSubset(join(tmp.dir, 'good-only', 'bottle'), { train: 12, testGood: 0, defects: {} });
    const r = await trainHybrid({ engine, data: goodOnly.root, seed: 0, coresetRatio: 0.05 });
    expect(r.model.hybrid.hasHead).toBe(false);
    expect(r.warnings.join('\n')).toMatch(/no labelled defects: the model is one-class/);
    expect(r.heldOut).toBeNull();
    const inspector = await Inspector.open(r.model, { engine });
    expect(inspector.description).toMatch(/without labelled defects/);
    expect(inspector.thresholds).toEqual({ image: r.model.patchcore.thresholds.image, pixel: r.model.patchcore.thresholds.pixel });
    // The same answers as the memory bank alone.
    const oneClass = await Inspector.open({ kind: 'one-class', method: 'patchcore', patchcore: r.model.patchcore, weightsHash: r.model.weightsHash, createdAt: r.model.createdAt, preprocessing: r.model.preprocessing, trainHashes: r.model.trainHashes }, { engine });
    const image = bottle('test/broken_small', 1)[0]!;
    const a = await inspector.inspect(image, { heatmap: true });
    const b = await oneClass.inspect(image, { heatmap: true });
    expect(a.rawScore).toBe(b.rawScore);
    expect(a.score).toBe(b.score);
    expect(a.verdict).toBe(b.verdict);
    expect(a.defectType).toBeNull();
    expect(Array.from(a.heatmap!.values.subarray(0, 100))).toEqual(Array.from(b.heatmap!.values.subarray(0, 100)));
    // Saved and loaded, still head-less.
    const file = join(tmp.dir, 'good-only.loupe');
    await saveModel(file, r.model);
    const loaded = await loadModel(file);
    expect(loaded.kind === 'hybrid' && !loaded.hybrid.hasHead).toBe(true);
  });

  it('trains from folder-per-label (a good folder and defect folders); refuses data without a good label', async () => {
    const dir = labelledFolder(join(tmp.dir, 'labelled'), {
      good: bottle('train/good', 14, 120),
      broken_small: bottle('test/broken_small', 4),
    });
    const r = await trainHybrid({ engine, data: dir, seed: 0, coresetRatio: 0.05, validationFraction: 0.3, head: { members: 1 } });
    expect(r.layout).toBe('folder-per-label');
    expect(r.counts.trainGood).toBe(14);
    expect(r.counts.trainDefects).toBe(4);
    expect(r.counts.maskedDefects).toBe(0);
    expect(r.heldOut).toBeNull();
    expect(r.model.hybrid.hasHead).toBe(true);
    expect(r.model.category).toBe('labelled');
    const flagged = await (await Inspector.open(r.model, { engine })).inspect(bottle('test/broken_small', 1, 10)[0]!);
    expect(flagged.verdict).toBe('anomalous');

    const noGood = labelledFolder(join(tmp.dir, 'no-good'), { fine: bottle('train/good', 3, 140), broken_small: bottle('test/broken_small', 2, 12) });
    const err = await trainHybrid({ engine, data: noGood }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/no label names the good parts/) });
  });
});
