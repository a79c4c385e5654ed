// `node tools/bench/hybrid-flips.mjs --model M.loupe --images DIR [--n 48] [--rounds 3] [--threads 2]`:
// what a hybrid model's test-time flips cost at inspection. One process, one engine, the same images: the
// model as trained (its head also reads the image's mirror images, `head.flips`) against the same model with
// `flips: []` (1x), images/s through core's Inspector.inspectMany, in rounds that alternate which goes
// first; the figure is the median over rounds. Both answer the same bank score; only the head's input
// differs. A model with more than three heads (core's default is five) also runs with its first three
// (with its flips): what the extra ensemble members cost. Human table on stderr; the LAST stdout line is the
// JSON summary.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { Engine, findImageFiles, Inspector, loadModel } from '@loupe/core';
import { HybridScorer } from '@loupe/core/internal';

import { median } from './lib.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string' },
    images: { type: 'string' },
    n: { type: 'string', default: '48' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
  },
});
if (!opt.model || !opt.images) {
  process.stderr.write('usage: node tools/bench/hybrid-flips.mjs --model M.loupe --images DIR [--n 48] [--rounds 3] [--threads 2]\n');
  process.exit(2);
}

/** The CPU, as lscpu names it, and the flags that decide the engine's kernels. */
function cpuLine() {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const name = /model name\s*:\s*(.*)/.exec(info)?.[1] ?? 'unknown CPU';
  const flags = new Set((/flags\s*:\s*(.*)/.exec(info)?.[1] ?? '').split(/\s+/));
  const shown = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni'].filter((f) => flags.has(f));
  return `${name}; ${shown.join(' ')}`;
}

const model = await loadModel(opt.model);
if (model.kind !== 'hybrid' || !model.hybrid.hasHead) throw new Error(`${opt.model}: not a hybrid model with a head`);
const flips = model.hybrid.flips;
if (flips.length === 0) throw new Error(`${opt.model}: its head reads no test-time flips (trained with --flips none)`);
const head = model.hybrid.state.head;
const plain = { ...model, hybrid: new HybridScorer(model.patchcore, { ...model.hybrid.state, head: { ...head, flips: [] } }) };
const members = 1 + (head.ensemble?.length ?? 0);
const three = members > 3 ? { ...model, hybrid: new HybridScorer(model.patchcore, { ...model.hybrid.state, head: { ...head, ensemble: head.ensemble.slice(0, 2) } }) } : null;
const images = (await findImageFiles(opt.images)).sort().slice(0, Number(opt.n));
if (images.length === 0) throw new Error(`${opt.images}: no images`);

const threads = Number(opt.threads);
const engine = await Engine.open({ threads });
const inspectors = { flips: await Inspector.open(model, { engine, threads }), plain: await Inspector.open(plain, { engine, threads }) };
if (three) inspectors.three = await Inspector.open(three, { engine, threads });

async function run(inspector) {
  const t0 = performance.now();
  let n = 0;
  for await (const o of inspector.inspectMany(images)) {
    if (o.error) throw new Error(`${o.name}: ${o.error.message}`);
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

// Warm-up: each once (kNN index, weights in cache).
const names = Object.keys(inspectors);
for (const k of names) await run(inspectors[k]);
const rates = Object.fromEntries(names.map((k) => [k, []]));
for (let r = 0; r < Number(opt.rounds); r++) {
  const order = r % 2 === 0 ? names : [...names].reverse();
  for (const k of order) rates[k].push(await run(inspectors[k]));
}
const summary = {
  cpu: cpuLine(),
  threads,
  images: images.length,
  flips,
  members,
  imagesPerSecond: Object.fromEntries(names.map((k) => [k, median(rates[k])])),
  slowdown: median(rates.plain) / median(rates.flips),
  ...(three ? { membersSlowdown: median(rates.three) / median(rates.flips) } : {}),
};
process.stderr.write(
  `${summary.cpu}, ${threads} threads, ${images.length} images, median of ${opt.rounds} rounds\n` +
    `  head on the image alone:          ${summary.imagesPerSecond.plain.toFixed(2)} images/s\n` +
    `  head on the image + ${flips.join(' + ')}: ${summary.imagesPerSecond.flips.toFixed(2)} images/s (${summary.slowdown.toFixed(2)}x slower), ${members} heads\n` +
    (three ? `  the same with its first 3 heads:   ${summary.imagesPerSecond.three.toFixed(2)} images/s (${members} heads: ${summary.membersSlowdown.toFixed(2)}x its time)\n` : ''),
);
process.stdout.write(`${JSON.stringify(summary)}\n`);
