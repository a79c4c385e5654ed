// Helpers that write real image files with sharp for the dataset tests.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp from 'sharp';

export type Fmt = 'png' | 'jpeg' | 'webp' | 'tiff' | 'gif';

/** A small solid image with a per-file colour (so different seeds give different bytes). */
export async function imageBytes(seed: number, fmt: Fmt = 'png', size = 16): Promise<Buffer> {
  const img = sharp({
    create: { width: size, height: size, channels: 3, background: { r: (seed * 37) % 256, g: (seed * 91) % 256, b: (seed * 53) % 256 } },
  });
  return img.toFormat(fmt).toBuffer();
}

export async function writeImage(file: string, seed: number, fmt: Fmt = 'png', size = 16): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, await imageBytes(seed, fmt, size));
}

export function writeBytes(file: string, data: Uint8Array | string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, data);
}

/** A binary mask PNG (0/255), single channel. */
export async function writeMask(file: string, size = 16): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  const px = Buffer.alloc(size * size);
  px.fill(255, 0, size * 2);
  await sharp(px, { raw: { width: size, height: size, channels: 1 } }).png().toFile(file);
}
