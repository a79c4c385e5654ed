// One decoder for every view of an image: the model's 224x224 view (decodeImage), the full-size view
// (decodeFullImage), the tiles cut from it and the heatmap overlay drawn on it must all see the same pixels.
// They used not to: tiles and overlays applied the embedded ICC profile (and flattened alpha) while the model
// view ignored it. The test images are PNGs written here byte by byte (RGBA, an iCCP chunk holding a Display
// P3 profile), so the stored pixel values are known without any decoder.
import { readFileSync } from 'node:fs';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { decodeFullImage, decodeImage, ImageDecodeError, loadMask, renderHeatmapPng, renderMaskPng } from '../../src/index.js';
import { prepareImage, rgbToCaffe } from '../../src/internal.js';
import { bottle, bottleDataSkipReason, bottleMask } from '../support/bottle.js';
import { skipNote } from '../support/env.js';

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'ascii'), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit PNG (colour type 6 RGBA or 0 grey), filter 0, optionally with an iCCP chunk. */
function encodePng(width: number, height: number, channels: 1 | 4, pixels: Uint8Array, icc?: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = channels === 4 ? 6 : 0;
  const stride = width * channels;
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(icc ? [chunk('iCCP', Buffer.concat([Buffer.from('Display P3\0\0', 'latin1'), deflateSync(icc)]))] : []),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A saturated RGB pattern (where P3 and sRGB differ most) with alpha 0, 64, 128 and 255 mixed in. */
function testImage(width: number, height: number): { rgba: Uint8Array; rgb: Uint8Array } {
  const rgba = new Uint8Array(width * height * 4);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const px = [(x * 5 + y) % 256, (255 - y * 3) & 255, (x * y) % 251];
      rgb.set(px, i * 3);
      rgba.set([...px, [0, 64, 128, 255][(x + 2 * y) % 4]!], i * 4);
    }
  return { rgba, rgb };
}

async function displayP3Profile(): Promise<Buffer> {
  const tagged = await sharp(Buffer.alloc(12, 128), { raw: { width: 2, height: 2, channels: 3 } }).withIccProfile('p3').png().toBuffer();
  const icc = (await sharp(tagged).metadata()).icc;
  if (!icc) throw new Error('sharp wrote no ICC profile');
  return icc;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('one decoder for model views, tiles, full-size maps and overlays', () => {
  it('the test PNG really carries alpha and a non-sRGB profile that would change the pixels if applied', async () => {
    const { rgba, rgb } = testImage(224, 224);
    const png = encodePng(224, 224, 4, rgba, await displayP3Profile());
    const meta = await sharp(png).metadata();
    expect(meta.hasAlpha).toBe(true);
    expect(meta.hasProfile).toBe(true);
    expect(meta.icc!.length).toBeGreaterThan(100);
    // Colour-managed (what the tiles and overlays used to do): other pixels than the stored ones.
    const managed = await sharp(png).removeAlpha().toColourspace('srgb').raw().toBuffer();
    expect(maxDiff(managed, rgb)).toBeGreaterThan(10);
  });

  it('decodeImage and decodeFullImage see the stored pixels of a 224x224 RGBA image with a Display P3 profile', async () => {
    const { rgba, rgb } = testImage(224, 224);
    const png = encodePng(224, 224, 4, rgba, await displayP3Profile());
    const view = await decodeImage(png);
    const full = await decodeFullImage(png);
    expect([full.width, full.height, full.sourceWidth, full.sourceHeight]).toEqual([224, 224, 224, 224]);
    expect(maxDiff(view.rgb, rgb)).toBe(0);
    expect(maxDiff(full.rgb, rgb)).toBe(0);
    // The model's input, whole-image and tiled, is made from the same pixels.
    const whole = await prepareImage(png);
    const tiled = await prepareImage(png, { tile: { size: 224, overlap: 0.25 } });
    expect(tiled.views).toBe(1);
    expect(maxDiff(whole.tensor, rgbToCaffe(rgb))).toBe(0);
    expect(maxDiff(tiled.tensor, rgbToCaffe(rgb))).toBe(0);
  });

  it('tiles of a larger image are crops of the stored pixels', async () => {
    const w = 300;
    const h = 260;
    const { rgba, rgb } = testImage(w, h);
    const png = encodePng(w, h, 4, rgba, await displayP3Profile());
    const full = await decodeFullImage(png);
    expect([full.width, full.height]).toEqual([w, h]);
    expect(maxDiff(full.rgb, rgb)).toBe(0);
    const tiled = await prepareImage(png, { tile: { size: 224, overlap: 0.25 } });
    expect(tiled.tiles).toEqual([
      { x: 0, y: 0 },
      { x: 76, y: 0 },
      { x: 0, y: 36 },
      { x: 76, y: 36 },
    ]);
    for (const [k, t] of tiled.tiles!.entries()) {
      const crop = new Uint8Array(224 * 224 * 3);
      for (let y = 0; y < 224; y++) crop.set(rgb.subarray(((t.y + y) * w + t.x) * 3, ((t.y + y) * w + t.x + 224) * 3), y * 224 * 3);
      expect(maxDiff(tiled.tensor.subarray(k * 224 * 224 * 3, (k + 1) * 224 * 224 * 3), rgbToCaffe(crop))).toBe(0);
    }
  });

  it('a heatmap overlay is drawn on the same pixels (opacity 0 gives the stored image back)', async () => {
    const { rgba, rgb } = testImage(224, 224);
    const png = encodePng(224, 224, 4, rgba, await displayP3Profile());
    const map = { width: 224, height: 224, values: new Float32Array(224 * 224), threshold: 1 };
    const overlay = await renderHeatmapPng(png, map, { alpha: 0 });
    const drawn = await sharp(overlay).raw().toBuffer({ resolveWithObject: true });
    expect(drawn.info).toMatchObject({ width: 224, height: 224, channels: 3 });
    expect(maxDiff(drawn.data, rgb)).toBe(0);
    // At full opacity every pixel is the colour scale's (a map of zeros: the bottom of the jet scale).
    const heat = await sharp(await renderHeatmapPng(png, map, { alpha: 1 })).raw().toBuffer();
    expect([heat[0], heat[1], heat[2]]).toEqual([0, 0, 128]);
  });

  it('renderMaskPng marks the pixels at or above the pixel threshold', async () => {
    const values = new Float32Array(8 * 4);
    values[5] = 2;
    values[6] = 1.5;
    values[7] = 1.4999;
    const png = await renderMaskPng({ width: 8, height: 4, values, threshold: 1.5 });
    expect([png[24], png[25]]).toEqual([8, 0]); // IHDR: 8-bit greyscale, as MVTec ground truth
    const data = await sharp(png).extractChannel(0).raw().toBuffer();
    expect(data.length).toBe(32);
    expect(new Set(data)).toEqual(new Set([0, 255]));
    expect([...data].map((v, i) => (v === 255 ? i : -1)).filter((i) => i >= 0)).toEqual([5, 6]);
  });
});

describe('loadMask', () => {
  it('reads grey > 127 as defect, at the asked size (nearest neighbour)', async () => {
    // 64x32: a defect block at x 16..31, y 8..15 (value 200), a faint block at x 40..47 (value 100: not a defect).
    const px = new Uint8Array(64 * 32);
    for (let y = 8; y < 16; y++)
      for (let x = 16; x < 32; x++) px[y * 64 + x] = 200;
    for (let y = 0; y < 32; y++)
      for (let x = 40; x < 48; x++) px[y * 64 + x] = 100;
    const png = encodePng(64, 32, 1, px);
    const same = await loadMask(png, 64, 32);
    expect(same.reduce((a, b) => a + b, 0)).toBe(16 * 8);
    expect([same[8 * 64 + 16], same[8 * 64 + 15], same[0]]).toEqual([1, 0, 0]);
    const small = await loadMask(png, 16, 8); // 4x smaller: the block is x 4..7, y 2..3
    const want = new Uint8Array(16 * 8);
    for (let y = 2; y < 4; y++) for (let x = 4; x < 8; x++) want[y * 16 + x] = 1;
    expect(Array.from(small)).toEqual(Array.from(want));
    // No mask: all good. The wrong shape: refused, naming the mask.
    expect(Array.from(await loadMask(null, 3, 2))).toEqual([0, 0, 0, 0, 0, 0]);
    const err = await loadMask({ name: 'gt/000_mask.png', data: png }, 64, 64).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect((err as ImageDecodeError).input).toBe('gt/000_mask.png');
    expect((err as ImageDecodeError).message).toMatch(/64x32, not the shape of its 64x64 image/);
  });

  it('reads a real MVTec ground-truth mask at the image size and at half of it', async () => {
    const skip = bottleDataSkipReason();
    if (skip) return skipNote('loadMask on MVTec masks', skip);
    const file = bottleMask(bottle('test/broken_large', 1)[0]!);
    const grey = await sharp(readFileSync(file)).greyscale().raw().toBuffer({ resolveWithObject: true });
    expect([grey.info.width, grey.info.height]).toEqual([256, 256]);
    const full = await loadMask(file, 256, 256);
    let defect = 0;
    for (let i = 0; i < 256 * 256; i++) {
      expect(full[i]).toBe(grey.data[i * grey.info.channels]! > 127 ? 1 : 0);
      defect += full[i]!;
    }
    expect(defect).toBeGreaterThan(500);
    const half = await loadMask(file, 128, 128);
    const halfDefect = half.reduce((a, b) => a + b, 0);
    expect(Math.abs(halfDefect * 4 - defect) / defect).toBeLessThan(0.1);
  });
});
