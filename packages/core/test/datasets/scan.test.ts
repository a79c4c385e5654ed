import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatCountsTable, labelCounts } from '../../src/datasets/counts.js';
import { DatasetError } from '../../src/datasets/errors.js';
import { findImageFiles, sniffImageFormat } from '../../src/datasets/image-files.js';
import { detectLayout, formatSkipReport, scanDataset, scanFolderPerLabel, scanMvtec, scanMvtecOneClass } from '../../src/datasets/scan.js';
import { sharedDir, skipNote, tempDir } from '../support/env.js';
import { imageBytes, writeBytes, writeImage, writeMask } from './fixtures.js';

describe('sniffImageFormat', () => {
  it('recognises every supported format from real bytes and rejects text', async () => {
    for (const fmt of ['png', 'jpeg', 'webp', 'tiff', 'gif'] as const) {
      expect(sniffImageFormat(await imageBytes(1, fmt))).toBe(fmt);
    }
    expect(sniffImageFormat(Buffer.from('BM\x00\x00\x00\x00', 'latin1'))).toBe('bmp');
    expect(sniffImageFormat(Buffer.from('hello world, not an image'))).toBeUndefined();
    expect(sniffImageFormat(new Uint8Array(0))).toBeUndefined();
  });
});

describe('findImageFiles', () => {
  const t = tempDir('loupe-find-');
  afterAll(() => t.cleanup());

  it('walks sub-folders and linked folders once each: a link back up the tree ends', async () => {
    const root = join(t.dir, 'in');
    await writeImage(join(root, 'b.png'), 1);
    await writeImage(join(root, 'sub', 'a.jpg'), 2, 'jpeg');
    writeBytes(join(root, 'sub', 'notes.txt'), 'x');
    writeBytes(join(root, 'sub', 'old.bmp'), 'BM\x00\x00');
    await writeImage(join(root, '.hidden', 'c.png'), 3);
    await writeImage(join(t.dir, 'elsewhere', 'd.png'), 4);
    symlinkSync('..', join(root, 'sub', 'loop')); // in/sub/loop -> in
    symlinkSync(join(t.dir, 'elsewhere'), join(root, 'linked'));
    symlinkSync(join(t.dir, 'elsewhere'), join(root, 'linked-again'));
    symlinkSync(join(t.dir, 'nowhere'), join(root, 'dangling'));
    mkdirSync(join(root, 'empty'));
    const found = await findImageFiles(root);
    expect(found).toEqual([join(root, 'b.png'), join(root, 'linked', 'd.png'), join(root, 'sub', 'a.jpg')]);
  });
});

describe('scanFolderPerLabel', () => {
  const t = tempDir('loupe-scan-');
  const root = join(t.dir, 'ds');
  beforeAll(async () => {
    await writeImage(join(root, 'cat', 'a.png'), 1);
    await writeImage(join(root, 'cat', 'nested', 'deeper', 'b.JPG'), 2, 'jpeg');
    await writeImage(join(root, 'cat', 'c.webp'), 3, 'webp');
    await writeImage(join(root, 'dog', 'd.tif'), 4, 'tiff');
    await writeImage(join(root, 'dog', 'e.gif'), 5, 'gif');
    await writeImage(join(root, 'dog', 'f.jpeg'), 6, 'jpeg');
    await writeImage(join(root, 'dog', 'dup-of-a.png'), 1); // same bytes as cat/a.png
    await writeImage(join(root, 'cat', 'z-dup.png'), 3, 'webp'); // webp content, .png name: kept (content wins), dup of c.webp
    writeBytes(join(root, 'cat', 'notes.txt'), 'hello');
    writeBytes(join(root, 'cat', 'fake.png'), 'this is text pretending to be a png');
    writeBytes(join(root, 'dog', 'empty.jpg'), '');
    const png = await imageBytes(7);
    writeBytes(join(root, 'dog', 'corrupt.png'), Buffer.concat([png.subarray(0, 8), Buffer.from('garbage garbage garbage')]));
    writeBytes(join(root, 'dog', 'old.bmp'), Buffer.from('BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00', 'latin1'));
    await writeImage(join(root, 'stray.png'), 8);
    await writeImage(join(root, 'bird', 'g.png'), 9);
  });
  afterAll(() => t.cleanup());

  it('finds images recursively per label and reports every skipped file with its reason', async () => {
    const progress: number[] = [];
    const ds = await scanFolderPerLabel(root, { onProgress: (d) => progress.push(d) });
    expect(ds.layout).toBe('folder-per-label');
    expect(ds.labels).toEqual(['bird', 'cat', 'dog']);
    // cat/a.png and dog/dup-of-a.png are one image under two labels: neither is used.
    expect(ds.items.map((i) => i.relPath)).toEqual([
      'bird/g.png',
      'cat/c.webp',
      'cat/nested/deeper/b.JPG',
      'dog/d.tif',
      'dog/e.gif',
      'dog/f.jpeg',
    ]);
    const b = ds.items.find((i) => i.relPath.endsWith('b.JPG'));
    expect(b?.label).toBe('cat');
    expect(b?.format).toBe('jpeg');
    expect(b?.width).toBe(16);
    expect(b?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const reasons = Object.fromEntries(ds.skipped.map((s) => [s.relPath, s.reason]));
    expect(reasons).toEqual({
      'stray.png': 'outside-layout',
      'cat/fake.png': 'not-an-image-content',
      'cat/notes.txt': 'not-an-image-extension',
      'cat/a.png': 'conflicting-labels',
      'cat/z-dup.png': 'duplicate',
      'dog/corrupt.png': 'unreadable',
      'dog/dup-of-a.png': 'conflicting-labels',
      'dog/empty.jpg': 'empty-file',
      'dog/old.bmp': 'unsupported-format',
    });
    const conflict = ds.skipped.find((s) => s.relPath === 'dog/dup-of-a.png');
    expect(conflict?.detail).toBe("same content as cat/a.png ('cat'), labelled 'dog' here; fix the labels");
    expect(ds.skipped.find((s) => s.relPath === 'cat/z-dup.png')?.duplicateOf).toBe('cat/c.webp');
    expect(progress.length).toBeGreaterThan(0);
    const report = formatSkipReport(ds.skipped);
    expect(report).toContain('9 file(s) skipped');
    expect(report).toContain('duplicate: 1');
    expect(report).toContain('conflicting-labels: 2');
  });

  it('can keep duplicates and check extensions only', async () => {
    const ds = await scanFolderPerLabel(root, { dedupe: false, verify: 'extension' });
    const rel = ds.items.map((i) => i.relPath);
    expect(rel).toContain('dog/dup-of-a.png');
    expect(rel).toContain('cat/fake.png'); // no content check at this level
    expect(rel).not.toContain('dog/empty.jpg');
    expect(ds.items[0]?.sha256).toBeUndefined();
  });

  it('label counts and a text table', async () => {
    const ds = await scanFolderPerLabel(root);
    const counts = labelCounts(ds.items);
    expect(counts).toEqual([
      { label: 'bird', count: 1 },
      { label: 'cat', count: 2 },
      { label: 'dog', count: 3 },
    ]);
    expect(labelCounts(ds.items, ['dog', 'cat', 'fish', 'bird']).map((c) => c.count)).toEqual([3, 2, 0, 1]);
    const table = formatCountsTable({ all: counts, other: [{ label: 'cat', count: 10 }] });
    expect(table.split('\n')[0]).toMatch(/^label\s+all\s+other$/);
    expect(table).toMatch(/cat\s+2\s+10/);
    expect(table).toMatch(/total\s+6\s+10/);
  });

  it('errors clearly on a missing folder or one without images', async () => {
    await expect(scanFolderPerLabel(join(t.dir, 'nope'))).rejects.toMatchObject({ code: 'DATASET_NOT_FOUND' });
    writeBytes(join(t.dir, 'empty-ds', 'x', 'readme.txt'), 'no images');
    const err = await scanFolderPerLabel(join(t.dir, 'empty-ds')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).code).toBe('DATASET_EMPTY');
    expect((err as DatasetError).input).toBe(join(t.dir, 'empty-ds'));
  });
});

describe('MVTec layout', () => {
  const t = tempDir('loupe-mvtec-');
  const root = join(t.dir, 'widget');
  beforeAll(async () => {
    for (let i = 0; i < 4; i++) await writeImage(join(root, 'train', 'good', `${i}.png`), 100 + i);
    for (let i = 0; i < 2; i++) await writeImage(join(root, 'test', 'good', `${i}.png`), 200 + i);
    for (let i = 0; i < 3; i++) await writeImage(join(root, 'test', 'scratch', `00${i}.png`), 300 + i);
    await writeImage(join(root, 'test', 'crack', '000.png'), 400);
    await writeImage(join(root, 'test', 'crack', '001.png'), 401);
    for (let i = 0; i < 3; i++) await writeMask(join(root, 'ground_truth', 'scratch', `00${i}_mask.png`));
    await writeMask(join(root, 'ground_truth', 'crack', '000_mask.png')); // 001 has no mask
    writeBytes(join(root, 'license.txt'), 'CC BY-NC-SA');
  });
  afterAll(() => t.cleanup());

  it('is auto-detected and scanned as classification (good + defect types, pooled)', async () => {
    expect(await detectLayout(root)).toBe('mvtec');
    const ds = await scanDataset(root);
    expect(ds.layout).toBe('mvtec');
    expect(ds.labels).toEqual(['good', 'crack', 'scratch']);
    expect(labelCounts(ds.items, ds.labels).map((c) => c.count)).toEqual([6, 2, 3]);
    const s0 = ds.items.find((i) => i.relPath === 'test/scratch/000.png');
    expect(s0?.maskPath).toBe(join(root, 'ground_truth', 'scratch', '000_mask.png'));
    expect(s0?.mvtecSplit).toBe('test');
    expect(ds.items.find((i) => i.relPath === 'train/good/0.png')?.mvtecSplit).toBe('train');
    expect(ds.skipped).toEqual([]);
  });

  it('one-class view: train = train/good, test = test/* with masks, missing masks listed', async () => {
    const oc = await scanMvtecOneClass(root);
    expect(oc.category).toBe('widget');
    expect(oc.train).toHaveLength(4);
    expect(oc.test).toHaveLength(7);
    expect(oc.defectTypes).toEqual(['crack', 'scratch']);
    expect(oc.missingMasks).toEqual(['test/crack/001.png']);
    expect(oc.test.filter((i) => i.maskPath).length).toBe(4);
    expect(oc.test.filter((i) => i.label === 'good').every((i) => i.maskPath === undefined)).toBe(true);
  });

  it('reports the images the layout does not use (not license.txt)', async () => {
    const extra = join(t.dir, 'widget-extra');
    for (let i = 0; i < 2; i++) await writeImage(join(extra, 'train', 'good', `${i}.png`), 500 + i);
    await writeImage(join(extra, 'test', 'good', '0.png'), 510);
    await writeImage(join(extra, 'root.png'), 520);
    await writeImage(join(extra, 'test', 'loose.png'), 521);
    await writeImage(join(extra, 'extra', 'x.png'), 522);
    await writeMask(join(extra, 'ground_truth', 'scratch', '000_mask.png'));
    writeBytes(join(extra, 'readme.txt'), 'read me');
    const ds = await scanDataset(extra);
    expect(ds.items.map((i) => i.relPath)).toEqual(['test/good/0.png', 'train/good/0.png', 'train/good/1.png']);
    expect(Object.fromEntries(ds.skipped.map((k) => [k.relPath, k.detail]))).toEqual({
      'extra/x.png': 'not under train/good/ or test/<type>/: the MVTec layout does not use it',
      'root.png': 'at the category root: the MVTec layout does not use it',
      'test/loose.png': 'not under train/good/ or test/<type>/: the MVTec layout does not use it',
    });
  });

  it('a folder-per-label tree is not mistaken for MVTec, and scanMvtec refuses it', async () => {
    const other = join(t.dir, 'fpl');
    await writeImage(join(other, 'a', '1.png'), 1);
    expect(await detectLayout(other)).toBe('folder-per-label');
    await expect(scanMvtec(other)).rejects.toMatchObject({ code: 'DATASET_LAYOUT' });
  });
});

describe('shared datasets (real images)', () => {
  const base = join(sharedDir(), 'datasets');
  const have = existsSync(join(base, 'mvtec_ad', 'bottle', 'train', 'good'));
  if (!have) skipNote('shared dataset scans', `no shared datasets at ${base} (set LOUPE_SHARED_DIR)`);

  it.skipIf(!have)('MVTec bottle: 292 images, 4 labels, 63 masks, nothing skipped', async () => {
    const ds = await scanDataset(join(base, 'mvtec_ad', 'bottle'));
    expect(ds.layout).toBe('mvtec');
    expect(ds.items).toHaveLength(292);
    expect(ds.labels).toEqual(['good', 'broken_large', 'broken_small', 'contamination']);
    expect(labelCounts(ds.items, ds.labels).map((c) => c.count)).toEqual([229, 20, 22, 21]);
    expect(ds.items.filter((i) => i.maskPath).length).toBe(63);
    expect(ds.skipped).toEqual([]);
    const oc = await scanMvtecOneClass(join(base, 'mvtec_ad', 'bottle'));
    expect(oc.train).toHaveLength(209);
    expect(oc.test).toHaveLength(83);
    expect(oc.missingMasks).toEqual([]);
  });

  it.skipIf(!have)('magnetic tile: 1344 grayscale JPEGs in 6 labels', async () => {
    const ds = await scanDataset(join(base, 'mtd', 'magnetic_tile'));
    expect(ds.items).toHaveLength(1344);
    expect(ds.labels).toEqual(['good', 'blowhole', 'break', 'crack', 'fray', 'uneven']);
    expect(labelCounts(ds.items, ds.labels).map((c) => c.count)).toEqual([952, 115, 85, 57, 32, 103]);
    expect(ds.items.every((i) => i.format === 'jpeg' && i.width === 256 && i.height === 256)).toBe(true);
    // groups.csv / labels.csv at the category root are not dataset files.
    expect(ds.skipped).toEqual([]);
  });
});
