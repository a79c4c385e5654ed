// `npm run bench [-- --json]`: loupe (the native engine, CPU) vs onnxruntime-node on the same ResNet-50,
// images/s at batch 1, 8 and 32 with 2 threads each, in one process, on the same seeded inputs.
//
// - The model ONNX is exported from the real weights by the engine itself (loupe::ExportOnnx) and cached
//   as $LOUPE_HOME/onnx/<weightsHash>.onnx (--reexport refreshes it).
// - Fairness: same inputs, 2 compute threads each (ORT: intraOp 2, interOp 1, sequential, all graph
//   optimisations), warm-up runs first, then rounds that alternate which engine goes first; the figure
//   is the median over rounds. A short pause between runs lets the other engine's spinning threads sleep.
// - Agreement: max |fc1000 logits loupe - onnxruntime| < 1e-3 at every batch size (exit code 1 if not).
// - Peak RSS: a batch-32 loupe run in a child process (no onnxruntime in it).
// Human table on stdout (stderr with --json); the LAST stdout line is always the JSON summary:
//   {"batch": {"1": {"loupe": X, "onnxruntime": Y}, "8": {...}, "32": {...}}, "peakRssMb": N}
// Options: --json, --batches 1,8,32, --threads 2, --rounds N (all batches), --warmup N, --reexport,
//          --no-rss, --gap-ms 300, --onnx PATH (use this ONNX file as is).
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
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
  },
});
const out = opt.json ? console.error : console.log;  // --json: stdout holds only the JSON line
const log = (...a) => console.error('[bench]', ...a);
const batches = opt.batches.split(',').map(Number);
const threads = Number(opt.threads);
const gapMs = Number(opt['gap-ms']);
const TOLERANCE = 1e-3;
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
  const names = Object.keys(runners);

  // 4. Timed rounds.
  const results = {};
  let disagree = false;
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
    results[b] = { diff, rounds };
    for (const n of names) {
      const ms = median(times[n]);
      results[b][n] = { ips: (b * 1000) / ms, ms, min: Math.min(...times[n]), max: Math.max(...times[n]) };
    }
    log(`batch ${b}: ` + names.map((n) => `${n} ${results[b][n].ips.toFixed(2)} img/s`).join(', ') +
      (diff !== null ? `, max |dlogit| ${diff.toExponential(2)}` : ''));
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
  out(`peak RSS, batch-32 loupe run (own process): ${peakRssMb ?? '-'} MB`);
  if (disagree) {
    console.error(`[bench] ERROR: loupe and onnxruntime logits differ by more than ${TOLERANCE}`);
    process.exitCode = 1;
  }
  await ortSession.release?.();

  const summary = { batch: {}, peakRssMb };
  for (const b of batches) {
    summary.batch[String(b)] = { loupe: round2(results[b].loupe?.ips), onnxruntime: round2(results[b].onnxruntime.ips) };
  }
  console.log(spacedJson(summary));
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
