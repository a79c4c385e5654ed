// The models folder as the server reads it, through @loupe/core: a model file that loads but could never
// inspect (checksum-valid, edited header) is FAILED with core's reason at load, never SERVING; every file
// the server skips in the folder is named once in a warning (its own inspection log excepted).
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createLogger, LoupeServer, proto, REASON_METADATA_KEY, type LoupeClient } from '../dist/index.js';
import { bottleImages, client, grpcError, inspectAll, modelDirWithFixtures, ONE_CLASS_MODEL, read, SVM_MODEL, testConfig, testEngine } from './fixtures.js';

const { ModelState } = proto;
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
