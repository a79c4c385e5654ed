// Decoding: real sharp, real files. Every error must be typed and name the image.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import {
  decodeImage,
  EmptyImageError,
  ImageDecodeError,
  ImageReadError,
  ImageTooLargeError,
  INPUT_ELEMENTS,
  LoupeError,
} from '../src/internal.js';
import { hasReference, referenceDir, sharedDir, skipNote, tempDir } from './support/env.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** A W x H RGB raw image from a pixel function. */
function rawRgb(w: number, h: number, px: (x: number, y: number) => [number, number, number]): Buffer {
  const buf = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const [r, g, b] = px(x, y);
      buf.set([r, g, b], (y * w + x) * 3);
    }
  return buf;
}

function mean(rgb: Uint8Array, channel: number, x0: number, x1: number, y0 = 0, y1 = 224): number {
  let s = 0;
  let n = 0;
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) {
      s += rgb[(y * 224 + x) * 3 + channel]!;
      n++;
    }
  return s / n;
}

const pattern = rawRgb(224, 224, (x, y) => [x, y, (x * 7 + y * 3) % 256]);

describe('decodeImage', () => {
  it('passes a 224x224 image through unresampled (reference PNGs)', async () => {
    if (!hasReference) return skipNote('reference PNGs', `not found in ${referenceDir}`);
    for (const name of ['chelsea', 'coffee', 'rocket']) {
      const file = join(referenceDir, `${name}_224.png`);
      const img = await decodeImage(file);
      const raw = decodePngRgb8(readFileSync(file)); // independent of sharp: what Pillow reads
      expect(img.name).toBe(file);
      expect(img.rgb.length).toBe(INPUT_ELEMENTS);
      expect(Buffer.from(img.rgb).equals(raw)).toBe(true);
      expect(img.source).toMatchObject({ format: 'png', width: 224, height: 224 });
    }
  });

  it('decodes lossless WebP and TIFF exactly', async () => {
    const input = sharp(pattern, { raw: { width: 224, height: 224, channels: 3 } });
    const webp = await input.clone().webp({ lossless: true }).toBuffer();
    const tiff = await input.clone().tiff({ compression: 'lzw' }).toBuffer();
    const w = await decodeImage(webp);
    const t = await decodeImage({ name: 'pattern.tiff', data: tiff });
    expect(w.source.format).toBe('webp');
    expect(t.source.format).toBe('tiff');
    expect(Buffer.from(w.rgb).equals(pattern)).toBe(true);
    expect(Buffer.from(t.rgb).equals(pattern)).toBe(true);
  });

  it('a large lossless WebP resizes exactly as the same pixels in a PNG (no shrink-on-load shortcut)', async () => {
    const big = rawRgb(1000, 1000, (x, y) => [(x * 3) % 256, (y * 5) % 256, ((x ^ y) * 7) % 256]);
    const raw = { raw: { width: 1000, height: 1000, channels: 3 as const } };
    const fromPng = await decodeImage(await sharp(big, raw).png().toBuffer());
    const fromWebp = await decodeImage(await sharp(big, raw).webp({ lossless: true }).toBuffer());
    expect(Buffer.from(fromWebp.rgb).equals(Buffer.from(fromPng.rgb))).toBe(true);
  });

  it('decodes JPEG (lossy) close to the source', async () => {
    const jpeg = await sharp(pattern, { raw: { width: 224, height: 224, channels: 3 } }).jpeg({ quality: 98 }).toBuffer();
    const img = await decodeImage(jpeg);
    let err = 0;
    for (let i = 0; i < INPUT_ELEMENTS; i++) err += Math.abs(img.rgb[i]! - pattern[i]!);
    expect(err / INPUT_ELEMENTS).toBeLessThan(3);
  });

  it('takes the first frame of an animated GIF', async () => {
    const frame = (r: number, g: number, b: number): Promise<Buffer> =>
      sharp({ create: { width: 224, height: 224, channels: 3, background: { r, g, b } } }).png().toBuffer();
    const gif = await sharp([await frame(255, 0, 0), await frame(0, 0, 255)], { join: { animated: true } }).gif().toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const img = await decodeImage(gif);
    expect(img.source.format).toBe('gif');
    expect(mean(img.rgb, 0, 0, 224)).toBeGreaterThan(250);
    expect(mean(img.rgb, 2, 0, 224)).toBeLessThan(5);
  });

  it('expands grayscale to RGB', async () => {
    const gray = Buffer.alloc(224 * 224);
    for (let i = 0; i < gray.length; i++) gray[i] = i % 251;
    const png = await sharp(gray, { raw: { width: 224, height: 224, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    expect((await sharp(png).metadata()).channels).toBe(1);
    const img = await decodeImage(png);
    let mismatches = 0;
    for (let i = 0; i < gray.length; i++) {
      if (img.rgb[i * 3] !== gray[i] || img.rgb[i * 3 + 1] !== gray[i] || img.rgb[i * 3 + 2] !== gray[i]) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('decodes a real grayscale dataset JPEG (256x256, resized) to R = G = B', async () => {
    const file = join(sharedDir(), 'datasets', 'mtd', 'magnetic_tile', 'train', 'good', 'exp0_num_743.jpg');
    if (!existsSync(file)) return skipNote('dataset JPEG', `${file} not found`);
    const img = await decodeImage(file);
    expect(img.source).toMatchObject({ format: 'jpeg', width: 256, height: 256, channels: 1 });
    let unequal = 0;
    for (let i = 0; i < INPUT_ELEMENTS; i += 3) if (img.rgb[i] !== img.rgb[i + 1] || img.rgb[i] !== img.rgb[i + 2]) unequal++;
    expect(unequal).toBe(0);
  });

  it('removes alpha without compositing (keeps stored colour)', async () => {
    const rgba = Buffer.alloc(224 * 224 * 4);
    for (let i = 0; i < 224 * 224; i++) rgba.set([10, 200, 30, i % 2 ? 0 : 255], i * 4);
    const png = await sharp(rgba, { raw: { width: 224, height: 224, channels: 4 } }).png().toBuffer();
    const img = await decodeImage(png);
    expect([img.rgb[0], img.rgb[1], img.rgb[2]]).toEqual([10, 200, 30]);
    expect([img.rgb[3], img.rgb[4], img.rgb[5]]).toEqual([10, 200, 30]); // alpha 0 pixel keeps its colour
  });

  it('alpha does not change the colours when the image is resized (no premultiplied resize)', async () => {
    const w = 300;
    const h = 260;
    const rgb = rawRgb(w, h, (x, y) => [(x * 7) % 256, (y * 5) % 256, (x + y) % 256]);
    const rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([rgb[i * 3]!, rgb[i * 3 + 1]!, rgb[i * 3 + 2]!, 3 + (i % 2) * 120], i * 4);
    const opaque = await decodeImage(await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer());
    for (const fit of ['squash', 'crop'] as const) {
      const want = fit === 'squash' ? opaque : await decodeImage(await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer(), { fit });
      const got = await decodeImage(await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer(), { fit });
      let maxErr = 0;
      for (let i = 0; i < INPUT_ELEMENTS; i++) maxErr = Math.max(maxErr, Math.abs(got.rgb[i]! - want.rgb[i]!));
      expect(maxErr).toBeLessThanOrEqual(1);
    }
  });

  it('reduces 16-bit PNGs to 8 bits', async () => {
    const png16 = await sharp(pattern, { raw: { width: 224, height: 224, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe('ushort');
    const img = await decodeImage(png16);
    let maxErr = 0;
    for (let i = 0; i < INPUT_ELEMENTS; i++) maxErr = Math.max(maxErr, Math.abs(img.rgb[i]! - pattern[i]!));
    expect(maxErr).toBeLessThanOrEqual(1);
  });

  it('applies EXIF orientation 6 (rotate 90 degrees clockwise)', async () => {
    // Stored: top half white, bottom half black. Displayed after a 90-degree CW turn: right half white.
    const stored = rawRgb(224, 224, (_x, y) => (y < 112 ? [255, 255, 255] : [0, 0, 0]));
    const jpeg = await sharp(stored, { raw: { width: 224, height: 224, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(6);
    const img = await decodeImage(jpeg);
    expect(img.source.orientation).toBe(6);
    expect(mean(img.rgb, 0, 0, 100)).toBeLessThan(10);    // left: black
    expect(mean(img.rgb, 0, 124, 224)).toBeGreaterThan(245); // right: white

    // Non-square: stored 448 wide x 224 high, portrait once upright -> dimensions swap before the squash.
    const wide = rawRgb(448, 224, (x) => (x < 224 ? [255, 0, 0] : [0, 0, 255]));
    const jpeg2 = await sharp(wide, { raw: { width: 448, height: 224, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const img2 = await decodeImage(jpeg2);
    // Left half of the stored image (red) ends up on top after a CW turn.
    expect(mean(img2.rgb, 0, 0, 224, 0, 100)).toBeGreaterThan(240);
    expect(mean(img2.rgb, 2, 0, 224, 124, 224)).toBeGreaterThan(240);
  });

  it("resizes with fit 'squash' (default) or 'crop'", async () => {
    // 672x224: red | green | blue thirds.
    const thirds = rawRgb(672, 224, (x) => (x < 224 ? [255, 0, 0] : x < 448 ? [0, 255, 0] : [0, 0, 255]));
    const png = await sharp(thirds, { raw: { width: 672, height: 224, channels: 3 } }).png().toBuffer();
    const squash = await decodeImage(png);
    expect(mean(squash.rgb, 0, 0, 60)).toBeGreaterThan(250);
    expect(mean(squash.rgb, 1, 90, 134)).toBeGreaterThan(250);
    expect(mean(squash.rgb, 2, 164, 224)).toBeGreaterThan(250);
    const crop = await decodeImage(png, { fit: 'crop' });
    expect(mean(crop.rgb, 1, 0, 224)).toBeGreaterThan(250); // only the green centre survives
    expect(squash.source).toMatchObject({ width: 672, height: 224 });
  });

  describe('errors name the image', () => {
    const ref = hasReference ? readFileSync(join(referenceDir, 'chelsea_224.png')) : undefined;

    it('truncated PNG', async () => {
      const png = ref ?? (await sharp(pattern, { raw: { width: 224, height: 224, channels: 3 } }).png().toBuffer());
      const file = join(tmp.dir, 'truncated.png');
      writeFileSync(file, png.subarray(0, Math.floor(png.length / 2)));
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageDecodeError);
      expect((err as LoupeError).input).toBe(file);
      expect((err as Error).message).toContain(file);
    });

    it('truncated JPEG', async () => {
      const jpeg = await sharp(pattern, { raw: { width: 224, height: 224, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
      const file = join(tmp.dir, 'truncated.jpg');
      writeFileSync(file, jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageDecodeError);
      expect((err as Error).message).toContain('truncated.jpg');
    });

    it('a file that is not an image', async () => {
      const file = join(tmp.dir, 'notes.png');
      writeFileSync(file, 'this is text, not a PNG\n');
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageDecodeError);
      expect((err as LoupeError).code).toBe('IMAGE_DECODE');
      expect((err as Error).message).toMatch(/notes\.png.*not a supported image format/);
    });

    it('an SVG drawing (libvips would render it): refused, raster photo formats only', async () => {
      const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>');
      const err = await decodeImage({ name: 'drawing.svg', data: svg }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageDecodeError);
      expect((err as Error).message).toBe('cannot decode image drawing.svg: svg images are not accepted (JPEG, PNG, WebP, TIFF, GIF)');
    });

    it('a 0-byte file and an empty buffer', async () => {
      const file = join(tmp.dir, 'empty.jpg');
      writeFileSync(file, '');
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EmptyImageError);
      expect((err as LoupeError).input).toBe(file);
      await expect(decodeImage({ name: 'cam0/frame.png', data: Buffer.alloc(0) })).rejects.toThrow(/cam0\/frame\.png/);
    });

    it('a missing file', async () => {
      const file = join(tmp.dir, 'nope.png');
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageReadError);
      expect((err as Error).message).toContain('no such file');
    });

    it('decompression bomb: a PNG header claiming 100000 x 100000 pixels is refused before decoding', async () => {
      const file = join(tmp.dir, 'bomb.png');
      writeFileSync(file, craftedPngHeader(100_000, 100_000));
      const t0 = performance.now();
      const err = await decodeImage(file).catch((e: unknown) => e);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(err).toBeInstanceOf(ImageTooLargeError);
      expect(err).toMatchObject({ code: 'IMAGE_TOO_LARGE', input: file, width: 100_000, height: 100_000, limitPixels: 100_000_000 });
      expect((err as Error).message).toContain('bomb.png');
    });

    it('a real image over a configured pixel limit', async () => {
      const big = await sharp({ create: { width: 2000, height: 1500, channels: 3, background: '#808080' } }).png().toBuffer();
      await expect(decodeImage({ name: 'big.png', data: big }, { limitInputPixels: 1_000_000 })).rejects.toBeInstanceOf(ImageTooLargeError);
      const ok = await decodeImage({ name: 'big.png', data: big }, { limitInputPixels: 3_000_000 });
      expect(ok.rgb[0]).toBe(128);
    });
  });
});

/** A syntactically valid PNG (signature, IHDR, tiny IDAT, IEND) that claims huge dimensions. */
function craftedPngHeader(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer): number => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Minimal PNG reader for 8-bit RGB, non-interlaced PNGs (the reference images): zlib + unfiltering. */
function decodePngRgb8(png: Buffer): Buffer {
  let off = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('ascii', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 2 || data[12] !== 0) throw new Error('test PNG reader: 8-bit RGB non-interlaced only');
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= 3 ? out[y * stride + x - 3]! : 0;
      const b = y > 0 ? out[(y - 1) * stride + x]! : 0;
      const c = x >= 3 && y > 0 ? out[(y - 1) * stride + x - 3]! : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = (line[x]! + pred) & 0xff;
    }
  }
  return out;
}
