// Heatmap overlays and binary defect masks as PNG (sharp). The colour scale is fixed by the pixel
// threshold, not by each image's own range: the map is normalised with normalizeScore (threshold ->
// 0.5), so a good image stays blue and the threshold is always the same colour (green-yellow in jet).
import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';

import { LoupeError } from '../../errors.js';
import type { ImageSource } from '../../image/decode.js';
import { decodeFullImage } from '../../image/decode.js';
import { inTurn } from '../../turns.js';
import { normalizeScore } from './threshold.js';

/** OpenCV/matplotlib-style 'jet' colour of v in [0, 1] as [r, g, b] bytes. */
export function jet(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, v));
  const c = (t: number): number => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - t))));
  return [c(3), c(2), c(1)];
}

const JET_LUT = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(jet(i / 255), i * 3);
  return lut;
})();

function checkMapSize(map: Float32Array, width: number, height: number): void {
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0) || map.length !== width * height) {
    throw new LoupeError('INVALID_ARGUMENT', `the map has ${map.length} values, not ${width}x${height}`);
  }
}

/** Binary mask (0/255 bytes) of map >= threshold. */
export function binaryMask(map: Float32Array, threshold: number): Uint8Array {
  const out = new Uint8Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = map[i]! >= threshold ? 255 : 0;
  return out;
}

export interface OverlayOptions {
  /** Raw pixel threshold (model.thresholds.pixel): maps to the middle of the colour scale. */
  threshold: number;
  /** Heatmap opacity, default 0.5. */
  alpha?: number;
  /** Outline the thresholded region in white (default true). */
  contour?: boolean;
  /**
   * Largest PNG wanted, in bytes (e.g. what fits in one gRPC message): a larger overlay is drawn again at
   * a smaller scale (map and image resized alike) until it fits. Default: no limit, the image's own size.
   */
  maxBytes?: number;
  /** Largest accepted width*height of the image (default the decoder's, 100 MP): the caller's limit. */
  limitInputPixels?: number;
}

/** Blends a jet heatmap of `map` (width x height) over RGB pixels of the same size. */
export function overlayPixels(rgb: Uint8Array, map: Float32Array, width: number, height: number, options: OverlayOptions): Uint8Array {
  const out = startOverlay(rgb, map, width, height);
  overlayRows(rgb, map, width, height, options, out, 0, height);
  return out;
}

function startOverlay(rgb: Uint8Array, map: Float32Array, width: number, height: number): Uint8Array {
  if (rgb.length !== width * height * 3 || map.length !== width * height) throw new LoupeError('INVALID_ARGUMENT', 'overlay: image and map sizes differ');
  return new Uint8Array(rgb.length);
}

/** Rows [y0, y1) of the overlay (blend, then the contour, which reads the map only). */
function overlayRows(rgb: Uint8Array, map: Float32Array, width: number, height: number, options: OverlayOptions, out: Uint8Array, y0: number, y1: number): void {
  const alpha = options.alpha ?? 0.5;
  const t = options.threshold;
  for (let i = y0 * width; i < y1 * width; i++) {
    const k = Math.round(255 * normalizeScore(map[i]!, t)) * 3;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round((1 - alpha) * rgb[i * 3 + c]! + alpha * JET_LUT[k + c]!);
  }
  if (options.contour ?? true) {
    for (let y = y0; y < y1; y++)
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!(map[i]! >= t)) continue;
        const edge =
          x === 0 || y === 0 || x === width - 1 || y === height - 1 || map[i - 1]! < t || map[i + 1]! < t || map[i - width]! < t || map[i + width]! < t;
        if (edge) out.set([255, 255, 255], i * 3);
      }
  }
}

/** Pixels per slice of an overlay drawn asynchronously (a few ms of work each). */
const OVERLAY_SLICE_PIXELS = 1 << 16;

/** overlayPixels in bands of rows, one per event-loop turn (turns.ts): what the renderers below use. */
async function overlayPixelsInTurns(rgb: Uint8Array, map: Float32Array, width: number, height: number, options: OverlayOptions): Promise<Uint8Array> {
  const out = startOverlay(rgb, map, width, height);
  const rows = Math.max(1, Math.floor(OVERLAY_SLICE_PIXELS / width));
  for (let y = 0; y < height; y += rows) await inTurn(() => overlayRows(rgb, map, width, height, options, out, y, Math.min(height, y + rows)));
  return out;
}

/** PNG of the heatmap over the original image (drawn at the map's size; the image is resized to it). */
export async function heatmapOverlayPng(image: ImageSource, map: Float32Array, width: number, height: number, options: OverlayOptions): Promise<Buffer> {
  checkMapSize(map, width, height);
  // The image straight at the map's size: a map is capped (MAX_MAP_SIDE), and a 7000x7000 source must not
  // be held at full size only to be shrunk again.
  const full = await decodeFullImage(image, { size: { width, height }, ...(options.limitInputPixels !== undefined ? { limitInputPixels: options.limitInputPixels } : {}) });
  const draw = async (w: number, h: number): Promise<Buffer> => {
    let rgb = full.rgb;
    if (full.width !== w || full.height !== h) {
      rgb = new Uint8Array(await sharp(Buffer.from(full.rgb.buffer, full.rgb.byteOffset, full.rgb.byteLength), { raw: { width: full.width, height: full.height, channels: 3 } }).resize(w, h, { fit: 'fill' }).raw().toBuffer());
    }
    const m = w === width && h === height ? map : await inTurn(() => resizeMap(map, width, height, w, h));
    const px = await overlayPixelsInTurns(rgb, m, w, h, options);
    return sharp(Buffer.from(px.buffer, px.byteOffset, px.byteLength), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
  };
  let png = await draw(width, height);
  const max = options.maxBytes;
  for (let scale = 1, tries = 0; max !== undefined && png.length > max; tries++) {
    if (tries === 6) throw new LoupeError('IMAGE_TOO_LARGE', `the heatmap of ${width}x${height} pixels does not fit in ${max} bytes, even at ${Math.round(scale * width)}x${Math.round(scale * height)}`);
    // PNG size grows about with the pixel count: aim 10% under the limit.
    scale *= Math.sqrt((0.9 * max) / png.length);
    png = await draw(Math.max(1, Math.round(scale * width)), Math.max(1, Math.round(scale * height)));
  }
  return png;
}

/**
 * The anomaly map shrunk to w x h (w <= width, h <= height): each output pixel is the MAXIMUM of the source
 * pixels whose centres fall in it, so a thin defect above the threshold keeps its outline (a mean would
 * dilute a 1-px scratch below it).
 */
function resizeMap(map: Float32Array, width: number, height: number, w: number, h: number): Float32Array {
  const out = new Float32Array(w * h).fill(-Infinity);
  const col = new Int32Array(width);
  for (let x = 0; x < width; x++) col[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / width));
  for (let y = 0; y < height; y++) {
    const row = Math.min(h - 1, Math.floor(((y + 0.5) * h) / height)) * w;
    for (let x = 0; x < width; x++) {
      const o = row + col[x]!;
      const v = map[y * width + x]!;
      if (v > out[o]!) out[o] = v;
    }
  }
  for (let i = 0; i < out.length; i++) if (out[i] === -Infinity) out[i] = 0;
  return out;
}

/** PNG of the raw heatmap alone (no image), coloured on the threshold-anchored scale. */
export async function heatmapPng(map: Float32Array, width: number, height: number, threshold: number): Promise<Buffer> {
  checkMapSize(map, width, height);
  const px = new Uint8Array(width * height * 3);
  for (let i = 0; i < map.length; i++) {
    const k = Math.round(255 * normalizeScore(map[i]!, threshold)) * 3;
    px[i * 3] = JET_LUT[k]!;
    px[i * 3 + 1] = JET_LUT[k + 1]!;
    px[i * 3 + 2] = JET_LUT[k + 2]!;
  }
  return sharp(Buffer.from(px.buffer), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** 8-bit greyscale PNG mask (255 = defect), MVTec ground-truth style. */
export async function maskPng(map: Float32Array, width: number, height: number, threshold: number): Promise<Buffer> {
  checkMapSize(map, width, height);
  const m = binaryMask(map, threshold);
  return sharp(Buffer.from(m.buffer), { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

export async function writeHeatmapOverlay(path: string, image: ImageSource, map: Float32Array, width: number, height: number, options: OverlayOptions): Promise<void> {
  await writeFile(path, await heatmapOverlayPng(image, map, width, height, options));
}

export async function writeMask(path: string, map: Float32Array, width: number, height: number, threshold: number): Promise<void> {
  await writeFile(path, await maskPng(map, width, height, threshold));
}

export interface HeatmapRenderOptions {
  /** Heatmap opacity, default 0.5. */
  alpha?: number;
  /** Largest PNG wanted, in bytes: a larger overlay is drawn smaller (see OverlayOptions.maxBytes). */
  maxBytes?: number;
  /** Largest accepted width*height of the image (the caller's limit). */
  limitInputPixels?: number;
}

/** PNG of an inspection's anomaly map over its image (colour scale anchored at the map's pixel threshold). */
export function renderHeatmapPng(image: ImageSource, heatmap: { width: number; height: number; values: Float32Array; threshold: number }, options: HeatmapRenderOptions = {}): Promise<Buffer> {
  return heatmapOverlayPng(image, heatmap.values, heatmap.width, heatmap.height, { ...options, threshold: heatmap.threshold });
}

/** 8-bit PNG mask (255 = defect pixel, at or above the map's pixel threshold), MVTec ground-truth style. */
export function renderMaskPng(heatmap: { width: number; height: number; values: Float32Array; threshold: number }): Promise<Buffer> {
  return maskPng(heatmap.values, heatmap.width, heatmap.height, heatmap.threshold);
}
