// Image file/buffer -> 8-bit RGB (HWC): the model's 224x224 view (decodeImage) and the full-size view that tiles,
// anomaly maps and heatmap overlays use (decodeFullImage). One set of rules for both, below.
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
// - Truncated or corrupt data is an error, not a silently grey bottom half or a scored smear: libvips'
//   fail_on 'error' for every format, and 'warning' for JPEG, whose decoder reports garbage in the scan
//   data ("Corrupt JPEG data: ...") only as a warning while it fills the damaged blocks in.
// - Memory: an image's pixel count is known from its header before any pixel is decoded; images being
//   rasterized at once hold at most MAX_DECODING_PIXELS pixels between them (one image alone always may),
//   so many large images arriving together wait for each other instead of multiplying memory.
import { lstat } from 'node:fs/promises';
import sharp from 'sharp';

import { NotRegularFileError, readRegularFile } from '../files.js';
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

/** The bytes of a source (files are read whole); ImageReadError / EmptyImageError naming it. */
export async function readSource(source: ImageSource, name: string): Promise<Buffer> {
  let data: Uint8Array;
  if (typeof source === 'string') {
    try {
      // Regular files only: a FIFO would hang the read and a link to /dev/zero grow it without bound.
      data = await readRegularFile(source);
    } catch (err) {
      throw new ImageReadError(name, await readFailure(source, err), err);
    }
  } else {
    data = source instanceof Uint8Array ? source : source.data;
  }
  if (data.length === 0) throw new EmptyImageError(name);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Why a file could not be read, in words for ImageReadError. */
async function readFailure(file: string, err: unknown): Promise<string> {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EISDIR' || (err instanceof NotRegularFileError && err.kind === 'a directory')) return 'it is a directory';
  if (err instanceof NotRegularFileError) return `${err.message}: images are read from regular files only`;
  if (code === 'ENOENT') return (await lstat(file).catch(() => undefined))?.isSymbolicLink() ? 'a symbolic link to nothing (dangling)' : 'no such file';
  return messageOf(err);
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

/** A source read and its header checked: the common first step of every decode. */
interface OpenedImage {
  readonly name: string;
  readonly data: Buffer;
  readonly meta: sharp.Metadata;
  /** Stored size. */
  readonly width: number;
  readonly height: number;
  /** Size once EXIF orientation is applied. */
  readonly uprightWidth: number;
  readonly uprightHeight: number;
  readonly limit: number;
}

/**
 * Reads the source and its header (format, size, orientation) without decoding pixels, applying the
 * rules every view shares: raster formats only, a non-empty image, the pixel limit.
 */
async function openImage(source: ImageSource, name: string, limit: number): Promise<OpenedImage> {
  const data = await readSource(source, name);
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
  return { name, data, meta, width, height, uprightWidth: swapped ? height : width, uprightHeight: swapped ? width : height, limit };
}

/**
 * The pixels of an opened image as 8-bit RGB (HWC), upright, resized to `size` when given, under the
 * rules of the header comment (ICC ignored, alpha removed not flattened, grey expanded, 16-bit reduced).
 * Every view of an image (model input, tiles, full-size maps and overlays) goes through here.
 */
async function rasterize(img: OpenedImage, size?: { width: number; height: number; fit: FitMode }): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const pixels = img.width * img.height;
  await decodingPixels.acquire(pixels);
  try {
    return await rasterizeNow(img, size);
  } finally {
    decodingPixels.release(pixels);
  }
}

async function rasterizeNow(img: OpenedImage, size?: { width: number; height: number; fit: FitMode }): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const run = async (p: sharp.Sharp): Promise<{ data: Buffer; info: sharp.OutputInfo }> => {
    try {
      return await p.toBuffer({ resolveWithObject: true });
    } catch (err) {
      if (isPixelLimitError(err)) throw new ImageTooLargeError(img.name, img.width, img.height, img.limit, err);
      throw new ImageDecodeError(img.name, cleanSharpMessage(err), err);
    }
  };
  const toRgb8 = (p: sharp.Sharp): sharp.Sharp => p.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' });
  let pipeline = sharp(img.data, { limitInputPixels: img.limit, failOn: failOnLevel(img.meta.format), pages: 1, page: 0, ignoreIcc: true }).rotate();
  const resize = size !== undefined && (img.uprightWidth !== size.width || img.uprightHeight !== size.height);
  if (resize && img.meta.hasAlpha) {
    // sharp resizes with the colour premultiplied by alpha whatever the order of the calls, which
    // would darken and shift (mostly) transparent pixels: drop the alpha in a pass of its own first.
    const opaque = await run(toRgb8(pipeline));
    pipeline = sharp(opaque.data, { raw: { width: opaque.info.width, height: opaque.info.height, channels: opaque.info.channels } });
  }
  if (resize) {
    pipeline = pipeline.resize(size.width, size.height, {
      fit: size.fit === 'crop' ? 'cover' : 'fill',
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
  if (info.channels !== INPUT_CHANNELS || (size && (info.width !== size.width || info.height !== size.height))) {
    throw new ImageDecodeError(img.name, `decoder produced ${info.width}x${info.height}x${info.channels}, expected ${size ? `${size.width}x${size.height}` : 'RGB'}x3`);
  }
  // A tight copy when sharp's Buffer is a view into a larger (pooled) allocation; a buffer of its own is
  // kept as it is (copying a large one costs the event loop milliseconds per image).
  const d = out.data;
  const rgb = d.byteOffset === 0 && d.buffer.byteLength === d.byteLength ? new Uint8Array(d.buffer) : new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));
  return { rgb, width: info.width, height: info.height };
}

/** libvips' fail_on level per format (see the header comment). */
function failOnLevel(format: string | undefined): 'warning' | 'error' {
  return format === 'jpeg' ? 'warning' : 'error';
}

/** Pixels of stored images that may be rasterized at once, process-wide (see the header comment). */
export const MAX_DECODING_PIXELS = 100_000_000;

/** A FIFO budget of pixels: a waiter goes when its pixels fit, or when nothing else is decoding. */
class PixelBudget {
  private used = 0;
  private readonly waiters: { pixels: number; go: () => void }[] = [];

  constructor(private readonly max: number) {}

  acquire(pixels: number): Promise<void> | void {
    if (this.waiters.length === 0 && (this.used === 0 || this.used + pixels <= this.max)) {
      this.used += pixels;
      return;
    }
    return new Promise((go) => this.waiters.push({ pixels, go }));
  }

  release(pixels: number): void {
    this.used -= pixels;
    while (this.waiters.length > 0 && (this.used === 0 || this.used + this.waiters[0]!.pixels <= this.max)) {
      const w = this.waiters.shift()!;
      this.used += w.pixels;
      w.go();
    }
  }
}

const decodingPixels = new PixelBudget(MAX_DECODING_PIXELS);

function sourceInfo(img: OpenedImage): DecodedImage['source'] {
  return { format: img.meta.format ?? 'unknown', width: img.width, height: img.height, channels: img.meta.channels ?? 0, orientation: img.meta.orientation };
}

/** Decodes one image to the model's 224x224 RGB view. Errors are typed and name the image. */
export async function decodeImage(source: ImageSource, options: DecodeOptions = {}): Promise<DecodedImage> {
  const name = sourceName(source, options.name);
  const fit = options.fit ?? 'squash';
  const limit = options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  if (fit !== 'squash' && fit !== 'crop') throw new LoupeError('INVALID_ARGUMENT', `fit must be 'squash' or 'crop', got ${String(fit)}`);
  const img = await openImage(source, name, limit);
  const { rgb } = await rasterize(img, { width: INPUT_SIZE, height: INPUT_SIZE, fit });
  return { name, rgb, width: INPUT_SIZE, height: INPUT_SIZE, source: sourceInfo(img) };
}

/** An image at its own resolution (upright), for tiles, full-size anomaly maps and overlays. */
export interface FullImage {
  readonly name: string;
  /** width * height * 3 bytes, HWC RGB. */
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** The upright size of the source (width/height differ only when `minSide` enlarged it). */
  readonly sourceWidth: number;
  readonly sourceHeight: number;
}

export interface FullDecodeOptions {
  /** Enlarge (squash, bicubic) so that each side is at least this long; default 1 (never). */
  minSide?: number;
  /**
   * Decode straight to this size instead (squash, bicubic; libvips shrinks while decoding, so a huge image
   * never exists at full size): what an overlay on a size-capped anomaly map needs. Overrides minSide.
   */
  size?: { width: number; height: number };
  /** Called with the upright size once the header is read, before any pixel is decoded (may throw to refuse). */
  beforeDecode?: (width: number, height: number) => void;
  limitInputPixels?: number;
  /** Name used in errors for an unnamed buffer. */
  name?: string;
}

/**
 * Decodes an image at its own resolution with the same rules as decodeImage (so the pixels of a tile, a
 * heatmap overlay and the model view agree), optionally enlarged to `minSide`.
 */
export async function decodeFullImage(source: ImageSource, options: FullDecodeOptions = {}): Promise<FullImage> {
  const name = sourceName(source, options.name);
  const img = await openImage(source, name, options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS);
  options.beforeDecode?.(img.uprightWidth, img.uprightHeight);
  const minSide = options.minSide ?? 1;
  const width = options.size?.width ?? Math.max(img.uprightWidth, minSide);
  const height = options.size?.height ?? Math.max(img.uprightHeight, minSide);
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) throw new LoupeError('INVALID_ARGUMENT', `size must be positive integers, got ${width}x${height}`);
  const out = await rasterize(img, width !== img.uprightWidth || height !== img.uprightHeight ? { width, height, fit: 'squash' } : undefined);
  return { name, rgb: out.rgb, width: out.width, height: out.height, sourceWidth: img.uprightWidth, sourceHeight: img.uprightHeight };
}

function cleanSharpMessage(err: unknown): string {
  const msg = messageOf(err).trim();
  if (/unsupported image format/i.test(msg)) return 'not a supported image format (JPEG, PNG, WebP, TIFF, GIF, ...)';
  if (/premature end|truncated|unexpected end|end of stream|not enough data|read error|short read|corrupt/i.test(msg)) return `truncated or corrupt data (${msg.split('\n')[0]})`;
  // libvips keeps its error text per thread: with several decodes at once sharp sometimes finds it
  // already cleared and says only this. The header was read, the pixels were not.
  if (msg === '' || /^unknown error$/i.test(msg)) return 'truncated or corrupt data (the decoder gave no detail)';
  return msg.split('\n')[0] ?? msg;
}
