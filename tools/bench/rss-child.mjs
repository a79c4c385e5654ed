// Child process of bench.mjs: the peak resident memory of a loupe CPU run at one batch size, measured
// alone (no onnxruntime in the process). Prints one JSON line: {"peakRssMb", "backend", "batch"}.
//   node tools/bench/rss-child.mjs --weights MODEL.json [--batch 32] [--threads 2] [--runs 2]
import { parseArgs } from 'node:util';

import { loadAddon, seededInputs } from './lib.mjs';

const { values } = parseArgs({
  options: {
    weights: { type: 'string' },
    batch: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '2' },
  },
});
const batch = Number(values.batch);
const { addon, error } = await loadAddon();
if (!addon) throw error;
const model = await addon.loadModel(values.weights);
const session = addon.createSession(model, { backend: 'cpu', threads: Number(values.threads), maxBatch: batch });
const x = seededInputs(batch, 99);
for (let i = 0; i < Number(values.runs); i++) await session.run(x, batch, ['fc1000']);
const peakRssMb = process.resourceUsage().maxRSS / 1024;  // maxRSS is in KiB
console.log(JSON.stringify({ peakRssMb: Math.round(peakRssMb), backend: session.backend, batch }));
