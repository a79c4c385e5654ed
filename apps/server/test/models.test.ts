// The models folder as the server reads it, through @loupe/core: a model file that loads but could never
// inspect (checksum-valid, edited header: an unusable layer, thresholds, a reshaped bank, an absurd sigma,
// issue 16 item 6) is FAILED with core's reason at load, never SERVING; every file the server skips in the
// folder is named once in a warning (its own inspection log excepted); FIFOs, devices and links (below).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createLogger, LoupeServer, proto, REASON_METADATA_KEY, type LoupeClient } from '../dist/index.js';
import { bottleImages, client, grpcError, inspectAll, modelDirWithFixtures, ONE_CLASS_MODEL, read, startInProcess, SVM_MODEL, testConfig, testEngine } from './fixtures.js';

const { ModelKind, ModelState } = proto;
const fixtures = inject('fixtureModels');

/**
 * Copies a model file with its JSON header edited. The payload (and its sha256, which the header records)
 * is untouched, so the file passes every checksum: only the model's meaning is wrong.
 */
function editHeader(from: string, to: string, edit: (h: Record<string, any>) => void): void {
  const bytes = readFileSync(from);
  const nl = bytes.indexOf(0x0a);
  const header = JSON.parse(bytes.subarray(0, nl).toString('utf8')) as Record<string, any>;
  edit(header);
  writeFileSync(to, Buffer.concat([Buffer.from(JSON.stringify(header), 'utf8'), bytes.subarray(nl)]));
}

interface LogLine {
  level: string;
  msg: string;
  file?: string;
  reason?: string;
}

describe.skipIf(!fixtures)('model files through @loupe/core', () => {
  let dir: string;
  let server: LoupeServer;
  let c: LoupeClient;
  const lines: string[] = [];
  const warnings = (): LogLine[] => lines.map((l) => JSON.parse(l) as LogLine).filter((l) => l.level === 'warn');

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures!);
    const svm = join(dir, `${SVM_MODEL}.loupe`);
    const oc = join(dir, `${ONE_CLASS_MODEL}.loupe`);
    // Models that load as numbers but could never inspect.
    editHeader(svm, join(dir, 'svm-res5c.loupe'), (h) => {
      h['layer'] = 'res5c'; // a 7x7x2048 feature map: no SVM of 1000 weights per class can read it
    });
    editHeader(oc, join(dir, 'oc-negative.loupe'), (h) => {
      h['patchcore']['thresholds']['image'] = -1;
    });
    editHeader(oc, join(dir, 'oc-zero-pixel.loupe'), (h) => {
      h['patchcore']['thresholds']['pixel'] = 0;
    });
    // Issue 16, item 6: a reshaped bank (rows and columns swapped: the same number of values), an absurd
    // smoothing sigma, an SVM threshold that is no number, a good class the SVM does not have.
    editHeader(oc, join(dir, 'oc-reshaped.loupe'), (h) => {
      const b = h['patchcore']['bank'];
      [b.n, b.d] = [b.d, b.n];
    });
    editHeader(oc, join(dir, 'oc-sigma.loupe'), (h) => {
      h['patchcore']['config']['sigma'] = 1e9;
    });
    editHeader(svm, join(dir, 'svm-threshold.loupe'), (h) => {
      h['threshold'] = 'high';
    });
    editHeader(svm, join(dir, 'svm-goodclass.loupe'), (h) => {
      h['goodClass'] = 'flawless';
    });
    // Files the folder holds that are no model the server can serve.
    copyFileSync(svm, join(dir, 'bottle')); // `loupe train --out models/bottle` used to write this
    copyFileSync(svm, join(dir, 'Bad Name.loupe'));
    writeFileSync(join(dir, 'notes.txt'), 'line 3 camera\n');
    mkdirSync(join(dir, 'carton'));
    copyFileSync(svm, join(dir, 'carton', 'v2.loupe'));
    copyFileSync(svm, join(dir, 'carton', '3.loupe'));
    server = await LoupeServer.start(testConfig(dir), { logger: createLogger('warn', { write: (s: string) => lines.push(s.trimEnd()) }), engine: await testEngine() });
    c = client(server.port);
    await c.waitForReady();
  });

  afterAll(async () => {
    c?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a checksum-valid model that cannot inspect is FAILED with the reason, never SERVING', async () => {
    const models = await c.listModels();
    const byName = new Map(models.map((m) => [m.name, m]));
    const cases: [string, RegExp][] = [
      ['svm-res5c', /layer: unknown layer "res5c"; SVM models use fc1000 or avg_pool$/],
      ['oc-negative', /patchcore: thresholds must be positive numbers, got image -1,/],
      ['oc-zero-pixel', /patchcore: thresholds must be positive numbers, got image [0-9.e-]+, pixel 0$/],
      ['oc-reshaped', /patchcore: PatchCore bank rows have \d+ dims; the config's features have 1536$/],
      ['oc-sigma', /patchcore: sigma must be in \[0, 64\] \(model-input pixels\), got 1000000000$/],
      ['svm-threshold', /threshold: not a finite number: "high"$/],
      ['svm-goodclass', /goodClass: goodClass "flawless" is not one of the classes \(broken_large, contamination, good\)$/],
    ];
    for (const [name, why] of cases) {
      const m = byName.get(name);
      expect(m, name).toBeDefined();
      expect(m!.state, name).toBe(ModelState.MODEL_STATE_FAILED);
      expect(m!.error, name).toMatch(new RegExp(`^${why.source}`));
      expect(m!.error, name).not.toContain(dir); // the file is ModelInfo.file, relative to the folder
      expect(await c.checkHealth(name), name).toBe('NOT_SERVING');
      // Loading again fails the same way, saying why.
      const e = await grpcError(c.loadModel(name));
      expect(e.code, name).toBe(grpc.status.FAILED_PRECONDITION);
      expect(e.details, name).toMatch(new RegExp(`^cannot load model '${name}' version 1: ${why.source}`));
    }
    // An image sent to one is the server's problem, not the client's: FAILED_PRECONDITION, never INVALID_ARGUMENT.
    const image = read(bottleImages('train/good', 1)[0]!);
    const { responses } = await inspectAll(c, [
      { id: 'to-res5c', image, model: 'svm-res5c' },
      { id: 'to-negative', image, model: 'oc-negative' },
      { id: 'to-good', image, model: SVM_MODEL },
    ]);
    const byId = new Map(responses.map((r) => [r.id, r]));
    expect(byId.get('to-res5c')!.error).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, reason: 'FAILED_PRECONDITION', message: expect.stringMatching(/^image 'to-res5c': model 'svm-res5c' version 1 \(svm-res5c\.loupe\) failed to load: layer: unknown layer "res5c"/) });
    expect(byId.get('to-negative')!.error).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, reason: 'FAILED_PRECONDITION' });
    expect(byId.get('to-good')!.result).toBeDefined();
    // The healthy models of the same folder serve.
    expect(await c.checkHealth(SVM_MODEL)).toBe('SERVING');
    expect(await c.checkHealth(ONE_CLASS_MODEL)).toBe('SERVING');
  });

  it('InspectOne carries the reason in its trailing metadata (ItemError.reason of a unary call)', async () => {
    let err: grpc.ServiceError | undefined;
    try {
      await c.inspectOne({ id: 'corrupt.png', image: Buffer.from('\x89PNG\r\n\x1a\n but then garbage'), model: ONE_CLASS_MODEL });
    } catch (e) {
      err = e as grpc.ServiceError;
    }
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^cannot decode image corrupt\.png: /);
    expect(err?.metadata.get(REASON_METADATA_KEY)).toEqual(['IMAGE_DECODE']);
  });

  it('warns once, naming it, about every file it skips in the models folder, but not its own log', async () => {
    // Rescans (every listing) must not repeat a warning; the inspection log now has its -wal/-shm files.
    await c.listModels();
    await c.listModels();
    const skipped = warnings().filter((w) => w.msg.includes('skipped'));
    const byFile = new Map<string, LogLine[]>();
    for (const w of skipped) byFile.set(w.file!, [...(byFile.get(w.file!) ?? []), w]);
    expect([...byFile.keys()].sort()).toEqual(['Bad Name.loupe', 'bottle', join('carton', 'v2.loupe'), 'notes.txt'].sort());
    for (const [file, ws] of byFile) {
      expect(ws, file).toHaveLength(1);
      expect(ws[0]!.msg, file).toContain(file);
    }
    expect(byFile.get('bottle')![0]!.reason).toMatch(/not a model file: model files are NAME\.loupe or NAME\/<version>\.loupe .*rename it bottle\.loupe/);
    expect(byFile.get('Bad Name.loupe')![0]!.reason).toMatch(/'Bad Name' is not a valid model name/);
    expect(byFile.get(join('carton', 'v2.loupe'))![0]!.reason).toMatch(/not a model version file/);
    expect(skipped.some((w) => w.file?.startsWith('inspections.db'))).toBe(false);
    // What is not skipped is served as before.
    expect((await c.getModel('carton')).version).toBe('3');
  });
});

// Issue 16, items 4 and 10: what a models folder may hold besides model files. A FIFO or a link to a
// device never hangs the start, a listing, a load or a training (the file is opened only when regular,
// even when it became a FIFO after the scan); links are followed the same way at both levels (NAME.loupe
// and NAME/1.loupe); an error never shows the content of what a link points to, nor a server path.
describe.skipIf(!fixtures)('FIFOs, devices and links in the models folder', () => {
  let dir: string;
  let outside: string;
  let server: LoupeServer;
  let c: LoupeClient;

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures!);
    outside = mkdtempSync(join(tmpdir(), 'loupe-outside-'));
    copyFileSync(join(dir, `${SVM_MODEL}.loupe`), join(outside, 'real.loupe'));
    mkdirSync(join(dir, 'piped'));
    execFileSync('mkfifo', [join(dir, 'piped', '1.loupe')]);
    execFileSync('mkfifo', [join(dir, 'fifo.loupe')]);
    symlinkSync('/dev/zero', join(dir, 'zero.loupe'));
    symlinkSync('/etc/passwd', join(dir, 'passwd.loupe'));
    mkdirSync(join(dir, 'pw'));
    symlinkSync('/etc/passwd', join(dir, 'pw', '1.loupe'));
    symlinkSync(join(outside, 'real.loupe'), join(dir, 'linked.loupe'));
    mkdirSync(join(dir, 'linkedv'));
    symlinkSync(join(outside, 'real.loupe'), join(dir, 'linkedv', '1.loupe'));
    // A regular file now, a FIFO by the time it is loaded (below).
    copyFileSync(join(dir, `${SVM_MODEL}.loupe`), join(dir, 'swapped.loupe'));
    const t0 = performance.now();
    server = await startInProcess(dir, { autoload: false });
    startMs = performance.now() - t0;
    c = client(server.port);
    await c.waitForReady();
  });
  let startMs = 0;

  afterAll(async () => {
    c?.close();
    await server?.stop();
    for (const d of [dir, outside]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('starts, lists, gets, loads, unloads and trains while FIFOs and devices sit in the folder', async () => {
    expect(startMs).toBeLessThan(30_000);
    const listed = await c.listModels();
    const names = listed.map((m) => m.name);
    for (const skipped of ['piped', 'fifo', 'zero']) expect(names, skipped).not.toContain(skipped);
    // A FIFO that takes a listed file's place: the load's rescan skips it, or core refuses to open it (the
    // file is opened only when regular: core's hostile-files test); either way at once, never a hang.
    rmSync(join(dir, 'swapped.loupe'));
    execFileSync('mkfifo', [join(dir, 'swapped.loupe')]);
    const t0 = performance.now();
    const e = await grpcError(c.loadModel('swapped'));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect([grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION]).toContain(e.code);
    expect((await c.getModel(SVM_MODEL)).name).toBe(SVM_MODEL);
    expect((await c.loadModel(SVM_MODEL)).state).toBe(ModelState.MODEL_STATE_LOADED);
    expect((await c.unloadModel(SVM_MODEL)).length).toBe(1);
    const images = bottleImages('train/good', 4).map((f) => ({ image: read(f), label: '', name: f }));
    // The FIFO's name: Train reads its folder, never the FIFO, and answers (the slot is given back).
    const t = await grpcError(c.train({ name: 'piped', kind: ModelKind.MODEL_KIND_ONE_CLASS, images: images.slice(0, 1), oneClass: { coresetRatio: 2, seed: 0, validationFraction: 0, thresholdQuantile: 0 } }));
    expect(t.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await c.getStats()).trainingsRunning).toBe(0);
  });

  it('follows links at both levels alike; an error never shows what a link points to, nor a server path', async () => {
    const byName = new Map((await c.listModels()).map((m) => [m.name, m]));
    for (const name of ['linked', 'linkedv']) {
      expect(byName.get(name)?.state, name).toBe(ModelState.MODEL_STATE_AVAILABLE);
      expect((await c.loadModel(name)).state, name).toBe(ModelState.MODEL_STATE_LOADED);
    }
    for (const name of ['passwd', 'pw']) {
      const m = byName.get(name)!;
      expect(m.state, name).toBe(ModelState.MODEL_STATE_FAILED);
      expect(m.error, name).toMatch(/^magic: not a Loupe model file/);
      expect(m.error, name).not.toMatch(/root|\/etc|\/bin|\/tmp/);
      expect(m.file, name).toBe(name === 'pw' ? join('pw', '1.loupe') : 'passwd.loupe');
      const e = await grpcError(c.loadModel(name));
      expect(e.details, name).not.toMatch(/root:|\/etc\/|\/tmp\//);
    }
  });
});
