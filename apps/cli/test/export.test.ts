// `loupe export --onnx`: the exported graph, run by onnxruntime, scores the sample as the engine does.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { decodeImage, packBatch } from '@loupe/core';

import { haveWeights, repoRoot, runLoupe, sample, type CliResult } from './support/cli.js';

type Ort = typeof import('onnxruntime-node');
let ort: Ort | undefined;
try {
  ort = createRequire(join(repoRoot, 'package.json'))('onnxruntime-node') as Ort;
} catch (err) {
  console.warn(`[skip] loupe export parity: onnxruntime-node not loadable (${String(err)})`);
}
if (!haveWeights) console.warn('[skip] loupe export: no weights cache');

const tmp = mkdtempSync(join(tmpdir(), 'loupe-export-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const loupe = (args: string[]): Promise<CliResult> => runLoupe(args);

describe.skipIf(!haveWeights)('loupe export --onnx', () => {
  it('names a file it cannot write, exit 1, and leaves nothing behind', async () => {
    const target = join(tmp, 'no-such-dir', 'm.onnx');
    const r = await loupe(['export', '--onnx', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(target);
    expect(existsSync(target)).toBe(false);
  });

  it.skipIf(!ort)('writes a graph whose fc1000 and avg_pool match `loupe features` on the sample (1e-4)', async () => {
    const file = join(tmp, 'resnet50.onnx');
    const r = await loupe(['export', '--onnx', file, '--layers', 'fc1000,avg_pool', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim()) as { file: string; outputs: string[]; bytes: number };
    expect(summary.outputs).toEqual(['fc1000', 'avg_pool']);
    expect(summary.bytes).toBeGreaterThan(90e6); // 25.6 M float32 parameters

    const f = await loupe(['features', sample, '--layers', 'fc1000,avg_pool', '--json']);
    expect(f.code, f.stderr).toBe(0);
    const engine = JSON.parse(f.stdout.trim()) as { fc1000: number[]; avg_pool: number[] };

    const session = await ort!.InferenceSession.create(file, { intraOpNumThreads: 2, interOpNumThreads: 1 });
    const batch = packBatch([await decodeImage(sample)]);
    const out = await session.run({ input: new ort!.Tensor('float32', batch.data, [1, 224, 224, 3]) });
    const names = session.outputNames;
    expect(names.length).toBe(2);
    const fc = out[names[0]!]!.data as Float32Array;
    const pool = out[names[1]!]!.data as Float32Array;
    let dfc = 0;
    for (let i = 0; i < 1000; i++) dfc = Math.max(dfc, Math.abs(fc[i]! - engine.fc1000[i]!));
    let dpool = 0;
    for (let i = 0; i < 2048; i++) dpool = Math.max(dpool, Math.abs(pool[i]! - engine.avg_pool[i]!));
    expect(dfc).toBeLessThan(1e-4);
    expect(dpool).toBeLessThan(1e-4);
    const top = (a: ArrayLike<number>): number => Array.from(a).reduce((b, v, i, arr) => (v > arr[b]! ? i : b), 0);
    expect(top(fc)).toBe(967); // espresso, as in shared/reference/resnet50/coffee.json
  }, 120_000);
});
