// INT8 vs fp32 quality on the dev categories, through core's own trainers and evaluators (what `loupe train
// DIR [--precision int8]` and `loupe evaluate` run), same splits and seeds for both precisions:
//
//   npx vite-node tools/eval/int8-quality.ts -- [--datasets DIR] [--categories a,b] [--methods mse,percentile]
//        [--json FILE]
//
// Per category and precision (fp32; int8 calibrated on the training images with each --methods range method):
//  - one-class: trainOneClass({ good: DIR, seed 0 }) -> evaluateOneClass(DIR): image and pixel AUROC;
//  - SVM: trainClassifier({ data: DIR, holdOut: { split: 0.5 }, seed 0, layer fc1000 }): held-out accuracy and
//    balanced accuracy;
//  - fc1000 of the int8 session (the category's calibration) vs fp32 on the category's test images: cosine,
//    top-1 agreement, top-5 overlap.
// Plus fc1000 agreement on the ResNet-50 reference images (shared/reference/resnet50) with the ImageNet
// commands' default calibration (core's synthetic set + the CLI's bundled sample image).
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  defaultInt8Calibration,
  Engine,
  evaluateOneClass,
  extractFeatures,
  Inspector,
  scanMvtecOneClass,
  trainClassifier,
  trainOneClass,
  type Int8Calibration,
  type Int8CalibrationMethod,
} from '../../packages/core/src/internal.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    datasets: { type: 'string', default: resolve(repo, '..', 'shared', 'datasets') },
    categories: { type: 'string', default: 'mvtec_ad/bottle,mtd/magnetic_tile,kolektorsdd/commutator' },
    methods: { type: 'string', default: 'mse,percentile' },
    json: { type: 'string' },
    'skip-oneclass': { type: 'boolean', default: false },
  },
});

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const r4 = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x * 1e4) / 1e4);

function topK(v: Float32Array, k: number): number[] {
  return [...v.keys()].sort((a, b) => v[b]! - v[a]!).slice(0, k);
}

/** fc1000 of `int8` vs `fp32` over images: mean/min cosine, top-1 agreement, mean top-5 overlap. */
async function agreement(engine: Engine, calibration: Int8Calibration, images: readonly string[]): Promise<Record<string, number>> {
  const fp = await extractFeatures(images, { engine: engine.session, layer: 'fc1000' });
  const q = await extractFeatures(images, { engine: engine.withSession({ precision: 'int8', int8Calibration: calibration }).session, layer: 'fc1000' });
  let cosSum = 0;
  let cosMin = 1;
  let top1 = 0;
  let top5 = 0;
  for (let i = 0; i < fp.length; i++) {
    const a = fp[i]!.features.fc1000;
    const b = q[i]!.features.fc1000;
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = 0; j < a.length; j++) {
      dot += a[j]! * b[j]!;
      na += a[j]! * a[j]!;
      nb += b[j]! * b[j]!;
    }
    const cos = dot / Math.sqrt(na * nb);
    cosSum += cos;
    cosMin = Math.min(cosMin, cos);
    const ta = topK(a, 5);
    const tb = topK(b, 5);
    if (ta[0] === tb[0]) top1++;
    top5 += ta.filter((c) => tb.includes(c)).length / 5;
  }
  const n = fp.length;
  return { images: n, cosineMean: r4(cosSum / n)!, cosineMin: r4(cosMin)!, top1Agreement: r4(top1 / n)!, top5Overlap: r4(top5 / n)! };
}

const engine = await Engine.open({ threads: 2 });
const variants: { name: string; precision: 'fp32' | 'int8'; method?: Int8CalibrationMethod }[] = [
  { name: 'fp32', precision: 'fp32' },
  ...args.methods.split(',').map((m) => ({ name: `int8-${m}`, precision: 'int8' as const, method: m as Int8CalibrationMethod })),
];
const rows: Record<string, unknown>[] = [];

const refDir = resolve(args.datasets, '..', 'reference', 'resnet50');
if (existsSync(refDir)) {
  const refs = readdirSync(refDir).filter((f) => f.endsWith('.png')).sort().map((f) => join(refDir, f));
  const cal = await defaultInt8Calibration(engine, [join(repo, 'apps', 'cli', 'assets', 'sample.png')]);
  const a = await agreement(engine, cal, refs);
  log(`reference images, default ImageNet calibration: ${JSON.stringify(a)}`);
  rows.push({ category: 'reference', calibration: 'default (synthetic + sample.png)', fc1000: a });
}

for (const rel of args.categories.split(',')) {
  const dir = resolve(args.datasets, rel);
  const category = rel.split('/').pop()!;
  const test = (await scanMvtecOneClass(dir, { verify: 'header', dedupe: false })).test.map((i) => i.path);
  for (const v of variants) {
    const t0 = performance.now();
    const row: Record<string, unknown> = { category, precision: v.name };
    const p = { precision: v.precision, ...(v.method ? { calibrationMethod: v.method } : {}) };
    if (!args['skip-oneclass']) {
      const oc = await trainOneClass({ engine, good: dir, seed: 0, threads: 2, ...p });
      const e = await evaluateOneClass(await Inspector.open(oc.model, { engine, threads: 2 }), dir);
      row['imageAuroc'] = r4(e.imageAuroc);
      row['pixelAuroc'] = r4(e.pixelAuroc);
      if (oc.model.int8Calibration) row['fc1000'] = await agreement(engine, oc.model.int8Calibration, test);
    }
    const c = await trainClassifier({ engine, data: dir, layer: 'fc1000', holdOut: { split: 0.5 }, seed: 0, threads: 2, ...p });
    row['svmAccuracy'] = r4(c.heldOut!.metrics.accuracy);
    row['svmBalancedAccuracy'] = r4(c.heldOut!.metrics.balancedAccuracy);
    row['seconds'] = Math.round((performance.now() - t0) / 100) / 10;
    log(JSON.stringify(row));
    rows.push(row);
  }
}
const out = { date: new Date().toISOString(), weightsHash: engine.weightsHash, rows };
if (args.json) writeFileSync(args.json, `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(out));
