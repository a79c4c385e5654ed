import { existsSync, lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { referenceTrainLinearSvms } from '../../src/classifier/reference-sgd.js';
import { predictSvm, trainSvmClassifier, type SvmClassifier } from '../../src/classifier/svm.js';
import { writeFileAtomic } from '../../src/modelfile/atomic.js';
import { ModelFileError } from '../../src/modelfile/errors.js';
import { decodeModel, encodeModel, MODEL_FORMAT_VERSION, readModelFile, readModelHeader, writeModelFile } from '../../src/modelfile/format.js';
import { loadSvmModel, saveSvmModel, type SvmModelMeta } from '../../src/modelfile/svm-model.js';
import { blobs } from '../classifier/features-fixture.js';
import { tempDir } from '../support/env.js';

const t = tempDir('loupe-modelfile-');
afterAll(() => t.cleanup());

const meta: SvmModelMeta = {
  weightsHash: 'a'.repeat(64),
  preprocessing: { mode: 'caffe', size: 224, fit: 'squash', meanBgr: [103.939, 116.779, 123.68] },
  metrics: { accuracy: 1, meanPerClassAccuracy: 1 },
  createdAt: '2024-01-02T03:04:05.000Z',
  extra: { dataset: 'synthetic' },
};

async function trained(seed = 1): Promise<SvmClassifier> {
  const b = blobs({ classes: ['good', 'dulled', 'braided'], perClass: 10, dim: 12, seed: 4 });
  return trainSvmClassifier(b.x, b.labels, { trainer: referenceTrainLinearSvms, trainerName: 'reference', epochs: 5, lambda: 1e-2, seed, classes: b.classes });
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; field: string | undefined; message: string; input: string }> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModelFileError);
  const m = e as ModelFileError;
  return { code: m.code, field: m.field, message: m.message, input: m.input };
}

describe('generic container', () => {
  it('round-trips sections of every dtype; the header is the first line and self-describing', async () => {
    const file = join(t.dir, 'generic.loupe');
    const f32 = Float32Array.from([1.5, -2, 3.25]);
    const i32 = Int32Array.from([7, -8]);
    const i8 = Int8Array.from([-1, 0, 1]);
    const u8 = Uint8Array.from([255, 1, 2, 3, 4]);
    const res = await writeModelFile(file, { kind: 'one-class', createdAt: 'x', note: 'hi' }, [
      { name: 'a', shape: [3], data: f32 },
      { name: 'b', shape: [2, 1], data: i32 },
      { name: 'c', shape: [3], data: i8 },
      { name: 'd', shape: [5], data: u8 },
    ]);
    const raw = readFileSync(file);
    expect(res.bytes).toBe(raw.length);
    const firstLine = raw.subarray(0, raw.indexOf(0x0a)).toString('utf8');
    expect(firstLine.startsWith('{"magic":"loupe-model","formatVersion":1,"kind":"one-class"')).toBe(true);
    const header = JSON.parse(firstLine);
    expect(header.payload.sha256).toBe(res.sha256);
    expect(header.payload.sections.map((s: { byteOffset: number }) => s.byteOffset % 8)).toEqual([0, 0, 0, 0]);
    const m = await readModelFile(file);
    expect(m.header.note).toBe('hi');
    expect(Array.from(m.sections.get('a') as Float32Array)).toEqual([1.5, -2, 3.25]);
    expect(Array.from(m.sections.get('b') as Int32Array)).toEqual([7, -8]);
    expect(Array.from(m.sections.get('c') as Int8Array)).toEqual([-1, 0, 1]);
    expect(Array.from(m.sections.get('d') as Uint8Array)).toEqual([255, 1, 2, 3, 4]);
    expect((await readModelHeader(file)).kind).toBe('one-class');
    expect(readdirSync(t.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses shapes that do not match and reserved fields', () => {
    expect(() => encodeModel({ kind: 'svm' }, [{ name: 'a', shape: [2, 2], data: new Float32Array(3) }])).toThrow(/3 values for shape \[2, 2\]/);
    expect(() => encodeModel({ kind: 'svm', payload: 1 }, [])).toThrow(/payload/);
  });
});

describe('SVM model files', () => {
  it('round-trip: identical predictions and fields; same seed -> same file bytes', async () => {
    const model = await trained();
    const f1 = join(t.dir, 'm1.loupe');
    const f2 = join(t.dir, 'm2.loupe');
    await saveSvmModel(f1, model, meta);
    await saveSvmModel(f2, await trained(), meta);
    expect(readFileSync(f1).equals(readFileSync(f2))).toBe(true);
    await saveSvmModel(f2, await trained(2), meta);
    expect(readFileSync(f1).equals(readFileSync(f2))).toBe(false);

    const loaded = await loadSvmModel(f1, { expectWeightsHash: meta.weightsHash, expectLayer: 'fc1000' });
    expect(loaded.header).toMatchObject({ kind: 'svm', classes: ['good', 'dulled', 'braided'], layer: 'fc1000', weightsHash: meta.weightsHash, preprocessing: meta.preprocessing, metrics: meta.metrics, extra: meta.extra, createdAt: meta.createdAt });
    expect(loaded.header.coding.matrix).toEqual([
      [1, 1, 0],
      [-1, 0, 1],
      [0, -1, -1],
    ]);
    const m = loaded.model;
    expect(m.classes).toEqual(model.classes);
    expect(m.training).toEqual(model.training);
    expect(Buffer.from(m.weights.buffer).equals(Buffer.from(model.weights.buffer))).toBe(true);
    expect(Array.from(m.standardization.mean)).toEqual(Array.from(model.standardization.mean));
    const x = blobs({ classes: ['good', 'dulled', 'braided'], perClass: 10, dim: 12, seed: 4 }).x;
    expect(predictSvm(m, x).labels).toEqual(predictSvm(model, x).labels);
    expect(Array.from(predictSvm(m, x).scores)).toEqual(Array.from(predictSvm(model, x).scores));
  });

  describe('damaged and incompatible files raise typed errors naming file and field', () => {
    let good: Buffer;
    const file = join(t.dir, 'bad.loupe');
    const put = (b: Uint8Array | string): void => writeFileSync(file, b);
    const headerOf = (b: Buffer): Record<string, unknown> => JSON.parse(b.subarray(0, b.indexOf(0x0a)).toString('utf8'));
    const withHeader = (b: Buffer, edit: (h: Record<string, any>) => void): Buffer => {
      const h = headerOf(b);
      edit(h);
      return Buffer.concat([Buffer.from(JSON.stringify(h) + '\n'), b.subarray(b.indexOf(0x0a) + 1)]);
    };

    it('setup', async () => {
      await saveSvmModel(file, await trained(), meta);
      good = readFileSync(file);
    });

    it('missing file', async () => {
      expect(await codeOf(loadSvmModel(join(t.dir, 'nope.loupe')))).toMatchObject({ code: 'MODEL_READ', input: join(t.dir, 'nope.loupe') });
    });

    it('a folder given as the model names it', async () => {
      expect(await codeOf(readModelHeader(t.dir))).toMatchObject({ code: 'MODEL_READ', input: t.dir });
    });

    it('not a model', async () => {
      put('PK\x03\x04 some zip');
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_NOT_A_MODEL', field: 'magic', input: file });
      put('');
      expect((await codeOf(loadSvmModel(file))).code).toBe('MODEL_NOT_A_MODEL');
      put('{"magic":"other"}\n');
      expect((await codeOf(loadSvmModel(file))).code).toBe('MODEL_NOT_A_MODEL');
    });

    it('truncated in the header and in the payload', async () => {
      put(good.subarray(0, 40));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_TRUNCATED', field: 'header' });
      put(good.subarray(0, good.length - 10));
      const e = await codeOf(loadSvmModel(file));
      expect(e).toMatchObject({ code: 'MODEL_TRUNCATED', field: 'payload.byteLength' });
      expect(e.message).toContain(file);
      expect(e.message).toContain('cut off');
    });

    it('flipped payload byte -> checksum', async () => {
      const b = Buffer.from(good);
      b[b.length - 5] = b[b.length - 5]! ^ 0xff;
      put(b);
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'payload.sha256' });
      put(Buffer.concat([good, Buffer.from('xx')]));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'payload.byteLength' });
    });

    it('bad JSON header', async () => {
      const b = Buffer.from(good);
      b[b.indexOf(0x0a) - 1] = 0x2c; // the header's closing '}' becomes ','
      put(b);
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'header' });
    });

    it('newer format, other kind, wrong CNN weights, wrong layer', async () => {
      put(withHeader(good, (h) => (h['formatVersion'] = MODEL_FORMAT_VERSION + 1)));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_INCOMPATIBLE', field: 'formatVersion' });
      put(withHeader(good, (h) => (h['kind'] = 'one-class')));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_INCOMPATIBLE', field: 'kind' });
      put(withHeader(good, (h) => (h['kind'] = 'forest')));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'kind' });
      put(good);
      expect(await codeOf(loadSvmModel(file, { expectWeightsHash: 'b'.repeat(64) }))).toMatchObject({ code: 'MODEL_INCOMPATIBLE', field: 'weightsHash' });
      expect(await codeOf(loadSvmModel(file, { expectLayer: 'avg_pool' }))).toMatchObject({ code: 'MODEL_INCOMPATIBLE', field: 'layer' });
    });

    it('inconsistent lengths and fields', async () => {
      put(withHeader(good, (h) => (h['dim'] = 13)));
      expect((await codeOf(loadSvmModel(file))).field).toBe('svm');
      put(withHeader(good, (h) => (h['classes'] = ['good', 'dulled'])));
      expect((await codeOf(loadSvmModel(file))).field).toBe('coding.classes');
      put(withHeader(good, (h) => (h['coding'].matrix[0][0] = 2)));
      expect((await codeOf(loadSvmModel(file))).field).toBe('coding.matrix');
      put(withHeader(good, (h) => (h['payload'].sections[2].shape = [3, 13])));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'payload.sections[2].byteLength' });
      put(withHeader(good, (h) => (h['svm'].weights = 'nothing')));
      expect((await codeOf(loadSvmModel(file))).field).toBe('svm.weights');
      put(withHeader(good, (h) => delete h['weightsHash']));
      expect((await codeOf(loadSvmModel(file))).field).toBe('weightsHash');
      put(withHeader(good, (h) => (h['decoding'] = 'majority')));
      expect(await codeOf(loadSvmModel(file))).toMatchObject({ code: 'MODEL_CORRUPT', field: 'decoding' });
    });

    it('a file from before the decoding field decodes as it was trained (loss-weighted)', async () => {
      expect(headerOf(good)['decoding']).toBe('vote');
      put(withHeader(good, (h) => delete h['decoding']));
      const old = (await loadSvmModel(file)).model;
      expect(old.decoding).toBe('lossweighted');
      const x = blobs({ classes: ['good', 'dulled', 'braided'], perClass: 10, dim: 12, seed: 4 }).x;
      const want = predictSvm({ ...(await trained()), decoding: 'lossweighted' }, x);
      expect(Array.from(predictSvm(old, x).scores)).toEqual(Array.from(want.scores));
    });

    it('decodeModel works on bytes too', () => {
      expect(decodeModel(good, 'mem').header.kind).toBe('svm');
      expect(() => decodeModel(good.subarray(0, 100), 'mem')).toThrow(/mem: header/);
    });
  });
});

describe('writeFileAtomic', () => {
  it('replaces the target in one step and leaves no temp files', async () => {
    const f = join(t.dir, 'atomic.txt');
    await writeFileAtomic(f, 'one');
    await writeFileAtomic(f, 'two');
    expect(readFileSync(f, 'utf8')).toBe('two');
    expect(readdirSync(t.dir).some((n) => n.includes('atomic.txt.') && n.endsWith('.tmp'))).toBe(false);
  });
  it('writes through a symbolic link to its target; the link stays a link', async () => {
    const target = join(t.dir, 'v3.txt');
    const link = join(t.dir, 'current.txt');
    await writeFileAtomic(target, 'v3');
    symlinkSync(target, link);
    await writeFileAtomic(link, 'v3 updated');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('v3 updated');
    // a chain of links whose end does not exist yet: the end is created, both links stay links
    symlinkSync('chain-b', join(t.dir, 'chain-a'));
    symlinkSync('chain-c', join(t.dir, 'chain-b'));
    await writeFileAtomic(join(t.dir, 'chain-a'), 'end');
    expect(lstatSync(join(t.dir, 'chain-a')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(t.dir, 'chain-b')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(t.dir, 'chain-c'), 'utf8')).toBe('end');
  });
  it('replace: false never overwrites: of writers racing for one name exactly one wins, the others get EEXIST', async () => {
    const f = join(t.dir, 'version-7.loupe');
    const results = await Promise.allSettled(['a', 'b', 'c', 'd'].map((w) => writeFileAtomic(f, `writer ${w}`, 0o644, { replace: false })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(['EEXIST', 'EEXIST', 'EEXIST']);
    expect(readFileSync(f, 'utf8')).toMatch(/^writer [abcd]$/);
    expect(readdirSync(t.dir).some((n) => n.includes('version-7.loupe.') && n.endsWith('.tmp'))).toBe(false);
  });
  it('fails cleanly into a missing folder (nothing created)', async () => {
    await expect(writeFileAtomic(join(t.dir, 'no', 'such', 'x'), 'y')).rejects.toThrow();
    expect(existsSync(join(t.dir, 'no'))).toBe(false);
    await expect(saveSvmModel(join(t.dir, 'no', 'm.loupe'), await trained(), meta)).rejects.toMatchObject({ code: 'MODEL_WRITE' });
  });
});
