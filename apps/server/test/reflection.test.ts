// Server reflection (issue 16, item 8) seen by an independent client that knows none of Loupe's protos
// (helpers/dynamic-client.ts: grpc-js + protobufjs, strict like a descriptor pool): every file comes with
// the files it imports (google/protobuf/timestamp.proto for loupe/v1/inspection.proto), and messages built
// from the served descriptors alone, Timestamps included, go through every kind of call.
import { describe, expect, inject, it } from 'vitest';

import { bottleImages, ONE_CLASS_MODEL, read, SVM_MODEL } from './fixtures.js';
import { DynamicClient } from './helpers/dynamic-client.js';
import { useServer } from './use-server.js';

const fixtures = inject('fixtureModels');

describe.skipIf(!fixtures)('server reflection for dynamic clients', () => {
  const f = useServer(fixtures);

  it('serves every file with the files it imports; a descriptor pool resolves them', async () => {
    const dc = new DynamicClient(`127.0.0.1:${f.server.port}`);
    try {
      const services = await dc.listServices();
      expect(services).toEqual(expect.arrayContaining(['loupe.v1.Inspection', 'grpc.health.v1.Health']));
      await dc.resolve('loupe.v1.Inspection');
      await dc.resolve('grpc.health.v1.Health');
      const graph = dc.fileGraph();
      expect(graph['loupe/v1/inspection.proto']).toEqual(['google/protobuf/timestamp.proto']);
      expect(graph['google/protobuf/timestamp.proto']).toEqual([]);
      expect(graph['grpc/health/v1/health.proto']).toEqual([]);
      // Resolving by a message name and by a method's full name finds the same files.
      await dc.resolve('loupe.v1.InspectionRecord');
      await dc.resolve('loupe.v1.Inspection.InspectOne');
      expect(dc.type('google.protobuf.Timestamp').fields['seconds']).toBeDefined();
    } finally {
      dc.close();
    }
  });

  it('calls unary and streaming methods with messages built from the served descriptors', async () => {
    const dc = new DynamicClient(`127.0.0.1:${f.server.port}`);
    try {
      await dc.resolve('loupe.v1.Inspection');
      await dc.resolve('grpc.health.v1.Health');
      expect(await dc.unary('grpc.health.v1.Health.Check', { service: '' })).toMatchObject({ status: 'SERVING' });
      const models = await dc.unary('loupe.v1.Inspection.ListModels', {});
      expect((models['models'] as { name: string }[]).map((m) => m.name)).toEqual(expect.arrayContaining([SVM_MODEL, ONE_CLASS_MODEL]));

      const [good, broken] = [read(bottleImages('train/good', 1)[0]!), read(bottleImages('test/broken_large', 1)[0]!)];
      const before = Math.floor(Date.now() / 1000) - 1;
      const one = await dc.unary('loupe.v1.Inspection.InspectOne', { id: 'dyn-1', image: good, model: SVM_MODEL, source: 'dynamic client' });
      expect(one['result']).toMatchObject({ model: SVM_MODEL, verdict: expect.stringMatching(/^VERDICT_(GOOD|ANOMALOUS)$/) });
      // A google.protobuf.Timestamp decoded from the served descriptor (field names as the .proto spells them).
      expect(Number(one['result'].inspected_at.seconds)).toBeGreaterThanOrEqual(before);

      const call = dc.stream('loupe.v1.Inspection.Inspect');
      const answers: Record<string, any>[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (r: Record<string, any>) => answers.push(r));
        call.on('error', reject);
        call.on('end', resolve);
      });
      call.write({ id: 'dyn-2', image: good, model: ONE_CLASS_MODEL });
      call.write({ id: 'dyn-3', image: broken, model: ONE_CLASS_MODEL, want_heatmap: true });
      call.write({ id: 'dyn-4', image: Buffer.from('not an image'), model: ONE_CLASS_MODEL });
      call.end();
      await done;
      const byId = new Map(answers.map((a) => [a['id'], a]));
      expect(byId.get('dyn-2')!['result']).toBeTruthy();
      expect(byId.get('dyn-3')!['result'].heatmap_png.length).toBeGreaterThan(100);
      expect(byId.get('dyn-4')!['error']).toMatchObject({ reason: 'IMAGE_DECODE' });

      // A request carrying Timestamps (since/until) built from the served descriptor.
      const page = await dc.unary('loupe.v1.Inspection.ListInspections', { since: { seconds: before }, until: { seconds: before + 3600 }, oldest_first: true, page_size: 10 });
      expect((page['inspections'] as { client_id: string }[]).map((r) => r.client_id)).toEqual(expect.arrayContaining(['dyn-1', 'dyn-2', 'dyn-3']));
    } finally {
      dc.close();
    }
  });
});
