// `loupe evaluate` reproduces the published one-class figures: a model made by
// `loupe train <MVTec bottle> --mode one-class --coreset 0.01` gives the image and pixel AUROC of
// docs/benchmarks/anomaly.json's mvtec_ad/bottle row (tools/eval, through the same core code) within 0.002.
// Real engine, weights and the whole bottle category (209 train, 83 test images): about two minutes on 2
// cores. Skipped, with a note, without the weights or ../shared.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { bottleDir, haveWeights, jsonLines, loupeHome, repoRoot, runLoupe } from './support/cli.js';

const benchmark = join(repoRoot, 'docs', 'benchmarks', 'anomaly.json');
const runIt = haveWeights && existsSync(join(bottleDir, 'train', 'good')) && existsSync(benchmark);
if (!runIt) console.warn(`anomaly-parity.test: skipped (${!haveWeights ? `no weights in ${loupeHome}` : !existsSync(benchmark) ? `no ${benchmark}` : `no MVTec bottle at ${bottleDir}`})`);

interface BenchmarkRow {
  dataset: string;
  variant: string | null;
  config: { coresetRatio: number; projectionDim: number; storage: string; seed?: number };
  imageAuroc: number;
  pixelAuroc: number | null;
}

describe.skipIf(!runIt)('loupe evaluate reproduces docs/benchmarks/anomaly.json', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'loupe-parity-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('mvtec_ad/bottle, coreset 0.01: image and pixel AUROC within 0.002', async () => {
    const { reports } = JSON.parse(readFileSync(benchmark, 'utf8')) as { reports: BenchmarkRow[] };
    const row = reports.find((r) => r.dataset === 'mvtec_ad/bottle' && r.variant === null);
    expect(row, 'the mvtec_ad/bottle row of anomaly.json').toBeDefined();
    expect(row!.config).toMatchObject({ coresetRatio: 0.01, projectionDim: 0, storage: 'fp32' });
    // The benchmark's --seed defaults to 0, as loupe train's does; rows record it since it became part of the config.
    expect(row!.config.seed ?? 0, 'the seed the benchmark row was made with').toBe(0);

    const model = join(tmp, 'bottle');
    const t = await runLoupe(['--threads', '2', '--no-progress', 'train', bottleDir, '--mode', 'one-class', '--coreset', '0.01', '--out', model, '--json']);
    expect(t.code, t.stderr).toBe(0);
    const e = await runLoupe(['--threads', '2', '--no-progress', 'evaluate', `${model}.loupe`, bottleDir, '--json']);
    expect(e.code, e.stderr).toBe(0);
    const last = jsonLines(e.stdout).pop()!;
    const report = `loupe evaluate: imageAuroc ${String(last['imageAuroc'])}, pixelAuroc ${String(last['pixelAuroc'])}; anomaly.json: ${row!.imageAuroc}, ${String(row!.pixelAuroc)}`;
    console.log(report);
    expect(Math.abs((last['imageAuroc'] as number) - row!.imageAuroc), report).toBeLessThanOrEqual(0.002);
    expect(Math.abs((last['pixelAuroc'] as number) - row!.pixelAuroc!), report).toBeLessThanOrEqual(0.002);
  }, 900_000);
});
