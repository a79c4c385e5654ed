// End-to-end: `loupe train|evaluate|predict` in one-class (PatchCore) mode, on a small copy of the MVTec
// bottle category (symlinks in a temp folder: 20 train/good, 3 test/good, 3 test/broken_large + masks),
// with the real engine and weights. Skipped, with a note, when ../shared or the weights are missing.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bottleDir, haveWeights, jsonLines, loupeHome, runLoupe, type CliResult } from './support/cli.js';

const bottle = bottleDir;
const haveBottle = existsSync(join(bottle, 'train', 'good'));
const runIt = haveWeights && haveBottle;
if (!runIt) {
  console.warn(`oneclass.test: skipped (${!haveBottle ? `no MVTec bottle at ${bottle}` : `no weights in ${loupeHome}`})`);
}

// Two threads: the test machine is small and shared.
const loupe = (args: string[]): Promise<CliResult> => runLoupe(['--threads', '2', '--no-progress', ...args]);
const lines = jsonLines;

/** Width and height from a PNG's IHDR chunk. */
function pngSize(file: string): { width: number; height: number; colourType: number } {
  const b = readFileSync(file);
  expect(b.subarray(1, 4).toString('latin1')).toBe('PNG');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), colourType: b[25]! };
}

/** One line on stderr that names `what`, and a failure exit code. */
function expectOneLineError(r: CliResult, what: string): void {
  expect(r.code).not.toBe(0);
  expect(r.code).not.toBeNull();
  const errLines = r.stderr.trim().split('\n');
  expect(errLines).toHaveLength(1);
  expect(errLines[0]).toMatch(/^loupe: error: /);
  expect(errLines[0]).toContain(what);
}

describe.skipIf(!runIt)('one-class mode (PatchCore) on an MVTec bottle subset', () => {
  let tmp = '';
  let cat = '';
  let noMasks = '';
  let model = '';
  const testFiles: string[] = [];
  let trainOut: CliResult | undefined;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'loupe-oneclass-'));
    cat = join(tmp, 'bottle');
    noMasks = join(tmp, 'bottle-no-masks');
    const link = (src: string, dst: string): void => {
      mkdirSync(dirname(dst), { recursive: true });
      symlinkSync(src, dst);
    };
    const first = (dir: string, n: number): string[] => readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(0, n);
    for (const f of first(join(bottle, 'train', 'good'), 20)) {
      link(join(bottle, 'train', 'good', f), join(cat, 'train', 'good', f));
      link(join(bottle, 'train', 'good', f), join(noMasks, 'train', 'good', f));
    }
    for (const [type, n] of [['good', 3], ['broken_large', 3]] as const) {
      for (const f of first(join(bottle, 'test', type), n)) {
        link(join(bottle, 'test', type, f), join(cat, 'test', type, f));
        link(join(bottle, 'test', type, f), join(noMasks, 'test', type, f));
        testFiles.push(join(cat, 'test', type, f));
        if (type !== 'good') {
          const m = `${f.replace(/\.png$/, '')}_mask.png`;
          link(join(bottle, 'ground_truth', type, m), join(cat, 'ground_truth', type, m));
        }
      }
    }
    model = join(tmp, 'bottle.loupe');
    const r = await loupe(['train', cat, '--mode', 'one-class', '--out', model, '--coreset', '0.01', '--json']);
    if (r.code !== 0) throw new Error(`train failed (${r.code}): ${r.stderr}`);
    trainOut = r;
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('train --json: one summary line with the bank size, thresholds and timings; the model file is written', () => {
    const r = trainOut!;
    const out = lines(r.stdout);
    expect(out).toHaveLength(1);
    const s = out[0]!;
    expect(s['model']).toBe(model);
    expect(s['mode']).toBe('one-class');
    expect(s['trainImages']).toBe(18); // 10% (2) held out for the thresholds
    expect(s['validationImages']).toBe(2);
    // 2 held-out images make a weak calibration: said on stderr, stdout stays one JSON line.
    expect(r.stderr).toContain('warning: the thresholds rest on 2 held-out good images; with fewer than 10 expect good parts to be flagged');
    expect(s['bankDim']).toBe(1536);
    // 1% of 18 * 784 patches.
    expect(Math.abs((s['bankEntries'] as number) - 0.01 * 18 * 784)).toBeLessThanOrEqual(1);
    expect(s['bankMB'] as number).toBeCloseTo(((s['bankEntries'] as number) * 1536 * 4) / 2 ** 20, 3);
    const th = s['thresholds'] as { image: number; pixel: number; method: string };
    expect(th.image).toBeGreaterThan(0);
    expect(th.pixel).toBeGreaterThan(0);
    expect(th.method).toBe('quantile');
    const t = s['timings'] as Record<string, number>;
    for (const k of ['featuresS', 'coresetS', 'thresholdsS', 'totalS']) expect(t[k]).toBeGreaterThanOrEqual(0);
    expect(existsSync(model)).toBe(true);
    expect(readFileSync(model).subarray(0, 200).toString('latin1')).toContain('"kind":"one-class"');
    // Atomic write: no temp file left beside the model.
    expect(readdirSync(tmp).filter((f) => f.startsWith('bottle.loupe') && f !== 'bottle.loupe')).toEqual([]);
  });

  it('evaluate --json --report: the last line is the metrics summary; the report is self-contained', async () => {
    const report = join(tmp, 'report');
    const r = await loupe(['evaluate', model, cat, '--json', '--report', report]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('was trained on'); // same category: no note
    const out = lines(r.stdout);
    const last = out[out.length - 1]!;
    expect(Object.keys(last)).toEqual(['imageAuroc', 'pixelAuroc', 'pro', 'f1Max', 'balancedAccuracy', 'msPerImage']);
    for (const k of ['imageAuroc', 'pixelAuroc', 'pro', 'f1Max', 'balancedAccuracy'] as const) {
      expect(typeof last[k]).toBe('number');
      expect(last[k] as number).toBeGreaterThanOrEqual(0);
      expect(last[k] as number).toBeLessThanOrEqual(1);
    }
    // broken_large is an easy defect: the ranking must be far better than chance.
    expect(last['imageAuroc'] as number).toBeGreaterThan(0.8);
    expect(last['pixelAuroc'] as number).toBeGreaterThan(0.8);
    expect(last['msPerImage'] as number).toBeGreaterThan(0);
    const details = out[0]!;
    expect(details['good']).toBe(3);
    expect(details['defective']).toBe(3);
    expect((details['perDefectType'] as Record<string, { images: number }>)['broken_large']!.images).toBe(3);

    const html = readFileSync(join(report, 'report.html'), 'utf8');
    expect(html).toContain('<!DOCTYPE html>');
    expect(html).toContain('ROC');
    expect(html).toContain('Most anomalous test images');
    expect(html).toMatch(/src="data:image\/png;base64,/);
    expect(html).not.toMatch(/src="(?!data:)/); // nothing external
    for (const png of ['roc.png', 'score-histogram.png', 'most-anomalous.png']) expect(pngSize(join(report, png)).width).toBeGreaterThan(100);
    expect(readdirSync(join(report, 'overlays')).length).toBeGreaterThan(0);
  });

  it('evaluate (human): a table with the per-defect-type AUROC', async () => {
    const r = await loupe(['evaluate', model, cat]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/broken_large\s+3\s+\d\.\d{4}/);
    expect(r.stdout).toContain('image AUROC');
    expect(r.stdout).toContain('pixel AUROC');
  });

  it('evaluate with one defect mask missing: a warning naming it, pixel metrics on the others', async () => {
    const partial = join(tmp, 'partial');
    const copyTree = (from: string, to: string, skip: (name: string) => boolean): void => {
      for (const e of readdirSync(from, { withFileTypes: true })) {
        const src = join(from, e.name);
        const dst = join(to, e.name);
        if (skip(e.name)) continue;
        if (e.isSymbolicLink() || e.isFile()) {
          mkdirSync(to, { recursive: true });
          symlinkSync(src, dst);
        } else copyTree(src, dst, skip);
      }
    };
    const masks = readdirSync(join(cat, 'ground_truth', 'broken_large')).sort();
    copyTree(cat, partial, (name) => name === masks[0]);
    const r = await loupe(['evaluate', model, partial, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: 1 defect image\(s\) have no ground_truth mask \(test\/broken_large\/.*\.png\)/);
    const last = lines(r.stdout).pop()!;
    expect(last['pixelAuroc'] as number).toBeGreaterThan(0.5);
    const full = await loupe(['evaluate', model, cat, '--json']);
    expect(full.stderr).not.toContain('ground_truth mask');
  });

  it('evaluate without ground_truth/: pixelAuroc and pro are null', async () => {
    const r = await loupe(['evaluate', model, noMasks, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const last = lines(r.stdout).pop()!;
    expect(last['pixelAuroc']).toBeNull();
    expect(last['pro']).toBeNull();
    expect(last['imageAuroc'] as number).toBeGreaterThan(0.8);
    // Images the model trained on, found in a test folder by content: a warning, and the count in the details.
    const details = lines(r.stdout)[0]!;
    expect(details['seenInTraining']).toBe(0);
    expect(r.stderr).not.toContain('were used to train');
    const seen = join(tmp, 'bottle-seen');
    mkdirSync(join(seen, 'test', 'good'), { recursive: true });
    mkdirSync(join(seen, 'test', 'broken_large'), { recursive: true });
    symlinkSync(join(cat, 'train'), join(seen, 'train'));
    const trainImage = readdirSync(join(cat, 'train', 'good')).sort()[0]!;
    copyFileSync(join(cat, 'train', 'good', trainImage), join(seen, 'test', 'good', 'copy.png'));
    copyFileSync(testFiles.find((f) => f.includes('broken_large'))!, join(seen, 'test', 'broken_large', '000.png'));
    const s = await loupe(['evaluate', model, seen, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(lines(s.stdout)[0]!['seenInTraining']).toBe(1);
    expect(s.stderr).toContain('warning: 1 of the 2 test images were used to train this model');
    // the model knows it was trained on 'bottle'; this folder is called 'bottle-seen'
    expect(s.stderr).toContain(`note: ${model} was trained on 'bottle' images; this is 'bottle-seen'`);
  });

  it('predict --heatmaps: verdict per image, overlay + mask PNGs at the input size, index.html', async () => {
    const heat = join(tmp, 'heat');
    const r = await loupe(['predict', model, join(cat, 'test'), '--json', '--heatmaps', heat]);
    const all = lines(r.stdout);
    const out = all.slice(0, -1);
    expect(out).toHaveLength(testFiles.length);
    // The summary line last; exit 1: some images are anomalous (0 only when all are good).
    const flagged = out.filter((p) => p['verdict'] === 'anomalous').length;
    expect(all[all.length - 1]).toEqual({ total: testFiles.length, good: testFiles.length - flagged, anomalous: flagged, errors: 0 });
    expect(r.code, r.stderr).toBe(1);
    expect(out.map((p) => p['file']).sort()).toEqual([...testFiles].sort());
    for (const p of out) {
      expect(['good', 'anomalous']).toContain(p['verdict']);
      const score = p['score'] as number;
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThan(1);
      // The normalised score puts the threshold at 0.5.
      expect(p['verdict']).toBe(score >= 0.5 ? 'anomalous' : 'good');
      expect(p['rawScore'] as number).toBeGreaterThan(0);
      expect(p['defectType']).toBeNull();
      expect(Object.keys(p)).toEqual(['file', 'verdict', 'score', 'rawScore', 'defectType', 'heatmap', 'mask']);
      for (const k of ['score', 'rawScore']) expect(Math.round((p[k] as number) * 1e4) / 1e4).toBe(p[k]); // 4 decimals
      const input = pngSize(p['file'] as string);
      const overlay = pngSize(p['heatmap'] as string);
      const mask = pngSize(p['mask'] as string);
      expect([overlay.width, overlay.height]).toEqual([input.width, input.height]);
      expect([mask.width, mask.height]).toEqual([input.width, input.height]);
      expect(mask.colourType).toBe(0); // greyscale 0/255
    }
    // MVTec repeats 000.png in every folder: output names keep the folder, so nothing is overwritten.
    expect(new Set(out.map((p) => p['heatmap'])).size).toBe(out.length);
    // Every broken_large image is flagged, and scores higher than every good one.
    const defect = out.filter((p) => String(p['file']).includes('broken_large'));
    const good = out.filter((p) => String(p['file']).includes('/good/'));
    expect(defect.every((p) => p['verdict'] === 'anomalous')).toBe(true);
    expect(Math.min(...defect.map((p) => p['score'] as number))).toBeGreaterThan(Math.max(...good.map((p) => p['score'] as number)));
    const index = readFileSync(join(heat, 'index.html'), 'utf8');
    expect(index).toContain('broken_large_000_heatmap.png');
    // An image that cannot be decoded gets an error line in its place; the others are still scored (exit 2).
    const mixed = join(tmp, 'mixed');
    mkdirSync(mixed);
    copyFileSync(testFiles[0]!, join(mixed, 'a.png'));
    writeFileSync(join(mixed, 'b.png'), '');
    copyFileSync(testFiles[1]!, join(mixed, 'c.png'));
    const m = await loupe(['predict', model, mixed, '--json']);
    expect(m.code, m.stderr).toBe(2);
    const ml = lines(m.stdout).slice(0, -1);
    expect(ml.map((l) => [basename(l['file'] as string), l['error'] ? (l['error'] as { code: string }).code : l['verdict']])).toEqual([
      ['a.png', out.find((p) => p['file'] === testFiles[0])!['verdict']],
      ['b.png', 'IMAGE_EMPTY'],
      ['c.png', out.find((p) => p['file'] === testFiles[1])!['verdict']],
    ]);
    expect(ml[0]!['score']).toBe(out.find((p) => p['file'] === testFiles[0])!['score']);
    // Heatmaps beside images given one by one would be read as images of that folder next time.
    const beside = await loupe(['predict', model, join(mixed, 'a.png'), '--heatmaps', join(mixed, 'heat')]);
    expect(beside.code).toBe(1);
    expect(beside.stderr).toContain(`--heatmaps ${join(mixed, 'heat')} is inside the input folder ${mixed}`);
    // A file name in another script keeps its letters; only separators and symbols become '_'.
    mkdirSync(join(tmp, 'named'));
    const named = join(tmp, 'named', 'Flasche ä#1 瓶.png');
    copyFileSync(testFiles[0]!, named);
    const u = await loupe(['predict', model, named, '--json', '--heatmaps', join(tmp, 'heat-u')]);
    expect(u.code, u.stderr).toBe(lines(u.stdout)[0]!['verdict'] === 'anomalous' ? 1 : 0);
    expect(u.stderr).not.toContain('error');
    expect(lines(u.stdout)[0]!['heatmap']).toBe(join(tmp, 'heat-u', 'Flasche_ä_1_瓶_heatmap.png'));
    expect(existsSync(join(tmp, 'heat-u', 'Flasche_ä_1_瓶_heatmap.png'))).toBe(true);
  });

  it('predict --classifier: the SVM names the defect type of anomalous images only', async () => {
    const svm = join(tmp, 'svm.loupe');
    const t = await loupe(['train', cat, '--mode', 'svm', '--out', svm, '--split', '0.3', '--json']);
    expect(t.code, t.stderr).toBe(0);
    const r = await loupe(['predict', model, ...testFiles, '--json', '--classifier', svm]);
    expect(r.code, r.stderr).toBe(1); // the broken_large images are anomalous
    const out = lines(r.stdout).slice(0, -1);
    expect(out).toHaveLength(testFiles.length);
    for (const p of out) {
      if (p['verdict'] === 'anomalous') expect(p['defectType']).toBe('broken_large'); // the only defect class
      else expect(p['defectType']).toBeNull();
    }
    // A one-class model is not a classifier.
    const wrong = await loupe(['predict', model, testFiles[0]!, '--classifier', model]);
    expectOneLineError(wrong, model);
    expect(wrong.stderr).toContain("'one-class'");
  });

  it('bad inputs: one line naming the file, non-zero exit', async () => {
    const missing = join(tmp, 'nope.png');
    expectOneLineError(await loupe(['predict', model, missing]), missing);

    const notImage = join(tmp, 'not-an-image.png');
    writeFileSync(notImage, 'this is text, not a PNG\n');
    // An input that is no image is that input's answer (exit 2), as in SVM predict.
    const ni = await loupe(['predict', model, notImage]);
    expect(ni.code).toBe(2);
    expect(ni.stdout).toBe(`error      ------  ${notImage}  IMAGE_DECODE: cannot decode image ${notImage}: not a supported image format (JPEG, PNG, WebP, TIFF, GIF, ...)\n1 image: 0 good, 0 anomalous, 1 error (score >= 0.5 = anomalous)\n`);

    // Damaged payload: the checksum catches it.
    const bytes = readFileSync(model);
    const corrupt = join(tmp, 'corrupt.loupe');
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 10] = damaged[damaged.length - 10]! ^ 0xff;
    writeFileSync(corrupt, damaged);
    const c = await loupe(['evaluate', corrupt, cat]);
    expectOneLineError(c, corrupt);
    expect(c.stderr).toMatch(/checksum|damaged/);

    const truncated = join(tmp, 'truncated.loupe');
    writeFileSync(truncated, bytes.subarray(0, bytes.length >> 1));
    expectOneLineError(await loupe(['predict', truncated, testFiles[0]!]), truncated);

    // A model trained on other CNN weights (header rewritten): refused, naming the model.
    const nl = bytes.indexOf(0x0a);
    const header = bytes.subarray(0, nl).toString('utf8');
    const hash = (JSON.parse(header) as { weightsHash: string }).weightsHash;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const other = join(tmp, 'other-weights.loupe');
    writeFileSync(other, Buffer.concat([Buffer.from(header.split(hash).join('0'.repeat(64)), 'utf8'), bytes.subarray(nl)]));
    const w = await loupe(['predict', other, testFiles[0]!]);
    expectOneLineError(w, other);
    expect(w.stderr).toContain('weights');

    // A folder without images.
    const flat = join(tmp, 'flat');
    mkdirSync(flat);
    expectOneLineError(await loupe(['train', flat, '--mode', 'one-class', '--out', join(tmp, 'x.loupe')]), flat);
    expect(existsSync(join(tmp, 'x.loupe'))).toBe(false);
  });

  it('train FOLDER_OF_GOOD_PNGS --mode one-class --out m: writes m.loupe, and the model works', async () => {
    // A plain folder of good photos (no MVTec layout), as a plant has them.
    const good = join(tmp, 'good-photos');
    mkdirSync(good);
    for (const f of readdirSync(join(cat, 'train', 'good')).sort().slice(0, 12)) copyFileSync(join(cat, 'train', 'good', f), join(good, `photo-${f}`));
    const m = join(tmp, 'plain', 'm');
    const r = await loupe(['train', good, '--mode', 'one-class', '--out', m, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = lines(r.stdout)[0]!;
    expect(s['model']).toBe(`${m}.loupe`);
    expect(s['layout']).toBe('folder');
    expect(s['category']).toBe('good-photos');
    expect((s['trainImages'] as number) + (s['validationImages'] as number)).toBe(12);
    expect(existsSync(`${m}.loupe`)).toBe(true);
    expect(existsSync(m)).toBe(false);
    const p = await loupe(['predict', `${m}.loupe`, ...testFiles, '--json']);
    expect([0, 1]).toContain(p.code);
    const out = lines(p.stdout).slice(0, -1);
    expect(out.map((l) => l['file'])).toEqual(testFiles); // input order
    const defect = out.filter((l) => String(l['file']).includes('broken_large'));
    expect(defect.every((l) => l['verdict'] === 'anomalous')).toBe(true);
    // --defects: thresholds set F1-optimally on good + defective images.
    const d = await loupe(['train', good, '--mode', 'one-class', '--defects', cat, '--out', join(tmp, 'plain', 'd.loupe'), '--json']);
    expect(d.code, d.stderr).toBe(0);
    const dj = lines(d.stdout)[0]!;
    expect(dj['defectImages']).toBe(3);
    expect((dj['thresholds'] as { method: string }).method).toBe('f1');
  });

  it('calibrate --target-fpr: changes the threshold (in place, atomically) and predict follows it', async () => {
    const m = join(tmp, 'calibrated.loupe');
    copyFileSync(model, m);
    const goodDir = join(cat, 'test', 'good');
    const before = lines((await loupe(['predict', m, goodDir, '--json'])).stdout).slice(0, -1);
    const c = await loupe(['calibrate', m, '--good', goodDir, '--target-fpr', '0.5', '--json']);
    expect(c.code, c.stderr).toBe(0);
    const cj = lines(c.stdout)[0]! as { model: string; method: string; before: { image: number }; after: { image: number }; good: number; goodFlagged: number };
    expect(cj.model).toBe(m);
    expect(cj.method).toBe('target-fpr');
    expect(cj.good).toBe(3);
    expect(cj.after.image).not.toBe(cj.before.image);
    // The median of the good scores: the good images at or above it are flagged now.
    expect(cj.goodFlagged).toBeGreaterThanOrEqual(1);
    expect(cj.goodFlagged).toBeLessThan(3);
    expect(readdirSync(tmp).filter((f) => f.startsWith('calibrated.loupe') && f !== 'calibrated.loupe')).toEqual([]); // no temp file left
    const after = await loupe(['predict', m, goodDir, '--json']);
    const al = lines(after.stdout).slice(0, -1);
    expect(al.filter((l) => l['verdict'] === 'anomalous')).toHaveLength(cj.goodFlagged);
    expect(after.code).toBe(1);
    al.forEach((l, i) => {
      // Same distance, new threshold: the raw score stays, the verdict follows raw >= threshold.
      expect(l['rawScore']).toBe(before[i]!['rawScore']);
      expect(l['verdict']).toBe((l['score'] as number) >= 0.5 ? 'anomalous' : 'good');
    });
    expect(al.map((l) => l['score'])).not.toEqual(before.map((l) => l['score']));
    // --out writes elsewhere and leaves the model as it was; the human output names the thresholds.
    const h = await loupe(['calibrate', model, '--good', goodDir, '--out', join(tmp, 'cal2')]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/image threshold \(raw\) +\d+\.\d{4} -> \d+\.\d{4}/);
    expect(h.stdout).toContain('method    quantile');
    expect(existsSync(join(tmp, 'cal2.loupe'))).toBe(true);
    // Good images the model was trained on: a warning (they make the threshold optimistic).
    const seen = await loupe(['calibrate', model, '--good', cat, '--out', join(tmp, 'cal3.loupe')]);
    expect(seen.code, seen.stderr).toBe(0);
    expect(seen.stderr).toContain('warning: 20 of the 20 good images were used to train this model');
    const bad = await loupe(['calibrate', model, '--good', goodDir, '--target-fpr', '0.9']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--target-fpr must be a number in (0, 0.5]');
  });
});
