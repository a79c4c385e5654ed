// loupe classify-imagenet IMG|DIR... : ImageNet top-k per image.
import { classifyImageNet, type LoupeError } from '@loupe/core';

import { imagenetEngine, write, type RunContext } from '../context.js';
import { EXIT_OK, EXIT_SOME_FAILED } from '../errors.js';
import { float32ToString, formatProbability, formatRate, formatSeconds, printable } from '../format.js';
import { ProgressBar } from '../progress.js';
import { expandInputs } from '../inputs.js';

export interface ClassifyCommandOptions {
  json?: boolean;
  top: number;
  crop?: boolean;
}

export async function classifyCommand(inputs: readonly string[], o: ClassifyCommandOptions, ctx: RunContext): Promise<number> {
  const files = (await expandInputs(inputs)).map((i) => i.file);
  const t0 = performance.now();
  const engine = await imagenetEngine(ctx);
  const loadMs = performance.now() - t0;

  const bar = new ProgressBar('classify', files.length, ctx.stderr, ctx.opts.progress && files.length > 1 && Boolean(ctx.stderr.isTTY));
  const t1 = performance.now();
  let results;
  // An image that cannot be read or decoded gets its error line; the others are still classified (exit 2).
  const failed = new Map<number, LoupeError>();
  try {
    results = await classifyImageNet(files, {
      onInvalidImage: 'skip',
      onSkip: (error, index) => failed.set(index, error),
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
  const byIndex = new Map(results.map((r) => [r.index, r]));
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!;
    const error = failed.get(i);
    if (error) {
      if (o.json) await write(ctx.stdout, `${JSON.stringify({ file, error: { code: error.code, message: error.message } })}\n`);
      else await write(ctx.stdout, `${printable(file)}\n  ERROR  ${printable(error.message)}\n`);
      continue;
    }
    const r = byIndex.get(i);
    if (!r) continue;
    if (o.json) {
      const top = r.top.map((p) => `{"index":${p.index},"label":${JSON.stringify(p.label)},"prob":${float32ToString(p.prob)}}`);
      await write(ctx.stdout, `{"file":${JSON.stringify(file)},"${key}":[${top.join(',')}]}\n`);
    } else {
      const width = Math.max(...r.top.map((p) => p.label.length));
      const lines = r.top.map((p, i) => `  ${i + 1}. ${p.label.padEnd(width)}  ${formatProbability(p.prob).padStart(8)}  (class ${p.index})`);
      await write(ctx.stdout, `${printable(file)}\n${lines.join('\n')}\n`);
    }
  }
  if (!o.json) {
    const n = results.length;
    await write(
      ctx.stdout,
      `${n} image${n === 1 ? '' : 's'}${failed.size > 0 ? ` (${failed.size} could not be read or decoded)` : ''} in ${formatSeconds(runMs)} (${formatRate(n, runMs)}) on ${engine.backend}, ${engine.device}; ` +
        `model load ${formatSeconds(loadMs)}\n`,
    );
  }
  return failed.size > 0 ? EXIT_SOME_FAILED : EXIT_OK;
}
