// Resources under hostile images (issue 16, item 1): eight 7000x7000 flat PNGs (150 KB each on disk,
// 49 MP each in pixels) sent at once to the one-class model with heatmaps, against a server in its own
// process. Health.Check, polled meanwhile by another client with a 1 s deadline, answers every time; the
// server's memory stays bounded (the anomaly map is capped at 1024 px per side, its overlay drawn from the
// image decoded at that size, decodes share a pixel budget); every image is answered with its peak in
// source pixels and a heatmap that fits in the answer.
import { rmSync } from 'node:fs';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { LoupeClient } from '../dist/index.js';
import { client, modelDirWithFixtures, ONE_CLASS_MODEL, rssOf, spawnServer, type ChildServer } from './fixtures.js';

const fixtures = inject('fixtureModels');

interface HealthProbe {
  answers: number;
  failures: string[];
  worstMs: number;
  stop: () => Promise<void>;
}

/** Polls Health.Check('') every `everyMs` with a `deadlineMs` deadline until stopped. */
function probeHealth(c: LoupeClient, everyMs: number, deadlineMs: number): HealthProbe {
  const p: HealthProbe = { answers: 0, failures: [], worstMs: 0, stop: async () => {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const s = await c.checkHealth('', deadlineMs);
        if (s !== 'SERVING') p.failures.push(s);
        p.answers++;
      } catch (err) {
        p.failures.push((err as Error).message);
      }
      p.worstMs = Math.max(p.worstMs, performance.now() - t0);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  p.stop = async () => {
    running = false;
    await loop;
  };
  return p;
}

describe.skipIf(!fixtures)('resources under huge-in-pixels images', () => {
  let dir: string;
  let srv: ChildServer;
  let c: LoupeClient;
  let prober: LoupeClient;
  let flat: Buffer;

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    srv = await spawnServer(['--models', dir, '--port', '0']);
    c = client(srv.port);
    prober = client(srv.port);
    await c.waitForReady();
    const square = await sharp({ create: { width: 400, height: 400, channels: 3, background: { r: 20, g: 20, b: 20 } } }).png().toBuffer();
    flat = await sharp({ create: { width: 7000, height: 7000, channels: 3, background: { r: 128, g: 132, b: 136 } } })
      .composite([{ input: square, left: 6000, top: 500 }])
      .png({ compressionLevel: 9 })
      .toBuffer();
  });

  afterAll(async () => {
    c?.close();
    prober?.close();
    if (srv && srv.child.exitCode === null) {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('8 x 7000x7000 PNGs with heatmaps: health answers within its deadline, memory bounded, every image answered', async () => {
    expect(flat.length).toBeLessThan(400_000);
    const pid = srv.child.pid!;
    // Warm-up: the engine's first batch allocates its buffers.
    await c.inspectMany([{ id: 'warm', image: flat, model: ONE_CLASS_MODEL, wantHeatmap: true }], { onResponse: () => {} });
    const baseline = rssOf(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 50);
    const health = probeHealth(prober, 50, 1000);
    const responses: { id: string; ok: boolean; peak?: { x: number; y: number }; heatmap: number }[] = [];
    const t0 = performance.now();
    try {
      for (let round = 0; round < 2; round++) {
        await c.inspectMany(
          Array.from({ length: 8 }, (_, i) => ({ id: `flat-${round}-${i}`, image: flat, model: ONE_CLASS_MODEL, wantHeatmap: true })),
          { window: 8, onResponse: (r) => responses.push({ id: r.id, ok: !!r.result, peak: r.result?.peak, heatmap: r.result?.heatmapPng.length ?? 0 }) },
        );
      }
    } finally {
      clearInterval(sampler);
      await health.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    process.stderr.write(
      `[resources] 16 x 7000x7000 PNGs with heatmaps in ${seconds.toFixed(1)} s: server RSS ${(baseline / 2 ** 20).toFixed(0)} MB -> peak ${(peak / 2 ** 20).toFixed(0)} MB; ` +
        `${health.answers} health checks, worst ${health.worstMs.toFixed(0)} ms, ${health.failures.length} failed\n`,
    );
    expect(responses.length).toBe(16);
    for (const r of responses) {
      expect(r.ok, r.id).toBe(true);
      expect(r.heatmap, r.id).toBeGreaterThan(1000);
      // The dark square (6000..6400, 500..900): the peak, in source pixels.
      expect(r.peak!.x, r.id).toBeGreaterThan(5900);
      expect(r.peak!.y, r.id).toBeLessThan(1000);
    }
    const meta = await sharp((await c.inspectOne({ id: 'one', image: flat, model: ONE_CLASS_MODEL, wantHeatmap: true })).result!.heatmapPng).metadata();
    expect([meta.width, meta.height]).toEqual([1024, 1024]);
    // Before: Health.Check stalled for 5-15 s and the server grew by 2.3 GB.
    expect(health.failures).toEqual([]);
    expect(health.answers).toBeGreaterThan(10);
    expect(health.worstMs).toBeLessThan(1000);
    expect(peak - baseline).toBeLessThan(600 * 2 ** 20);
    expect(await c.checkHealth('')).toBe('SERVING');
  });
});
