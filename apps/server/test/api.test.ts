// Every RPC of loupe.v1.Inspection (and grpc.health.v1.Health, reflection, /metrics) against a real
// server on 127.0.0.1 with the real fixture models (global-setup.ts), through the real client.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { loadModel } from '@loupe/core';
import { beforeAll, describe, expect, inject, it } from 'vitest';

import { proto, type LoupeClient, type LoupeServer } from '../dist/index.js';
import { bottleImages, grpcError, inspectAll, ONE_CLASS_MODEL, read, SVM_MODEL } from './fixtures.js';
import { useServer } from './use-server.js';

const { ModelKind, ModelState, Verdict } = proto;
const fixtures = inject('fixtureModels');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe.skipIf(!fixtures)('loupe.v1.Inspection: every RPC round trip', () => {
  const f = useServer(fixtures!, { metrics: { host: '127.0.0.1', port: 0 } });
  let dir: string;
  let server: LoupeServer;
  let c: LoupeClient;
  const t0 = new Date();

  // The SVM was trained on the first 5 images of each class: it must get those right.
  const svmCases = (): { file: string; label: string }[] => [
    ...bottleImages('train/good', 3).map((file) => ({ file, label: 'good' })),
    ...bottleImages('test/broken_large', 3).map((file) => ({ file, label: 'broken_large' })),
    ...bottleImages('test/contamination', 3).map((file) => ({ file, label: 'contamination' })),
  ];

  beforeAll(() => {
    ({ dir, server, client: c } = f);
  });

  it('Health: the server, the API and each model are SERVING; unknown names are NOT_FOUND', async () => {
    expect(await c.checkHealth('')).toBe('SERVING');
    expect(await c.checkHealth('loupe.v1.Inspection')).toBe('SERVING');
    expect(await c.checkHealth(SVM_MODEL)).toBe('SERVING');
    expect(await c.checkHealth(ONE_CLASS_MODEL)).toBe('SERVING');
    const e = await grpcError(c.checkHealth('no-such-model'));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
  });

  it('ListModels and GetModel describe both kinds of model, loaded', async () => {
    const models = await c.listModels();
    expect(models.map((m) => `${m.name}@${m.version}`)).toEqual([`${ONE_CLASS_MODEL}@1`, `${SVM_MODEL}@1`]);
    const svm = models.find((m) => m.name === SVM_MODEL)!;
    expect(svm.kind).toBe(ModelKind.MODEL_KIND_SVM);
    expect(svm.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(svm.classes).toEqual(['broken_large', 'contamination', 'good']);
    expect(svm.layer).toBe('fc1000');
    expect(svm.sizeBytes).toBeGreaterThan(0);
    expect(svm.weightsHash).toMatch(/^[0-9a-f]{64}$/);
    const oc = await c.getModel(ONE_CLASS_MODEL);
    expect(oc.kind).toBe(ModelKind.MODEL_KIND_ONE_CLASS);
    expect(oc.method).toBe('patchcore');
    // One-class models say where, not what: no classes (core's Inspector.classes is empty too).
    expect(oc.classes).toEqual([]);
    expect(oc.description).not.toBe('');
    expect((await c.listModels({ name: SVM_MODEL })).length).toBe(1);
    expect((await grpcError(c.getModel('nope'))).code).toBe(grpc.status.NOT_FOUND);
    expect((await grpcError(c.getModel(SVM_MODEL, '7'))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('Inspect: one stream, both models, every image answered once, matched by id', async () => {
    const cases = svmCases();
    const items = [
      ...cases.map((k, i) => ({ id: `svm-${i}`, image: read(k.file), model: SVM_MODEL, source: k.file })),
      ...cases.map((k, i) => ({ id: `oc-${i}`, image: read(k.file), model: ONE_CLASS_MODEL, source: k.file })),
    ];
    const { responses, summary } = await inspectAll(c, items, 8);
    expect(summary.status).toBe(grpc.status.OK);
    expect(summary.sent).toBe(items.length);
    expect(responses.map((r) => r.id).sort()).toEqual(items.map((i) => i.id).sort());
    const byId = new Map(responses.map((r) => [r.id, r]));
    cases.forEach((k, i) => {
      const r = byId.get(`svm-${i}`)!;
      expect(r.error, `svm-${i}: ${r.error?.message}`).toBeUndefined();
      const res = r.result!;
      expect(res.verdict).toBe(k.label === 'good' ? Verdict.VERDICT_GOOD : Verdict.VERDICT_ANOMALOUS);
      expect(res.defectType).toBe(k.label === 'good' ? '' : k.label);
      expect(res.model).toBe(SVM_MODEL);
      expect(res.modelVersion).toBe('1');
      expect(res.classScores.map((s) => s.name)).toEqual(['broken_large', 'contamination', 'good']);
      expect(res.classScores.reduce((a, s) => a + s.score, 0)).toBeCloseTo(1, 5);
      // core's contract: score = sigmoid(margin - threshold), 0.5 = the threshold, for every kind.
      expect(res.verdict === Verdict.VERDICT_ANOMALOUS).toBe(res.score >= 0.5);
      expect(res.score).toBeCloseTo(1 / (1 + Math.exp(-res.rawScore)), 6); // the fixture's threshold is 0
      expect(res.peak).toBeUndefined();
      expect(res.timings!.totalMs).toBeGreaterThan(0);
      expect(res.timings!.batchSize).toBeGreaterThanOrEqual(1);
      expect(res.inspectionId).toMatch(/^[0-9a-f-]{36}$/);
    });
    cases.forEach((_k, i) => {
      const res = byId.get(`oc-${i}`)!.result!;
      expect(res.model).toBe(ONE_CLASS_MODEL);
      expect(res.score).toBeGreaterThanOrEqual(0);
      expect(res.score).toBeLessThanOrEqual(1);
      expect(res.verdict === Verdict.VERDICT_ANOMALOUS).toBe(res.score >= 0.5);
      expect(res.defectType).toBe('');
      expect(res.classScores).toEqual([]);
      expect(res.rawScore).toBeGreaterThan(0);
      expect(res.peak).toBeDefined();
    });
    // Good bottles score below the broken ones on the one-class model.
    const ocScore = (i: number): number => byId.get(`oc-${i}`)!.result!.score;
    expect(Math.max(ocScore(0), ocScore(1), ocScore(2))).toBeLessThan(Math.min(ocScore(3), ocScore(4), ocScore(5)));
  });

  it('Inspect: results come out of order and still carry the right id', async () => {
    const [good, broken] = [bottleImages('train/good', 1)[0]!, bottleImages('test/broken_large', 1)[0]!];
    // A real image takes a decode and an engine run; an empty one or an unknown model is refused at
    // once: the later requests overtake the first.
    const items = [
      { id: 'slow-good', image: read(good), model: SVM_MODEL },
      { id: 'slow-broken', image: read(broken), model: SVM_MODEL },
      { id: 'fast-empty', image: Buffer.alloc(0), model: SVM_MODEL },
      { id: 'fast-unknown', image: read(good), model: 'no-such-model' },
    ];
    const { responses, summary } = await inspectAll(c, items, 8);
    expect(summary.status).toBe(grpc.status.OK);
    const order = responses.map((r) => r.id);
    expect(order).not.toEqual(items.map((i) => i.id));
    expect(order.slice(0, 2).sort()).toEqual(['fast-empty', 'fast-unknown']);
    const byId = new Map(responses.map((r) => [r.id, r]));
    expect(byId.get('slow-good')!.result!.verdict).toBe(Verdict.VERDICT_GOOD);
    expect(byId.get('slow-broken')!.result!.defectType).toBe('broken_large');
    expect(byId.get('fast-empty')!.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(byId.get('fast-unknown')!.error!.code).toBe(grpc.status.NOT_FOUND);
  });

  it('InspectOne: a result with a heatmap PNG from the one-class model, same score as the stream', async () => {
    const file = bottleImages('test/broken_large', 1)[0]!;
    const r = await c.inspectOne({ id: 'one', image: read(file), model: ONE_CLASS_MODEL, wantHeatmap: true, source: 'camera-1' });
    expect(r.id).toBe('one');
    const res = r.result!;
    expect(res.verdict).toBe(Verdict.VERDICT_ANOMALOUS);
    expect(res.defectType).toBe(''); // core's null: one-class models know no defect classes
    expect(res.heatmapPng.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(res.peak!.x).toBeLessThan(256);
    expect(res.peak!.y).toBeLessThan(256);
    expect(res.classScores).toEqual([]);
    const { responses } = await inspectAll(c, [{ id: 's', image: read(file), model: ONE_CLASS_MODEL }]);
    expect(responses[0]!.result!.score).toBeCloseTo(res.score, 5);
    // per-image problems are the call's status
    expect((await grpcError(c.inspectOne({ id: 'x', image: Buffer.from('not an image'), model: SVM_MODEL }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await grpcError(c.inspectOne({ id: 'x', image: read(file), model: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('ListInspections: every result is recorded; filters and paging', async () => {
    const all = await c.listInspections({ pageSize: 1000, since: t0 });
    expect(all.nextPageToken).toBe('');
    const stats = await c.getStats();
    expect(all.inspections.length).toBe(stats.recordedTotal);
    expect(all.inspections.length).toBe(stats.inspectionsTotal);
    const one = await c.listInspections({ clientId: 'one' });
    expect(one.inspections.length).toBe(1);
    expect(one.inspections[0]!.source).toBe('camera-1');
    expect(one.inspections[0]!.model).toBe(ONE_CLASS_MODEL);
    expect(one.inspections[0]!.verdict).toBe(Verdict.VERDICT_ANOMALOUS);
    // paging: newest first, no overlap, same rows as one big page
    const seen: string[] = [];
    let token = '';
    do {
      const page = await c.listInspections({ pageSize: 5, pageToken: token });
      seen.push(...page.inspections.map((r) => r.inspectionId));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual(all.inspections.map((r) => r.inspectionId));
    const oldest = await c.listInspections({ pageSize: 1, oldestFirst: true });
    expect(oldest.inspections[0]!.inspectionId).toBe(all.inspections[all.inspections.length - 1]!.inspectionId);
    const good = await c.listInspections({ pageSize: 1000, verdict: Verdict.VERDICT_GOOD, model: SVM_MODEL });
    expect(good.inspections.every((r) => r.verdict === Verdict.VERDICT_GOOD && r.model === SVM_MODEL)).toBe(true);
    expect((await c.listInspections({ since: new Date(Date.now() + 60_000) })).inspections).toEqual([]);
    expect((await grpcError(c.listInspections({ pageToken: 'garbage' }))).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('GetStats: counters, the batch sizes the batcher chose, the configuration', async () => {
    const s = await c.getStats();
    expect(s.inspectionsTotal).toBeGreaterThan(20);
    expect(s.errorsTotal).toBeGreaterThanOrEqual(4);
    expect(s.batchesTotal).toBeGreaterThan(0);
    expect(s.batchSizes.reduce((a, b) => a + b.count, 0)).toBe(s.batchesTotal);
    expect(s.maxBatchSize).toBe(32);
    expect(s.maxInFlight).toBe(32);
    expect(s.loadedModels).toBe(2);
    expect(s.openStreams).toBe(0);
    expect(s.queueDepth).toBe(0);
    expect(s.active).toBe(0);
    expect(s.backend).not.toBe('');
    expect(s.uptimeS).toBeGreaterThan(0);
  });

  it('UnloadModel / LoadModel: hot, health follows; DeleteModel removes the file', async () => {
    const img = read(bottleImages('train/good', 1)[0]!);
    const unloaded = await c.unloadModel(SVM_MODEL);
    expect(unloaded.map((m) => m.state)).toEqual([ModelState.MODEL_STATE_AVAILABLE]);
    expect(await c.checkHealth(SVM_MODEL)).toBe('NOT_SERVING');
    expect((await grpcError(c.inspectOne({ id: 'u', image: img, model: SVM_MODEL }))).code).toBe(grpc.status.FAILED_PRECONDITION);
    const loaded = await c.loadModel(SVM_MODEL);
    expect(loaded.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(await c.checkHealth(SVM_MODEL)).toBe('SERVING');
    expect((await c.inspectOne({ id: 'l', image: img, model: SVM_MODEL })).result!.verdict).toBe(Verdict.VERDICT_GOOD);

    // A file copied into the model directory appears without a restart, as version 2 of a new name's folder.
    mkdirSync(join(dir, 'copy'), { recursive: true });
    copyFileSync(join(dir, `${SVM_MODEL}.loupe`), join(dir, 'copy', '2.loupe'));
    const copy = await c.getModel('copy');
    expect(copy.version).toBe('2');
    expect(copy.state).toBe(ModelState.MODEL_STATE_AVAILABLE);
    await c.loadModel('copy', '2');
    expect((await c.inspectOne({ id: 'c', image: img, model: 'copy' })).result!.modelVersion).toBe('2');
    expect((await grpcError(c.deleteModel('copy', ''))).code).toBe(grpc.status.INVALID_ARGUMENT);
    const deleted = await c.deleteModel('copy', '2');
    expect(deleted.name).toBe('copy');
    expect(existsSync(join(dir, 'copy', '2.loupe'))).toBe(false);
    expect((await c.listModels()).map((m) => m.name)).not.toContain('copy');
    expect((await grpcError(c.loadModel('copy'))).code).toBe(grpc.status.NOT_FOUND);
    expect((await grpcError(c.loadModel('../etc'))).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('Train: an SVM trained remotely streams progress, then the new version, loaded', async () => {
    const images = [
      ...bottleImages('train/good', 3, 20).map((f) => ({ image: read(f), label: 'good', name: f })),
      ...bottleImages('test/broken_large', 3, 10).map((f) => ({ image: read(f), label: 'broken', name: f })),
    ];
    const stages: string[] = [];
    const model = await c.train({ name: 'remote-svm', kind: ModelKind.MODEL_KIND_SVM, images, load: true, svm: { layer: 'avg_pool', lambda: 0, epochs: 0, seed: 0 } }, (p) => stages.push(p.stage));
    expect(model.name).toBe('remote-svm');
    expect(model.version).toBe('1');
    expect(model.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(model.layer).toBe('avg_pool');
    expect(model.classes).toEqual(['broken', 'good']);
    expect(stages[0]).toBe('receiving');
    expect(stages).toContain('features');
    expect(stages[stages.length - 1]).toBe('done');
    expect(existsSync(join(dir, 'remote-svm', '1.loupe'))).toBe(true);
    const r = await c.inspectOne({ id: 't', image: images[0]!.image, model: 'remote-svm' });
    expect(r.result!.verdict).toBe(Verdict.VERDICT_GOOD);
    // Written by core's saveModel: the metadata a CLI- or library-trained model carries.
    const file = await loadModel(join(dir, 'remote-svm', '1.loupe'));
    expect(file.kind).toBe('svm');
    expect(file.category).toBe('remote-svm');
    expect([...file.trainHashes].sort()).toEqual(images.map((i) => sha256(i.image)).sort());
    expect(file.weightsHash).toBe(model.weightsHash);
    expect(file.preprocessing).toMatchObject({ fit: 'squash', normalization: 'caffe' });
    if (file.kind === 'svm') {
      expect(file.goodClass).toBe('good');
      expect(file.threshold).toBe(0);
      expect(file.layer).toBe('avg_pool');
    }
    // No label names the good parts: core refuses to guess (it used to take the first class as good).
    const noGood = await grpcError(
      c.train({ name: 'no-good', kind: ModelKind.MODEL_KIND_SVM, images: images.map((i) => ({ ...i, label: i.label === 'good' ? 'fine' : i.label })) }),
    );
    expect(noGood.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noGood.details).toMatch(/no label names the good parts \(labels: broken, fine\)/);
    expect(existsSync(join(dir, 'no-good'))).toBe(false);
    const badLayer = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_SVM, images, svm: { layer: 'res5c', lambda: 0, epochs: 0, seed: 0 } }));
    expect(badLayer.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badLayer.details).toMatch(/svm\.layer 'res5c'/);
    // bad requests name the field
    const noLabel = await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_SVM, images: [{ image: images[0]!.image, label: '', name: 'a.png' }] }));
    expect(noLabel.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noLabel.details).toMatch(/label/);
    expect((await grpcError(c.train({ name: 'x', kind: ModelKind.MODEL_KIND_UNSPECIFIED, images: [] }))).details).toMatch(/kind/);
    expect((await grpcError(c.train({ name: 'bad/name', kind: ModelKind.MODEL_KIND_ONE_CLASS, images: [{ image: images[0]!.image, label: '', name: '' }] }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    // An image that does not decode fails the training process itself: the error names it, and the
    // new model's first version leaves no empty folder behind.
    const junk = { image: Buffer.from('these bytes are not an image'), label: 'good', name: 'junk.png' };
    const failed = await grpcError(c.train({ name: 'never-trained', kind: ModelKind.MODEL_KIND_SVM, images: [...images, junk] }));
    expect(failed.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(failed.details).toMatch(/junk\.png/);
    expect(existsSync(join(dir, 'never-trained'))).toBe(false);
    expect((await c.listModels()).map((m) => m.name)).not.toContain('never-trained');
  });

  // Runs after the bad requests above: one of them (a bad model name) used to keep the only training
  // slot, so this Train failed with RESOURCE_EXHAUSTED.
  it('Train: a one-class PatchCore model trained remotely on good images only scores a broken bottle above the threshold', async () => {
    const good = bottleImages('train/good', 24, 40).map((f) => ({ image: read(f), label: '', name: f }));
    const stages: string[] = [];
    const model = await c.train(
      { name: 'remote-oc', kind: ModelKind.MODEL_KIND_ONE_CLASS, images: good, load: true, oneClass: { coresetRatio: 0.05, seed: 0, validationFraction: 0.2, thresholdQuantile: 0 } },
      (p) => stages.push(p.stage),
    );
    expect(model.name).toBe('remote-oc');
    expect(model.kind).toBe(ModelKind.MODEL_KIND_ONE_CLASS);
    expect(model.state).toBe(ModelState.MODEL_STATE_LOADED);
    expect(model.description).toMatch(/PatchCore: bank \d+ x 1536/);
    expect(stages[0]).toBe('receiving');
    expect(stages[stages.length - 1]).toBe('done');
    expect(existsSync(join(dir, 'remote-oc', '1.loupe'))).toBe(true);
    const [broken] = bottleImages('test/broken_large', 1);
    const [unseen] = bottleImages('test/good', 1);
    const rb = (await c.inspectOne({ id: 'b', image: read(broken!), model: 'remote-oc' })).result!;
    const rg = (await c.inspectOne({ id: 'g', image: read(unseen!), model: 'remote-oc' })).result!;
    expect(rb.verdict).toBe(Verdict.VERDICT_ANOMALOUS);
    expect(rb.score).toBeGreaterThan(rg.score);
    // The same metadata as `loupe train --mode one-class` writes: every training image by content, and the
    // model's name as its category.
    const file = await loadModel(join(dir, 'remote-oc', '1.loupe'));
    expect(file.kind).toBe('one-class');
    expect(file.category).toBe('remote-oc');
    expect([...file.trainHashes].sort()).toEqual(good.map((g) => sha256(g.image)).sort());
    expect(file.weightsHash).toBe(model.weightsHash);
    expect(file.preprocessing).toMatchObject({ normalization: 'caffe' });
    // One kind per name: an SVM cannot become version 2 of this one-class model.
    const svmImages = [...good.slice(0, 2).map((g) => ({ ...g, label: 'good' })), { image: read(broken!), label: 'broken', name: broken! }];
    const kind = await grpcError(c.train({ name: 'remote-oc', kind: ModelKind.MODEL_KIND_SVM, images: svmImages }));
    expect(kind.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(kind.details).toMatch(/model 'remote-oc' is a one-class model \(version 1\); train this svm model under another name/);
    expect(existsSync(join(dir, 'remote-oc', '2.loupe'))).toBe(false);
  });

  it('server reflection lists the services', async () => {
    const require = createRequire(import.meta.url);
    const protoFile = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
    const def = protoLoader.loadSync(protoFile, { keepCase: true, longs: Number, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: typeof grpc.Client } } } };
    const rc = new pkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, { list_services_response?: { service: { name: string }[] } }> };
    const names = await new Promise<string[]>((resolve, reject) => {
      const call = rc.ServerReflectionInfo();
      call.on('data', (m) => {
        resolve((m.list_services_response?.service ?? []).map((s: { name: string }) => s.name));
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
    rc.close();
    expect(names).toContain('loupe.v1.Inspection');
    expect(names).toContain('grpc.health.v1.Health');
  });

  it('GET /metrics serves Prometheus counters', async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    expect(text).toMatch(/loupe_inspections_total\{model="bottle-svm",verdict="good"\} \d+/);
    expect(text).toMatch(/loupe_batch_size_count \d+/);
    expect(text).toMatch(/loupe_grpc_requests_total\{method="loupe.v1.Inspection\/GetStats",code="OK"\} \d+/);
    expect(text).toContain('loupe_process_resident_memory_bytes');
    expect(readFileSync(join(dir, 'inspections.db')).length).toBeGreaterThan(0);
  });
});
