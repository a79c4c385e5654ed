// `npm run bench [-- --json]`: loupe (the native engine, CPU) vs onnxruntime-node on the same ResNet-50,
// images/s at batch 1, 8 and 32 with 2 threads each, in one process, on the same seeded inputs; fp32 and
// INT8 (loupe's int8 session vs onnxruntime on the engine's QDQ export of the same quantization).
//
// - The model ONNX is exported from the real weights by the engine itself (loupe::ExportOnnx) and cached
//   as $LOUPE_HOME/onnx/<weightsHash>.onnx (--reexport refreshes it).
// - Fairness: same inputs, 2 compute threads each (ORT: intraOp 2, interOp 1, sequential, all graph
//   optimisations), warm-up runs first, then rounds that alternate which engine goes first; the figure
//   is the median over rounds. A short pause between runs lets the other engine's spinning threads sleep.
// - Agreement: max |fc1000 logits loupe - onnxruntime| < 1e-3 at every batch size (exit code 1 if not).
// - INT8: the activation ranges are calibrated by the engine (MSE method) on a few real images (the
//   bundled apps/cli/assets/sample.png, plus shared/reference/resnet50's PNGs when present); loupe runs an
//   int8 session from them and onnxruntime the engine's QDQ export of exactly the same quantization
//   (same int8 weights, int32 biases and activation scales; cached as $LOUPE_HOME/onnx/<weightsHash>-
//   int8-<calibration hash>.onnx). The int8 runs are timed in the same rounds as the fp32 ones.
//   Agreement: the two int8 engines' logits within INT8_TOLERANCE (below; exit code 1 if not).
// - Peak RSS: a batch-32 loupe run in a child process (no onnxruntime in it).
// Human tables on stdout (stderr with --json); the LAST stdout line is always the JSON summary:
//   {"batch": {"1": {"loupe": X, "onnxruntime": Y}, "8": {...}, "32": {...}},
//    "int8": {"1": {"loupe": X, "onnxruntime": Y}, "8": {...}, "32": {...}}, "peakRssMb": N}
// Options: --json, --batches 1,8,32, --threads 2, --rounds N (all batches), --warmup N, --reexport,
//          --no-rss, --gap-ms 300, --onnx PATH (use this ONNX file as is), --no-int8,
//          --int8-method mse|percentile|max.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  IMAGE_FLOATS,
  exportOnnx,
  loadAddon,
  loadOrt,
  loupeHome,
  maxAbsDiff,
  median,
  ortSessionOptions,
  preprocessPng,
  referenceDir,
  repoRoot,
  seededInputs,
  weightsPath,
} from './lib.mjs';

const { values: opt } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    batches: { type: 'string', default: '1,8,32' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string' },
    warmup: { type: 'string' },
    reexport: { type: 'boolean', default: false },
    'no-rss': { type: 'boolean', default: false },
    // Both runtimes keep their pool threads spinning for a while after a run (ORT's intra-op pool,
    // libgomp's team); a run started inside the other's spin-down loses up to 30% at batch 1. 300 ms
    // lets each start from idle, as a request arriving at a server would.
    'gap-ms': { type: 'string', default: '300' },
    onnx: { type: 'string' },
    'no-int8': { type: 'boolean', default: false },
    'int8-method': { type: 'string', default: 'mse' },
  },
});
const out = opt.json ? console.error : console.log;  // --json: stdout holds only the JSON line
const log = (...a) => console.error('[bench]', ...a);
const batches = opt.batches.split(',').map(Number);
const threads = Number(opt.threads);
const gapMs = Number(opt['gap-ms']);
const TOLERANCE = 1e-3;
// The two int8 engines run the same integer model, but not bit for bit: conv1 is fp32 in both, and its
// last-bit differences (up to ~1e-5) flip the rounding of a few pool1 values, whose 1-LSB changes then
// spread through the 52 int8 convs (measured on the reference and sample images, and on these seeded
// inputs: max |dlogit| 0.05-0.3, while either engine's int8 logits are ~1 away from fp32's). A real
// divergence (a wrong scale, zero point or fusion) moves logits by several units, so: max |dlogit| < 0.5.
const INT8_TOLERANCE = 0.5;
const DEFAULT_ROUNDS = { 1: 15, 8: 7, 32: 5 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const weights = weightsPath();
  if (!weights) throw new Error('real weights not found: run `npm run fetch-weights` (or set LOUPE_HOME / LOUPE_WEIGHTS)');
  const { ort, error: ortError } = loadOrt();
  if (!ort) throw new Error(`onnxruntime-node is not installed (npm install): ${ortError.message}`);
  const { addon, error: addonError } = await loadAddon();
  if (!addon) log(`WARNING: @loupe/native is not loadable, benchmarking onnxruntime only (${addonError.message})`);

  // 1. Model: loupe session + the exported ONNX (cached by weights hash).
  let model = null;
  let loupe = null;
  if (addon) {
    model = await addon.loadModel(weights);
    loupe = addon.createSession(model, { backend: 'cpu', threads, maxBatch: Math.max(...batches) });
  }
  let onnxPath = opt.onnx;
  if (!onnxPath) {
    const cacheDir = join(loupeHome(), 'onnx');
    if (model) onnxPath = join(cacheDir, `${model.weightsHash}.onnx`);
    if (!onnxPath || opt.reexport || !existsSync(onnxPath)) {
      const tmp = join(cacheDir, `export-${process.pid}.onnx`);
      const t0 = performance.now();
      const { via, weightsHash } = await exportOnnx({ weights, out: tmp, addon, model });
      onnxPath = join(cacheDir, `${weightsHash}.onnx`);
      renameSync(tmp, onnxPath);
      log(`exported ${onnxPath} via ${via} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }

  // 2. Peak RSS of a batch-32 loupe run, alone in a child process.
  let peakRssMb = null;
  if (addon && !opt['no-rss']) {
    const child = fileURLToPath(new URL('./rss-child.mjs', import.meta.url));
    const line = execFileSync(process.execPath, [child, '--weights', weights, '--batch', '32', '--threads', String(threads)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    peakRssMb = JSON.parse(line.trim().split('\n').pop()).peakRssMb;
    log(`peak RSS of a batch-32 loupe run: ${peakRssMb} MB`);
  }

  // 3. onnxruntime session.
  const ortSession = await ort.InferenceSession.create(onnxPath, ortSessionOptions(threads));
  const all = seededInputs(Math.max(...batches), 1234);

  const runners = { onnxruntime: async (x, b) => {
    const r = await ortSession.run({ input: new ort.Tensor('float32', x, [b, 224, 224, 3]) }, ['fc1000']);
    return r.fc1000.data;
  } };
  if (loupe) runners.loupe = async (x, b) => (await loupe.run(x, b, ['fc1000']))[0];

  // 3b. INT8: calibrate, then loupe's int8 session and onnxruntime on the QDQ export of the same scales.
  let int8 = null;
  if (loupe && !opt['no-int8']) {
    int8 = await prepareInt8(addon, model, batches);
    const ortInt8 = await ort.InferenceSession.create(int8.onnxPath, ortSessionOptions(threads));
    int8.ortSession = ortInt8;
    runners['onnxruntime-int8'] = async (x, b) => {
      const r = await ortInt8.run({ input: new ort.Tensor('float32', x, [b, 224, 224, 3]) }, ['fc1000']);
      return r.fc1000.data;
    };
    runners['loupe-int8'] = async (x, b) => (await int8.session.run(x, b, ['fc1000']))[0];
  }
  const names = Object.keys(runners);

  // 4. Timed rounds.
  const results = {};
  let disagree = false;
  let disagree8 = false;
  for (const b of batches) {
    const x = all.slice(0, b * IMAGE_FLOATS);
    const rounds = Number(opt.rounds ?? DEFAULT_ROUNDS[b] ?? 5);
    const warmup = Number(opt.warmup ?? (b >= 32 ? 1 : 2));
    const logits = {};
    for (const n of names) {
      for (let i = 0; i < Math.max(1, warmup); i++) logits[n] = await runners[n](x, b);
      await sleep(gapMs);
    }
    const diff = loupe ? maxAbsDiff(logits.loupe, logits.onnxruntime) : null;
    if (diff !== null && !(diff < TOLERANCE)) disagree = true;
    const diff8 = int8 ? maxAbsDiff(logits['loupe-int8'], logits['onnxruntime-int8']) : null;
    const diff8fp = int8 ? maxAbsDiff(logits['loupe-int8'], logits.loupe) : null;
    if (diff8 !== null && !(diff8 < INT8_TOLERANCE)) disagree8 = true;
    const times = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...names].reverse() : names;
      for (const n of order) {
        const t0 = performance.now();
        await runners[n](x, b);
        times[n].push(performance.now() - t0);
        await sleep(gapMs);
      }
    }
    results[b] = { diff, diff8, diff8fp, rounds };
    for (const n of names) {
      const ms = median(times[n]);
      results[b][n] = { ips: (b * 1000) / ms, ms, min: Math.min(...times[n]), max: Math.max(...times[n]) };
    }
    log(`batch ${b}: ` + names.map((n) => `${n} ${results[b][n].ips.toFixed(2)} img/s`).join(', ') +
      (diff !== null ? `, max |dlogit| ${diff.toExponential(2)}` : '') +
      (diff8 !== null ? `, int8 max |dlogit| ${diff8.toExponential(2)} (vs fp32 ${diff8fp.toExponential(2)})` : ''));
  }

  // 5. Report.
  const round2 = (v) => (v == null ? null : Math.round(v * 100) / 100);
  const pad = (s, n) => String(s).padStart(n);
  out('');
  out(`ResNet-50 fp32, CPU, ${threads} threads, NHWC 224x224 input; median of the timed rounds`);
  out(`loupe: ${loupe ? loupe.backend + ' on ' + loupe.device : 'not built'}; onnxruntime-node ${ort.env?.versions?.common ?? ''}`);
  out(`${pad('batch', 5)} ${pad('rounds', 6)} ${pad('loupe img/s', 12)} ${pad('ORT img/s', 10)} ${pad('loupe/ORT', 9)} ` +
    `${pad('loupe ms', 9)} ${pad('ORT ms', 9)} ${pad('max|dlogit|', 11)}`);
  for (const b of batches) {
    const r = results[b];
    const l = r.loupe;
    const o = r.onnxruntime;
    out(`${pad(b, 5)} ${pad(r.rounds, 6)} ${pad(l ? l.ips.toFixed(2) : '-', 12)} ${pad(o.ips.toFixed(2), 10)} ` +
      `${pad(l ? (l.ips / o.ips).toFixed(2) + 'x' : '-', 9)} ${pad(l ? l.ms.toFixed(1) : '-', 9)} ` +
      `${pad(o.ms.toFixed(1), 9)} ${pad(r.diff === null ? '-' : r.diff.toExponential(2), 11)}`);
  }
  if (int8) {
    out('');
    out(`ResNet-50 INT8, same rounds: loupe int8 session (${int8.kernels}) vs onnxruntime on the QDQ export;`);
    out(`calibration: ${int8.method} over ${int8.images} real images (${int8.sources})`);
    out(`${pad('batch', 5)} ${pad('loupe i8 img/s', 14)} ${pad('ORT i8 img/s', 12)} ${pad('loupe/ORT', 9)} ` +
      `${pad('vs loupe fp32', 13)} ${pad('ORT vs fp32', 11)} ${pad('loupe ms', 9)} ${pad('ORT ms', 9)} ` +
      `${pad('max|dlogit|', 11)} ${pad('i8-fp32', 9)}`);
    for (const b of batches) {
      const r = results[b];
      const l = r['loupe-int8'];
      const o = r['onnxruntime-int8'];
      out(`${pad(b, 5)} ${pad(l.ips.toFixed(2), 14)} ${pad(o.ips.toFixed(2), 12)} ${pad((l.ips / o.ips).toFixed(2) + 'x', 9)} ` +
        `${pad((l.ips / r.loupe.ips).toFixed(2) + 'x', 13)} ${pad((o.ips / r.onnxruntime.ips).toFixed(2) + 'x', 11)} ` +
        `${pad(l.ms.toFixed(1), 9)} ${pad(o.ms.toFixed(1), 9)} ${pad(r.diff8.toExponential(2), 11)} ` +
        `${pad(r.diff8fp.toExponential(2), 9)}`);
    }
  }
  out(`peak RSS, batch-32 loupe run (own process): ${peakRssMb ?? '-'} MB`);
  if (disagree) {
    console.error(`[bench] ERROR: loupe and onnxruntime logits differ by more than ${TOLERANCE}`);
    process.exitCode = 1;
  }
  if (disagree8) {
    console.error(`[bench] ERROR: loupe int8 and onnxruntime int8 logits differ by more than ${INT8_TOLERANCE}`);
    process.exitCode = 1;
  }
  await ortSession.release?.();
  await int8?.ortSession.release?.();

  const summary = { batch: {} };
  for (const b of batches) {
    summary.batch[String(b)] = { loupe: round2(results[b].loupe?.ips), onnxruntime: round2(results[b].onnxruntime.ips) };
  }
  if (int8) {
    summary.int8 = {};
    for (const b of batches) {
      summary.int8[String(b)] = { loupe: round2(results[b]['loupe-int8'].ips), onnxruntime: round2(results[b]['onnxruntime-int8'].ips) };
    }
  }
  summary.peakRssMb = peakRssMb;
  console.log(spacedJson(summary));
}

// Calibrates the engine on the bundled sample image (+ the reference PNGs when present), creates the
// int8 session and exports (or reuses) the QDQ model of the same calibration.
async function prepareInt8(addon, model, batches) {
  const sources = [join(repoRoot, 'apps', 'cli', 'assets', 'sample.png')];
  const ref = referenceDir();
  if (ref) for (const n of ['chelsea', 'coffee', 'rocket']) sources.push(join(ref, `${n}_224.png`));
  const t0 = performance.now();
  const calibrator = await addon.createCalibrator(model, { threads });
  for (const p of sources) await calibrator.add(await preprocessPng(p), 1);
  const calibration = await calibrator.compute({ method: opt['int8-method'] });
  const session = addon.createSession(model, {
    backend: 'cpu', threads, maxBatch: Math.max(...batches), precision: 'int8', int8Calibration: calibration,
  });
  const hash = createHash('sha256').update(JSON.stringify(calibration)).digest('hex').slice(0, 16);
  const cacheDir = join(loupeHome(), 'onnx');
  const onnxPath = join(cacheDir, `${model.weightsHash}-int8-${hash}.onnx`);
  if (opt.reexport || !existsSync(onnxPath)) {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = join(cacheDir, `export-int8-${process.pid}.onnx`);
    await addon.exportOnnx(model, tmp, { int8Calibration: calibration });
    renameSync(tmp, onnxPath);
  }
  log(`int8: calibrated (${calibration.method}) on ${sources.length} images and exported ${onnxPath} in ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return {
    session, onnxPath, method: calibration.method, images: sources.length,
    sources: sources.map((p) => p.split('/').pop()).join(', '), kernels: await session.kernelInfo(),
  };
}

// JSON with ", " and ": " separators: {"batch": {"1": {"loupe": 12.3, "onnxruntime": 10.1}}, ...}
function spacedJson(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(spacedJson).join(', ')}]`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${spacedJson(x)}`).join(', ')}}`;
}

main().catch((err) => {
  console.error(`[bench] ${err.stack ?? err}`);
  process.exit(2);
});
