// INT8 accuracy of the engine against its fp32: calibrate on some images, evaluate on others.
//
//   node tools/bench/int8-accuracy.mjs --calibrate DIR[,DIR...] --eval DIR[,DIR...]
//        [--calibration-images 100] [--eval-every 1] [--methods mse,percentile,max] [--ort] [--threads 2]
//        [--worst N] [--json]
//
// Images (PNG/JPEG/WebP/TIFF, found recursively, sorted by path) are decoded like @loupe/core does for the CNN
// (sharp, EXIF-rotated, sRGB, ICC ignored, resized to 224x224 with the cubic kernel, 'fill'), then
// caffe-preprocessed. Calibration takes every k-th image of the --calibrate folders so that about
// --calibration-images remain (deterministic); evaluation takes every --eval-every-th image of --eval.
// Per method (the engine's calibration: mse, percentile 99.99, max), an int8 session is compared with the
// fp32 session on the evaluation images: fc1000 cosine, top-1 agreement, top-5 overlap, fp32's top-1 inside
// int8's top-5, and the cosine of the avg_pool, res3d and res4f taps. --ort also runs onnxruntime on the
// engine's QDQ export of each calibration (same quantization) and reports its agreement with loupe's int8.
// --worst N lists, per method, the N images whose res3d / res4f taps are furthest from fp32 (lowest cosine).
// Human tables on stdout (stderr with --json); the last stdout line is a JSON summary.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { CAFFE_MEAN_BGR, IMAGE_FLOATS, INPUT_SIZE, loadAddon, loadOrt, ortSessionOptions, repoRoot, weightsPath } from './lib.mjs';

const require = createRequire(join(repoRoot, 'package.json'));
const { values: opt } = parseArgs({
  options: {
    calibrate: { type: 'string' },
    eval: { type: 'string' },
    'calibration-images': { type: 'string', default: '100' },
    'eval-every': { type: 'string', default: '1' },
    methods: { type: 'string', default: 'mse,percentile,max' },
    ort: { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    worst: { type: 'string', default: '0' },
  },
});
const out = opt.json ? console.error : console.log;
const threads = Number(opt.threads);
const TAPS = ['fc1000', 'avg_pool', 'res3d', 'res4f'];
const EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff']);

function listImages(dirs) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (EXT.has(extname(e.name).toLowerCase())) found.push(p);
    }
  };
  for (const d of dirs) statSync(d).isDirectory() ? walk(d) : found.push(d);
  return found.sort();
}

async function preprocess(paths) {
  const sharp = require('sharp');
  const x = new Float32Array(paths.length * IMAGE_FLOATS);
  for (let i = 0; i < paths.length; i++) {
    const { data } = await sharp(paths[i], { ignoreIcc: true }).rotate().removeAlpha().toColourspace('srgb')
      .resize(INPUT_SIZE, INPUT_SIZE, { fit: 'fill', kernel: 'cubic', fastShrinkOnLoad: false })
      .raw().toBuffer({ resolveWithObject: true });
    const o = i * IMAGE_FLOATS;
    for (let p = 0; p < INPUT_SIZE * INPUT_SIZE; p++) {
      for (let c = 0; c < 3; c++) x[o + p * 3 + c] = data[p * 3 + 2 - c] - CAFFE_MEAN_BGR[c];
    }
  }
  return x;
}

async function runAll(run, x, n, batch = 8) {
  const res = Object.fromEntries(TAPS.map((t) => [t, []]));
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const r = await run(x.subarray(i * IMAGE_FLOATS, (i + b) * IMAGE_FLOATS), b);
    TAPS.forEach((t, k) => {
      const e = r[k].length / b;
      for (let j = 0; j < b; j++) res[t].push(r[k].slice(j * e, (j + 1) * e));
    });
  }
  return res;
}

const cosine = (a, b) => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
};
const topk = (v, k) => Array.from(v, (p, i) => [p, i]).sort((x, y) => y[0] - x[0]).slice(0, k).map(([, i]) => i);
const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;

function compare(q, f, files = null) {
  const n = f.fc1000.length;
  const s = { images: n };
  for (const t of TAPS) {
    const c = f[t].map((v, i) => cosine(q[t][i], v));
    s[`${t}CosMean`] = mean(c);
    s[`${t}CosMin`] = Math.min(...c);
    if (files && Number(opt.worst) > 0 && (t === 'res3d' || t === 'res4f')) {
      s[`${t}Worst`] = c.map((v, i) => [v, files[i]]).sort((a, b) => a[0] - b[0]).slice(0, Number(opt.worst))
        .map(([v, file]) => ({ cos: v, file }));
    }
  }
  let top1 = 0, in5 = 0, overlap = 0, maxAbs = 0;
  for (let i = 0; i < n; i++) {
    const a = topk(f.fc1000[i], 5), b = topk(q.fc1000[i], 5);
    top1 += a[0] === b[0];
    in5 += b.includes(a[0]);
    overlap += a.filter((x) => b.includes(x)).length / 5;
    for (let j = 0; j < 1000; j++) maxAbs = Math.max(maxAbs, Math.abs(q.fc1000[i][j] - f.fc1000[i][j]));
  }
  return Object.assign(s, { top1: top1 / n, top1InTop5: in5 / n, top5Overlap: overlap / n, fc1000MaxAbs: maxAbs });
}

async function main() {
  if (!opt.calibrate || !opt.eval) throw new Error('--calibrate and --eval are required');
  const weights = weightsPath();
  if (!weights) throw new Error('real weights not found (npm run fetch-weights, or LOUPE_HOME / LOUPE_WEIGHTS)');
  const { addon, error } = await loadAddon();
  if (!addon) throw error;
  const calPool = listImages(opt.calibrate.split(','));
  const want = Number(opt['calibration-images']);
  const step = Math.max(1, Math.floor(calPool.length / want));
  const calFiles = calPool.filter((_, i) => i % step === 0).slice(0, want);
  const evalFiles = listImages(opt.eval.split(',')).filter((_, i) => i % Number(opt['eval-every']) === 0);
  out(`calibration: ${calFiles.length} of ${calPool.length} images; evaluation: ${evalFiles.length} images`);

  const model = await addon.loadModel(weights);
  const calX = await preprocess(calFiles);
  const evalX = await preprocess(evalFiles);
  const calibrator = await addon.createCalibrator(model, { threads });
  const t0 = performance.now();
  for (let i = 0; i < calFiles.length; i += 8) {
    const b = Math.min(8, calFiles.length - i);
    await calibrator.add(calX.slice(i * IMAGE_FLOATS, (i + b) * IMAGE_FLOATS), b);
  }
  const calSeconds = (performance.now() - t0) / 1000;
  out(`calibrated in ${calSeconds.toFixed(1)} s (${threads} threads)`);

  const fp32 = addon.createSession(model, { backend: 'cpu', threads });
  const ref = await runAll((x, b) => fp32.run(x, b, TAPS), evalX, evalFiles.length);
  const { ort } = opt.ort ? loadOrt() : { ort: null };
  if (opt.ort && !ort) throw new Error('--ort: onnxruntime-node is not installed');
  const dir = opt.ort ? mkdtempSync(join(tmpdir(), 'loupe-int8-')) : null;
  const rows = {};
  try {
    for (const method of opt.methods.split(',')) {
      const calibration = await calibrator.compute({ method });
      const s = addon.createSession(model, { backend: 'cpu', threads, precision: 'int8', int8Calibration: calibration });
      const q = await runAll((x, b) => s.run(x, b, TAPS), evalX, evalFiles.length);
      rows[method] = compare(q, ref, evalFiles);
      if (ort) {
        const path = join(dir, `${method}.onnx`);
        await addon.exportOnnx(model, path, { int8Calibration: calibration, taps: TAPS });
        const o = await ort.InferenceSession.create(path, ortSessionOptions(threads));
        const r = await runAll(async (x, b) => {
          const res = await o.run({ input: new ort.Tensor('float32', x, [b, INPUT_SIZE, INPUT_SIZE, 3]) });
          return TAPS.map((t) => res[t].data);
        }, evalX, evalFiles.length);
        rows[method].ort = { vsFp32: compare(r, ref), vsLoupeInt8: compare(r, q) };
        await o.release?.();
      }
    }
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }

  const f = (v, d = 5) => v.toFixed(d);
  out('');
  out(`int8 vs fp32 (loupe), ${evalFiles.length} images: cosine mean / min; agreement of the fc1000 ranking`);
  out('method      fc1000 cos        top-1  top-5 ov.  fp32 top-1 in top-5  avg_pool cos      res3d cos         res4f cos');
  for (const [m, r] of Object.entries(rows)) {
    out(`${m.padEnd(10)}  ${f(r.fc1000CosMean)} / ${f(r.fc1000CosMin)}  ${f(r.top1, 3)}  ${f(r.top5Overlap, 3)}      ` +
      `${f(r.top1InTop5, 3)}          ${f(r.avg_poolCosMean)} / ${f(r.avg_poolCosMin)}  ` +
      `${f(r.res3dCosMean)} / ${f(r.res3dCosMin)}  ${f(r.res4fCosMean)} / ${f(r.res4fCosMin)}`);
  }
  for (const [m, r] of Object.entries(rows)) {
    for (const t of ['res3d', 'res4f']) {
      if (!r[`${t}Worst`]) continue;
      out(`${m} ${t}, lowest cosine: ` + r[`${t}Worst`].map((w) => `${f(w.cos, 4)} ${w.file.split('/').slice(-3).join('/')}`).join(', '));
    }
  }
  if (opt.ort) {
    out('');
    out('onnxruntime on the QDQ export (same quantization): vs fp32, and vs loupe int8');
    for (const [m, r] of Object.entries(rows)) {
      const a = r.ort.vsFp32, b = r.ort.vsLoupeInt8;
      out(`${m.padEnd(10)}  vs fp32: fc1000 cos ${f(a.fc1000CosMean)} / ${f(a.fc1000CosMin)}, top-1 ${f(a.top1, 3)}   ` +
        `vs loupe int8: fc1000 cos ${f(b.fc1000CosMean)} / ${f(b.fc1000CosMin)}, max |dlogit| ${f(b.fc1000MaxAbs, 3)}, ` +
        `top-1 ${f(b.top1, 3)}, res3d cos min ${f(b.res3dCosMin)}`);
    }
  }
  console.log(JSON.stringify({ calibrationImages: calFiles.length, evalImages: evalFiles.length, calibrationSeconds: calSeconds, methods: rows }));
}

main().catch((err) => {
  console.error(`[int8-accuracy] ${err.stack ?? err}`);
  process.exit(2);
});
