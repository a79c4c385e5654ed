// End-to-end: `loupe train DIR --mode hybrid --split 0.5 --shots 10 --seed 0 --json` on small copies of the
// MVTec bottle category (symlinks in a temp folder): one with masks and two defect types, one without masks,
// one with a single defect type; then evaluate, predict (JSON contract, heatmaps, defect types) and the
// options hybrid mode refuses. Real engine and weights; skipped, with a note, when they are missing.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bottleDir, haveWeights, jsonLines, runLoupe, type CliResult } from './support/cli.js';

const bottle = bottleDir;
const haveBottle = existsSync(join(bottle, 'train', 'good'));
const runIt = haveWeights && haveBottle;
if (!runIt) console.warn(`hybrid.test: skipped (${!haveBottle ? `no MVTec bottle at ${bottle}` : 'no weights'})`);

const loupe = (args: string[]): Promise<CliResult> => runLoupe(['--threads', '2', '--no-progress', ...args]);

/** An MVTec-layout subset of bottle: `train` train/good, `good` test/good, `n` images of each defect type (+ masks). */
function subset(root: string, spec: { train: number; good: number; defects: Record<string, number>; masks: boolean }): void {
  const link = (src: string, dst: string): void => {
    mkdirSync(dirname(dst), { recursive: true });
    symlinkSync(src, dst);
  };
  const first = (dir: string, n: number, from = 0): string[] => readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(from, from + n);
  for (const f of first(join(bottle, 'train', 'good'), spec.train)) link(join(bottle, 'train', 'good', f), join(root, 'train', 'good', f));
  for (const f of first(join(bottle, 'test', 'good'), spec.good)) link(join(bottle, 'test', 'good', f), join(root, 'test', 'good', f));
  for (const [type, n] of Object.entries(spec.defects)) {
    for (const f of first(join(bottle, 'test', type), n)) {
      link(join(bottle, 'test', type, f), join(root, 'test', type, f));
      const m = `${f.replace(/\.png$/, '')}_mask.png`;
      if (spec.masks) link(join(bottle, 'ground_truth', type, m), join(root, 'ground_truth', type, m));
    }
  }
}

const FIGURES = ['imageAuroc', 'pixelAuroc', 'f1Max', 'balancedAccuracy', 'counts'];

describe.skipIf(!runIt)('hybrid mode (memory bank + supervised head) on MVTec bottle subsets', () => {
  let tmp = '';
  let cat = '';
  let model = '';
  let trainOut: CliResult | undefined;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'loupe-hybrid-'));
    cat = join(tmp, 'bottle');
    subset(cat, { train: 20, good: 8, defects: { broken_large: 8, contamination: 8 }, masks: true });
    model = join(tmp, 'bottle-hybrid.loupe');
    trainOut = await loupe(['train', cat, '--mode', 'hybrid', '--split', '0.5', '--shots', '10', '--seed', '0', '--coreset', '0.05', '--out', model, '--json']);
    if (trainOut.code !== 0) throw new Error(`train failed (${trainOut.code}): ${trainOut.stderr}`);
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('train --json: details, then the held-out figures and the counts as the last line', () => {
    const out = jsonLines(trainOut!.stdout);
    expect(out).toHaveLength(2);
    const [details, last] = out as [Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(last)).toEqual(FIGURES);
    expect(last['imageAuroc'] as number).toBeGreaterThan(0.9);
    expect(last['pixelAuroc'] as number).toBeGreaterThan(0.8);
    expect(last['f1Max'] as number).toBeGreaterThan(0.8);
    expect(last['balancedAccuracy'] as number).toBeGreaterThan(0.6);
    const c = last['counts'] as Record<string, number>;
    // Half of test/good and of each type held out; 4 defects per type left to train on (< 10 shots).
    expect(c).toMatchObject({ heldOutGood: 4, heldOutDefects: 8, trainGood: 24, trainDefects: 8, maskedDefects: 8, unusedDefects: 0 });
    expect(c['bankImages']! + c['validationImages']!).toBe(24);
    expect(c['falseAlarms']! + c['missed']!).toBeGreaterThanOrEqual(0);
    expect(details).toMatchObject({ model, mode: 'hybrid', category: 'bottle', layout: 'mvtec', head: true, flips: ['hflip', 'vflip'], defectTypes: ['broken_large', 'contamination'], split: 0.5, shots: 10, seed: 0, warnings: [] });
    expect(Object.keys(details['perDefectType'] as object)).toEqual(['broken_large', 'contamination']);
    expect(typeof details['defectTypeAccuracy']).toBe('number');
    expect(Object.keys(details['oneClass'] as object)).toEqual(['imageAuroc', 'pixelAuroc', 'f1Max', 'balancedAccuracy']);
    expect(existsSync(model)).toBe(true);
  });

  it('evaluate and predict treat the hybrid model like the other kinds (fused scores, heatmaps, defect types)', async () => {
    const e = await loupe(['evaluate', model, cat, '--json']);
    expect(e.code, e.stderr).toBe(0);
    const lines = jsonLines(e.stdout);
    const summary = lines[lines.length - 1]!;
    expect(Object.keys(summary)).toEqual(['imageAuroc', 'pixelAuroc', 'pro', 'f1Max', 'balancedAccuracy', 'defectTypeAccuracy', 'msPerImage']);
    // The whole test folder: half of it trained the model, and evaluate says so.
    expect(e.stderr).toMatch(/of the 24 test images were used to train this model/);

    const heat = join(tmp, 'heat');
    const p = await loupe(['predict', model, join(cat, 'test', 'broken_large'), join(cat, 'test', 'good'), '--json', '--heatmaps', heat]);
    expect([0, 1]).toContain(p.code);
    const pl = jsonLines(p.stdout);
    const images = pl.slice(0, -1);
    expect(images).toHaveLength(16);
    for (const l of images) {
      expect(['good', 'anomalous']).toContain(l['verdict']);
      expect((l['score'] as number) >= 0.5).toBe(l['verdict'] === 'anomalous');
      expect(Object.keys(l['classScores'] as object)).toEqual(['broken_large', 'contamination']);
      if (l['verdict'] === 'anomalous') expect(['broken_large', 'contamination']).toContain(l['defectType']);
      else expect(l['defectType']).toBeNull();
      expect(existsSync(l['heatmap'] as string)).toBe(true);
    }
    const broken = images.filter((l) => (l['file'] as string).includes('broken_large'));
    expect(broken.filter((l) => l['verdict'] === 'anomalous').length).toBeGreaterThanOrEqual(6);
    expect(p.code).toBe(1); // some image is anomalous
    expect(pl[pl.length - 1]).toMatchObject({ total: 16, errors: 0 });
  });

  it('trains a category without masks (image labels; pixelAuroc null) and one with a single defect type (without test-time flips)', async () => {
    const noMasks = join(tmp, 'no-masks', 'bottle');
    subset(noMasks, { train: 16, good: 6, defects: { broken_large: 6, contamination: 6 }, masks: false });
    const a = await loupe(['train', noMasks, '--mode', 'hybrid', '--split', '0.5', '--shots', '10', '--seed', '0', '--coreset', '0.05', '--out', join(tmp, 'no-masks.loupe'), '--json']);
    expect(a.code, a.stderr).toBe(0);
    const al = jsonLines(a.stdout);
    const last = al[al.length - 1]!;
    expect(Object.keys(last)).toEqual(FIGURES);
    expect(last['pixelAuroc']).toBeNull();
    expect(typeof last['imageAuroc']).toBe('number');
    expect((last['counts'] as Record<string, number>)['maskedDefects']).toBe(0);
    expect(a.stderr).toMatch(/warning: .* have no mask/);

    const single = join(tmp, 'single', 'bottle');
    subset(single, { train: 16, good: 6, defects: { broken_small: 8 }, masks: true });
    const b = await loupe(['train', single, '--mode', 'hybrid', '--split', '0.5', '--shots', '10', '--seed', '0', '--coreset', '0.05', '--flips', 'none', '--out', join(tmp, 'single.loupe'), '--json']);
    expect(b.code, b.stderr).toBe(0);
    const bl = jsonLines(b.stdout);
    expect(bl[0]).toMatchObject({ defectTypes: ['broken_small'], head: true, flips: [] });
    expect(bl[0]!['defectTypeAccuracy']).toBeUndefined();
    const bLast = bl[bl.length - 1]!;
    expect(bLast['counts']).toMatchObject({ heldOutDefects: 4, trainDefects: 4 });
    expect(typeof bLast['pixelAuroc']).toBe('number');
    const p = await loupe(['predict', join(tmp, 'single.loupe'), join(single, 'test', 'broken_small'), '--json']);
    for (const l of jsonLines(p.stdout).slice(0, -1)) {
      expect(l['defectType']).toBeNull();
      expect(l['classScores']).toBeUndefined();
    }
  });

  it('refuses options hybrid training does not read', async () => {
    const r = await loupe(['train', cat, '--mode', 'hybrid', '--out', join(tmp, 'x.loupe'), '--tile']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--tile does nothing with --mode hybrid/);
    const s = await loupe(['train', cat, '--out', join(tmp, 'x.loupe'), '--shots', '3']);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/--shots does nothing with --mode svm/);
    const f = await loupe(['train', cat, '--mode', 'one-class', '--out', join(tmp, 'x.loupe'), '--flips', 'hflip']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/--flips does nothing with --mode one-class/);
    // Core names the bad flip before any image is read.
    const g = await loupe(['train', cat, '--mode', 'hybrid', '--out', join(tmp, 'x.loupe'), '--flips', 'hflip,rot90']);
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(/flips must be distinct names of hflip, vflip, got \["hflip","rot90"\]/);
    expect(existsSync(join(tmp, 'x.loupe'))).toBe(false);
  });
});
