// The Inspector with the real engine, real weights and real MVTec bottle images: opening a model (file,
// bytes), one image and many (order, batching, a bad image in the middle, async input), the verdict
// rules of both model kinds, the CNN weights check, and a caller's TapRunner.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  Engine,
  Inspector,
  isImageError,
  LoupeError,
  ModelFileError,
  saveModel,
  trainClassifier,
  trainOneClass,
  type ImageSource,
  type InspectionOutcome,
  type InspectionResult,
  type OneClassModel,
  type SvmModel,
  type TapRunner,
} from '../../src/index.js';
import { bottle, bottleSkipReason, labelledFolder } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('Inspector', skip);

const tmp = tempDir('loupe-inspector-');
afterAll(() => tmp.cleanup());

/** A TapRunner over an engine that records every call (views per batch, taps asked for). */
function recordingRunner(engine: Engine): TapRunner & { calls: { batch: number; taps: string[] }[] } {
  const calls: { batch: number; taps: string[] }[] = [];
  return {
    calls,
    run(input, taps) {
      calls.push({ batch: input.batch, taps: [...taps] });
      return engine.run(input, taps);
    },
  };
}

async function collect(it: AsyncIterable<InspectionOutcome>): Promise<InspectionOutcome[]> {
  const out: InspectionOutcome[] = [];
  for await (const o of it) out.push(o);
  return out;
}

describe.skipIf(!!skip)('Inspector', () => {
  let engine: Engine;
  let oneClass: OneClassModel;
  let oneClassFile: string;
  let svm: SvmModel;
  let svmFile: string;
  let corrupt: string;
  // Images no model below was trained on.
  const good = (): string[] => bottle('test/good', 4);
  const broken = (): string[] => bottle('test/broken_large', 4, 10);

  beforeAll(async () => {
    engine = await Engine.open();
    oneClass = (await trainOneClass({ engine, good: bottle('train/good', 12), coresetRatio: 0.05, category: 'bottle' })).model;
    oneClassFile = join(tmp.dir, 'bottle.loupe');
    await saveModel(oneClassFile, oneClass);
    const data = labelledFolder(join(tmp.dir, 'svm-data'), {
      good: bottle('train/good', 8, 20),
      broken_large: bottle('test/broken_large', 8),
      contamination: bottle('test/contamination', 8),
    });
    svm = (await trainClassifier({ engine, data, cache: false })).model;
    svmFile = join(tmp.dir, 'bottle-svm.loupe');
    await saveModel(svmFile, svm);
    // The first 300 bytes of a real PNG: the header reads, the pixels do not.
    corrupt = join(tmp.dir, 'corrupt.png');
    writeFileSync(corrupt, readFileSync(bottle('test/good', 1, 5)[0]!).subarray(0, 300));
  });

  it('opens a model file and the same model from its bytes; both answer the same', async () => {
    const fromFile = await Inspector.open(oneClassFile, { engine });
    const fromBytes = await Inspector.open(readFileSync(oneClassFile), { engine, name: 'bottle (bytes)' });
    expect(fromFile.kind).toBe('one-class');
    expect(fromFile.source).toBe(oneClassFile);
    expect(fromBytes.source).toBe('bottle (bytes)');
    expect(fromBytes.model.category).toBe('bottle');
    expect(fromBytes.thresholds).toEqual(fromFile.thresholds);
    expect(fromFile.thresholds.image).toBe(oneClass.patchcore.thresholds.image);
    expect(fromFile.taps).toEqual(['res3d', 'res4f']);
    expect(fromFile.classes).toEqual([]);
    const image = broken()[0]!;
    const a = await fromFile.inspect(image);
    const b = await fromBytes.inspect(image);
    expect(a.name).toBe(image);
    expect(b.rawScore).toBe(a.rawScore);
    expect(b.verdict).toBe(a.verdict);
    // Bytes that are no model fail with the given name.
    const err = await Inspector.open(new Uint8Array([1, 2, 3, 4]), { engine, name: 'upload #7' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as ModelFileError).input).toBe('upload #7');
  });

  it('one-class: anomalous exactly when score >= 0.5 (rawScore >= the image threshold), no defect type, maps on request', async () => {
    const inspector = await Inspector.open(oneClass, { engine });
    const results: InspectionResult[] = [];
    for (const f of [...good(), ...broken()]) results.push(await inspector.inspect(f));
    const t = inspector.thresholds.image;
    for (const r of results) {
      expect(r.verdict === 'anomalous').toBe(r.score >= 0.5);
      expect(r.verdict === 'anomalous').toBe(r.rawScore >= t);
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.score).toBeLessThan(1);
      expect(r.defectType).toBeNull();
      expect(r.classScores).toBeUndefined();
      expect(r.heatmap).toBeUndefined();
      expect(r.peak!.x).toBeGreaterThanOrEqual(0);
      expect(r.peak!.x).toBeLessThan(256);
      expect(r.timings.batchSize).toBe(1);
    }
    // Large breakages are found, and every broken bottle scores above every good one.
    expect(results.slice(4).every((r) => r.verdict === 'anomalous')).toBe(true);
    expect(Math.min(...results.slice(4).map((r) => r.rawScore))).toBeGreaterThan(Math.max(...results.slice(0, 4).map((r) => r.rawScore)));
    // The score is the raw distance normalised at the threshold.
    for (const r of results) expect(r.score).toBeCloseTo(r.rawScore < t ? (0.5 * r.rawScore) / t : 1 - (0.5 * t) / r.rawScore, 12);

    const withMap = await inspector.inspect(broken()[0]!, { heatmap: true });
    const map = withMap.heatmap!;
    expect([map.width, map.height]).toEqual([256, 256]);
    expect(map.values.length).toBe(256 * 256);
    expect(map.threshold).toBe(inspector.thresholds.pixel);
    let max = -Infinity;
    for (const v of map.values) max = Math.max(max, v);
    expect(map.peak.value).toBeCloseTo(max, 5);
    expect(map.values[map.peak.y * map.width + map.peak.x]).toBeCloseTo(max, 5);
    expect(map.values.some((v) => v >= map.threshold)).toBe(true);
  });

  it('SVM: anomalous exactly when score >= 0.5, defectType the best defect class, class scores summing to 1', async () => {
    const inspector = await Inspector.open(svmFile, { engine });
    expect(inspector.kind).toBe('svm');
    expect(inspector.classes).toEqual(['broken_large', 'contamination', 'good']);
    expect(inspector.taps).toEqual(['fc1000']);
    expect(inspector.thresholds).toEqual({ image: 0 });
    const images = [...good(), ...broken(), ...bottle('test/contamination', 4, 12)];
    const verdicts: string[] = [];
    for (const f of images) {
      const r = await inspector.inspect(f, { heatmap: true });
      verdicts.push(r.verdict);
      expect(r.verdict === 'anomalous').toBe(r.score >= 0.5);
      expect(r.score).toBeCloseTo(1 / (1 + Math.exp(-r.rawScore)), 12); // threshold 0
      const cs = r.classScores!;
      expect(cs.map((c) => c.name)).toEqual(inspector.classes);
      expect(cs.reduce((a, c) => a + c.score, 0)).toBeCloseTo(1, 12);
      for (const c of cs) expect(c.score).toBeGreaterThanOrEqual(0);
      const bestDefect = cs.filter((c) => c.name !== 'good').sort((a, b) => b.score - a.score)[0]!;
      expect(r.defectType).toBe(r.verdict === 'anomalous' ? bestDefect.name : null);
      expect(r.heatmap).toBeUndefined(); // SVMs make no maps
      expect(r.peak).toBeUndefined();
    }
    // Both verdicts occur on these images (the rule above is not vacuous), and most are right.
    expect(verdicts).toContain('good');
    expect(verdicts).toContain('anomalous');
    const right = verdicts.filter((v, i) => v === (i < 4 ? 'good' : 'anomalous')).length;
    expect(right).toBeGreaterThanOrEqual(9);
  });

  it('inspectMany: input order, batches through the engine, a corrupt image in the middle gets its IMAGE_ error', async () => {
    const inspector = await Inspector.open(oneClassFile, { engine });
    const files = [...good().slice(0, 3), corrupt, ...broken().slice(0, 2)];
    const buffer = readFileSync(broken()[3]!);
    const inputs: ImageSource[] = [...files, buffer];
    const runner = recordingRunner(engine);
    const progress: [number, number | undefined][] = [];
    const outcomes = await collect(inspector.inspectMany(inputs, { batchSize: 3, runner, onProgress: (d, t) => progress.push([d, t]) }));

    expect(outcomes.map((o) => o.index)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(outcomes.map((o) => o.name)).toEqual([...files, '<buffer #6>']);
    const bad = outcomes[3]!;
    expect(bad.result).toBeUndefined();
    expect(bad.error).toBeInstanceOf(LoupeError);
    expect(bad.error!.code).toBe('IMAGE_DECODE');
    expect(bad.error!.input).toBe(corrupt);
    expect(isImageError(bad.error)).toBe(true);
    // Batches of 3 images; the corrupt one never reaches the engine.
    expect(runner.calls.map((c) => c.batch)).toEqual([3, 2, 1]);
    expect(runner.calls.every((c) => c.taps.join() === 'res3d,res4f')).toBe(true);
    expect(outcomes.map((o) => o.result?.timings.batchSize)).toEqual([3, 3, 3, undefined, 2, 2, 1]);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7].map((d) => [d, 7]));
    // Each result is the one inspect() gives for that image alone.
    for (const [i, o] of outcomes.entries()) {
      if (i === 3) continue;
      const alone = await inspector.inspect(inputs[i]!);
      expect(o.result!.verdict).toBe(alone.verdict);
      expect(o.result!.rawScore).toBeCloseTo(alone.rawScore, 3);
    }
    expect(outcomes.slice(0, 3).every((o) => o.result!.verdict === 'good')).toBe(true);
    expect(outcomes.slice(4).every((o) => o.result!.verdict === 'anomalous')).toBe(true);

    // onInvalidImage 'throw': the corrupt image fails the iteration.
    const err = await collect(inspector.inspectMany(files, { batchSize: 3, onInvalidImage: 'throw' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IMAGE_DECODE', input: corrupt });
  });

  it('inspectMany takes an async iterable (paths, named buffers) and cannot know the total', async () => {
    const inspector = await Inspector.open(svm, { engine });
    const paths = good().slice(0, 2);
    const named = { name: 'camera-3/frame-0042.png', data: readFileSync(broken()[0]!) };
    async function* frames(): AsyncGenerator<ImageSource> {
      for (const p of paths) {
        await new Promise((r) => setTimeout(r, 5));
        yield p;
      }
      yield named;
      yield join(tmp.dir, 'no-such-frame.png');
    }
    const totals: (number | undefined)[] = [];
    const outcomes = await collect(inspector.inspectMany(frames(), { batchSize: 2, onProgress: (_, t) => totals.push(t) }));
    expect(outcomes.map((o) => o.name)).toEqual([...paths, named.name, join(tmp.dir, 'no-such-frame.png')]);
    expect(outcomes.slice(0, 3).every((o) => o.result !== undefined)).toBe(true);
    expect(outcomes[2]!.result!.name).toBe(named.name);
    expect(outcomes[3]!.error!.code).toBe('IMAGE_READ');
    expect(totals).toEqual([undefined, undefined, undefined, undefined]);
    const alone = await inspector.inspect(named);
    expect(outcomes[2]!.result!.rawScore).toBeCloseTo(alone.rawScore, 4);
  });

  it('refuses a model trained on other CNN weights (MODEL_INCOMPATIBLE naming both hashes), whatever its kind', async () => {
    const other = await Engine.open({ seededWeights: 1 });
    expect(other.weightsHash).not.toBe(engine.weightsHash);
    for (const [model, file] of [
      [oneClass, oneClassFile],
      [svm, svmFile],
    ] as const) {
      for (const source of [file, readFileSync(file), model]) {
        const err = await Inspector.open(source, { engine: other }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ModelFileError);
        const e = err as ModelFileError;
        expect(e.code).toBe('MODEL_INCOMPATIBLE');
        expect(e.field).toBe('weightsHash');
        expect(e.message).toContain(model.weightsHash.slice(0, 12));
        expect(e.message).toContain(other.weightsHash.slice(0, 12));
        if (typeof source === 'string') expect(e.input).toBe(file);
      }
    }
  });

  it('uses the TapRunner it is given (the server batcher seam) instead of its engine', async () => {
    for (const model of [oneClass, svm]) {
      const inspector = await Inspector.open(model, { engine });
      const runner = recordingRunner(engine);
      const image = broken()[1]!;
      const viaRunner = await inspector.inspect(image, { runner });
      expect(runner.calls).toEqual([{ batch: 1, taps: [...inspector.taps] }]);
      const viaEngine = await inspector.inspect(image);
      expect(viaRunner.rawScore).toBe(viaEngine.rawScore);
      // What the runner answers is what the model reads.
      const failing: TapRunner = {
        run: () => Promise.reject(new LoupeError('ENGINE', 'the batcher is shutting down')),
      };
      await expect(inspector.inspect(image, { runner: failing })).rejects.toThrow('the batcher is shutting down');
      const outcomes = inspector.inspectMany([image], { runner: failing });
      await expect(collect(outcomes)).rejects.toMatchObject({ code: 'ENGINE' });
      const zeros: TapRunner = {
        run: async (input, taps) => Object.fromEntries(taps.map((t) => [t, new Float32Array((input.batch * (t === 'res3d' ? 28 * 28 * 512 : t === 'res4f' ? 14 * 14 * 1024 : 1000)))])) as never,
      };
      const blank = await inspector.inspect(image, { runner: zeros });
      expect(blank.rawScore).not.toBe(viaEngine.rawScore);
    }
  });
});
