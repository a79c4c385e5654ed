// --tile mode for images larger than the 224x224 model input: the image is scored at its native
// resolution as overlapping 224x224 tiles (the last tile of a row/column is flush with the edge), each
// tile's 28x28 patch scores are upsampled to 224x224, and the tile maps are stitched by averaging where
// they overlap. The Gaussian smoothing runs once on the stitched map (no seams at tile borders). The
// image score is the maximum of the tiles' (reweighted) image scores.
import { LoupeError } from '../errors.js';

export interface TileOptions {
  /** Tile side in pixels (the model input: 224). */
  size?: number;
  /** Fraction of a tile shared with its neighbour, in [0, 1). Default 0.25. */
  overlap?: number;
}

export interface Tile {
  x: number;
  y: number;
}

/** Tile origins along one axis of `length` pixels; covers [0, length) with the last tile flush. */
export function tileOrigins(length: number, size = 224, overlap = 0.25): number[] {
  if (!(overlap >= 0 && overlap < 1)) throw new LoupeError('INVALID_ARGUMENT', `tile overlap must be in [0, 1), got ${overlap}`);
  if (!Number.isInteger(length) || length < 1) throw new LoupeError('INVALID_ARGUMENT', `bad length ${length}`);
  if (length <= size) return [0];
  const stride = Math.max(1, Math.round(size * (1 - overlap)));
  const out: number[] = [];
  for (let o = 0; o + size < length; o += stride) out.push(o);
  const last = length - size;
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

/** All tiles of a width x height image, row-major. */
export function planTiles(width: number, height: number, options: TileOptions = {}): Tile[] {
  const size = options.size ?? 224;
  const overlap = options.overlap ?? 0.25;
  const xs = tileOrigins(width, size, overlap);
  const ys = tileOrigins(height, size, overlap);
  const tiles: Tile[] = [];
  for (const y of ys) for (const x of xs) tiles.push({ x, y });
  return tiles;
}

/**
 * Copies a size x size tile out of an interleaved uint8 image (HWC). Pixels outside the image (only when
 * the image is smaller than a tile) repeat the nearest edge pixel.
 */
export function cropTile(pixels: Uint8Array, width: number, height: number, channels: number, tile: Tile, size = 224): Uint8Array {
  if (pixels.length !== width * height * channels) throw new LoupeError('INVALID_ARGUMENT', `cropTile: expected ${width * height * channels} bytes, got ${pixels.length}`);
  const out = new Uint8Array(size * size * channels);
  for (let ty = 0; ty < size; ty++) {
    const sy = Math.min(height - 1, Math.max(0, tile.y + ty));
    for (let tx = 0; tx < size; tx++) {
      const sx = Math.min(width - 1, Math.max(0, tile.x + tx));
      const s = (sy * width + sx) * channels;
      const o = (ty * size + tx) * channels;
      for (let c = 0; c < channels; c++) out[o + c] = pixels[s + c]!;
    }
  }
  return out;
}

/** Averages overlapping tile maps into one width x height map. */
export class TileStitcher {
  private readonly sum: Float32Array;
  private readonly weight: Float32Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.sum = new Float32Array(width * height);
    this.weight = new Float32Array(width * height);
  }

  /** Adds a size x size map whose top-left corner is at tile (parts outside the image are ignored). */
  add(map: Float32Array, tile: Tile, size = 224): void {
    if (map.length !== size * size) throw new LoupeError('INVALID_ARGUMENT', `tile map must be ${size}x${size}`);
    const x1 = Math.min(this.width, tile.x + size);
    const y1 = Math.min(this.height, tile.y + size);
    for (let y = Math.max(0, tile.y); y < y1; y++) {
      const m = (y - tile.y) * size - tile.x;
      const o = y * this.width;
      for (let x = Math.max(0, tile.x); x < x1; x++) {
        this.sum[o + x] = this.sum[o + x]! + map[m + x]!;
        this.weight[o + x] = this.weight[o + x]! + 1;
      }
    }
  }

  /** The averaged map; pixels no tile covered are 0. */
  result(): Float32Array {
    const out = new Float32Array(this.width * this.height);
    for (let i = 0; i < out.length; i++) {
      const w = this.weight[i]!;
      out[i] = w > 0 ? this.sum[i]! / w : 0;
    }
    return out;
  }
}
