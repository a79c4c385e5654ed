// Every error thrown at the public API is a LoupeError with a stable code (and `input` naming the file
// where there is one): model files (ModelFileError), datasets (DatasetError), images, weights, the engine,
// options, aborts. Each case below calls '@loupe/core' (src/index.ts) the way a user's mistake would.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as core from '../src/index.js';
import { DatasetError, Engine, Inspector, isLoupeError, LoupeError, ModelFileError, type LoupeErrorCode, type OneClassModel, type SvmModel } from '../src/index.js';
import { bottle, bottleSkipReason } from './support/bottle.js';
import { skipNote, tempDir } from './support/env.js';

const tmp = tempDir('loupe-errors-');
afterAll(() => tmp.cleanup());
const missing = (name: string): string => join(tmp.dir, 'missing', name);
const tinyPng = (): Promise<Buffer> => sharp(Buffer.alloc(8 * 8 * 3, 90), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();

interface Case {
  readonly what: string;
  readonly call: () => unknown;
  readonly code: LoupeErrorCode;
  /** The subclass expected beyond LoupeError. */
  readonly kind?: abstract new (...args: never[]) => LoupeError;
  /** What `input` must name. */
  readonly input?: string;
}

async function check(c: Case): Promise<void> {
  let thrown: unknown;
  try {
    await c.call();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `${c.what}: nothing thrown`).toBeDefined();
  expect(isLoupeError(thrown), `${c.what}: ${String(thrown)}`).toBe(true);
  const e = thrown as LoupeError;
  expect(e, c.what).toBeInstanceOf(LoupeError);
  expect(e.code, `${c.what}: ${e.message}`).toBe(c.code);
  if (c.kind) expect(e, c.what).toBeInstanceOf(c.kind);
  if (c.input !== undefined) expect(e.input, c.what).toBe(c.input);
  expect(e.message.length, c.what).toBeGreaterThan(10);
}

describe('errors at the public API without the engine', () => {
  const garbage = join(tmp.dir, 'garbage.loupe');
  writeFileSync(garbage, 'this is a text file, not a model\n');
  mkdirSync(join(tmp.dir, 'empty'), { recursive: true });
  writeFileSync(join(tmp.dir, 'bad-groups.csv'), 'file,group\n"unterminated,1\n');
  const cases: Case[] = [
    { what: 'loadModel: no such file', call: () => core.loadModel(missing('m.loupe')), code: 'MODEL_READ', kind: ModelFileError, input: missing('m.loupe') },
    { what: 'loadModel: not a model', call: () => core.loadModel(garbage), code: 'MODEL_NOT_A_MODEL', kind: ModelFileError, input: garbage },
    { what: 'loadModel: bytes that are no model', call: () => core.loadModel(new Uint8Array(64), { name: 'upload' }), code: 'MODEL_NOT_A_MODEL', kind: ModelFileError, input: 'upload' },
    { what: 'readModelSummary: no such file', call: () => core.readModelSummary(missing('s.loupe')), code: 'MODEL_READ', kind: ModelFileError },
    { what: 'scanDataset: no such folder', call: () => core.scanDataset(missing('ds')), code: 'DATASET_NOT_FOUND', kind: DatasetError },
    { what: 'scanImageFolder: an empty folder', call: () => core.scanImageFolder(join(tmp.dir, 'empty')), code: 'DATASET_EMPTY', kind: DatasetError },
    { what: 'scanMvtecOneClass: not an MVTec category', call: () => core.scanMvtecOneClass(join(tmp.dir, 'empty')), code: 'DATASET_LAYOUT', kind: DatasetError },
    { what: 'stratifiedSplit: ratio 0', call: () => core.stratifiedSplit([{ relPath: 'a', label: 'good' }], { testRatio: 0, seed: 0 }), code: 'SPLIT_INVALID', kind: DatasetError },
    { what: 'kFold: k 1', call: () => core.kFold([{ relPath: 'a', label: 'good' }], { k: 1, seed: 0 }), code: 'SPLIT_INVALID', kind: DatasetError },
    { what: 'loadGroups: no such file', call: () => core.loadGroups(missing('g.csv'), { items: [] }), code: 'GROUPS_FILE', kind: DatasetError },
    { what: 'decodeImage: no such file', call: () => core.decodeImage(missing('a.png')), code: 'IMAGE_READ', kind: core.ImageReadError, input: missing('a.png') },
    { what: 'decodeImage: empty buffer', call: () => core.decodeImage({ name: 'frame 9', data: new Uint8Array(0) }), code: 'IMAGE_EMPTY', kind: core.EmptyImageError, input: 'frame 9' },
    { what: 'decodeFullImage: not an image', call: () => core.decodeFullImage(garbage), code: 'IMAGE_DECODE', kind: core.ImageDecodeError, input: garbage },
    { what: 'decodeImage: bad fit', call: () => core.decodeImage(garbage, { fit: 'stretch' as never }), code: 'INVALID_ARGUMENT' },
    { what: 'loadMask: no such file', call: () => core.loadMask(missing('m.png'), 4, 4), code: 'IMAGE_READ' },
    { what: 'renderMaskPng: map of the wrong size', call: () => core.renderMaskPng({ width: 8, height: 8, values: new Float32Array(10), threshold: 1 }), code: 'INVALID_ARGUMENT' },
    { what: 'renderHeatmapPng: map of the wrong size', call: async () => core.renderHeatmapPng(await tinyPng(), { width: 8, height: 8, values: new Float32Array(10), threshold: 1 }), code: 'INVALID_ARGUMENT' },
    { what: 'renderHeatmapPng: not an image', call: () => core.renderHeatmapPng(garbage, { width: 1, height: 1, values: new Float32Array(1), threshold: 1 }), code: 'IMAGE_DECODE', input: garbage },
    { what: 'rgbToCaffe: wrong length', call: () => core.rgbToCaffe(new Uint8Array(5)), code: 'INVALID_ARGUMENT' },
    { what: 'tapElements: unknown tap', call: () => core.tapElements('res9z' as never), code: 'INVALID_ARGUMENT' },
    { what: 'auroc: lengths differ', call: () => core.auroc([1, 2], [1]), code: 'INVALID_ARGUMENT' },
    { what: 'classificationMetrics: lengths differ', call: () => core.classificationMetrics(['a'], ['a', 'b']), code: 'INVALID_ARGUMENT' },
    { what: 'configureThreads: 0', call: () => core.configureThreads(0), code: 'INVALID_ARGUMENT' },
    { what: 'resolveWeights: no such path', call: () => core.resolveWeights({ path: missing('w') }), code: 'WEIGHTS_MISSING', kind: core.WeightsError },
    { what: 'Engine.open: no such weights', call: () => Engine.open({ weights: missing('model.json') }), code: 'WEIGHTS_MISSING', kind: core.WeightsError },
    { what: 'Inspector.open: no such model', call: () => Inspector.open(missing('m.loupe'), { engine: undefined as never }), code: 'MODEL_READ', kind: ModelFileError },
  ];
  for (const c of cases) it(c.what, () => check(c));
});

const skip = bottleSkipReason();
if (skip) skipNote('errors with the engine', skip);

describe.skipIf(!!skip)('errors at the public API with the engine', () => {
  let engine: Engine;
  let model: OneClassModel;
  let svm: SvmModel;
  let file: string;
  let inspector: Inspector;
  const good = (): string[] => bottle('train/good', 4, 150);
  const labelled = (): { path: string; label: string }[] => [
    { path: good()[0]!, label: 'good' },
    { path: good()[1]!, label: 'scratch' },
  ];

  beforeAll(async () => {
    engine = await Engine.open();
    model = (await core.trainOneClass({ engine, good: good(), coresetRatio: 0.05 })).model;
    svm = (await core.trainClassifier({ engine, data: labelled(), cache: false })).model;
    file = join(tmp.dir, 'm.loupe');
    await core.saveModel(file, model);
    inspector = await Inspector.open(model, { engine });
  });

  const cases: Case[] = [
    { what: 'Inspector.open: no engine', call: () => Inspector.open(file, { engine: undefined as never }), code: 'INVALID_ARGUMENT' },
    { what: 'Inspector.open: a truncated file', call: () => Inspector.open(readFileSync(file).subarray(0, 300), { engine, name: 'cut' }), code: 'MODEL_TRUNCATED', kind: ModelFileError, input: 'cut' },
    { what: 'saveModel: no such folder', call: () => core.saveModel(missing('out/m.loupe'), model), code: 'MODEL_WRITE', kind: ModelFileError, input: missing('out/m.loupe') },
    { what: 'inspect: no such image', call: () => inspector.inspect(missing('p.png')), code: 'IMAGE_READ', input: missing('p.png') },
    { what: 'inspect: over the pixel limit', call: () => inspector.inspect(good()[0]!, { limitInputPixels: 1000 }), code: 'IMAGE_TOO_LARGE', kind: core.ImageTooLargeError },
    { what: 'inspect: aborted', call: () => inspector.inspect(good()[0]!, { signal: AbortSignal.abort() }), code: 'ABORTED', kind: core.AbortError },
    {
      what: 'inspectMany: batchSize 0',
      call: async () => {
        for await (const _ of inspector.inspectMany(good(), { batchSize: 0 }));
      },
      code: 'INVALID_ARGUMENT',
    },
    { what: 'trainOneClass: coresetRatio 2', call: () => core.trainOneClass({ engine, good: good(), coresetRatio: 2 }), code: 'INVALID_ARGUMENT' },
    { what: 'trainOneClass: an empty folder', call: () => core.trainOneClass({ engine, good: join(tmp.dir, 'empty') }), code: 'DATASET_EMPTY', kind: DatasetError },
    { what: 'trainOneClass: a missing image', call: () => core.trainOneClass({ engine, good: [good()[0]!, missing('x.png')] }), code: 'IMAGE_READ', input: missing('x.png') },
    { what: 'trainClassifier: no such folder', call: () => core.trainClassifier({ engine, data: missing('ds') }), code: 'DATASET_NOT_FOUND', kind: DatasetError },
    { what: 'trainClassifier: one label', call: () => core.trainClassifier({ engine, data: [labelled()[0]!], cache: false }), code: 'DATASET_LAYOUT', kind: DatasetError },
    { what: 'trainClassifier: split 1.5', call: () => core.trainClassifier({ engine, data: labelled(), holdOut: { split: 1.5 }, cache: false }), code: 'SPLIT_INVALID', kind: DatasetError },
    { what: 'trainClassifier: lambda -1', call: () => core.trainClassifier({ engine, data: labelled(), lambda: -1, cache: false }), code: 'INVALID_ARGUMENT' },
    { what: 'trainClassifier: epochs 0', call: () => core.trainClassifier({ engine, data: labelled(), epochs: 0, cache: false }), code: 'INVALID_ARGUMENT' },
    { what: 'trainClassifier: a feature-map layer', call: () => core.trainClassifier({ engine, data: labelled(), layer: 'res5c' as never, cache: false }), code: 'INVALID_ARGUMENT' },
    { what: 'trainClassifier: unknown coding', call: () => core.trainClassifier({ engine, data: labelled(), coding: 'ecoc' as never, cache: false }), code: 'INVALID_ARGUMENT' },
    { what: 'calibrate: targetFpr 0.9', call: () => core.calibrate(model, { engine, good: good(), targetFpr: 0.9 }), code: 'INVALID_ARGUMENT' },
    { what: 'calibrate: no good images', call: () => core.calibrate(model, { engine, good: [] }), code: 'INVALID_ARGUMENT' },
    { what: 'evaluateOneClass: no such folder', call: () => core.evaluateOneClass(inspector, missing('bottle')), code: 'DATASET_NOT_FOUND', kind: DatasetError },
    { what: 'evaluateClassifier: no such folder', call: () => core.evaluateClassifier(svm, missing('ds'), { engine }), code: 'DATASET_NOT_FOUND', kind: DatasetError },
    { what: 'evaluateClassifier: a one-class model', call: () => core.evaluateClassifier(model as never, missing('ds'), { engine }), code: 'INVALID_ARGUMENT' },
    { what: 'extractFeatures: unknown layer', call: () => core.extractFeatures(good(), { engine, layer: 'res9z' as never }), code: 'INVALID_ARGUMENT' },
    { what: 'classifyImageNet: no such image', call: () => core.classifyImageNet([missing('cat.jpg')], { engine }), code: 'IMAGE_READ' },
    { what: 'engine.run: wrong input size', call: () => engine.run({ data: new Float32Array(5), batch: 1 }, ['fc1000']), code: 'INVALID_ARGUMENT' },
    { what: 'engine.openSession: bad backend', call: () => engine.openSession({ backend: 'tpu' as never }), code: 'ENGINE', kind: core.EngineError },
  ];
  for (const c of cases) it(c.what, () => check(c));
});
