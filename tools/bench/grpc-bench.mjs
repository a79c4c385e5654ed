#!/usr/bin/env node
// images/s through the gRPC server (loupe.v1.Inspection/Inspect, 1, 4 and 16 concurrent streams) vs
// calling @loupe/core in-process (decode -> batched engine run -> SVM, or PatchCore's scoreIter with
// --model patchcore), same model, same real images, same run. The server runs in its own process (apps/server/dist/main.js, dedupe OFF so every image
// costs an engine view), the client here; the in-process baseline runs while the server is idle.
//
//   node tools/bench/grpc-bench.mjs [--model svm|patchcore] [--images N] [--streams 1,4,16] [--window 32] [--batch 32] [--threads T] [--json]
//
// Needs: built workspace (npx nx run @loupe/server:build), the weights cache, and the MVTec bottle
// images in ../shared/datasets/mvtec_ad/bottle (or $LOUPE_SHARED_DIR). Last stdout line: a JSON summary.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '256' },
    streams: { type: 'string', default: '1,4,16' },
    window: { type: 'string', default: '32' },
    batch: { type: 'string', default: '32' },
    threads: { type: 'string' },
    model: { type: 'string', default: 'svm' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(args.images);
const STREAMS = args.streams.split(',').map(Number);
const WINDOW = Number(args.window);
const BATCH = Number(args.batch);
const log = (s) => (args.json ? process.stderr : process.stdout).write(`${s}\n`);

process.env.UV_THREADPOOL_SIZE ??= '16';
const core = await import('@loupe/core');
const { LoupeClient } = await import(join(root, 'apps/server/dist/index.js'));
const threads = args.threads ? Number(args.threads) : undefined;
if (threads) core.configureThreads({ total: threads });

const shared = process.env.LOUPE_SHARED_DIR || join(root, '..', 'shared');
const bottle = join(shared, 'datasets', 'mvtec_ad', 'bottle');
if (!existsSync(bottle)) {
  process.stderr.write(`grpc-bench: no MVTec bottle images at ${bottle} (set LOUPE_SHARED_DIR)\n`);
  process.exit(1);
}
const list = (sub) => readdirSync(join(bottle, sub)).filter((f) => f.endsWith('.png')).sort().map((f) => join(bottle, sub, f));
const pool = [...list('train/good'), ...list('test/broken_large'), ...list('test/contamination'), ...list('test/good')];
// N distinct real images where the dataset has them (bytes in memory: no disk reads are timed)
const images = Array.from({ length: N }, (_, i) => ({ name: pool[i % pool.length], data: readFileSync(pool[i % pool.length]) }));

const MODEL = args.model;
if (MODEL !== 'svm' && MODEL !== 'patchcore') {
  process.stderr.write(`grpc-bench: --model must be svm or patchcore, got ${MODEL}\n`);
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'loupe-grpc-bench-'));
const engine = await core.Engine.open({ maxBatch: BATCH, ...(threads ? { threads } : {}) });
// --- the model: a small SVM on fc1000 (good / broken_large / contamination, 5 images each), or PatchCore
// on all of bottle's train/good at the 1% coreset (the anomaly benchmark's bank)
let inProcess;
if (MODEL === 'patchcore') {
  const pc = await core.PatchCoreModel.train(engine, list('train/good'), { batchSize: 8 });
  await core.savePatchCore(join(tmp, 'bench.loupe'), pc);
  inProcess = async (srcs) => {
    const t0 = performance.now();
    let anomalous = 0;
    for await (const r of pc.scoreIter(engine, srcs.map((im) => ({ name: im.name, data: im.data })), { batchSize: BATCH })) if (r.isAnomalous) anomalous++;
    return { seconds: (performance.now() - t0) / 1000, anomalous };
  };
} else {
  const trainFiles = [...list('train/good').slice(0, 5), ...list('test/broken_large').slice(0, 5), ...list('test/contamination').slice(0, 5)];
  const labels = trainFiles.map((f) => (f.includes('broken_large') ? 'broken_large' : f.includes('contamination') ? 'contamination' : 'good'));
  const tf = await core.extractFeatures(trainFiles, { engine, layer: 'fc1000', batchSize: 8 });
  const dim = tf[0].features.fc1000.length;
  const tdata = new Float32Array(tf.length * dim);
  tf.forEach((f, i) => tdata.set(f.features.fc1000, i * dim));
  const svm = await core.trainSvmClassifier({ data: tdata, rows: tf.length, cols: dim }, labels, { trainer: core.nativeSvmTrainer(await core.loadAddon()), trainerName: 'native', layer: 'fc1000' });
  await core.saveSvmModel(join(tmp, 'bench.loupe'), svm, { weightsHash: engine.weightsHash, preprocessing: { mode: 'caffe', size: 224, fit: 'squash', filter: 'cubic' }, extra: { goodClass: 'good' } });

  // --- in-process: core's pipelined decode + batched engine run, then the SVM
  inProcess = async (srcs) => {
    const t0 = performance.now();
    let anomalous = 0;
    for await (const batch of core.streamFeatures(srcs, { engine, layer: 'fc1000', batchSize: BATCH })) {
      const data = new Float32Array(batch.length * dim);
      batch.forEach((f, i) => data.set(f.features.fc1000, i * dim));
      const p = core.predictSvm(svm, { data, rows: batch.length, cols: dim });
      for (const c of p.classIndex) if (svm.classes[c] !== 'good') anomalous++;
    }
    return { seconds: (performance.now() - t0) / 1000, anomalous };
  };
}
await inProcess(images.slice(0, BATCH)); // warm-up
const local = await inProcess(images);
const localRate = N / local.seconds;
log(`in-process: ${N} images in ${local.seconds.toFixed(2)} s = ${localRate.toFixed(1)} images/s (batch ${BATCH}), ${local.anomalous} anomalous`);

// --- the server, in its own process
const srvArgs = [join(root, 'apps/server/dist/main.js'), '--host', '127.0.0.1', '--port', '0', '--models', tmp, '--max-batch', String(BATCH), '--stream-window', String(WINDOW), ...(threads ? ['--threads', String(threads)] : [])];
const child = spawn(process.execPath, srvArgs, { env: { ...process.env, LOUPE_SERVER_DEDUPE: 'false' }, stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((res, rej) => {
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    const m = /"msg":"serving","address":"[^"]*:(\d+)"/.exec(buf);
    if (m) res(Number(m[1]));
  });
  child.on('exit', (c) => rej(new Error(`server exited (${c})`)));
});
const client = new LoupeClient(`127.0.0.1:${port}`);
await client.waitForReady();

async function viaGrpc(streams, srcs) {
  const per = Math.ceil(srcs.length / streams);
  const before = await client.getStats();
  const t0 = performance.now();
  let anomalous = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: streams }, (_, s) =>
      client.inspectMany(
        srcs.slice(s * per, (s + 1) * per).map((im, i) => ({ id: `${s}-${i}`, image: im.data, model: 'bench' })),
        {
          window: WINDOW,
          onResponse: (r) => {
            if (r.error) errors++;
            else if (r.result.verdict === 2) anomalous++;
          },
        },
      ),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = await client.getStats();
  const hist = new Map(after.batchSizes.map((b) => [b.size, b.count]));
  for (const b of before.batchSizes) hist.set(b.size, hist.get(b.size) - b.count);
  const batches = after.batchesTotal - before.batchesTotal;
  const sizes = [...hist].filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1]);
  return { seconds, anomalous, errors, batches, meanBatch: srcs.length / Math.max(1, batches), sizes };
}

const rows = [];
for (const s of STREAMS) {
  await viaGrpc(s, images.slice(0, BATCH)); // warm-up
  const r = await viaGrpc(s, images);
  const rate = N / r.seconds;
  rows.push({ streams: s, imagesPerSecond: rate, ratio: rate / localRate, meanBatch: r.meanBatch, batches: r.batches, sizes: r.sizes, errors: r.errors, anomalous: r.anomalous });
  log(`gRPC ${String(s).padStart(2)} stream(s): ${rate.toFixed(1)} images/s (${(rate / localRate).toFixed(2)}x the first in-process run), ${r.batches} batches, mean ${r.meanBatch.toFixed(1)}, sizes ${r.sizes.slice(0, 4).map(([k, c]) => `${k}x${c}`).join(' ')}${r.errors ? `, ${r.errors} ERRORS` : ''}${r.anomalous !== local.anomalous ? `, anomalous ${r.anomalous} vs ${local.anomalous} in-process` : ''}`);
}

client.close();
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
rmSync(tmp, { recursive: true, force: true });
// The baseline again, after the server runs (server stopped): on a shared machine the load drifts, so
// the ratio uses the mean of both baseline runs.
const local2 = await inProcess(images);
const localRate2 = N / local2.seconds;
log(`in-process (again): ${localRate2.toFixed(1)} images/s; baseline = mean ${((localRate + localRate2) / 2).toFixed(1)}`);
const base = (localRate + localRate2) / 2;
for (const r of rows) r.ratio = r.imagesPerSecond / base;

log('');
log(`| path | streams | images/s | vs in-process | engine batches | mean batch | most frequent batch sizes (size x count) |`);
log(`| --- | ---: | ---: | ---: | ---: | ---: | --- |`);
log(`| in-process @loupe/core (mean of 2 runs: ${localRate.toFixed(1)}, ${localRate2.toFixed(1)}) | - | ${base.toFixed(1)} | 1.00x | ${Math.ceil(N / BATCH)} | ${BATCH} | ${BATCH} (fixed) |`);
for (const r of rows) log(`| gRPC Inspect | ${r.streams} | ${r.imagesPerSecond.toFixed(1)} | ${r.ratio.toFixed(2)}x | ${r.batches} | ${r.meanBatch.toFixed(1)} | ${r.sizes.slice(0, 4).map(([k, c]) => `${k} x ${c}`).join(', ')} |`);
process.stdout.write(`${JSON.stringify({ model: MODEL, images: N, batch: BATCH, window: WINDOW, inProcess: base, inProcessRuns: [localRate, localRate2], grpc: rows.map((r) => ({ streams: r.streams, imagesPerSecond: r.imagesPerSecond, ratio: r.ratio, meanBatch: r.meanBatch })) })}\n`);
process.exit(rows.some((r) => r.errors > 0) ? 1 : 0);
