// The feature cache with the real engine and real MVTec bottle images: a second pass runs no engine
// batch and returns the same floats; damaged entries are recomputed and rewritten; the key includes
// content, layer and fit (not the path). Also the conv1 kernel reader used by the report.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import {
  contentHash,
  Engine,
  extractFeatures,
  extractFeaturesCached,
  FeatureCache,
  featureCacheDir,
  ImageReadError,
  readConv1Kernel,
  readTfjsTensor,
  resolveWeights,
  WeightsError,
} from '../src/internal.js';
import { engineSkipReason, testBackend } from './support/engine-env.js';
import { sharedDir, skipNote, tempDir } from './support/env.js';

const bottle = join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle');
const skip = !existsSync(join(bottle, 'test', 'good')) ? `MVTec bottle images not found in ${bottle}` : engineSkipReason();
if (skip) skipNote('feature cache', skip);

const tmp = tempDir('loupe-fcache-test-');
afterAll(() => tmp.cleanup());

function pick(dir: string, n: number): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(0, n).map((f) => join(dir, f));
}

describe('featureCacheDir', () => {
  it('lives under $LOUPE_HOME', () => {
    expect(featureCacheDir('/x/home')).toBe(join('/x/home', 'features'));
  });
});

describe.skipIf(!!skip)('extractFeaturesCached (real engine, real images)', () => {
  let engine: Engine;
  let files: string[];
  beforeAll(async () => {
    engine = await Engine.open({ backend: testBackend, threads: 2, maxBatch: 4 });
    files = [...pick(join(bottle, 'test', 'good'), 3), ...pick(join(bottle, 'test', 'broken_large'), 2)];
  });

  /** Counts the engine batches run on the engine's default session (what the cache must avoid). */
  function countRuns(): { runs: () => number; restore: () => void } {
    const spy = vi.spyOn(engine.session, 'run');
    return { runs: () => spy.mock.calls.length, restore: () => spy.mockRestore() };
  }

  it('computes once, then serves identical values without running the engine', async () => {
    const dir = join(tmp.dir, 'c1');
    const first = countRuns();
    const a = await extractFeaturesCached(files, { engine, layer: 'fc1000', cacheDir: dir, batchSize: 4 });
    expect(first.runs()).toBeGreaterThan(0);
    first.restore();
    expect(a.computed).toBe(files.length);
    expect(a.cached).toBe(0);
    expect(a.hashes).toEqual(files.map((f) => contentHash(readFileSync(f))));

    // Same values as the uncached pipeline.
    const direct = await extractFeatures(files, { engine, layer: 'fc1000', batchSize: 4 });
    direct.forEach((d, i) => expect(a.features[i]).toEqual(d.features.fc1000));

    const second = countRuns();
    const progress: number[] = [];
    const b = await extractFeaturesCached(files, { engine, layer: 'fc1000', cacheDir: dir, batchSize: 4, onProgress: (p) => progress.push(p.done) });
    expect(second.runs()).toBe(0);
    second.restore();
    expect(b.cached).toBe(files.length);
    expect(b.computed).toBe(0);
    b.features.forEach((f, i) => expect(Buffer.from(f.buffer).equals(Buffer.from(a.features[i]!.buffer))).toBe(true));
    expect(progress.at(-1)).toBe(files.length);
  });

  it('keys on content, layer and fit, not on the path', async () => {
    const dir = join(tmp.dir, 'c2');
    await extractFeaturesCached(files.slice(0, 2), { engine, layer: 'avg_pool', cacheDir: dir });
    // A renamed copy hits.
    const copy = join(tmp.dir, 'renamed.png');
    copyFileSync(files[0]!, copy);
    let r = countRuns();
    const hit = await extractFeaturesCached([copy], { engine, layer: 'avg_pool', cacheDir: dir });
    expect(r.runs()).toBe(0);
    r.restore();
    expect(hit.cached).toBe(1);
    // Another layer or another fit misses.
    r = countRuns();
    const otherLayer = await extractFeaturesCached([copy], { engine, layer: 'fc1000', cacheDir: dir });
    const otherFit = await extractFeaturesCached([copy], { engine, layer: 'avg_pool', fit: 'crop', cacheDir: dir });
    expect(r.runs()).toBe(2);
    r.restore();
    expect(otherLayer.computed).toBe(1);
    expect(otherFit.computed).toBe(1);
    expect(otherLayer.features[0]!.length).toBe(1000);
    expect(otherFit.features[0]!.length).toBe(2048);
  });

  it('computes duplicate contents once', async () => {
    const dir = join(tmp.dir, 'c3');
    const r = await extractFeaturesCached([files[0]!, files[1]!, files[0]!], { engine, layer: 'fc1000', cacheDir: dir });
    expect(r.computed).toBe(2);
    expect(r.features[2]).toEqual(r.features[0]);
  });

  it('ignores and rewrites damaged entries (truncated, flipped byte, garbage), never failing', async () => {
    const dir = join(tmp.dir, 'c4');
    const good = await extractFeaturesCached(files.slice(0, 3), { engine, layer: 'fc1000', cacheDir: dir });
    const cache = new FeatureCache({ dir, weightsHash: engine.weightsHash, layer: 'fc1000', fit: 'squash' });
    const paths = good.hashes.map((h) => cache.entryPath(h));
    const bytes = readFileSync(paths[0]!);
    writeFileSync(paths[0]!, bytes.subarray(0, 100)); // truncated
    const flipped = Buffer.from(readFileSync(paths[1]!));
    flipped[200] = (flipped[200] as number) ^ 0x40; // one flipped bit in the data
    writeFileSync(paths[1]!, flipped);
    writeFileSync(paths[2]!, 'not a cache entry'); // garbage

    const r = countRuns();
    const again = await extractFeaturesCached(files.slice(0, 3), { engine, layer: 'fc1000', cacheDir: dir });
    expect(r.runs()).toBeGreaterThan(0);
    r.restore();
    expect(again.corrupt).toBe(3);
    expect(again.computed).toBe(3);
    again.features.forEach((f, i) => expect(f).toEqual(good.features[i]));
    // Rewritten: the next pass is all hits again.
    const third = await extractFeaturesCached(files.slice(0, 3), { engine, layer: 'fc1000', cacheDir: dir });
    expect(third.cached).toBe(3);
    expect(third.corrupt).toBe(0);
    expect(readFileSync(paths[0]!).equals(bytes)).toBe(true);
  });

  it('still returns features when the cache cannot be written', async () => {
    const blocker = join(tmp.dir, 'not-a-dir');
    writeFileSync(blocker, 'x');
    const r = await extractFeaturesCached(files.slice(0, 1), { engine, layer: 'fc1000', cacheDir: blocker });
    expect(r.computed).toBe(1);
    expect(r.writeFailures).toBe(1);
    expect(r.features[0]!.length).toBe(1000);
  });

  it('names a missing image file', async () => {
    const missing = join(tmp.dir, 'nope.png');
    await expect(extractFeaturesCached([missing], { engine, layer: 'fc1000', cacheDir: join(tmp.dir, 'c5') })).rejects.toThrow(ImageReadError);
    await expect(extractFeaturesCached([missing], { engine, layer: 'fc1000', cacheDir: join(tmp.dir, 'c5') })).rejects.toThrow(missing);
  });
});

describe('FeatureCache arguments', () => {
  it('rejects an unknown layer, a non-hex weights hash and an unknown fit', () => {
    const ok = { dir: tmp.dir, weightsHash: 'ab'.repeat(32), layer: 'fc1000', fit: 'squash' } as const;
    expect(() => new FeatureCache({ ...ok, layer: 'fc7' as never })).toThrow(/fc7/);
    expect(() => new FeatureCache({ ...ok, weightsHash: 'xyz' })).toThrow(/weightsHash/);
    expect(() => new FeatureCache({ ...ok, fit: 'pad' as never })).toThrow(/fit/);
  });
});

const weightsSkip = engineSkipReason();
describe.skipIf(!!weightsSkip)('readConv1Kernel', () => {
  it('reads the 7x7x3x64 kernel, the same bytes as an independent walk of the manifest', async () => {
    const modelJson = resolveWeights().model;
    const k = await readConv1Kernel(modelJson);
    expect(k.length).toBe(7 * 7 * 3 * 64);
    // Independent: concatenate the shards and walk the manifest here.
    const manifest = (JSON.parse(readFileSync(modelJson, 'utf8')) as { weightsManifest: { paths: string[]; weights: { name: string; shape: number[] }[] }[] }).weightsManifest[0]!;
    const all = Buffer.concat(manifest.paths.map((p) => readFileSync(join(modelJson, '..', p))));
    let off = 0;
    for (const w of manifest.weights) {
      if (w.name === 'conv1/kernel') break;
      off += w.shape.reduce((a, b) => a * b, 1) * 4;
    }
    expect(Buffer.from(k.buffer).equals(all.subarray(off, off + k.length * 4))).toBe(true);
    let nonZero = 0;
    for (const v of k) if (v !== 0) nonZero++;
    expect(nonZero).toBeGreaterThan(k.length / 2);
  });

  it('names the file when a tensor is missing or the manifest is unreadable', async () => {
    const modelJson = resolveWeights().model;
    await expect(readTfjsTensor(modelJson, 'no/such')).rejects.toThrow(/no tensor named 'no\/such'/);
    const bad = join(tmp.dir, 'bad-model.json');
    mkdirSync(tmp.dir, { recursive: true });
    writeFileSync(bad, '{');
    await expect(readConv1Kernel(bad)).rejects.toThrow(WeightsError);
    await expect(readConv1Kernel(bad)).rejects.toThrow(bad);
  });
});
