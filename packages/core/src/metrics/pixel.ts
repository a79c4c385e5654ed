// Pixel-level anomaly metrics over many anomaly maps and ground-truth masks:
// - pixel AUROC (every pixel of every image is a sample; anomalous = mask pixel set);
// - PRO (Bergmann et al., MVTec AD): per-region overlap. For a threshold t, PRO(t) is the mean over all
//   ground-truth regions (8-connected components of the masks, across all images) of the fraction of
//   the region's pixels scoring >= t; FPR(t) is the fraction of all normal pixels scoring >= t. The
//   metric is the area under PRO(FPR) for FPR in [0, maxFpr] (default 0.3), divided by maxFpr.
//
// Two implementations: exact (sort-based, memory ~ 17 bytes per pixel; for tests and small sets) and
// streaming (fixed histograms over a known score range; memory O(bins), any number of images; pixels
// in the same bin count as tied, so results match the exact ones up to the bin width).

import { LoupeError } from '../errors.js';

/** One anomaly map and its mask (null = a good image: every pixel normal). */
export interface PixelSample {
  /** Anomaly scores, row-major [height][width]; higher = more anomalous. */
  readonly scores: ArrayLike<number>;
  /** Ground truth, same size; a pixel is anomalous when its value > maskThreshold. */
  readonly mask: ArrayLike<number> | null;
  readonly width: number;
  readonly height: number;
}

export interface PixelMetricOptions {
  /** Mask values above this are anomalous. Default 0 (so 0/1 and 0/255 masks both work). */
  maskThreshold?: number;
  /** PRO integration limit. Default 0.3. */
  maxFpr?: number;
  /** Regions smaller than this many pixels are ignored for PRO (default 1 = none). */
  minRegionArea?: number;
}

export interface ConnectedComponents {
  /** Component id per pixel: 0 = background, 1..count. */
  readonly labels: Int32Array;
  readonly count: number;
  /** Area (pixels) of each component; index 0 unused. */
  readonly areas: Int32Array;
}

function checkSample(s: PixelSample, i: number): void {
  const n = s.width * s.height;
  if (!Number.isInteger(s.width) || !Number.isInteger(s.height) || s.width < 1 || s.height < 1) {
    throw new LoupeError('INVALID_ARGUMENT', `sample ${i}: bad size ${s.width}x${s.height}`);
  }
  if (s.scores.length !== n) throw new LoupeError('INVALID_ARGUMENT', `sample ${i}: ${s.scores.length} scores for ${s.width}x${s.height}`);
  if (s.mask !== null && s.mask.length !== n) throw new LoupeError('INVALID_ARGUMENT', `sample ${i}: mask has ${s.mask.length} values for ${s.width}x${s.height}`);
}

/** Connected components of the set pixels (value > threshold) of a mask; 8- or 4-connectivity. */
export function connectedComponents(
  mask: ArrayLike<number>,
  width: number,
  height: number,
  opts: { connectivity?: 4 | 8; threshold?: number } = {},
): ConnectedComponents {
  const eight = (opts.connectivity ?? 8) === 8;
  const thr = opts.threshold ?? 0;
  const n = width * height;
  const labels = new Int32Array(n);
  const stack = new Int32Array(n);
  const areas: number[] = [0];
  let count = 0;
  for (let start = 0; start < n; start++) {
    if (labels[start] !== 0 || !((mask[start] as number) > thr)) continue;
    count++;
    let area = 0;
    let top = 0;
    stack[top++] = start;
    labels[start] = count;
    while (top > 0) {
      const p = stack[--top] as number;
      area++;
      const x = p % width;
      const y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          if (dx === 0 && dy === 0) continue;
          if (!eight && dx !== 0 && dy !== 0) continue;
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (labels[q] === 0 && (mask[q] as number) > thr) {
            labels[q] = count;
            stack[top++] = q;
          }
        }
      }
    }
    areas.push(area);
  }
  return { labels, count, areas: Int32Array.from(areas) };
}

export interface ProCurve {
  /** Increasing FPR from 0 to 1. */
  readonly fpr: number[];
  readonly pro: number[];
  /** Threshold of each point (predicted anomalous when score >= threshold). */
  readonly thresholds: number[];
}

export interface PixelMetrics {
  /** null when there are no anomalous or no normal pixels. */
  readonly pixelAuroc: number | null;
  /** Normalised area under PRO up to maxFpr; null without regions or normal pixels. */
  readonly aupro: number | null;
  readonly maxFpr: number;
  readonly proCurve: ProCurve | null;
  readonly images: number;
  readonly normalPixels: number;
  readonly anomalousPixels: number;
  readonly regions: number;
}

/** Normalised area under y(x) for x in [0, xMax], linear interpolation at xMax. x non-decreasing from 0. */
export function areaUpTo(x: readonly number[], y: readonly number[], xMax: number): number {
  let a = 0;
  for (let i = 1; i < x.length; i++) {
    const x0 = x[i - 1] as number;
    const x1 = x[i] as number;
    const y0 = y[i - 1] as number;
    const y1 = y[i] as number;
    if (x0 >= xMax) break;
    if (x1 <= xMax) a += ((x1 - x0) * (y0 + y1)) / 2;
    else {
      const yAt = y0 + ((y1 - y0) * (xMax - x0)) / (x1 - x0);
      a += ((xMax - x0) * (y0 + yAt)) / 2;
      break;
    }
  }
  return a / xMax;
}

function aurocFromDescendingGroups(groupsNeg: ArrayLike<number>, groupsPos: ArrayLike<number>, totalNeg: number, totalPos: number): number {
  // Groups ordered from highest score to lowest; within a group, pairs count 1/2.
  let posAbove = 0;
  let sum = 0;
  for (let g = 0; g < groupsNeg.length; g++) {
    const neg = groupsNeg[g] as number;
    const pos = groupsPos[g] as number;
    sum += neg * (posAbove + pos / 2);
    posAbove += pos;
  }
  return sum / (totalNeg * totalPos);
}

/** Exact pixel AUROC and PRO (sort-based). Memory ~ 17 bytes per pixel. */
export function pixelMetricsExact(samples: Iterable<PixelSample>, opts: PixelMetricOptions = {}): PixelMetrics {
  const maxFpr = opts.maxFpr ?? 0.3;
  const thr = opts.maskThreshold ?? 0;
  const minArea = opts.minRegionArea ?? 1;
  const list = [...samples];
  let total = 0;
  list.forEach((s, i) => {
    checkSample(s, i);
    total += s.width * s.height;
  });
  const scores = new Float64Array(total);
  const isPos = new Uint8Array(total);
  const regionWeight = new Float64Array(total); // 1/area for region pixels, 0 otherwise
  let regions = 0;
  let o = 0;
  let pos = 0;
  for (const s of list) {
    const n = s.width * s.height;
    for (let p = 0; p < n; p++) scores[o + p] = s.scores[p] as number;
    if (s.mask !== null) {
      const cc = connectedComponents(s.mask, s.width, s.height, { threshold: thr });
      for (let p = 0; p < n; p++) {
        const l = cc.labels[p] as number;
        if (l === 0) continue;
        isPos[o + p] = 1;
        pos++;
        const area = cc.areas[l] as number;
        if (area >= minArea) regionWeight[o + p] = 1 / area;
      }
      for (let r = 1; r <= cc.count; r++) if ((cc.areas[r] as number) >= minArea) regions++;
    }
    o += n;
  }
  const neg = total - pos;
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  order.sort((a, b) => (scores[b] as number) - (scores[a] as number));
  const gNeg: number[] = [];
  const gPos: number[] = [];
  const gRegion: number[] = [];
  const gThr: number[] = [];
  for (let i = 0; i < total; ) {
    const t = scores[order[i] as number] as number;
    let cn = 0;
    let cp = 0;
    let cr = 0;
    while (i < total && scores[order[i] as number] === t) {
      const j = order[i] as number;
      if (isPos[j]) {
        cp++;
        cr += regionWeight[j] as number;
      } else cn++;
      i++;
    }
    gNeg.push(cn);
    gPos.push(cp);
    gRegion.push(cr);
    gThr.push(t);
  }
  return finish(gNeg, gPos, gRegion, gThr, { neg, pos, regions, images: list.length, maxFpr });
}

function finish(
  gNeg: ArrayLike<number>,
  gPos: ArrayLike<number>,
  gRegion: ArrayLike<number>,
  gThr: ArrayLike<number>,
  t: { neg: number; pos: number; regions: number; images: number; maxFpr: number },
): PixelMetrics {
  const pixelAuroc = t.neg > 0 && t.pos > 0 ? aurocFromDescendingGroups(gNeg, gPos, t.neg, t.pos) : null;
  let proCurve: ProCurve | null = null;
  let aupro: number | null = null;
  if (t.regions > 0 && t.neg > 0) {
    const fpr = [0];
    const pro = [0];
    const thresholds = [Infinity];
    let cn = 0;
    let cr = 0;
    for (let g = 0; g < gNeg.length; g++) {
      const dn = gNeg[g] as number;
      const dr = gRegion[g] as number;
      if (dn === 0 && dr === 0) continue;
      cn += dn;
      cr += dr;
      fpr.push(cn / t.neg);
      pro.push(Math.min(1, cr / t.regions));
      thresholds.push(gThr[g] as number);
    }
    proCurve = { fpr, pro, thresholds };
    aupro = areaUpTo(fpr, pro, t.maxFpr);
  }
  return { pixelAuroc, aupro, maxFpr: t.maxFpr, proCurve, images: t.images, normalPixels: t.neg, anomalousPixels: t.pos, regions: t.regions };
}

/**
 * Streaming pixel AUROC + PRO with histograms over [min, max] (scores outside are clamped into the end
 * bins). Add samples one by one; memory does not grow with the number of images.
 */
export class PixelMetricsAccumulator {
  readonly min: number;
  readonly max: number;
  readonly bins: number;
  private readonly neg: Float64Array;
  private readonly pos: Float64Array;
  private readonly region: Float64Array;
  private readonly thr: number;
  private readonly minArea: number;
  private readonly maxFpr: number;
  private nNeg = 0;
  private nPos = 0;
  private nRegions = 0;
  private nImages = 0;

  constructor(range: { min: number; max: number }, opts: PixelMetricOptions & { bins?: number } = {}) {
    if (!Number.isFinite(range.min) || !Number.isFinite(range.max) || !(range.max >= range.min)) {
      throw new LoupeError('INVALID_ARGUMENT', `bad score range [${range.min}, ${range.max}]`);
    }
    this.min = range.min;
    this.max = range.max;
    this.bins = opts.bins ?? 16384;
    if (!Number.isInteger(this.bins) || this.bins < 2) throw new LoupeError('INVALID_ARGUMENT', `bins must be an integer >= 2`);
    this.neg = new Float64Array(this.bins);
    this.pos = new Float64Array(this.bins);
    this.region = new Float64Array(this.bins);
    this.thr = opts.maskThreshold ?? 0;
    this.minArea = opts.minRegionArea ?? 1;
    this.maxFpr = opts.maxFpr ?? 0.3;
  }

  private bin(v: number): number {
    if (this.max === this.min) return 0;
    const b = Math.floor(((v - this.min) / (this.max - this.min)) * this.bins);
    return b < 0 ? 0 : b >= this.bins ? this.bins - 1 : b;
  }

  add(sample: PixelSample): void {
    checkSample(sample, this.nImages);
    const n = sample.width * sample.height;
    const s = sample.scores;
    if (sample.mask === null) {
      for (let p = 0; p < n; p++) {
        const b = this.bin(s[p] as number);
        this.neg[b] = (this.neg[b] as number) + 1;
      }
      this.nNeg += n;
    } else {
      const cc = connectedComponents(sample.mask, sample.width, sample.height, { threshold: this.thr });
      for (let p = 0; p < n; p++) {
        const b = this.bin(s[p] as number);
        const l = cc.labels[p] as number;
        if (l === 0) {
          this.neg[b] = (this.neg[b] as number) + 1;
          this.nNeg++;
        } else {
          this.pos[b] = (this.pos[b] as number) + 1;
          this.nPos++;
          const area = cc.areas[l] as number;
          if (area >= this.minArea) this.region[b] = (this.region[b] as number) + 1 / area;
        }
      }
      for (let r = 1; r <= cc.count; r++) if ((cc.areas[r] as number) >= this.minArea) this.nRegions++;
    }
    this.nImages++;
  }

  result(): PixelMetrics {
    const B = this.bins;
    const rev = (a: Float64Array): Float64Array => a.slice().reverse();
    const width = (this.max - this.min) / B;
    const thresholds = new Float64Array(B);
    for (let g = 0; g < B; g++) thresholds[g] = this.min + (B - 1 - g) * width; // lower edge of the bin
    return finish(rev(this.neg), rev(this.pos), rev(this.region), thresholds, {
      neg: this.nNeg,
      pos: this.nPos,
      regions: this.nRegions,
      images: this.nImages,
      maxFpr: this.maxFpr,
    });
  }
}

/** Min and max over all scores of the samples. */
export async function scoreRange(samples: Iterable<PixelSample> | AsyncIterable<PixelSample>): Promise<{ min: number; max: number }> {
  let min = Infinity;
  let max = -Infinity;
  for await (const s of samples) {
    const n = s.scores.length;
    for (let p = 0; p < n; p++) {
      const v = s.scores[p] as number;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (!(min <= max)) throw new LoupeError('INVALID_ARGUMENT', 'no scores');
  return { min, max };
}

/**
 * Streaming pixel metrics over a re-iterable source (e.g. a function that reloads maps and masks from
 * disk): one pass for the score range unless `range` is given, one pass to accumulate.
 */
export async function computePixelMetrics(
  source: () => Iterable<PixelSample> | AsyncIterable<PixelSample>,
  opts: PixelMetricOptions & { bins?: number; range?: { min: number; max: number } } = {},
): Promise<PixelMetrics> {
  const range = opts.range ?? (await scoreRange(source()));
  const acc = new PixelMetricsAccumulator(range, opts);
  for await (const s of source()) acc.add(s);
  return acc.result();
}
