// INT8 through core, with the real engine and real MVTec bottle images: calibration is deterministic in the
// images (not their order), an int8 SVM's calibration is stored and read back, its features are cached apart
// from fp32's, evaluation runs the model's own precision, and a damaged calibration in a file is refused
// naming the field. (The CLI/server agreement is apps/cli/test/int8.test.ts.)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  calibrateInt8,
  Engine,
  engineForModel,
  evaluateClassifier,
  LoupeError,
  loadModel,
  saveModel,
  trainClassifier,
  type SvmModel,
} from '../../src/index.js';
import { bottle, bottleSkipReason, labelledFolder } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('int8', skip);

const tmp = tempDir('loupe-int8-');
afterAll(() => tmp.cleanup());

describe.skipIf(!!skip)('INT8 in core', () => {
  let engine: Engine;
  let data: string;
  let model: SvmModel;
  let file: string;

  beforeAll(async () => {
    engine = await Engine.open({ threads: 2 });
    data = labelledFolder(join(tmp.dir, 'data'), { good: bottle('train/good', 8, 50), broken: bottle('test/broken_large', 8) });
  });

  it('calibrateInt8 is deterministic in the set of images, whatever their order', async () => {
    const images = bottle('train/good', 6, 100);
    const a = await calibrateInt8(engine, images);
    const b = await calibrateInt8(engine, [...images].reverse(), { batchSize: 4 });
    expect(a.weightsHash).toBe(engine.weightsHash);
    expect(a.method).toBe('mse');
    expect(b).toEqual(a);
    const p = await calibrateInt8(engine, images, { method: 'percentile' });
    expect(p.method).toBe('percentile');
    expect(p.ranges).not.toEqual(a.ranges);
  });

  it('trainClassifier in int8 stores its calibration; the file round trip keeps it; evaluation runs it', async () => {
    const cache = join(tmp.dir, 'cache');
    const t = await trainClassifier({ engine, data, precision: 'int8', holdOut: { split: 0.25 }, seed: 0, cache });
    model = t.model;
    expect(model.int8Calibration?.weightsHash).toBe(engine.weightsHash);
    file = join(tmp.dir, 'svm-int8.loupe');
    await saveModel(file, model);
    const back = await loadModel(file);
    expect(back.int8Calibration).toEqual(model.int8Calibration);
    // int8 features live beside fp32's, under the calibration's id.
    const variants = readdirSync(join(cache, engine.weightsHash.slice(0, 16)));
    expect(variants.some((v) => /^fc1000\.squash\.d\d+\.int8-[0-9a-f]{16}$/.test(v))).toBe(true);
    const fp = await trainClassifier({ engine, data, holdOut: { split: 0.25 }, seed: 0, cache });
    expect(fp.model.int8Calibration).toBeUndefined();
    expect(readdirSync(join(cache, engine.weightsHash.slice(0, 16))).some((v) => /^fc1000\.squash\.d\d+$/.test(v))).toBe(true);
    // Evaluation on the held-out images gives the trainer's own held-out figures: same session, same features.
    const e = await evaluateClassifier(back as SvmModel, t.heldOut!.items, { engine, cache: false });
    expect(e.metrics.accuracy).toBeCloseTo(t.heldOut!.metrics.accuracy, 10);
    expect(e.predicted).toEqual(t.heldOut!.predicted);
    // engineForModel: the model's session, and back to fp32 for a model without a calibration.
    const on = engineForModel(engine, back);
    expect(on.precision).toBe('int8');
    expect(engineForModel(on, fp.model).precision).toBe('fp32');
  });

  it('a damaged calibration in a model file is refused, naming the field', async () => {
    const text = readFileSync(file);
    const nl = text.indexOf(10);
    const header = JSON.parse(text.subarray(0, nl).toString('utf8')) as Record<string, unknown>;
    const cal = header['int8Calibration'] as { ranges: Record<string, number> };
    cal.ranges['res4f'] = -1;
    const bad = join(tmp.dir, 'bad.loupe');
    writeFileSync(bad, Buffer.concat([Buffer.from(JSON.stringify(header)), text.subarray(nl)]));
    const err = await loadModel(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoupeError);
    expect(err).toMatchObject({ code: 'MODEL_CORRUPT', field: 'int8Calibration.ranges.res4f' });
  });

  it("precision 'int8' without a calibration is a clear error", () => {
    expect(() => engine.openSession({ precision: 'int8' })).toThrow(/int8Calibration/);
  });
});
