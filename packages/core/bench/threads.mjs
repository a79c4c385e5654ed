#!/usr/bin/env node
// Thread-budget benchmark: decode cost, and end-to-end feature extraction under several thread
// splits, each in a fresh process (sharp.concurrency and UV_THREADPOOL_SIZE are process-global).
//
//   node packages/core/bench/threads.mjs [--images N] [--layer avg_pool] [--dataset DIR]
//
// Needs the built core (nx build @loupe/core), the native addon and the weights.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const shared = process.env.LOUPE_SHARED_DIR ?? resolve(here, '..', '..', '..', '..', 'shared');
const dataset = args.dataset ?? join(shared, 'datasets', 'mvtec_ad', 'bottle', 'train', 'good');
const count = Number(args.images ?? 64);
const layer = args.layer ?? 'avg_pool';
const cores = Number(args.cores ?? availableParallelism());

if (args.child) {
  await child(JSON.parse(args.child));
} else {
  const configs = [
    { name: 'decode only, 1 libvips thread, 1 at a time', mode: 'decode', sharp: 1, conc: 1 },
    { name: `decode only, ${cores} libvips threads, ${cores} at a time`, mode: 'decode', sharp: cores, conc: cores },
    { name: `engine only (${cores} threads), pre-decoded`, mode: 'engine', engine: cores },
    { name: `budgeted: engine ${cores} + decode 1x1, overlapped (default)`, mode: 'pipeline', engine: cores, sharp: 1, conc: 1 },
    { name: `fight: engine ${cores} + decode ${cores} libvips x 4 at a time, overlapped`, mode: 'pipeline', engine: cores, sharp: cores, conc: 4 },
    { name: `split: engine ${Math.max(1, cores - 1)} + decode 1x1`, mode: 'pipeline', engine: Math.max(1, cores - 1), sharp: 1, conc: 1 },
    { name: `serial: decode all, then infer (engine ${cores})`, mode: 'serial', engine: cores, sharp: 1, conc: 1 },
  ];
  console.log(`dataset ${dataset}, ${count} images, layer ${layer}, ${cores} cores`);
  for (const c of configs) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify({ ...c, dataset, count, layer }), '--cores', String(cores)], {
      encoding: 'utf8',
      env: { ...process.env, UV_THREADPOOL_SIZE: '8' },
    });
    if (r.status !== 0) {
      console.log(`${c.name}: FAILED\n${r.stderr}`);
      continue;
    }
    console.log(`${c.name.padEnd(62)} ${r.stdout.trim()}`);
  }
}

async function child(cfg) {
  const core = await import(join(here, '..', 'dist', 'index.js'));
  const files = readdirSync(cfg.dataset).filter((f) => /\.(png|jpe?g)$/i.test(f)).slice(0, cfg.count).map((f) => join(cfg.dataset, f));
  while (files.length < cfg.count) files.push(...files.slice(0, cfg.count - files.length));
  core.configureThreads({ total: cores, engineThreads: cfg.engine ?? cores, sharpThreads: cfg.sharp ?? 1, decodeConcurrency: cfg.conc ?? 1 });

  const decodeAll = async () => {
    const out = new Array(files.length);
    let next = 0;
    await Promise.all(Array.from({ length: cfg.conc ?? 1 }, async () => {
      while (next < files.length) {
        const i = next++;
        out[i] = await core.decodeImage(files[i]);
      }
    }));
    return out;
  };

  if (cfg.mode === 'decode') {
    await decodeAll(); // warm-up (libvips init, page cache)
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await decodeAll();
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    console.log(`${(ms / files.length).toFixed(2)} ms/img wall, ${((cpu.user + cpu.system) / 1000 / files.length).toFixed(2)} ms/img CPU`);
    return;
  }
  const engine = await core.Engine.open({ backend: 'cpu', threads: cfg.engine });
  const warm = await decodeAll();
  await engine.run(core.packBatch(warm.slice(0, 4)), [layer]); // warm-up: primitives, buffers
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  if (cfg.mode === 'engine') {
    for (let i = 0; i < warm.length; i += 32) await engine.run(core.packBatch(warm.slice(i, i + 32)), [layer]);
  } else if (cfg.mode === 'serial') {
    const imgs = await decodeAll();
    for (let i = 0; i < imgs.length; i += 32) await engine.run(core.packBatch(imgs.slice(i, i + 32)), [layer]);
  } else {
    await core.extractFeatures(files, { engine, layer, batchSize: 32 });
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  console.log(`${(ms / files.length).toFixed(1)} ms/img, ${((files.length * 1000) / ms).toFixed(2)} img/s, ${((cpu.user + cpu.system) / 1000 / files.length).toFixed(1)} ms/img CPU`);
}
