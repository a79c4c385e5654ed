// Large images through the Inspector (issue 16, item 1): a 7000x7000 flat PNG is 150 KB on disk but 49 MP.
// Its anomaly map is capped at MAX_MAP_SIDE per side (4 MB, not 196 MB), built one image per event-loop
// turn, its peak located in source pixels, its heatmap drawn at the map's size without holding the image at
// full size; the process stays responsive and its memory bounded. Tile mode refuses an image that would
// need more than MAX_TILES views, before decoding it.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, Inspector, LoupeError, MAX_MAP_SIDE, MAX_TILES, renderHeatmapPng, renderMaskPng, trainOneClass, type InspectionResult } from '../../src/internal.js';
import { bottle, bottleSkipReason } from '../support/bottle.js';
import { skipNote, tempDir } from '../support/env.js';

const skip = bottleSkipReason();
if (skip) skipNote('large images', skip);

const tmp = tempDir('loupe-large-');
afterAll(() => tmp.cleanup());

/** A flat grey W x H PNG (tiny on disk, huge in pixels) with a dark square at (x, y) of side `s`. */
async function flatPng(width: number, height: number, spot?: { x: number; y: number; s: number }): Promise<Buffer> {
  const base = sharp({ create: { width, height, channels: 3, background: { r: 128, g: 132, b: 136 } } });
  if (!spot) return base.png({ compressionLevel: 9 }).toBuffer();
  const square = await sharp({ create: { width: spot.s, height: spot.s, channels: 3, background: { r: 10, g: 10, b: 10 } } }).png().toBuffer();
  return base.composite([{ input: square, left: spot.x, top: spot.y }]).png({ compressionLevel: 9 }).toBuffer();
}

/**
 * The longest the event loop went without running a 5 ms timer while `work` ran, and the peaks of the
 * process's RSS and of its array buffers (what maps, images and overlays are held in; unlike RSS, not
 * inflated by what the allocator keeps of libvips' decode buffers).
 */
async function watch<T>(work: () => Promise<T>): Promise<{ value: T; maxLagMs: number; peakRss: number; peakBuffers: number }> {
  let last = performance.now();
  let maxLagMs = 0;
  let peakRss = 0;
  let peakBuffers = 0;
  const sample = (): void => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
  };
  sample();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last);
    last = now;
    sample();
  }, 5);
  try {
    const value = await work();
    sample();
    return { value, maxLagMs, peakRss, peakBuffers };
  } finally {
    clearInterval(timer);
  }
}

describe.skipIf(!!skip)('large images', () => {
  let engine: Engine;
  let inspector: Inspector;
  let tiled: Inspector;

  beforeAll(async () => {
    engine = await Engine.open({ maxBatch: 8 });
    const good = bottle('train/good', 6);
    inspector = await Inspector.open((await trainOneClass({ engine, good, coresetRatio: 0.05, validationFraction: 0.34 })).model, { engine });
    tiled = await Inspector.open((await trainOneClass({ engine, good: good.slice(0, 3), coresetRatio: 0.05, validationFraction: 0.34, tile: true })).model, { engine });
    // The first inspection allocates the engine's buffers: not what the test measures.
    const warm = await inspector.inspect(good[0]!, { heatmap: true });
    await renderHeatmapPng(good[0]!, warm.heatmap!);
  });

  it('a 7000x7000 image: the map is capped, the peak is in source pixels, the heatmap fits, the loop stays free', async () => {
    const png = await flatPng(7000, 7000, { x: 5200, y: 1400, s: 500 });
    expect(png.length).toBeLessThan(400_000);
    // Eight at once, as eight clients would send them, each with its heatmap drawn; twice: the first round
    // also grows the allocator's arenas (libvips threads), which it keeps; the second shows what a round costs.
    const round = (): Promise<{ r: InspectionResult; overlay: Buffer }[]> =>
      Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const source = { name: `flat-${i}.png`, data: png };
          const r = await inspector.inspect(source, { heatmap: true });
          const overlay = await renderHeatmapPng(source, r.heatmap!, { maxBytes: 8 << 20 });
          return { r, overlay };
        }),
      );
    const first = await watch(round);
    const rss0 = process.memoryUsage().rss;
    const buffers0 = process.memoryUsage().arrayBuffers;
    const { value: results, maxLagMs, peakRss, peakBuffers } = await watch(round);
    for (const { r, overlay } of results) {
      const h = r.heatmap!;
      expect([h.width, h.height]).toEqual([MAX_MAP_SIDE, MAX_MAP_SIDE]);
      expect([h.imageWidth, h.imageHeight]).toEqual([7000, 7000]);
      expect(h.values.length).toBe(MAX_MAP_SIDE * MAX_MAP_SIDE);
      // The dark square is what a model of good bottles finds least familiar: the peak lies on it (in
      // source pixels, within a map pixel's block of the square's edge).
      expect(r.peak!.x).toBeGreaterThanOrEqual(5200 - 40);
      expect(r.peak!.x).toBeLessThan(5700 + 40);
      expect(r.peak!.y).toBeGreaterThanOrEqual(1400 - 40);
      expect(r.peak!.y).toBeLessThan(1900 + 40);
      expect(r.peak).toEqual(h.peak);
      const meta = await sharp(overlay).metadata();
      expect([meta.width, meta.height]).toEqual([MAX_MAP_SIDE, MAX_MAP_SIDE]);
    }
    const mask = await sharp(await renderMaskPng(results[0]!.r.heatmap!)).metadata();
    expect([mask.width, mask.height]).toEqual([MAX_MAP_SIDE, MAX_MAP_SIDE]);
    const lag = Math.max(first.maxLagMs, maxLagMs);
    process.stderr.write(
      `[large images] 8 x 7000x7000 with heatmaps: array buffers +${((peakBuffers - buffers0) / 2 ** 20).toFixed(0)} MB, RSS +${((peakRss - rss0) / 2 ** 20).toFixed(0)} MB at peak (second round), event loop blocked ${lag.toFixed(0)} ms at most\n`,
    );
    // A full-size map is 196 MB per image, its overlay more (+1.5 GB of buffers a round, and 18 s without a
    // free event loop, before the cap): a few MB each now.
    expect(peakBuffers - buffers0).toBeLessThan(250 * 2 ** 20);
    expect(peakRss - rss0).toBeLessThan(800 * 2 ** 20);
    // Seconds before (the 49 MP maps and overlays were built in one go); now the slices of a map or an
    // overlay band take tens of ms (more on a loaded 2-core machine).
    expect(lag).toBeLessThan(500);
  });

  it('an image within the cap keeps a map at its own size and the same answer as before', async () => {
    const file = bottle('test/broken_large', 1)[0]!; // 256x256 (the shared copy of MVTec bottle)
    const r: InspectionResult = await inspector.inspect(file, { heatmap: true });
    expect([r.heatmap!.width, r.heatmap!.height]).toEqual([256, 256]);
    expect([r.heatmap!.imageWidth, r.heatmap!.imageHeight]).toEqual([256, 256]);
    let arg = 0;
    const v = r.heatmap!.values;
    for (let i = 1; i < v.length; i++) if (v[i]! > v[arg]!) arg = i;
    expect(r.peak).toEqual({ x: arg % 256, y: Math.floor(arg / 256), value: v[arg]! });
  });

  it('a wide image keeps its aspect in the capped map', async () => {
    const r = await inspector.inspect({ name: 'wide.png', data: await flatPng(5000, 1000) }, { heatmap: true });
    expect([r.heatmap!.width, r.heatmap!.height]).toEqual([MAX_MAP_SIDE, Math.round((1000 * MAX_MAP_SIDE) / 5000)]);
    expect(r.peak!.x).toBeLessThan(5000);
    expect(r.peak!.y).toBeLessThan(1000);
  });

  it('tile mode refuses an image of more than MAX_TILES tiles before decoding it (IMAGE_TOO_LARGE, named)', async () => {
    const t0 = performance.now();
    const err = await tiled.inspect({ name: 'huge-frame.png', data: await flatPng(7000, 7000) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoupeError);
    expect((err as LoupeError).code).toBe('IMAGE_TOO_LARGE');
    expect((err as Error).message).toMatch(new RegExp(`^image huge-frame\\.png is too large for tile mode: 7000x7000 pixels make \\d+ tiles of 224; the limit is ${MAX_TILES}$`));
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
