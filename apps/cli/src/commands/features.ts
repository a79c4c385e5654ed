// loupe features IMG... --layers a,b : the engine's taps per image, as JSON lines or a summary.
import { streamFeatures, TAP_SHAPES, type TapName } from '@loupe/core';

import { checkReadable, imagenetEngine, write, type RunContext } from '../context.js';
import { float32ArrayJson, formatRate, formatSeconds, shapeText, stats } from '../format.js';
import { ProgressBar } from '../progress.js';

export interface FeaturesCommandOptions {
  layers: TapName[];
  json?: boolean;
  crop?: boolean;
}

export async function featuresCommand(files: readonly string[], o: FeaturesCommandOptions, ctx: RunContext): Promise<number> {
  await checkReadable(files);
  const t0 = performance.now();
  const engine = await imagenetEngine(ctx);
  const loadMs = performance.now() - t0;

  const layers = [...new Set(o.layers)];
  const bar = new ProgressBar('features', files.length, ctx.stderr, ctx.opts.progress && files.length > 1 && Boolean(ctx.stderr.isTTY));
  const t1 = performance.now();
  let count = 0;
  try {
    const batches = streamFeatures(files, {
      engine,
      layers,
      batchSize: ctx.opts.batchSize,
      signal: ctx.signal,
      decode: { fit: o.crop ? 'crop' : 'squash' },
      onProgress: (p) => bar.update(p.done),
    });
    for await (const batch of batches) {
      for (const item of batch) {
        const file = files[item.index] ?? item.name;
        bar.clear();
        if (o.json) {
          let line = `{"file":${JSON.stringify(file)}`;
          for (const layer of layers) line += `,${JSON.stringify(layer)}:${float32ArrayJson(item.features[layer])}`;
          await write(ctx.stdout, `${line}}\n`);
        } else {
          const width = Math.max(...layers.map((l) => l.length));
          const rows = layers.map((layer) => {
            const s = stats(item.features[layer]);
            const g = (v: number): string => v.toPrecision(4).padStart(10);
            return `  ${layer.padEnd(width)}  ${shapeText(TAP_SHAPES[layer]).padEnd(14)} min ${g(s.min)}  mean ${g(s.mean)}  max ${g(s.max)}  std ${g(s.std)}`;
          });
          await write(ctx.stdout, `${file}\n${rows.join('\n')}\n`);
        }
        count++;
      }
    }
  } finally {
    bar.clear();
  }
  const runMs = performance.now() - t1;
  if (!o.json) {
    await write(
      ctx.stdout,
      `${count} image${count === 1 ? '' : 's'} in ${formatSeconds(runMs)} (${formatRate(count, runMs)}) on ${engine.backend}, ` +
        `${engine.device}; model load ${formatSeconds(loadMs)}\n`,
    );
  }
  return 0;
}
