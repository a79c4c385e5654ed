// Limits of the transport (issue 16): string fields are bounded before they reach the log or an answer
// (item 2), ListInspections pages by bytes as well as rows and survives rows written before the limits
// (item 2), deadlines past what a Node timer holds are clamped, whether the image's deadline_ms or the
// call's own deadline from grpc-js or a raw HTTP/2 client (item 7), client text quoted in errors is cut
// (item 10: a 100 KB model name), and Train options no trainer can use are the client's fault (item 10).
import { rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { InspectionStore, proto, type LoupeClient, type LoupeServer } from '../dist/index.js';
import { bottleImages, client, grpcError, inspectAll, modelDirWithFixtures, ONE_CLASS_MODEL, read, smallImage, startInProcess, SVM_MODEL } from './fixtures.js';

const fixtures = inject('fixtureModels');
const { ModelKind } = proto;
const MB = 1024 * 1024;
const DAY_MS = 86_400_000;

/** A protobuf length-delimited field (wire type 2), hand-encoded: the raw client uses no Loupe code. */
function lenField(field: number, value: Buffer | string): Buffer {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
  const varint: number[] = [];
  for (let n = bytes.length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      varint.push(n);
      break;
    }
    varint.push((n % 128) | 0x80);
  }
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint]), bytes]);
}

/** One unary gRPC call over node:http2 with the given headers; resolves with its grpc-status and message. */
function rawUnary(port: number, path: string, body: Buffer, headers: Record<string, string>): Promise<{ status: string; message: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let bytes = 0;
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('trailers', (t) => {
      session.close();
      resolve({ status: String(t['grpc-status'] ?? head['grpc-status']), message: decodeURIComponent(String(t['grpc-message'] ?? head['grpc-message'] ?? '')), bytes });
    });
    req.on('end', () => {
      if (head['grpc-status'] !== undefined) {
        session.close();
        resolve({ status: String(head['grpc-status']), message: decodeURIComponent(String(head['grpc-message'] ?? '')), bytes });
      }
    });
    req.on('error', reject);
    req.end(frame);
  });
}

describe.skipIf(!fixtures)('limits of the transport', () => {
  let dir: string;
  let server: LoupeServer;
  let c: LoupeClient;
  let small: Buffer;

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    // Rows an older server stored as they came: 20 results with a 5 MB `source` each (105 MB of log).
    const legacy = new InspectionStore(join(dir, 'inspections.db'));
    const big = 'x'.repeat(5 * MB);
    for (let i = 0; i < 20; i++) {
      await legacy.record({ inspectionId: `legacy-${i}`, clientId: `legacy-${i}`, timeMs: Date.now() - 60_000, model: SVM_MODEL, modelVersion: '1', verdict: 'good', score: 0.1, defectType: '', latencyMs: 5, source: big, peer: 'ipv4:127.0.0.1:1' });
    }
    legacy.close();
    server = await startInProcess(dir);
    c = client(server.port);
    small = await smallImage(bottleImages('train/good', 1)[0]!);
  });

  afterAll(async () => {
    c?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('item 2: an id or source over its limit is INVALID_ARGUMENT naming the field, answered small, never recorded; the stream goes on', async () => {
    const hugeSource = 's'.repeat(5 * MB);
    const hugeId = 'i'.repeat(2 * MB);
    const { responses, summary } = await inspectAll(c, [
      { id: 'big-source', image: small, model: SVM_MODEL, source: hugeSource },
      { id: hugeId, image: small, model: SVM_MODEL },
      { id: 'fine', image: small, model: SVM_MODEL, source: 's'.repeat(4096) },
    ]);
    expect(summary.status).toBe(grpc.status.OK);
    const byId = new Map(responses.map((r) => [r.id, r]));
    expect(byId.get('big-source')!.error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, reason: 'INVALID_ARGUMENT', message: "image 'big-source': the 'source' field is 5242880 bytes; the limit is 4096" });
    const idAnswer = responses.find((r) => r.id.startsWith('iii'))!;
    expect(idAnswer.id.length).toBe(1024); // cut to the limit: the answer stays small
    expect(idAnswer.error!.message).toMatch(/^image 'i{64}\.\.\. \(2097152 bytes\)': the 'id' field is 2097152 bytes; the limit is 1024$/);
    expect(byId.get('fine')!.result).toBeDefined();
    const one = await grpcError(c.inspectOne({ id: 'one', image: small, model: SVM_MODEL, source: hugeSource }));
    expect(one.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(one.details).toBe("image 'one': the 'source' field is 5242880 bytes; the limit is 4096");
    const recorded = await c.listInspections({ clientId: 'big-source' });
    expect(recorded.inspections).toEqual([]);
  });

  it('item 2: ListInspections pages through 105 MB of legacy rows at any page size (text cut, pages bounded by bytes)', async () => {
    for (const pageSize of [0, 10, 1000]) {
      const seen = new Set<string>();
      let token = '';
      let pages = 0;
      do {
        const page = await c.listInspections({ pageSize, pageToken: token, oldestFirst: true });
        for (const r of page.inspections) {
          seen.add(r.clientId);
          expect(r.source.length).toBeLessThanOrEqual(4096 + 3);
        }
        token = page.nextPageToken;
        pages++;
      } while (token && pages < 100);
      for (let i = 0; i < 20; i++) expect(seen.has(`legacy-${i}`), `page size ${pageSize}`).toBe(true);
    }
    const first = await c.listInspections({ pageSize: 1000, oldestFirst: true });
    expect(first.inspections[0]!.source).toBe(`${'x'.repeat(4096)}...`);
  });

  it('item 2: a page ends early when its rows reach half a message; every row is still reached', async () => {
    const tiny = await startInProcess(dir, { limits: { maxMessageBytes: 64 * 1024 }, db: { path: join(dir, 'tiny.db') } });
    const tc = client(tiny.port, { maxMessageBytes: 64 * 1024 });
    try {
      const src = 'y'.repeat(4000);
      const { responses } = await inspectAll(tc, Array.from({ length: 40 }, (_, i) => ({ id: `p-${i}`, image: small, model: SVM_MODEL, source: src })));
      expect(responses.every((r) => r.result)).toBe(true);
      const ids: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = await tc.listInspections({ pageSize: 1000, pageToken: token, oldestFirst: true });
        expect(page.inspections.length).toBeLessThanOrEqual(8); // 32 KB of ~4 KB rows
        ids.push(...page.inspections.map((r) => r.clientId));
        token = page.nextPageToken;
        pages++;
      } while (token);
      expect(pages).toBeGreaterThanOrEqual(5);
      // Every row once (in the order they were recorded, which is the order they finished).
      expect(ids.length).toBe(40);
      expect(new Set(ids)).toEqual(new Set(Array.from({ length: 40 }, (_, i) => `p-${i}`)));
    } finally {
      tc.close();
      await tiny.stop();
    }
  });

  it('item 7: deadline_ms of 2^31 and 2^32-1 is no deadline to speak of, not CANCELLED at once', async () => {
    const { responses } = await inspectAll(c, [
      { id: 'd31', image: small, model: ONE_CLASS_MODEL, deadlineMs: 2 ** 31 },
      { id: 'd32', image: small, model: ONE_CLASS_MODEL, deadlineMs: 2 ** 32 - 1 },
      { id: 'd24', image: small, model: ONE_CLASS_MODEL, deadlineMs: 24 * DAY_MS },
    ]);
    for (const r of responses) expect(r.error, r.id).toBeUndefined();
    expect(responses.map((r) => r.id).sort()).toEqual(['d24', 'd31', 'd32']);
  });

  it('item 7: a 30-day call deadline (grpc-js client) is served, unary and streaming', async () => {
    const deadline = new Date(Date.now() + 30 * DAY_MS);
    const res = await new Promise<proto.InspectOneResponse>((resolve, reject) =>
      c.inspection.inspectOne(proto.InspectOneRequest.fromPartial({ id: 'long', image: small, model: ONE_CLASS_MODEL }), c.metadata(), { deadline }, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    expect(res.result).toBeDefined();
    const answers: proto.InspectResponse[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = c.inspection.inspect(c.metadata(), { deadline });
      call.on('data', (r: proto.InspectResponse) => answers.push(r));
      call.on('status', resolve);
      call.on('error', () => {});
      call.write(proto.InspectRequest.fromPartial({ id: 'long-stream', image: small, model: ONE_CLASS_MODEL }));
      call.end();
    });
    expect(status.code).toBe(grpc.status.OK);
    expect(answers[0]!.result).toBeDefined();
  });

  it('item 7: raw HTTP/2 calls with huge grpc-timeout headers are served; a short one still expires', async () => {
    const body = Buffer.concat([lenField(1, 'raw'), lenField(2, small), lenField(3, ONE_CLASS_MODEL)]);
    for (const timeout of ['2592000S', '99999999H', '99999999M', '123456789S']) {
      const r = await rawUnary(server.port, '/loupe.v1.Inspection/InspectOne', body, { 'grpc-timeout': timeout });
      expect(r, timeout).toMatchObject({ status: '0' });
      expect(r.bytes, timeout).toBeGreaterThan(20);
    }
    const late = await rawUnary(server.port, '/loupe.v1.Inspection/InspectOne', body, { 'grpc-timeout': '1m' });
    expect(late.status).toBe(String(grpc.status.DEADLINE_EXCEEDED));
  });

  it('item 10: a 100 KB model name is refused naming the rule, its text cut (no RESOURCE_EXHAUSTED)', async () => {
    const name = 'n'.repeat(100 * 1024);
    for (const call of [() => c.loadModel(name), () => c.getModel(name), () => c.unloadModel(name), () => c.deleteModel(name, '1')]) {
      const e = await grpcError(call());
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details).toMatch(/^invalid model name 'n{64}\.\.\. \(102400 bytes\)' \(letters, digits/);
    }
    const { responses } = await inspectAll(c, [{ id: 'x', image: small, model: name, modelVersion: 'v'.repeat(50_000) }]);
    expect(responses[0]!.error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^image 'x': the 'model' field 'n{64}\.\.\. \(102400 bytes\)' is not a valid model name/) });
    const version = await inspectAll(c, [{ id: 'y', image: small, model: SVM_MODEL, modelVersion: '9'.repeat(50_000) }]);
    expect(version.responses[0]!.error).toMatchObject({ code: grpc.status.NOT_FOUND, message: expect.stringMatching(/has no version 9{64}\.\.\. \(50000 bytes\)$/) });
    const train = await grpcError(c.train({ name, kind: ModelKind.MODEL_KIND_ONE_CLASS, images: [{ image: small, label: '', name: 'a.png' }] }));
    expect(train.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(train.details.length).toBeLessThan(400);
  });

  it('item 10: Train options no trainer can use are INVALID_ARGUMENT naming the option, before any training', async () => {
    const images = [
      ...bottleImages('train/good', 2).map((f) => ({ image: read(f), label: 'good', name: f })),
      ...bottleImages('test/broken_large', 2).map((f) => ({ image: read(f), label: 'broken', name: f })),
    ];
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ svm: { layer: 'fc1000', lambda: -1, epochs: 0, seed: 0 } }, /svm\.lambda.*-1/],
      [{ svm: { layer: 'fc1000', lambda: Infinity, epochs: 0, seed: 0 } }, /svm\.lambda.*Infinity/],
      [{ svm: { layer: 'fc1000', lambda: NaN, epochs: 0, seed: 0 } }, /svm\.lambda.*NaN/],
      [{ svm: { layer: 'fc1000', lambda: 0, epochs: 2 ** 32 - 1, seed: 0 } }, /svm\.epochs.*4294967295/],
      [{ kind: ModelKind.MODEL_KIND_ONE_CLASS, oneClass: { coresetRatio: 2, seed: 0, validationFraction: 0, thresholdQuantile: 0 } }, /one_class\.coreset_ratio.*2/],
      [{ kind: ModelKind.MODEL_KIND_ONE_CLASS, oneClass: { coresetRatio: 0, seed: 0, validationFraction: 1.5, thresholdQuantile: 0 } }, /one_class\.validation_fraction.*1\.5/],
      [{ kind: ModelKind.MODEL_KIND_ONE_CLASS, oneClass: { coresetRatio: 0, seed: 0, validationFraction: 0, thresholdQuantile: -0.5 } }, /one_class\.threshold_quantile.*-0\.5/],
    ];
    for (const [opts, why] of cases) {
      const t0 = performance.now();
      const e = await grpcError(c.train({ name: 'bad-options', kind: ModelKind.MODEL_KIND_SVM, images, ...opts }));
      expect(e.code, JSON.stringify(opts)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details, JSON.stringify(opts)).toMatch(why);
      expect(performance.now() - t0, JSON.stringify(opts)).toBeLessThan(1500); // refused up front, no worker started
    }
    expect((await c.listModels()).map((m) => m.name)).not.toContain('bad-options');
  });
});
