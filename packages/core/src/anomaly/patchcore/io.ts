// Image views for the one-class scorer: an image becomes one 224x224 model input (squashed, core's
// decodeImage) or, in tile mode, several 224x224 tiles cut at native resolution. Also mask loading.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';

import { ImageDecodeError, ImageReadError, ImageTooLargeError, LoupeError, messageOf } from '../../errors.js';
import { checkAcceptedFormat, decodeImage, DEFAULT_LIMIT_INPUT_PIXELS, sourceName, type ImageSource } from '../../image/decode.js';
import { INPUT_ELEMENTS, INPUT_SIZE } from '../../model.js';
import { rgbToCaffe } from '../../preprocess.js';
import { cropTile, planTiles, type Tile, type TileOptions } from './tiling.js';

/** One image as the model sees it: 1 view (whole image) or one view per tile. */
export interface PreparedImage {
  name: string;
  /** Size of the output anomaly map: the upright source image. */
  width: number;
  height: number;
  /** Tile origins in the (possibly enlarged, see below) tiled image; null = whole-image mode. */
  tiles: Tile[] | null;
  /** Size of the image the tiles were cut from (>= 224 per side; equals width/height unless enlarged). */
  tiledWidth: number;
  tiledHeight: number;
  /** Caffe-normalised views, [views][224][224][3]. */
  tensor: Float32Array;
  views: number;
}

export interface PrepareOptions {
  /** null/undefined: whole image squashed to 224x224; else tile at native resolution. */
  tile?: TileOptions | null;
  limitInputPixels?: number;
}

async function readBytes(source: ImageSource, name: string): Promise<Buffer> {
  if (typeof source !== 'string') {
    const d = source instanceof Uint8Array ? source : source.data;
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  }
  try {
    return await readFile(source);
  } catch (err) {
    throw new ImageReadError(name, messageOf(err), err);
  }
}

/** Full-resolution upright RGB (HWC uint8), enlarged (squash) to at least minSide per axis. */
export async function decodeFullRgb(
  source: ImageSource,
  minSide = INPUT_SIZE,
  limitInputPixels = DEFAULT_LIMIT_INPUT_PIXELS,
): Promise<{ name: string; rgb: Uint8Array; width: number; height: number; sourceWidth: number; sourceHeight: number }> {
  const name = sourceName(source);
  const data = await readBytes(source, name);
  try {
    const base = sharp(data, { limitInputPixels, failOn: 'truncated', pages: 1, page: 0 }).rotate();
    const meta = await sharp(data, { limitInputPixels: false }).metadata();
    checkAcceptedFormat(name, meta.format);
    const swapped = (meta.orientation ?? 1) >= 5;
    const w0 = (swapped ? meta.height : meta.width) ?? 0;
    const h0 = (swapped ? meta.width : meta.height) ?? 0;
    if (w0 <= 0 || h0 <= 0) throw new LoupeError('IMAGE_EMPTY', `image ${name} has no pixels`, { input: name });
    if (w0 * h0 > limitInputPixels) throw new ImageTooLargeError(name, w0, h0, limitInputPixels);
    const w = Math.max(w0, minSide);
    const h = Math.max(h0, minSide);
    const pipeline = (w !== w0 || h !== h0 ? base.resize(w, h, { fit: 'fill', kernel: 'cubic' }) : base).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' });
    const out = await pipeline.toBuffer({ resolveWithObject: true });
    if (out.info.channels !== 3) throw new ImageDecodeError(name, `decoder produced ${out.info.channels} channels`);
    return { name, rgb: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength), width: out.info.width, height: out.info.height, sourceWidth: w0, sourceHeight: h0 };
  } catch (err) {
    if (err instanceof LoupeError) throw err;
    throw new ImageDecodeError(name, messageOf(err).split('\n')[0] ?? 'decode failed', err);
  }
}

/** Decodes an image into its model views. */
export async function prepareImage(source: ImageSource, options: PrepareOptions = {}): Promise<PreparedImage> {
  const limit = options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  if (!options.tile) {
    const img = await decodeImage(source, { fit: 'squash', limitInputPixels: limit });
    const swapped = (img.source.orientation ?? 1) >= 5;
    const width = swapped ? img.source.height : img.source.width;
    const height = swapped ? img.source.width : img.source.height;
    return { name: img.name, width, height, tiles: null, tiledWidth: INPUT_SIZE, tiledHeight: INPUT_SIZE, tensor: rgbToCaffe(img.rgb), views: 1 };
  }
  const size = options.tile.size ?? INPUT_SIZE;
  if (size !== INPUT_SIZE) throw new LoupeError('INVALID_ARGUMENT', `tile size must be the model input (${INPUT_SIZE}), got ${size}`);
  const full = await decodeFullRgb(source, INPUT_SIZE, limit);
  const tiles = planTiles(full.width, full.height, options.tile);
  const tensor = new Float32Array(tiles.length * INPUT_ELEMENTS);
  tiles.forEach((t, i) => rgbToCaffe(cropTile(full.rgb, full.width, full.height, 3, t, size), tensor, i));
  return { name: full.name, width: full.sourceWidth, height: full.sourceHeight, tiles, tiledWidth: full.width, tiledHeight: full.height, tensor, views: tiles.length };
}

/**
 * A binary mask (grey value > 127 = defect) as 0/1 bytes at width x height (nearest-neighbour if the
 * file has another size). null source = an all-good mask.
 */
export async function loadMask(source: ImageSource | null | undefined, width: number, height: number): Promise<Uint8Array> {
  if (source === null || source === undefined) return new Uint8Array(width * height);
  const name = sourceName(source);
  const data = await readBytes(source, name);
  let meta: sharp.Metadata;
  try {
    meta = await sharp(data).metadata();
  } catch (err) {
    throw new ImageDecodeError(name, messageOf(err).split('\n')[0] ?? 'mask decode failed', err);
  }
  // Another resolution of the same frame is resized (a full-size mask for a downscaled image); another
  // shape is the wrong mask, and stretching it would score pixels against the wrong places.
  const mw = meta.width ?? 0;
  const mh = meta.height ?? 0;
  if (!(mw > 0 && mh > 0) || Math.abs(Math.log((mw / mh) / (width / height))) > 0.02) {
    throw new ImageDecodeError(name, `the mask is ${mw}x${mh}, not the shape of its ${width}x${height} image`);
  }
  try {
    const out = await sharp(data).removeAlpha().greyscale().resize(width, height, { fit: 'fill', kernel: 'nearest' }).raw().toBuffer({ resolveWithObject: true });
    const mask = new Uint8Array(width * height);
    const ch = out.info.channels;
    for (let i = 0; i < mask.length; i++) mask[i] = out.data[i * ch]! > 127 ? 1 : 0;
    return mask;
  } catch (err) {
    throw new ImageDecodeError(name, messageOf(err).split('\n')[0] ?? 'mask decode failed', err);
  }
}
