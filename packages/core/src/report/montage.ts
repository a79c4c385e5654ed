// Image montages with sharp: sample images per label (paper Fig. 5), misclassified examples, and the
// 64 first-layer 7x7 filters of ResNet-50 (paper Fig. 8).

import sharp from 'sharp';

import { LoupeError } from '../errors.js';
import { escapeXml, FONT_FAMILY } from './svg.js';

/** A file path or encoded image bytes. */
export type ImageInput = string | Buffer;

const BG = { r: 255, g: 255, b: 255, alpha: 1 };

async function tile(input: ImageInput, size: number, fit: 'contain' | 'cover'): Promise<Buffer> {
  try {
    return await sharp(input).rotate().resize(size, size, { fit, background: BG }).flatten({ background: BG }).removeAlpha().png().toBuffer();
  } catch (err) {
    // A broken image must not break the report: show a grey tile instead.
    void err;
    return sharp({ create: { width: size, height: size, channels: 3, background: { r: 200, g: 200, b: 200 } } }).png().toBuffer();
  }
}

function textSvg(width: number, height: number, lines: readonly { text: string; x: number; y: number; size: number; anchor?: string; fill?: string; weight?: string }[]): Buffer {
  const body = lines
    .map((l) => `<text x="${l.x}" y="${l.y}" font-size="${l.size}" text-anchor="${l.anchor ?? 'start'}" fill="${l.fill ?? '#222'}"${l.weight ? ` font-weight="${l.weight}"` : ''}>${escapeXml(l.text)}</text>`)
    .join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT_FAMILY}">${body}</svg>`);
}

export interface LabelMontageOptions {
  /** Tile edge in px. Default 112. */
  tile?: number;
  /** Images per label (row). Default 6. */
  perLabel?: number;
  gap?: number;
  title?: string;
  fit?: 'contain' | 'cover';
}

/** One row per label: the label name, then up to `perLabel` images. */
export async function labelMontagePng(groups: readonly { label: string; images: readonly ImageInput[] }[], opts: LabelMontageOptions = {}): Promise<Buffer> {
  const size = opts.tile ?? 112;
  const per = opts.perLabel ?? 6;
  const gap = opts.gap ?? 6;
  const labelW = Math.min(240, 24 + Math.max(4, ...groups.map((g) => g.label.length)) * 8);
  const top = opts.title ? 36 : gap;
  const cols = Math.max(1, Math.min(per, Math.max(0, ...groups.map((g) => g.images.length))));
  const width = labelW + cols * (size + gap) + gap;
  const height = top + groups.length * (size + gap) + gap;
  const composites: sharp.OverlayOptions[] = [];
  const texts: { text: string; x: number; y: number; size: number; anchor?: string; weight?: string }[] = [];
  if (opts.title) texts.push({ text: opts.title, x: width / 2, y: 24, size: 16, anchor: 'middle', weight: 'bold' });
  for (let r = 0; r < groups.length; r++) {
    const g = groups[r] as { label: string; images: readonly ImageInput[] };
    const y = top + r * (size + gap);
    texts.push({ text: g.label, x: labelW - 10, y: y + size / 2 + 5, size: 14, anchor: 'end' });
    const imgs = g.images.slice(0, per);
    const tiles = await Promise.all(imgs.map((im) => tile(im, size, opts.fit ?? 'contain')));
    tiles.forEach((t, c) => composites.push({ input: t, left: labelW + c * (size + gap), top: y }));
  }
  composites.push({ input: textSvg(width, height, texts), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: BG } }).composite(composites).png().toBuffer();
}

export interface CaptionedImage {
  readonly image: ImageInput;
  /** Up to 3 short caption lines under the tile. */
  readonly caption: readonly string[];
  /** Caption colour (e.g. red for errors). */
  readonly color?: string;
}

/** A grid of images with captions under each. */
export async function captionedGridPng(items: readonly CaptionedImage[], opts: { tile?: number; columns?: number; title?: string; gap?: number } = {}): Promise<Buffer> {
  const size = opts.tile ?? 128;
  const gap = opts.gap ?? 8;
  const cols = Math.max(1, Math.min(opts.columns ?? 6, items.length || 1));
  const rows = Math.max(1, Math.ceil(items.length / cols));
  const capH = 16 * Math.max(1, ...items.map((i) => Math.min(3, i.caption.length))) + 6;
  const top = opts.title ? 36 : gap;
  const width = gap + cols * (size + gap);
  const height = top + rows * (size + capH + gap);
  const composites: sharp.OverlayOptions[] = [];
  const texts: { text: string; x: number; y: number; size: number; anchor?: string; fill?: string; weight?: string }[] = [];
  if (opts.title) texts.push({ text: opts.title, x: width / 2, y: 24, size: 16, anchor: 'middle', weight: 'bold' });
  if (items.length === 0) texts.push({ text: '(none)', x: width / 2, y: top + size / 2, size: 14, anchor: 'middle', fill: '#777' });
  const tiles = await Promise.all(items.map((it) => tile(it.image, size, 'contain')));
  items.forEach((it, i) => {
    const x = gap + (i % cols) * (size + gap);
    const y = top + Math.floor(i / cols) * (size + capH + gap);
    composites.push({ input: tiles[i] as Buffer, left: x, top: y });
    it.caption.slice(0, 3).forEach((line, li) => {
      const maxChars = Math.floor(size / 6.5);
      const text = line.length > maxChars ? `${line.slice(0, maxChars - 1)}…` : line;
      texts.push({ text, x: x + size / 2, y: y + size + 15 + li * 16, size: 12, anchor: 'middle', fill: it.color ?? '#222' });
    });
  });
  composites.push({ input: textSvg(width, height, texts), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: BG } }).composite(composites).png().toBuffer();
}

export interface Misclassified {
  readonly image: ImageInput;
  readonly trueLabel: string;
  readonly predictedLabel: string;
  /** Optional extra line (file name, score). */
  readonly note?: string;
}

/** Misclassified examples: "true: x" / "pred: y" under each image. */
export function misclassifiedPng(items: readonly Misclassified[], opts: { tile?: number; columns?: number; title?: string; max?: number } = {}): Promise<Buffer> {
  const list = items.slice(0, opts.max ?? 24).map((m) => ({
    image: m.image,
    caption: [`true: ${m.trueLabel}`, `pred: ${m.predictedLabel}`, ...(m.note ? [m.note] : [])],
    color: '#b00020',
  }));
  return captionedGridPng(list, { ...opts, title: opts.title ?? `Misclassified (${items.length})` });
}

export interface FilterMontageOptions {
  /** Kernel size (7 for ResNet-50 conv1). */
  kernel?: number;
  inChannels?: number;
  outChannels?: number;
  /** Channel order of the weights' input axis: the caffe ResNet-50 takes BGR. Default 'bgr'. */
  channelOrder?: 'bgr' | 'rgb';
  /** 'global' (MATLAB rescale(w) over all filters, default) or 'per-filter' min-max. */
  normalize?: 'global' | 'per-filter';
  /** Pixels per weight. Default 8. */
  scale?: number;
  columns?: number;
  gap?: number;
}

/**
 * Montage of first-layer conv filters from HWIO weights [k][k][inC][outC] (k=7, inC=3, outC=64 for
 * ResNet-50 conv1): each filter shown as a colour k x k image, nearest-neighbour upscaled.
 */
export async function conv1FiltersPng(weights: Float32Array, opts: FilterMontageOptions = {}): Promise<Buffer> {
  const k = opts.kernel ?? 7;
  const ci = opts.inChannels ?? 3;
  const co = opts.outChannels ?? 64;
  if (ci !== 3 && ci !== 1) throw new LoupeError('INVALID_ARGUMENT', `filter montage needs 1 or 3 input channels, got ${ci}`);
  if (weights.length !== k * k * ci * co) throw new LoupeError('INVALID_ARGUMENT', `conv1 weights have ${weights.length} values, expected ${k}x${k}x${ci}x${co} (HWIO)`);
  const scale = opts.scale ?? 8;
  const gap = opts.gap ?? 4;
  const cols = opts.columns ?? Math.ceil(Math.sqrt(co));
  const rows = Math.ceil(co / cols);
  const ts = k * scale;
  const width = gap + cols * (ts + gap);
  const height = gap + rows * (ts + gap);
  const px = Buffer.alloc(width * height * 3, 255);
  const at = (y: number, x: number, c: number, o: number): number => weights[((y * k + x) * ci + c) * co + o] as number;
  let gMin = Infinity;
  let gMax = -Infinity;
  for (const v of weights) {
    if (v < gMin) gMin = v;
    if (v > gMax) gMax = v;
  }
  const bgr = (opts.channelOrder ?? 'bgr') === 'bgr';
  for (let o = 0; o < co; o++) {
    let lo = gMin;
    let hi = gMax;
    if (opts.normalize === 'per-filter') {
      lo = Infinity;
      hi = -Infinity;
      for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) for (let c = 0; c < ci; c++) {
        const v = at(y, x, c, o);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const span = hi - lo || 1;
    const ox = gap + (o % cols) * (ts + gap);
    const oy = gap + Math.floor(o / cols) * (ts + gap);
    for (let y = 0; y < k; y++) {
      for (let x = 0; x < k; x++) {
        const rgb = [0, 1, 2].map((ch) => {
          const c = ci === 1 ? 0 : bgr ? 2 - ch : ch;
          return Math.round(((at(y, x, c, o) - lo) / span) * 255);
        });
        for (let dy = 0; dy < scale; dy++) {
          const row = (oy + y * scale + dy) * width;
          for (let dx = 0; dx < scale; dx++) {
            const p = (row + ox + x * scale + dx) * 3;
            px[p] = rgb[0] as number;
            px[p + 1] = rgb[1] as number;
            px[p + 2] = rgb[2] as number;
          }
        }
      }
    }
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 9 }).toBuffer();
}
