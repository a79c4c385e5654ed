// loupe export --onnx FILE : the engine's ResNet-50 (the weights in use) as an ONNX graph, for other
// runtimes. Parity with the engine is tested in tools/bench/onnx-parity.test.mjs (onnxruntime).
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';

import { AbortError, type TapName } from '@loupe/core';

import { imagenetEngine, write, type RunContext } from '../context.js';

export interface ExportCommandOptions {
  onnx: string;
  layers: TapName[];
  opset?: number;
  staticBatch?: boolean;
  json?: boolean;
}

export async function exportCommand(o: ExportCommandOptions, ctx: RunContext): Promise<number> {
  const out = resolve(o.onnx);
  const engine = await imagenetEngine(ctx);
  // The export itself is one short native call that cannot stop halfway: an interrupt during the engine
  // load must stop here, before the file is replaced.
  if (ctx.signal.aborted) throw new AbortError(ctx.signal.reason);
  const started = performance.now();
  await engine.exportOnnx(out, {
    taps: o.layers,
    ...(o.opset !== undefined ? { opset: o.opset } : {}),
    dynamicBatch: !o.staticBatch,
  });
  const bytes = (await stat(out)).size;
  const summary = { file: out, outputs: o.layers, bytes, weightsHash: engine.weightsHash, seconds: (performance.now() - started) / 1000 };
  if (o.json) {
    await write(ctx.stdout, `${JSON.stringify(summary)}\n`);
  } else {
    await write(
      ctx.stdout,
      `wrote ${out} (${(bytes / 1e6).toFixed(1)} MB; input "input" float32 NHWC [${o.staticBatch ? '1' : 'N'},224,224,3] caffe-preprocessed; ` +
        `outputs ${o.layers.join(', ')}) in ${summary.seconds.toFixed(2)} s\n`,
    );
  }
  return 0;
}
