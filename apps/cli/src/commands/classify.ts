// loupe classify-imagenet IMG... : ImageNet top-k per image.
import { classifyImageNet } from '@loupe/core';

import { checkReadable, openEngine, write, type RunContext } from '../context.js';
import { float32ToString, formatProbability, formatRate, formatSeconds } from '../format.js';
import { ProgressBar } from '../progress.js';

export interface ClassifyCommandOptions {
  json?: boolean;
  top: number;
  crop?: boolean;
}

export async function classifyCommand(files: readonly string[], o: ClassifyCommandOptions, ctx: RunContext): Promise<number> {
  await checkReadable(files);
  const t0 = performance.now();
  const engine = await openEngine(ctx);
  const loadMs = performance.now() - t0;

  const bar = new ProgressBar('classify', files.length, ctx.stderr, ctx.opts.progress && files.length > 1 && Boolean(ctx.stderr.isTTY));
  const t1 = performance.now();
  let results;
  try {
    results = await classifyImageNet(files, {
      engine,
      topK: o.top,
      batchSize: ctx.opts.batchSize,
      signal: ctx.signal,
      decode: { fit: o.crop ? 'crop' : 'squash' },
      onProgress: (p) => bar.update(p.done),
    });
  } finally {
    bar.clear();
  }
  const runMs = performance.now() - t1;

  const key = `top${o.top}`;
  for (const r of results) {
    const file = files[r.index] ?? r.name;
    if (o.json) {
      const top = r.top.map((p) => `{"index":${p.index},"label":${JSON.stringify(p.label)},"prob":${float32ToString(p.prob)}}`);
      await write(ctx.stdout, `{"file":${JSON.stringify(file)},"${key}":[${top.join(',')}]}\n`);
    } else {
      const width = Math.max(...r.top.map((p) => p.label.length));
      const lines = r.top.map((p, i) => `  ${i + 1}. ${p.label.padEnd(width)}  ${formatProbability(p.prob).padStart(8)}  (class ${p.index})`);
      await write(ctx.stdout, `${file}\n${lines.join('\n')}\n`);
    }
  }
  if (!o.json) {
    const n = results.length;
    await write(
      ctx.stdout,
      `${n} image${n === 1 ? '' : 's'} in ${formatSeconds(runMs)} (${formatRate(n, runMs)}) on ${engine.backend}, ${engine.device}; ` +
        `model load ${formatSeconds(loadMs)}\n`,
    );
  }
  return 0;
}
