// Input files a hostile or broken source hands over (issue 16, items 4 and 11): a JPEG with garbage in its
// scan data is refused, not scored; a FIFO, a link to /dev/zero, a dangling link and a folder are refused
// at once, naming the file (never a hang, never a buffer growing without end), as images, as model files
// and in folder scans.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage, findImageFiles, ImageDecodeError, ImageReadError, loadModel, LoupeError, ModelFileError, readModelHeader, scanImageFolder, startsAsModelFile } from '../../src/internal.js';
import { bottle, bottleDataSkipReason } from '../support/bottle.js';
import { tempDir } from '../support/env.js';

const tmp = tempDir('loupe-hostile-');
afterAll(() => tmp.cleanup());

/** A real photo as a JPEG with `n` bytes of garbage written over the middle of its entropy-coded data. */
async function jpegWithGarbage(n: number): Promise<{ good: Buffer; bad: Buffer }> {
  const src = bottleDataSkipReason() ? await sharp({ create: { width: 256, height: 256, channels: 3, background: '#7a8' } }).png().toBuffer() : bottle('train/good', 1)[0]!;
  // Noise gives the encoder a long scan to damage, as a photo does.
  const good = await sharp(src).resize(256, 256).jpeg({ quality: 90 }).toBuffer();
  let sos = -1;
  for (let i = 0; i + 1 < good.length; i++) if (good[i] === 0xff && good[i + 1] === 0xda) sos = i;
  const bad = Buffer.from(good);
  const mid = Math.floor((sos + good.length) / 2);
  for (let i = 0; i < n; i++) bad[mid + i] = (i * 37 + 11) & 0xff;
  return { good, bad };
}

/** `p`, or a failure after `ms` (a hang fails the test instead of timing it out). */
async function within<T>(p: Promise<T>, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** The rejection of `p` within `ms`. */
function refusedWithin(p: Promise<unknown>, ms = 5000): Promise<unknown> {
  return within(p.then(() => new Error('expected a refusal'), (e: unknown) => e), ms);
}

describe('hostile input files', () => {
  let dir: string;
  beforeAll(() => {
    dir = join(tmp.dir, 'files');
    mkdirSync(dir);
    execFileSync('mkfifo', [join(dir, 'fifo.png')]);
    execFileSync('mkfifo', [join(dir, 'fifo.loupe')]);
    symlinkSync('/dev/zero', join(dir, 'zero.png'));
    symlinkSync('/dev/zero', join(dir, 'zero.loupe'));
    symlinkSync(join(dir, 'gone.png'), join(dir, 'dangling.png'));
    mkdirSync(join(dir, 'folder.png'));
  });

  it('a JPEG with garbage in the middle of its scan data is refused (IMAGE_DECODE), the intact one decodes', async () => {
    const { good, bad } = await jpegWithGarbage(2000);
    await expect(decodeImage({ name: 'intact.jpg', data: good })).resolves.toMatchObject({ name: 'intact.jpg' });
    const err = await decodeImage({ name: 'cam3/garbled.jpg', data: bad }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect((err as LoupeError).code).toBe('IMAGE_DECODE');
    expect((err as Error).message).toMatch(/^cannot decode image cam3\/garbled\.jpg: truncated or corrupt data \(.*Corrupt JPEG data/);
  });

  it('a FIFO, a link to /dev/zero, a dangling link and a folder are refused as images at once, naming the file', async () => {
    const cases: [string, RegExp][] = [
      ['fifo.png', /not a regular file \(a FIFO \(named pipe\)\): images are read from regular files only$/],
      ['zero.png', /not a regular file \(a character device\): images are read from regular files only$/],
      ['dangling.png', /a symbolic link to nothing \(dangling\)$/],
      ['folder.png', /it is a directory$/],
    ];
    for (const [f, why] of cases) {
      const file = join(dir, f);
      const err = await refusedWithin(decodeImage(file));
      expect(err, f).toBeInstanceOf(ImageReadError);
      expect((err as LoupeError).input, f).toBe(file);
      expect((err as Error).message, f).toMatch(new RegExp(`^cannot read image ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ${why.source}`));
    }
  });

  it('a FIFO or a link to /dev/zero as a model file: MODEL_READ at once, never read', async () => {
    for (const f of ['fifo.loupe', 'zero.loupe']) {
      const file = join(dir, f);
      for (const call of [() => loadModel(file), () => readModelHeader(file)]) {
        const err = await refusedWithin(call());
        expect(err, f).toBeInstanceOf(ModelFileError);
        expect((err as LoupeError).code, f).toBe('MODEL_READ');
        expect((err as Error).message, f).toMatch(/cannot read: not a regular file \(a (FIFO \(named pipe\)|character device)\)$/);
      }
      // What `train --out` asks before replacing a file: a FIFO is no model (and is not opened for reading).
      expect(await within(startsAsModelFile(file)), f).toBe(false);
    }
  });

  it('folder walks: scans report FIFOs, devices and dangling links as unreadable; findImageFiles lists them on request', async () => {
    const folder = join(tmp.dir, 'scan');
    mkdirSync(folder);
    const { good } = await jpegWithGarbage(0);
    writeFileSync(join(folder, 'ok.jpg'), good);
    execFileSync('mkfifo', [join(folder, 'pipe.jpg')]);
    symlinkSync('/dev/zero', join(folder, 'zero.jpg'));
    symlinkSync(join(folder, 'nothing.jpg'), join(folder, 'dangling.jpg'));
    if (!bottleDataSkipReason()) copyFileSync(bottle('train/good', 1)[0]!, join(folder, 'bottle.png'));
    for (const verify of ['extension', 'decode'] as const) {
      const scan = await within(scanImageFolder(folder, { verify }));
      const skipped = new Map(scan.skipped.map((s) => [s.relPath, s]));
      expect(skipped.get('pipe.jpg'), verify).toMatchObject({ reason: 'unreadable', detail: expect.stringMatching(/not a regular file \(a FIFO/) });
      expect(skipped.get('zero.jpg'), verify).toMatchObject({ reason: 'unreadable', detail: expect.stringMatching(/not a regular file \(a character device\)/) });
      expect(skipped.get('dangling.jpg'), verify).toMatchObject({ reason: 'unreadable' });
      expect(scan.items.map((i) => i.relPath ?? i.path).some((p) => p.endsWith('ok.jpg'))).toBe(true);
    }
    expect((await findImageFiles(folder)).map((f) => f.slice(folder.length + 1))).toEqual(['ok.jpg', ...(bottleDataSkipReason() ? [] : ['bottle.png'])].sort());
    expect((await findImageFiles(folder, { unreadable: true })).map((f) => f.slice(folder.length + 1))).toEqual(['dangling.jpg', 'ok.jpg', 'pipe.jpg', 'zero.jpg', ...(bottleDataSkipReason() ? [] : ['bottle.png'])].sort());
  });
});
