// An image as the model's inputs: one 224x224 view (the whole image squashed, decodeImage) or, in tile
// mode, overlapping 224x224 tiles cut at native resolution (decodeFullImage), caffe-normalised.
import { LoupeError } from '../errors.js';
import { INPUT_ELEMENTS, INPUT_SIZE } from '../model.js';
import { rgbToCaffe } from '../preprocess.js';
import { decodeFullImage, decodeImage, DEFAULT_LIMIT_INPUT_PIXELS, sourceName, type FitMode, type ImageSource } from './decode.js';
import { cropTile, planTiles, type Tile, type TileOptions } from './tiles.js';

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
  /**
   * Test-time flips (withFlips): views 1.. are these mirror images of view 0, not tiles. Only a hybrid
   * model's head reads them; the memory bank scores view 0.
   */
  flips?: readonly Flip[];
}

/** A mirror image: left-right ('hflip') or top-bottom ('vflip'). */
export type Flip = 'hflip' | 'vflip';
export const FLIP_NAMES: readonly Flip[] = ['hflip', 'vflip'];

/**
 * Mirrors an h x w grid of c-channel cells (an image tensor, a patch map): the same function flips an
 * image and flips a map of the flipped image back onto the image.
 */
export function flipGrid(src: Float32Array, h: number, w: number, c: number, flip: Flip, out = new Float32Array(h * w * c)): Float32Array {
  if (src.length < h * w * c || out.length < h * w * c) throw new LoupeError('INVALID_ARGUMENT', `flipGrid: ${src.length} values for ${h}x${w}x${c}`);
  for (let y = 0; y < h; y++) {
    const sy = flip === 'vflip' ? h - 1 - y : y;
    for (let x = 0; x < w; x++) {
      const sx = flip === 'hflip' ? w - 1 - x : x;
      const o = (y * w + x) * c;
      const s = (sy * w + sx) * c;
      for (let k = 0; k < c; k++) out[o + k] = src[s + k]!;
    }
  }
  return out;
}

/** A whole-image view with its mirror images appended as views 1.. (in `flips` order). */
export function withFlips(image: PreparedImage, flips: readonly Flip[]): PreparedImage {
  if (flips.length === 0) return image;
  if (image.tiles || image.views !== 1 || image.flips) throw new LoupeError('INVALID_ARGUMENT', `test-time flips need one whole-image view (${image.name} has ${image.views})`);
  const tensor = new Float32Array((1 + flips.length) * INPUT_ELEMENTS);
  tensor.set(image.tensor);
  flips.forEach((f, i) => flipGrid(image.tensor, INPUT_SIZE, INPUT_SIZE, 3, f, tensor.subarray((i + 1) * INPUT_ELEMENTS, (i + 2) * INPUT_ELEMENTS)));
  return { ...image, tensor, views: 1 + flips.length, flips: [...flips] };
}

export interface PrepareOptions {
  /** null/undefined: whole image resized to 224x224; else tile at native resolution. */
  tile?: TileOptions | null;
  /** Whole-image mode: 'squash' (default) or 'crop'. */
  fit?: FitMode;
  limitInputPixels?: number;
  /** Name used in errors for an unnamed buffer. */
  name?: string;
}

/**
 * Most tiles one image may be cut into (each a 602 KB view, and CNN time): about a 4000x3000 frame at the
 * default overlap. A larger image is refused (IMAGE_TOO_LARGE) before its pixels are decoded.
 */
export const MAX_TILES = 512;

/** Decodes an image into its model views. */
export async function prepareImage(source: ImageSource, options: PrepareOptions = {}): Promise<PreparedImage> {
  const limit = options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS;
  const named = options.name !== undefined ? { name: options.name } : {};
  if (!options.tile) {
    const img = await decodeImage(source, { fit: options.fit ?? 'squash', limitInputPixels: limit, ...named });
    const swapped = (img.source.orientation ?? 1) >= 5;
    const width = swapped ? img.source.height : img.source.width;
    const height = swapped ? img.source.width : img.source.height;
    return { name: img.name, width, height, tiles: null, tiledWidth: INPUT_SIZE, tiledHeight: INPUT_SIZE, tensor: rgbToCaffe(img.rgb), views: 1 };
  }
  const size = options.tile.size ?? INPUT_SIZE;
  if (size !== INPUT_SIZE) throw new LoupeError('INVALID_ARGUMENT', `tile size must be the model input (${INPUT_SIZE}), got ${size}`);
  const tileOptions = options.tile;
  const full = await decodeFullImage(source, {
    minSide: INPUT_SIZE,
    limitInputPixels: limit,
    ...named,
    beforeDecode: (w, h) => {
      const n = planTiles(Math.max(w, INPUT_SIZE), Math.max(h, INPUT_SIZE), tileOptions).length;
      if (n > MAX_TILES) {
        const input = options.name ?? sourceName(source);
        throw new LoupeError('IMAGE_TOO_LARGE', `image ${input} is too large for tile mode: ${w}x${h} pixels make ${n} tiles of ${INPUT_SIZE}; the limit is ${MAX_TILES}`, { input });
      }
    },
  });
  const tiles = planTiles(full.width, full.height, options.tile);
  const tensor = new Float32Array(tiles.length * INPUT_ELEMENTS);
  tiles.forEach((t, i) => rgbToCaffe(cropTile(full.rgb, full.width, full.height, 3, t, size), tensor, i));
  return { name: full.name, width: full.sourceWidth, height: full.sourceHeight, tiles, tiledWidth: full.width, tiledHeight: full.height, tensor, views: tiles.length };
}
