// Image file/buffer -> 224x224 RGB uint8 (HWC), the model's view of the image. One job: decoding.
//
// Choices (documented in the README too):
// - Formats: whatever sharp/libvips reads; JPEG, PNG, WebP, TIFF and GIF are tested. Animated GIF /
//   multi-page TIFF: the first frame/page only.
// - EXIF orientation is applied (.rotate() with no angle), so a camera's portrait shot is upright.
// - Grayscale is expanded to RGB (R = G = B); CMYK is converted to sRGB.
// - Embedded ICC profiles are IGNORED: pixel values are used as stored, as Pillow (and so Keras and
//   the reference outputs) read them. Applying the profile moved the rocket reference's conv1 mean
//   by 1% and swapped two of its top-5 classes.
// - Alpha is REMOVED, not flattened: the stored colour of each pixel is kept, as Pillow's
//   convert('RGB') (and so Keras load_img) does. Flattening would invent a background colour.
// - 16-bit images are reduced to 8 bits per channel.
// - Resize filter: bicubic (sharp 'cubic' = Catmull-Rom, a = -0.5), the same kernel as Pillow's
//   Image.BICUBIC used by the reference pipeline; libvips widens it when shrinking (antialiased),
//   as Pillow does. Large JPEGs are first shrunk by a power of 2 while decoding (DCT scaling; see
//   fastShrinkOnLoad below); every other format is resized from its full decode.
// - Geometry: fit 'squash' (default) scales each axis independently to 224x224, which is how the
//   evaluation datasets were made (256x256 squashed); fit 'crop' scales the shorter side to 224 and
//   takes the centre square.
// - An image that is already 224x224 (after orientation) is NOT resampled: its pixels reach the
//   model unchanged (the reference PNGs rely on this).
// - Decompression bombs: the pixel count from the header is checked against limitInputPixels
//   (default 100 MP) before any pixel is decoded; libvips enforces the same limit while decoding.
// - Truncated data is an error (failOn 'truncated'), not a silently grey bottom half.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';

import { EmptyImageError, ImageDecodeError, ImageReadError, ImageTooLargeError, LoupeError, messageOf } from '../errors.js';
import { INPUT_CHANNELS, INPUT_SIZE } from '../model.js';

/** A path, an encoded image in memory, or an encoded image with a name to use in errors. */
export type ImageSource = string | Uint8Array | { readonly name: string; readonly data: Uint8Array };

export type FitMode = 'squash' | 'crop';

export interface DecodeOptions {
  /** 'squash' (default): stretch to 224x224; 'crop': shorter side to 224, centre crop. */
  fit?: FitMode;
  /** Largest accepted width*height of the source image; default 100_000_000 (100 MP). */
  limitInputPixels?: number;
  /** Name used in errors for an unnamed buffer; default "<buffer>". */
  name?: string;
}

export interface DecodedImage {
  /** The path, the given name, or "<buffer>". */
  readonly name: string;
  /** 224*224*3 bytes, row-major HWC, RGB order, no alpha. What the model sees before normalisation. */
  readonly rgb: Uint8Array;
  readonly width: number;  // always INPUT_SIZE
  readonly height: number; // always INPUT_SIZE
  /** The source as stored, before orientation and resizing. */
  readonly source: {
    readonly format: string;
    readonly width: number;
    readonly height: number;
    readonly channels: number;
    /** EXIF orientation tag (1..8) when present. */
    readonly orientation: number | undefined;
  };
}

export const DEFAULT_LIMIT_INPUT_PIXELS = 100_000_000;

/**
 * Version of the pixels decodeImage produces: bumped whenever a change alters them for some file (2: no
 * fast shrink-on-load), so caches keyed by file content (the feature cache) do not serve older pixels.
 */
export const DECODE_VERSION = 2;
const RESIZE_KERNEL = 'cubic' as const;
/** sharp's names of the formats decodeImage accepts. */
const ACCEPTED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'tiff', 'gif']);

export function sourceName(source: ImageSource, fallback = '<buffer>'): string {
  if (typeof source === 'string') return source;
  if (source instanceof Uint8Array) return fallback;
  return source.name;
}

async function readSource(source: ImageSource, name: string): Promise<Buffer> {
  let data: Uint8Array;
  if (typeof source === 'string') {
    try {
      data = await readFile(source);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const detail = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : messageOf(err);
      throw new ImageReadError(name, detail, err);
    }
  } else {
    data = source instanceof Uint8Array ? source : source.data;
  }
  if (data.length === 0) throw new EmptyImageError(name);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function isPixelLimitError(err: unknown): boolean {
  return /pixel limit/i.test(messageOf(err));
}

/**
 * Raster photo formats only: libvips would also render SVG and PDF (documents, not camera frames; SVG
 * can reference other files). Throws ImageDecodeError naming the image otherwise.
 */
export function checkAcceptedFormat(name: string, format: string | undefined): void {
  if (!ACCEPTED_FORMATS.has(format ?? '')) throw new ImageDecodeError(name, `${format ?? 'these'} images are not accepted (JPEG, PNG, WebP, TIFF, GIF)`);
}

/** Decodes one image to the model's 224x224 RGB view. Errors are typed and name the image. */
export async function decodeImage(source: ImageSource, options: DecodeOptions = {}): Promise<DecodedImage> {
  const name = sourceName(source, options.name);
  const fit = options.fit ?? 'squash';
  const limit = options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  if (fit !== 'squash' && fit !== 'crop') throw new LoupeError('INVALID_ARGUMENT', `fit must be 'squash' or 'crop', got ${String(fit)}`);
  const data = await readSource(source, name);

  // Header only: format, dimensions and orientation, without decoding pixels.
  let meta: sharp.Metadata;
  try {
    meta = await sharp(data, { limitInputPixels: false, failOn: 'none' }).metadata();
  } catch (err) {
    throw new ImageDecodeError(name, cleanSharpMessage(err), err);
  }
  checkAcceptedFormat(name, meta.format);
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width <= 0 || height <= 0) throw new EmptyImageError(name, `it has no pixels (${width}x${height})`);
  if (width * height > limit) throw new ImageTooLargeError(name, width, height, limit);

  const swapped = (meta.orientation ?? 1) >= 5; // EXIF 5..8 rotate by 90 degrees
  const uprightW = swapped ? height : width;
  const uprightH = swapped ? width : height;

  const run = async (p: sharp.Sharp): Promise<{ data: Buffer; info: sharp.OutputInfo }> => {
    try {
      return await p.toBuffer({ resolveWithObject: true });
    } catch (err) {
      if (isPixelLimitError(err)) throw new ImageTooLargeError(name, width, height, limit, err);
      throw new ImageDecodeError(name, cleanSharpMessage(err), err);
    }
  };
  const toRgb8 = (p: sharp.Sharp): sharp.Sharp => p.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' });
  let pipeline = sharp(data, { limitInputPixels: limit, failOn: 'truncated', pages: 1, page: 0, ignoreIcc: true }).rotate();
  const resize = uprightW !== INPUT_SIZE || uprightH !== INPUT_SIZE;
  if (resize && meta.hasAlpha) {
    // sharp resizes with the colour premultiplied by alpha whatever the order of the calls, which
    // would darken and shift (mostly) transparent pixels: drop the alpha in a pass of its own first.
    const opaque = await run(toRgb8(pipeline));
    pipeline = sharp(opaque.data, { raw: { width: opaque.info.width, height: opaque.info.height, channels: opaque.info.channels } });
  }
  if (resize) {
    pipeline = pipeline.resize(INPUT_SIZE, INPUT_SIZE, {
      fit: fit === 'crop' ? 'cover' : 'fill',
      position: 'centre',
      kernel: RESIZE_KERNEL,
      // libvips shrinks JPEG and WebP while decoding; 'fast' leaves the kernel too little to do (a lossless
      // WebP of a PNG differed from it by up to 8 levels). With false, WebP matches the PNG exactly and
      // JPEG's DCT-domain shrink (kept: 2x faster on large frames) is 0.16 levels mean off a full decode.
      fastShrinkOnLoad: false,
    });
  }
  const out = await run(toRgb8(pipeline));
  const { info } = out;
  if (info.width !== INPUT_SIZE || info.height !== INPUT_SIZE || info.channels !== INPUT_CHANNELS) {
    throw new ImageDecodeError(name, `decoder produced ${info.width}x${info.height}x${info.channels}, expected ${INPUT_SIZE}x${INPUT_SIZE}x3`);
  }
  return {
    name,
    // A tight copy: sharp's Buffer may be a view into a larger pooled allocation.
    rgb: new Uint8Array(out.data.buffer.slice(out.data.byteOffset, out.data.byteOffset + out.data.byteLength)),
    width: INPUT_SIZE,
    height: INPUT_SIZE,
    source: {
      format: meta.format ?? 'unknown',
      width,
      height,
      channels: meta.channels ?? 0,
      orientation: meta.orientation,
    },
  };
}

function cleanSharpMessage(err: unknown): string {
  const msg = messageOf(err).trim();
  if (/unsupported image format/i.test(msg)) return 'not a supported image format (JPEG, PNG, WebP, TIFF, GIF, ...)';
  if (/premature end|truncated|unexpected end|end of stream|not enough data|read error|short read/i.test(msg)) return `truncated or corrupt data (${msg.split('\n')[0]})`;
  // libvips keeps its error text per thread: with several decodes at once sharp sometimes finds it
  // already cleared and says only this. The header was read, the pixels were not.
  if (msg === '' || /^unknown error$/i.test(msg)) return 'truncated or corrupt data (the decoder gave no detail)';
  return msg.split('\n')[0] ?? msg;
}
