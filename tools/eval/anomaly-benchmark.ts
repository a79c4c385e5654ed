// One-class anomaly detection benchmark (PatchCore on the engine's ResNet-50, + few-shot lift).
//
//   npx vite-node tools/eval/anomaly-benchmark.ts -- [options]
//
// For every category under the datasets folder (MVTec layout: train/good, test/*, ground_truth/*):
//   1. trains PatchCore on train/good (a seeded 10% of it held out as good validation for thresholds),
//   2. scores test/* and reports image AUROC, pixel AUROC, PRO (normalised AUPRO up to FPR 0.3), image
//      F1-max, ms/image (scoring only = features + kNN + map; end-to-end incl. decode and CNN) next to the
//      ResNet-50 forward alone, and the memory bank size,
//   3. few-shot lift: group-aware 5-fold over the defective test images; per fold the supervised head
//      is trained on defects from the OTHER folds (N shots, or all of them) and tested on this fold's
//      defects + all good test images, against PatchCore alone on the same test set.
// Writes docs/benchmarks/anomaly.md (+ anomaly.json, + example overlays) unless --out is changed.
//
// Options: --datasets DIR (default ../shared/datasets beside the repo) --categories a,b --coreset 0.01
//   --projection 0 --storage fp32|fp16 --max-bank-mb N --batch 8 --threads 2 --seed 0 --folds 5
//   --shots 5,10 --no-fewshot --no-examples --out FILE --speed-images 32
//   --variants "projectionDim=256;coresetRatio=0.1" (extra config variants per category: metrics + speed)
//   --render FILE.json (only re-render the markdown from a previous run's anomaly.json; nothing is measured)
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import {
  auroc,
  createRng,
  Engine,
  evaluateOneClass,
  FewShotHead,
  fitFusion,
  fuseScores,
  groupKFold,
  holdOutValidation,
  INPUT_ELEMENTS,
  Inspector,
  LABEL_NEGATIVE,
  loadAddon,
  loadMask,
  parseGroupsCsv,
  patchLabelsFromMask,
  patchLabelsFromScores,
  PATCHES_PER_IMAGE,
  prepareImage,
  renderHeatmapPng,
  scanMvtecOneClass,
  SparseRandomProjection,
  trainOneClass,
  type AnomalyResult,
  type DatasetItem,
  type HeadTrainingImage,
  type OneClassEvaluation,
  type OneClassModel,
  type PatchCoreModel,
  type TrainOneClassOptions,
} from '../../packages/core/src/internal.js';
import { findCategories, findDatasets } from './datasets.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    datasets: { type: 'string' },
    categories: { type: 'string' },
    coreset: { type: 'string', default: '0.01' },
    projection: { type: 'string', default: '0' },
    storage: { type: 'string', default: 'fp32' },
    'max-bank-mb': { type: 'string' },
    batch: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    seed: { type: 'string', default: '0' },
    folds: { type: 'string', default: '5' },
    shots: { type: 'string', default: '5,10' },
    'no-fewshot': { type: 'boolean', default: false },
    'no-examples': { type: 'boolean', default: false },
    'speed-images': { type: 'string', default: '32' },
    out: { type: 'string' },
    variants: { type: 'string' },
    render: { type: 'string' },
  },
});

const HEAD_DIM = 256;
const HEAD_NEGATIVE_IMAGES = 60;

function log(msg: string): void {
  process.stderr.write(`[anomaly-benchmark] ${msg}\n`);
}


function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}
function sd(xs: number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2 : NaN;
}

interface TestRecord {
  item: DatasetItem;
  defect: boolean;
  result: AnomalyResult;
  /** 0/1 ground truth at map size; null for good images. */
  mask: Uint8Array | null;
  maskEmpty: boolean;
  /** Head-dim projected patch rows (few-shot). */
  rows?: Float32Array;
}

interface CategoryReport {
  category: string;
  dataset: string;
  variant: string | null;
  config: TrainOptionsConfig & { seed: number };
  train: { bank: number; validation: number };
  test: { good: number; defect: number; pixelImages: number; skippedEmptyMasks: number };
  bank: { rows: number; dim: number; storage: string; mb: number; sourcePatches: number };
  thresholds: { image: number; pixel: number };
  imageAuroc: number;
  pixelAuroc: number | null;
  pro: number | null;
  imageF1Max: number;
  trainSeconds: number;
  speed: SpeedRow[];
  knnMethods: KnnMethodsRow | null;
  fewShot: FewShotRow[];
  examples: string[];
}

/** The model's kNN index against a brute-force index on the same real patch queries (same run). */
interface KnnMethodsRow {
  method: string;
  queries: number;
  /** ms per image (784 patch queries, k = 1), best of 3. */
  indexMs: number;
  bruteForceMs: number;
  /** Queries whose nearest bank row differs (float near-ties only). */
  indexMismatches: number;
  maxRelDistDiff: number;
  buildMs: number;
}

interface SpeedRow {
  batch: number;
  images: number;
  /** ResNet-50 forward alone to fc/probabilities, and to res4f only. */
  fullMs: number;
  toRes4fMs: number;
  decode: number;
  cnn: number;
  features: number;
  knn: number;
  map: number;
  scoring: number;
  endToEnd: number;
  endToEndNoDecode: number;
  /** 1-minute load average when the row was measured (the machine may be shared). */
  load1: number;
}

interface FewShotRow {
  setting: string;
  folds: number;
  trainDefects: number;
  patchcore: [number, number];
  head: [number, number];
  fused: [number, number];
  lift: [number, number];
  notes: string;
}

/** Median ms/image of the engine alone on prepared tensors. */
async function forwardMs(engine: Engine, tensor: Float32Array, n: number, batch: number, taps: readonly ('probabilities' | 'res3d' | 'res4f')[], rounds = 3): Promise<number> {
  const times: number[] = [];
  await engine.run({ data: tensor.subarray(0, Math.min(n, batch) * INPUT_ELEMENTS), batch: Math.min(n, batch) }, taps); // warm-up
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let s = 0; s < n; s += batch) {
      const b = Math.min(batch, n - s);
      await engine.run({ data: tensor.subarray(s * INPUT_ELEMENTS, (s + b) * INPUT_ELEMENTS), batch: b }, taps);
    }
    times.push((performance.now() - t0) / n);
  }
  return median(times);
}

/** The training options a run (or a --variants entry) may set. */
type TrainOptionsConfig = Pick<TrainOneClassOptions, 'coresetRatio' | 'projectionDim' | 'storage' | 'maxBankMB'>;
const VARIANT_KEYS: readonly string[] = ['coresetRatio', 'projectionDim', 'storage', 'maxBankMB'];

interface RunFlags {
  fewShot: boolean;
  examples: boolean;
  speedBatches: number[];
  /** Label of a config variant (null = the main run). */
  variant: string | null;
}

async function runCategory(engine: Engine, root: string, datasetsRoot: string, config: TrainOptionsConfig, flags: RunFlags): Promise<CategoryReport> {
  const batch = Number(args.batch);
  const threads = Number(args.threads);
  const seed = Number(args.seed);
  const ds = await scanMvtecOneClass(root, { verify: 'decode', dedupe: false });
  const name = relative(datasetsRoot, root);
  log(`${name}: ${ds.train.length} train, ${ds.test.length} test`);

  // Training and evaluation are @loupe/core's (trainOneClass, evaluateOneClass): what `loupe train DIR
  // --mode one-class` and `loupe evaluate` run, so the CLI reproduces these figures.
  const t0 = performance.now();
  let lastLog = 0;
  const training = await trainOneClass({
    engine,
    good: root,
    ...config,
    seed,
    batchSize: batch,
    threads,
    onProgress: ({ stage, done, total }) => {
      const now = performance.now();
      if (now - lastLog > 15000 || done === total) {
        lastLog = now;
        log(`${name}: ${stage} ${done}/${total}`);
      }
    },
  });
  const trainSeconds = (performance.now() - t0) / 1000;
  const oneClass = training.model;
  const model = oneClass.patchcore;
  log(`${name}: trained in ${trainSeconds.toFixed(1)} s: ${model.describe()}`);
  // The same good-validation hold-out the model's thresholds came from (the few-shot fusion needs it).
  const { bank: bankItems, validation: valItems } = holdOutValidation(ds.train, model.config.validationFraction, model.config.seed);
  if (bankItems.length !== model.training.images) throw new Error(`${name}: hold-out mismatch (${bankItems.length} vs ${model.training.images} bank images)`);

  // --- Detection and localisation: core's evaluation protocol -----------------------------------
  const inspector = await Inspector.open(oneClass, { engine, threads });
  const evaluation = await evaluateOneClass(inspector, ds, { batchSize: batch });
  log(`${name}: image AUROC ${f4(evaluation.imageAuroc)}, pixel AUROC ${f4(evaluation.pixelAuroc)}, PRO ${f4(evaluation.pro)}, F1-max ${f4(evaluation.f1Max)}`);

  // --- Patch embeddings and masks of the test set, for the few-shot head ------------------------
  const fewShot = flags.fewShot;
  const proj = fewShot ? new SparseRandomProjection({ inDim: model.bank.d, outDim: HEAD_DIM, seed: 1 }) : null;
  const records: TestRecord[] = [];
  if (proj) {
    let k = 0;
    for await (const r of model.scoreIter(engine, ds.test.map((i) => i.path), { batchSize: batch, threads, keepEmbeddings: true })) {
      const item = ds.test[k++]!;
      const defect = item.label !== 'good';
      const mask = defect ? await loadMask(item.maskPath ?? null, r.width, r.height) : null;
      const rec: TestRecord = { item, defect, result: r, mask, maskEmpty: mask !== null && !mask.some((v) => v !== 0) };
      if (r.embeddings) rec.rows = proj.apply(r.embeddings, r.embeddings.length / model.bank.d);
      delete r.embeddings;
      records.push(rec);
    }
  }

  // --- Speed: a clean timed pass (nothing else in the loop) and the forward alone, same images ------
  const nSpeed = Math.min(Number(args['speed-images']), ds.test.length);
  const speedSources = ds.test.slice(0, nSpeed).map((i) => i.path);
  const tensor = new Float32Array(nSpeed * INPUT_ELEMENTS);
  for (let i = 0; i < nSpeed; i++) tensor.set((await prepareImage(speedSources[i]!)).tensor, i * INPUT_ELEMENTS);
  const speed: SpeedRow[] = [];
  for (const b of flags.speedBatches) {
    const fullMs = await forwardMs(engine, tensor, nSpeed, b, ['probabilities']);
    const toRes4fMs = await forwardMs(engine, tensor, nSpeed, b, ['res3d', 'res4f']);
    await model.score(engine, speedSources.slice(0, b), { batchSize: b, threads }); // warm-up
    const runs: Array<{ wall: number; t: AnomalyResult['timings'][] }> = [];
    for (let rep = 0; rep < 2; rep++) {
      const t: AnomalyResult['timings'][] = [];
      const w0 = performance.now();
      for await (const r of model.scoreIter(engine, speedSources, { batchSize: b, threads })) t.push(r.timings);
      runs.push({ wall: (performance.now() - w0) / nSpeed, t });
    }
    const best = runs.reduce((a, r) => (r.wall < a.wall ? r : a));
    const avg = (f: (t: AnomalyResult['timings']) => number): number => best.t.reduce((a, t) => a + f(t), 0) / best.t.length;
    const row: SpeedRow = {
      batch: b,
      images: nSpeed,
      fullMs,
      toRes4fMs,
      decode: avg((t) => t.prepareMs),
      cnn: avg((t) => t.cnnMs),
      features: avg((t) => t.featuresMs),
      knn: avg((t) => t.knnMs),
      map: avg((t) => t.mapMs),
      scoring: 0,
      endToEnd: best.wall,
      endToEndNoDecode: 0,
      load1: loadavg()[0] ?? 0,
    };
    row.scoring = row.features + row.knn + row.map;
    row.endToEndNoDecode = row.cnn + row.scoring;
    speed.push(row);
    log(`${name}: batch ${b}: forward ${fullMs.toFixed(1)} ms/img (to res4f ${toRes4fMs.toFixed(1)}), scoring ${row.scoring.toFixed(1)}, end-to-end ${row.endToEnd.toFixed(1)} (${(row.endToEnd / fullMs).toFixed(2)}x)`);
  }

  // --- kNN: the model's index vs brute force on the same patch queries -------------------------------
  let knnMethods: KnnMethodsRow | null = null;
  {
    const knn = await loadAddon();
    const d = model.bank.d;
    const n = Math.min(8, nSpeed);
    const emb = (await model.score(engine, speedSources.slice(0, n), { batchSize: batch, threads, keepEmbeddings: true })).map((r) => r.embeddings!);
    const q = new Float32Array(n * PATCHES_PER_IMAGE * d);
    emb.forEach((e, i) => q.set(e, i * PATCHES_PER_IMAGE * d));
    const nq = n * PATCHES_PER_IMAGE;
    // The kind of index the model scores with (same options), built here so that its build is timed.
    const tb = performance.now();
    const index = await knn.createKnnIndex(model.bank.vectors, model.bank.n, d, { threads });
    const buildMs = performance.now() - tb;
    const brute = await knn.createKnnIndex(model.bank.vectors, model.bank.n, d, { threads, method: 'bruteForce' });
    const time = async (ix: typeof brute): Promise<{ ms: number; r: { dist: Float32Array; idx: Int32Array } }> => {
      let best = Infinity;
      let r = await ix.search(q, nq, 1);
      for (let rep = 0; rep < 3; rep++) {
        const t0 = performance.now();
        r = await ix.search(q, nq, 1);
        best = Math.min(best, (performance.now() - t0) / n);
      }
      return { ms: best, r };
    };
    const a = await time(index);
    const b = await time(brute);
    let mism = 0;
    let maxRel = 0;
    for (let i = 0; i < nq; i++) {
      if (a.r.idx[i] !== b.r.idx[i]) mism++;
      maxRel = Math.max(maxRel, Math.abs(a.r.dist[i]! - b.r.dist[i]!) / Math.max(b.r.dist[i]!, 1e-3));
    }
    knnMethods = { method: index.method ?? 'unknown', queries: nq, indexMs: a.ms, bruteForceMs: b.ms, indexMismatches: mism, maxRelDistDiff: maxRel, buildMs };
    log(`${name}: kNN ${knnMethods.method} ${a.ms.toFixed(1)} ms/img vs brute force ${b.ms.toFixed(1)} (${(b.ms / a.ms).toFixed(2)}x), ${mism} of ${nq} nearest rows differ`);
  }

  // --- Few-shot lift --------------------------------------------------------------------------------
  const fewShotRows: FewShotRow[] = [];
  if (fewShot && proj) fewShotRows.push(...(await runFewShot(engine, model, proj, records, bankItems, valItems, root, name, batch, threads, seed)));

  // --- Example overlays -----------------------------------------------------------------------------
  const examples: string[] = [];
  if (flags.examples) {
    const outDir = join(dirname(outPath()), 'anomaly-examples');
    mkdirSync(outDir, { recursive: true });
    const slug = name.replace(/[\\/]/g, '_');
    const masked = new Set(ds.test.filter((i) => i.maskPath).map((i) => i.path));
    const defects = evaluation.records.filter((r) => r.defect && masked.has(r.image.path)).sort((a, b) => b.rawScore - a.rawScore);
    // One typical (median-scored) defect per category, as a palette PNG: these are derived images of
    // the datasets, so the repository keeps only a few small ones.
    const picks: Array<[string, (typeof defects)[number] | undefined]> = [['defect-median', defects[defects.length >> 1]]];
    for (const [tag, r] of picks) {
      if (!r) continue;
      const file = join(outDir, `${slug}-${tag}.png`);
      const { heatmap } = await inspector.inspect(r.image.path, { heatmap: true });
      const png = await renderHeatmapPng(r.image.path, heatmap!);
      writeFileSync(file, await sharp(png).png({ palette: true, colours: 128, compressionLevel: 9 }).toBuffer());
      examples.push(relative(dirname(outPath()), file));
    }
  }

  return {
    category: basename(root),
    dataset: name,
    variant: flags.variant,
    config: { ...config, seed },
    train: { bank: model.training.images, validation: model.training.validationImages },
    test: {
      good: evaluation.good,
      defect: evaluation.defective,
      pixelImages: evaluation.pixelImages,
      skippedEmptyMasks: evaluation.defective - (evaluation.pixelImages - evaluation.good),
    },
    bank: { rows: model.bank.n, dim: model.bank.d, storage: model.bank.storage, mb: model.bankMB, sourcePatches: model.bank.sourcePatches },
    thresholds: { image: model.thresholds.image, pixel: model.thresholds.pixel },
    imageAuroc: evaluation.imageAuroc ?? NaN,
    pixelAuroc: evaluation.pixelAuroc,
    pro: evaluation.pro,
    imageF1Max: evaluation.f1Max ?? NaN,
    trainSeconds,
    speed,
    knnMethods,
    fewShot: fewShotRows,
    examples,
  };
}

async function runFewShot(
  engine: Engine,
  model: PatchCoreModel,
  proj: SparseRandomProjection,
  records: TestRecord[],
  bankItems: readonly DatasetItem[],
  valItems: readonly DatasetItem[],
  root: string,
  name: string,
  batch: number,
  threads: number,
  seed: number,
): Promise<FewShotRow[]> {
  const defects = records.filter((r) => r.defect);
  const goods = records.filter((r) => !r.defect);
  const K = Number(args.folds);
  if (defects.length < K) return [];
  // Groups (same physical part): groups.csv when the dataset has one.
  const groupFile = join(root, 'groups.csv');
  const groups = new Map<string, string>();
  if (existsSync(groupFile)) for (const g of parseGroupsCsv(readFileSync(groupFile, 'utf8'), groupFile)) groups.set(g.file, g.group);
  const folds = groupKFold(defects.length, K, `${seed}:${name}`, (i) => groups.get(defects[i]!.item.relPath));

  // Negatives: all patches of a seeded subset of the bank's training images; fusion statistics: the
  // good validation images (in neither the bank nor the head's training set).
  const negPick = createRng(`bench-head-negatives:${seed}:${name}`)
    .shuffle(bankItems.map((_, i) => i))
    .slice(0, Math.min(HEAD_NEGATIVE_IMAGES, bankItems.length));
  const embedRows = async (items: readonly DatasetItem[]): Promise<{ rows: Float32Array; raw: number }[]> => {
    const res = await model.score(engine, items.map((i) => i.path), { batchSize: batch, threads, keepEmbeddings: true });
    return res.map((r) => ({ rows: proj.apply(r.embeddings!, r.embeddings!.length / model.bank.d), raw: r.rawScore }));
  };
  const negImages: HeadTrainingImage[] = (await embedRows(negPick.map((i) => bankItems[i]!))).map((r) => ({
    rows: r.rows,
    labels: new Int8Array(r.rows.length / HEAD_DIM).fill(LABEL_NEGATIVE),
  }));
  const val = await embedRows(valItems);
  const valPc = val.map((v) => v.raw);

  const settings: Array<{ label: string; shots: number | 'all'; mode: 'mask' | 'image' }> = [];
  for (const s of String(args.shots).split(',').filter(Boolean)) settings.push({ label: `${s} shots, masks`, shots: Number(s), mode: 'mask' });
  const maxShots = Math.max(...settings.map((s) => (typeof s.shots === 'number' ? s.shots : 0)), 10);
  settings.push({ label: `${maxShots} shots, image labels only`, shots: maxShots, mode: 'image' });
  settings.push({ label: `k-fold (all other folds), masks`, shots: 'all', mode: 'mask' });

  const headImage = (r: TestRecord, mode: 'mask' | 'image'): HeadTrainingImage => {
    const labels =
      mode === 'mask' && r.mask && !r.maskEmpty
        ? patchLabelsFromMask(r.mask, r.result.width, r.result.height)
        : patchLabelsFromScores(r.result.patchScores!, 4);
    return { rows: r.rows!, labels };
  };

  const rows: FewShotRow[] = [];
  for (const st of settings) {
    const pcA: number[] = [], headA: number[] = [], fusedA: number[] = [], liftA: number[] = [];
    let trainCount = 0;
    let skipped = 0;
    for (let f = 0; f < K; f++) {
      const testDef = folds[f]!.map((i) => defects[i]!);
      const pool = folds.flatMap((fold, g) => (g === f ? [] : fold)).map((i) => defects[i]!);
      const chosen = st.shots === 'all' ? pool : createRng(`bench-shots:${seed}:${name}:${f}:${st.shots}`).shuffle([...pool]).slice(0, st.shots);
      trainCount += chosen.length;
      let head: FewShotHead;
      try {
        head = FewShotHead.train([...negImages, ...chosen.map((r) => headImage(r, st.mode))], HEAD_DIM, { projectionDim: 0, seed: f, epochs: 30 });
      } catch (err) {
        skipped++;
        log(`${name}: fold ${f} (${st.label}) skipped: ${(err as Error).message}`);
        continue;
      }
      const fusion = fitFusion(valPc, val.map((v) => head.imageScore(v.rows, v.rows.length / HEAD_DIM)));
      const test = [...goods, ...testDef];
      const y = test.map((r) => (r.defect ? 1 : 0));
      const pc = test.map((r) => r.result.rawScore);
      const hs = test.map((r) => head.imageScore(r.rows!, r.rows!.length / HEAD_DIM));
      const fused = test.map((_, i) => fuseScores(pc[i]!, hs[i]!, fusion.pcStats, fusion.headStats, fusion.weight));
      const a = auroc(pc, y), h = auroc(hs, y), fu = auroc(fused, y);
      pcA.push(a);
      headA.push(h);
      fusedA.push(fu);
      liftA.push(fu - a);
    }
    const done = pcA.length;
    rows.push({
      setting: st.label,
      folds: done,
      trainDefects: done ? trainCount / K : 0,
      patchcore: [mean(pcA), sd(pcA)],
      head: [mean(headA), sd(headA)],
      fused: [mean(fusedA), sd(fusedA)],
      lift: [mean(liftA), sd(liftA)],
      notes: skipped ? `${skipped} fold(s) skipped (no positive patches)` : '',
    });
    log(`${name}: few-shot ${st.label}: PatchCore ${mean(pcA).toFixed(4)} -> fused ${mean(fusedA).toFixed(4)} (head ${mean(headA).toFixed(4)})`);
  }
  return rows;
}

function outPath(): string {
  return resolve(args.out ?? join(repo, 'docs', 'benchmarks', 'anomaly.md'));
}

function f4(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(4);
}
function f1(x: number): string {
  return Number.isFinite(x) ? x.toFixed(1) : 'n/a';
}

function renderMarkdown(allReports: CategoryReport[], meta: Record<string, unknown>): string {
  const reports = allReports.filter((r) => r.variant === null);
  const variants = allReports.filter((r) => r.variant !== null);
  const L: string[] = [];
  L.push('# One-class anomaly detection benchmark (PatchCore)', '');
  L.push(`Generated by \`tools/eval/anomaly-benchmark.ts\` on ${String(meta['date'])}.`, '');
  L.push('Command:', '', '```', String(meta['command']), '```', '');
  L.push(
    `Machine: ${String(meta['cpu'])}, ${String(meta['cores'])} cores, ${String(meta['memGb'])} GB; engine backend \`${String(meta['backend'])}\` (${String(meta['device'])}), ` +
      `${String(meta['threads'])} threads, batch ${String(meta['batch'])}. CNN weights sha256 \`${String(meta['weightsHash']).slice(0, 16)}...\`.`,
    '',
  );
  L.push(`PatchCore config: \`${JSON.stringify(meta['config'])}\``, '');
  L.push('## Detection and localisation', '');
  L.push('| category | train (bank / val) | test (good / defect) | image AUROC | pixel AUROC | PRO (FPR<=0.3) | image F1-max | bank rows x dim | bank MB |');
  L.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of reports) {
    L.push(
      `| ${r.dataset} | ${r.train.bank} / ${r.train.validation} | ${r.test.good} / ${r.test.defect} | ${f4(r.imageAuroc)} | ${f4(r.pixelAuroc)} | ${f4(r.pro)} | ${f4(r.imageF1Max)} | ${r.bank.rows} x ${r.bank.dim} (${((100 * r.bank.rows) / r.bank.sourcePatches).toFixed(1)}% of ${r.bank.sourcePatches}) | ${r.bank.mb.toFixed(1)} (${r.bank.storage}) |`,
    );
  }
  L.push('');
  L.push('## Targets', '');
  L.push('| target | category | measured | met? |');
  L.push('|---|---|---|---|');
  const yes = (ok: boolean): string => (ok ? 'yes' : '**no**');
  for (const r of reports) {
    if (r.category === 'bottle') {
      L.push(`| image AUROC >= 0.99 | ${r.dataset} | ${f4(r.imageAuroc)} | ${yes(r.imageAuroc >= 0.99)} |`);
      L.push(`| pixel AUROC >= 0.97 | ${r.dataset} | ${f4(r.pixelAuroc)} | ${yes((r.pixelAuroc ?? 0) >= 0.97)} |`);
    }
  }
  for (const r of reports) {
    const m = r.speed.find((x) => x.batch === Number(meta['batch'])) ?? r.speed[0];
    if (m) L.push(`| end-to-end <= 1.5x ResNet-50 forward (coreset ${String((meta['config'] as TrainOptionsConfig).coresetRatio)}, batch ${m.batch}) | ${r.dataset} | ${(m.endToEnd / m.fullMs).toFixed(2)}x (${f1(m.endToEnd)} vs ${f1(m.fullMs)} ms; kNN ${f1(m.knn)} ms) | ${yes(m.endToEnd <= 1.5 * m.fullMs)} |`);
  }
  L.push('', 'Magnetic tile and KolektorSDD have no target; their figures are reported as measured.', '');
  L.push('## Speed (ms per image, this machine)', '');
  L.push(
    '| category | batch | ResNet-50 forward alone (full) | forward to res4f | decode | CNN (to res4f) | features | kNN + reweight | map | **scoring only** | end-to-end excl. decode | **end-to-end** | e2e / full forward | train s | load avg |',
  );
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of reports)
    for (const m of r.speed)
      L.push(
        `| ${r.dataset} | ${m.batch} | ${f1(m.fullMs)} | ${f1(m.toRes4fMs)} | ${f1(m.decode)} | ${f1(m.cnn)} | ${f1(m.features)} | ${f1(m.knn)} | ${f1(m.map)} | **${f1(m.scoring)}** | ${f1(m.endToEndNoDecode)} | **${f1(m.endToEnd)}** | ${(m.endToEnd / m.fullMs).toFixed(2)}x | ${f1(r.trainSeconds)} | ${m.load1.toFixed(1)} |`,
      );
  L.push('');
  L.push(
    'Scoring only = patch features (pooling, upsampling, concatenation) + native exact kNN and reweighting + anomaly map (upsample, Gaussian, resize to the image size). ' +
      'End-to-end = wall time of `model.scoreIter` over the first test images (decode, CNN to res4f, scoring; the next batch is decoded while the engine runs) divided by their number, best of 2 passes. ' +
      'Forward alone = the engine on the same, already decoded images at the same batch size (median of 3 passes), measured just before, so the ratio column compares like with like. ' +
      `Load avg = the 1-minute load average when the row was measured, on ${String(meta['cores'])} cores (run start ${String(meta['loadStart'])}, end ${String(meta['loadEnd'])}): ` +
      'above the core count, other work shared the CPU and the absolute timings are inflated and noisy.',
    '',
  );
  // The kNN: the model's index (pruned exact search) against brute force, same queries, same run.
  const km = reports.filter((r) => r.knnMethods);
  if (km.length > 0) {
    L.push('### Exact kNN: subspace-bound pruning vs brute force (same real patch queries, same run)', '');
    L.push('| category | bank rows x dim | index | index ms/img | brute-force GEMM ms/img | speed-up | nearest rows that differ | max rel. distance diff | index build ms |');
    L.push('|---|---|---|---|---|---|---|---|---|');
    for (const r of km) {
      const k = r.knnMethods!;
      L.push(
        `| ${r.dataset} | ${r.bank.rows} x ${r.bank.dim} | ${k.method} | ${k.indexMs.toFixed(1)} | ${k.bruteForceMs.toFixed(1)} | ${(k.bruteForceMs / k.indexMs).toFixed(2)}x | ` +
          `${k.indexMismatches} of ${k.queries} | ${k.maxRelDistDiff.toExponential(1)} | ${k.buildMs.toFixed(0)} |`,
      );
    }
    L.push(
      '',
      "k = 1 over 8 images' 784 patches each, best of 3. The pruned index bounds ||x - y||^2 from below by the distance of the two rows' coordinates on the bank's top principal directions " +
        '(128 here) plus the squared difference of their residual norms; only rows whose bound is below the current nearest distance get an exact (direct-sum) distance, so the neighbours are the ' +
        'exact ones whatever the subspace. Differences against the GEMM-form brute force are float near-ties; relative distance differences are measured against max(d, 1e-3).',
      '',
    );
  }
  L.push('');
  if (variants.length > 0) {
    L.push('## Config variants (same data, same protocol; batch ' + String(meta['batch']) + ')', '');
    L.push('| category | variant | image AUROC | pixel AUROC | PRO | image F1-max | bank rows x dim | bank MB | kNN ms | scoring ms | end-to-end ms | e2e / full forward |');
    L.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of allReports) {
      const m = r.speed[0];
      if (!m) continue;
      L.push(
        `| ${r.dataset} | ${r.variant ?? 'main'} | ${f4(r.imageAuroc)} | ${f4(r.pixelAuroc)} | ${f4(r.pro)} | ${f4(r.imageF1Max)} | ${r.bank.rows} x ${r.bank.dim} | ${r.bank.mb.toFixed(1)} | ${f1(m.knn)} | ${f1(m.scoring)} | ${f1(m.endToEnd)} | ${(m.endToEnd / m.fullMs).toFixed(2)}x |`,
      );
    }
    L.push('');
  }
  const fs = reports.filter((r) => r.fewShot.length > 0);
  if (fs.length > 0) {
    L.push('## Few-shot lift (supervised head fused with the memory-bank score)', '');
    L.push(
      `Protocol: the defective test images are split into ${String(meta['folds'])} group-aware folds (magnetic tile: groups.csv keeps one tile's lighting variants together). ` +
        'For each fold, the head is trained on defective images from the *other* folds only (N shots drawn from them, or all of them for "k-fold"), plus negatives from ' +
        `${HEAD_NEGATIVE_IMAGES} good training images, and is evaluated on this fold's defects + all good test images. Each figure is mean +- sd over folds of the image AUROC on the same test sets. ` +
        `Head: logistic regression on the PatchCore patch features (seeded sparse projection to ${HEAD_DIM} dims), image score = max patch logit; ` +
        'fused = z(PatchCore) + z(head), both standardised on the held-out good validation images.',
      '',
    );
    L.push('| category | setting | defects trained on (per fold) | PatchCore alone | head alone | fused | lift |');
    L.push('|---|---|---|---|---|---|---|');
    for (const r of fs)
      for (const x of r.fewShot)
        L.push(
          `| ${r.dataset} | ${x.setting} | ${x.trainDefects.toFixed(0)} | ${f4(x.patchcore[0])} +- ${x.patchcore[1].toFixed(3)} | ${f4(x.head[0])} +- ${x.head[1].toFixed(3)} | ${f4(x.fused[0])} +- ${x.fused[1].toFixed(3)} | ${x.lift[0] >= 0 ? '+' : ''}${x.lift[0].toFixed(4)} +- ${x.lift[1].toFixed(3)}${x.notes ? ` (${x.notes})` : ''} |`,
        );
    L.push('');
  }
  L.push('## Notes', '');
  L.push(
    '- Method: PatchCore (Roth et al. 2022) as in anomalib: res3d + res4f (ResNet "layer2"/"layer3") 3x3 average-pooled, res4f bilinearly upsampled to 28x28, concatenated (1536 dims); ' +
      'greedy k-center coreset (native, distances on a 128-dim random projection); exact 1-NN distance per patch (native kNN index: principal-subspace lower bound prunes the bank, survivors get exact distances; see the kNN table); image score reweighted with b = 9; ' +
      'map = 28x28 patch distances -> bilinear 224x224 -> Gaussian sigma 4 -> bilinear to the image size (256x256 here). Images are squashed to 224x224 (no centre crop, so borders are scored).',
  );
  L.push('- The whole train/good folder minus a seeded 10% good validation hold-out goes into the memory bank; thresholds come from the hold-out (0.99 quantile). AUROC, F1-max and PRO do not depend on the threshold.');
  L.push(
    '- Training and the detection/localisation figures are @loupe/core\'s `trainOneClass` and `evaluateOneClass`, the code `loupe train CATEGORY --mode one-class --coreset 0.01` and `loupe evaluate MODEL CATEGORY --json` run: ' +
      'the CLI reproduces each row (pixel metrics on maps and masks of at most 256 px per side; these images are 256x256).',
  );
  L.push(
    '- Normalised score (what the CLI shows): 0.5 at the image threshold, `0.5*s/t` below it and `1 - 0.5*t/s` above it (0.75 = twice the threshold distance); raw scores are Euclidean feature distances.',
  );
  L.push(
    '- History: until 2026-12-06 this tool held out its own 10% of train/good (another seed than `loupe train`), and the CLI could not reproduce its rows ' +
      '(KolektorSDD 0.8425 / 0.8378 image / pixel AUROC here, 0.8241 / 0.8331 from the CLI): same method, another 10% out of the bank, a spread that says how small these test sets are. ' +
      'Both now run the same code. The end-to-end target (1.5x the forward) was met on an AVX2-only EPYC; on an AVX-512 CPU the forward is about twice as fast while the kNN is not, so the ratio grows.',
  );
  L.push('- Pixel metrics skip defective images whose mask is empty or missing (magnetic tile has 4 empty `uneven` masks); PRO is the area under the per-region-overlap curve up to FPR 0.3, divided by 0.3.');
  for (const r of reports)
    if (r.test.skippedEmptyMasks > 0) L.push(`- ${r.dataset}: ${r.test.skippedEmptyMasks} defective image(s) without a usable mask were left out of the pixel metrics (still in the image metrics).`);
  const ex = reports.flatMap((r) => r.examples);
  if (ex.length > 0) {
    L.push('', '## Examples (heatmap over the image; white outline = pixel threshold)', '');
    for (const e of ex) L.push(`![${basename(e, '.png')}](${e.replace(/\\/g, '/')})`);
  }
  L.push('');
  return L.join('\n');
}

async function main(): Promise<void> {
  if (args.render) {
    const saved = JSON.parse(readFileSync(args.render, 'utf8')) as { meta: Record<string, unknown>; reports: CategoryReport[] };
    const md = args.out ? outPath() : args.render.replace(/\.json$/, '.md');
    writeFileSync(md, renderMarkdown(saved.reports, saved.meta));
    log(`re-rendered ${relative(repo, md)} from ${args.render}`);
    return;
  }
  const loadStart = loadavg()[0] ?? 0;
  const datasetsRoot = findDatasets(repo, args.datasets);
  let categories = findCategories(datasetsRoot);
  if (args.categories) {
    const want = new Set(args.categories.split(','));
    categories = categories.filter((c) => want.has(basename(c)) || want.has(relative(datasetsRoot, c)));
  }
  if (categories.length === 0) throw new Error(`no categories under ${datasetsRoot}`);
  const config: TrainOptionsConfig = {
    coresetRatio: Number(args.coreset),
    projectionDim: Number(args.projection),
    storage: args.storage === 'fp16' ? 'fp16' : 'fp32',
  };
  if (args['max-bank-mb']) config.maxBankMB = Number(args['max-bank-mb']);
  const engine = await Engine.open({ threads: Number(args.threads), maxBatch: Math.max(8, Number(args.batch)) });
  log(`engine ${engine.backend} on ${engine.device}; datasets ${datasetsRoot}; categories ${categories.map((c) => basename(c)).join(', ')}`);
  const reports: CategoryReport[] = [];
  const variants = (args.variants ?? '')
    .split(';')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const c of categories) {
    reports.push(
      await runCategory(engine, c, datasetsRoot, config, {
        fewShot: !args['no-fewshot'],
        examples: !args['no-examples'],
        speedBatches: [...new Set([Number(args.batch), 1])],
        variant: null,
      }),
    );
    for (const v of variants) {
      const over: Record<string, number | string> = {};
      for (const kv of v.split(',')) {
        const [key, val] = kv.split('=').map((x) => x.trim());
        if (!key || val === undefined) throw new Error(`bad --variants entry '${v}' (want key=value[,key=value])`);
        if (!VARIANT_KEYS.includes(key)) throw new Error(`--variants: '${key}' is not a training option (${VARIANT_KEYS.join(', ')})`);
        over[key] = Number.isFinite(Number(val)) ? Number(val) : val;
      }
      reports.push(
        await runCategory(engine, c, datasetsRoot, { ...config, ...over } as TrainOptionsConfig, {
          fewShot: false,
          examples: false,
          speedBatches: [Number(args.batch)],
          variant: v,
        }),
      );
    }
  }
  const meta = {
    date: new Date().toISOString().slice(0, 10),
    loadStart: loadStart.toFixed(1),
    loadEnd: (loadavg()[0] ?? 0).toFixed(1),
    command: `npx vite-node tools/eval/anomaly-benchmark.ts -- ${process.argv.slice(2).filter((a) => a !== '--').join(' ')}`.trim(),
    cpu: cpus()[0]?.model ?? 'unknown CPU',
    cores: cpus().length,
    memGb: Math.round(totalmem() / 2 ** 30),
    backend: engine.backend,
    device: engine.device,
    threads: Number(args.threads),
    batch: Number(args.batch),
    weightsHash: engine.weightsHash,
    config,
    folds: Number(args.folds),
  };
  const out = outPath();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, renderMarkdown(reports, meta));
  writeFileSync(out.replace(/\.md$/, '.json'), JSON.stringify({ meta, reports }, null, 2) + '\n');
  log(`wrote ${relative(repo, out)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
