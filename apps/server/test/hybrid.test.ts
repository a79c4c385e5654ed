// Hybrid (few-shot) models on a real server on 127.0.0.1: a model trained with core's trainHybrid is served
// like any other (ListModels kind HYBRID with its defect types; Inspect answers as core's Inspector does:
// the same verdict, score, defect type and class scores, with a heatmap), and Train with kind HYBRID trains
// one from labelled images and masks (the good label required).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { Engine, Inspector, loadModel, saveModel, trainHybrid, type HybridModel } from '@loupe/core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { proto, type LoupeClient, type LoupeServer } from '../dist/index.js';
import { BOTTLE, bottleImages, client, grpcError, inspectAll, read, startInProcess } from './fixtures.js';

const { ModelKind, ModelState, Verdict } = proto;
const fixtures = inject('fixtureModels');

/** The ground-truth mask of a defective bottle test image. */
function maskOf(image: string): string {
  const parts = image.split('/');
  const type = parts[parts.length - 2]!;
  return join(BOTTLE(), 'ground_truth', type, parts[parts.length - 1]!.replace(/\.png$/, '_mask.png'));
}

describe.skipIf(!fixtures)('hybrid models through the server', () => {
  let dir = '';
  let server: LoupeServer;
  let c: LoupeClient;
  let engine: Engine;
  let model: HybridModel;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-server-hybrid-'));
    engine = await Engine.open({ maxBatch: 8 });
    // Two defect types with masks, a handful of each: the few-shot setting.
    const data = [
      ...bottleImages('train/good', 16, 20).map((path) => ({ path, label: 'good' })),
      ...bottleImages('test/broken_large', 3).map((path) => ({ path, label: 'broken_large', maskPath: maskOf(path) })),
      ...bottleImages('test/contamination', 3).map((path) => ({ path, label: 'contamination', maskPath: maskOf(path) })),
    ];
    const t = await trainHybrid({ engine, data, seed: 0, coresetRatio: 0.05, validationFraction: 0.25, category: 'bottle', batchSize: 8 });
    model = t.model;
    await saveModel(join(dir, 'bottle-hybrid.loupe'), model);
    server = await startInProcess(dir);
    c = client(server.port);
    await c.waitForReady();
  });

  afterAll(async () => {
    c?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ListModels shows it as HYBRID with the defect types it names, loaded', async () => {
    const m = await c.getModel('bottle-hybrid');
    expect(m.kind).toBe(ModelKind.MODEL_KIND_HYBRID);
    expect(m.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(m.method).toBe('patchcore+head');
    expect(m.classes).toEqual(['broken_large', 'contamination']);
    expect(m.description).toMatch(/^hybrid: memory bank/);
  });

  it('Inspect answers as core\'s Inspector does: verdict, score, defect type, class scores, with a heatmap', async () => {
    const files = [...bottleImages('test/broken_large', 4, 10), ...bottleImages('test/contamination', 4, 10), ...bottleImages('test/good', 4)];
    const { responses } = await inspectAll(c, files.map((f) => ({ id: f, image: read(f), model: 'bottle-hybrid', wantHeatmap: true })));
    expect(responses).toHaveLength(files.length);
    const local = await Inspector.open(model, { engine });
    let flagged = 0;
    for (const r of responses) {
      const res = r.result!;
      const mine = await local.inspect(r.id);
      expect(res.verdict).toBe(mine.verdict === 'anomalous' ? Verdict.VERDICT_ANOMALOUS : Verdict.VERDICT_GOOD);
      expect(res.score).toBeCloseTo(mine.score, 4);
      expect(res.rawScore).toBeCloseTo(mine.rawScore, 3);
      expect(res.defectType).toBe(mine.defectType ?? '');
      expect(res.classScores.map((s) => s.name)).toEqual(['broken_large', 'contamination']);
      expect(res.heatmapPng.subarray(1, 4).toString('latin1')).toBe('PNG');
      if (!r.id.includes('/good/') && res.verdict === Verdict.VERDICT_ANOMALOUS) flagged++;
    }
    expect(flagged).toBeGreaterThanOrEqual(6);
  });

  it('Train with kind HYBRID: labelled images and masks, test-time flips, the good label required; a head-less one says so', async () => {
    const images = [
      ...bottleImages('train/good', 14, 60).map((f) => ({ image: read(f), label: 'good', name: f, mask: Buffer.alloc(0) })),
      ...bottleImages('test/broken_large', 3, 5).map((f) => ({ image: read(f), label: 'broken_large', name: f, mask: read(maskOf(f)) })),
    ];
    const stages: string[] = [];
    const m = await c.train(
      { name: 'remote-hybrid', kind: ModelKind.MODEL_KIND_HYBRID, images, load: true, hybrid: { coresetRatio: 0.05, seed: 0, validationFraction: 0.25, shots: 0, flips: ['vflip'], noFlips: false } },
      (p) => stages.push(p.stage),
    );
    expect(m.kind).toBe(ModelKind.MODEL_KIND_HYBRID);
    expect(m.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(stages).toContain('head');
    const file = await loadModel(join(dir, 'remote-hybrid', '1.loupe'));
    expect(file.kind).toBe('hybrid');
    if (file.kind !== 'hybrid') throw new Error('unreachable');
    expect(file.hybrid.state.training).toMatchObject({ defectImages: 3, maskedDefects: 3 });
    expect(file.category).toBe('remote-hybrid');
    // The flips asked for.
    expect(file.hybrid.flips).toEqual(['vflip']);
    const [broken] = bottleImages('test/broken_large', 1, 15);
    expect((await c.inspectOne({ id: 'b', image: read(broken!), model: 'remote-hybrid' })).result!.verdict).toBe(Verdict.VERDICT_ANOMALOUS);

    // Flips core does not know, or flips beside no_flips: refused before anything is trained, naming the field.
    const hybrid = { coresetRatio: 0.05, seed: 0, validationFraction: 0.25, shots: 0 };
    const rot = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_HYBRID, images, hybrid: { ...hybrid, flips: ['rot90'], noFlips: false } }));
    expect(rot.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(rot.details).toMatch(/hybrid\.flips: head flips must be distinct names of hflip, vflip, got \["rot90"\]/);
    const both = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_HYBRID, images, hybrid: { ...hybrid, flips: ['hflip'], noFlips: true } }));
    expect(both.details).toMatch(/hybrid\.flips: give flips or no_flips, not both/);

    // No label naming the good parts, and a mask on a good image: refused before anything is trained.
    const noGood = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_HYBRID, images: images.map((i) => ({ ...i, label: i.label === 'good' ? 'fine' : i.label })) }));
    expect(noGood.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noGood.details).toMatch(/no label names the good parts/);
    const maskedGood = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_HYBRID, images: [{ ...images[0]!, mask: images[images.length - 1]!.mask }, ...images.slice(1)] }));
    expect(maskedGood.details).toMatch(/is labelled good but has a defect mask/);
    const maskedSvm = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_SVM, images: images.slice(-4) }));
    expect(maskedSvm.details).toMatch(/masks are for hybrid models/);

    // Good images only: a hybrid model without a head (one-class), and the progress says so.
    const notes: string[] = [];
    const g = await c.train({ name: 'remote-hybrid-good', kind: ModelKind.MODEL_KIND_HYBRID, images: images.slice(0, 14), hybrid: { coresetRatio: 0.05, seed: 0, validationFraction: 0.25, shots: 0 } }, (p) => notes.push(p.message));
    expect(g.kind).toBe(ModelKind.MODEL_KIND_HYBRID);
    expect(notes.join('\n')).toMatch(/no labelled defects: the model is one-class/);
  });
});
