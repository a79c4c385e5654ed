// Load: 32 concurrent Inspect streams x 200 images against a server in its own process (so its memory
// can be watched): every image is answered exactly once (none lost, none duplicated), every result is
// recorded, and the server's resident memory stays bounded. The images are a few real bottle images
// (224x224 JPEGs) repeated, on the SVM model (PatchCore's kNN costs ~0.5 s per image on a small CPU);
// identical queued images share engine views (dedupe), so the engine is not what is measured here: the
// server's own path is. LOUPE_LOAD_STREAMS / LOUPE_LOAD_IMAGES change the shape.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { LoupeClient } from '../dist/index.js';
import { bottleImages, client, modelDirWithFixtures, rssOf, smallImage, spawnServer, SVM_MODEL, type ChildServer } from './fixtures.js';

const fixtures = inject('fixtureModels');
const STREAMS = Number(process.env['LOUPE_LOAD_STREAMS'] ?? 32);
const PER_STREAM = Number(process.env['LOUPE_LOAD_IMAGES'] ?? 200);

describe.skipIf(!fixtures)(`load: ${STREAMS} streams x ${PER_STREAM} images`, () => {
  let dir: string;
  let srv: ChildServer;
  let c: LoupeClient;
  let images: Buffer[];

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    // Up to 256 images in progress (decoded tensors: ~150 MB), so one engine batch can answer many of them.
    const config = join(dir, 'server.json');
    writeFileSync(config, JSON.stringify({ flow: { maxActive: 256 } }));
    srv = await spawnServer(['--config', config, '--models', dir, '--port', '0']);
    c = client(srv.port);
    await c.waitForReady();
    images = await Promise.all([...bottleImages('train/good', 3), ...bottleImages('test/broken_large', 2), ...bottleImages('test/contamination', 1)].map(smallImage));
  });

  afterAll(async () => {
    c?.close();
    if (srv && srv.child.exitCode === null) {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers every image exactly once, records every result, keeps memory bounded', async () => {
    const pid = srv.child.pid!;
    // warm-up: first engine runs allocate the engine's buffers
    await runStreams(c, images, 2, 32);
    const baseline = rssOf(pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssOf(pid));
    }, 100);
    const t0 = performance.now();
    let result;
    try {
      result = await runStreams(c, images, STREAMS, PER_STREAM);
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - t0) / 1000;
    const total = STREAMS * PER_STREAM;
    const { counts, statuses, errors, answered } = result;
    const stats = await c.getStats();
    process.stderr.write(
      `[load] ${total} images over ${STREAMS} streams in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(0)} images/s); ` +
        `server RSS ${(baseline / 2 ** 20).toFixed(0)} MB -> peak ${(peak / 2 ** 20).toFixed(0)} MB; mean batch ${stats.meanBatchSize.toFixed(1)} views, ` +
        `${stats.meanImagesPerBatch.toFixed(1)} images\n`,
    );
    expect(statuses.every((s) => s === grpc.status.OK)).toBe(true);
    expect(errors).toEqual([]);
    expect(answered).toBe(total);
    expect(counts.size).toBe(total);
    const dup = [...counts].filter(([, n]) => n !== 1);
    expect(dup).toEqual([]);
    // every result recorded (the warm-up's too)
    expect(stats.recordedTotal).toBe(total + 64);
    expect(stats.openStreams).toBe(0);
    expect(stats.queueDepth).toBe(0);
    // memory: bounded queues and windows; nothing proportional to the 6400 images
    expect(peak - baseline).toBeLessThan(400 * 2 ** 20);
    expect(srv.child.exitCode).toBeNull();
    expect(await c.checkHealth()).toBe('SERVING');
  });
});

async function runStreams(c: LoupeClient, images: Buffer[], streams: number, perStream: number) {
  const counts = new Map<string, number>();
  const errors: string[] = [];
  let answered = 0;
  const summaries = await Promise.all(
    Array.from({ length: streams }, (_, s) =>
      c.inspectMany(
        (function* () {
          for (let i = 0; i < perStream; i++) {
            yield { id: `s${s}-i${i}`, image: images[(s + i) % images.length]!, model: SVM_MODEL };
          }
        })(),
        {
          window: 16,
          onResponse: (r) => {
            answered++;
            counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
            if (r.error) errors.push(`${r.id}: ${r.error.message}`);
          },
        },
      ),
    ),
  );
  return { counts, errors, answered, statuses: summaries.map((s) => s.status) };
}
