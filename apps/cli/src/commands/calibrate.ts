// loupe calibrate MODEL --good DIR [--defects DIR] [--target-fpr F] [--out FILE]: core's calibrate (the
// model scores images of the line it will watch and its thresholds are set on them), then saveModel, in
// place by default (atomically: a reader sees the old model or the new one, never half of one).
import { resolve } from 'node:path';

import { calibrate, loadModel, saveModel } from '@loupe/core';

import { stageProgress } from '../classification.js';
import { openEngine, write, type RunContext } from '../context.js';
import { roundSignificant } from '../format.js';
import { checkWritableOutput, createOutputFolder, modelExtensionNote, modelOutputPath } from '../outputs.js';

export interface CalibrateCommandOptions {
  good: string;
  defects?: string;
  targetFpr?: number;
  out?: string;
  json?: boolean;
}

const METHOD_TEXT = {
  'target-fpr': (fpr: number | undefined) => `the ${1 - (fpr ?? 0)} quantile of the good images' scores (target false-alarm rate ${fpr})`,
  f1: () => 'F1-optimal over the good and defective images',
  quantile: () => "the model's quantile of the good images' scores",
} as const;

export async function calibrateCommand(modelFile: string, o: CalibrateCommandOptions, ctx: RunContext): Promise<number> {
  const out = o.out !== undefined ? modelOutputPath(o.out) : modelFile;
  const model = await loadModel(modelFile); // a bad model file fails before the engine loads
  await checkWritableOutput(out);
  const engine = await openEngine(ctx);
  const progress = stageProgress(ctx, { thresholds: 'scoring' });
  let c;
  try {
    c = await calibrate(model, {
      engine,
      good: o.good,
      ...(o.defects !== undefined ? { defects: o.defects } : {}),
      ...(o.targetFpr !== undefined ? { targetFpr: o.targetFpr } : {}),
      batchSize: ctx.opts.batchSize,
      signal: ctx.signal,
      onProgress: progress.onProgress,
    });
  } finally {
    progress.clear();
  }
  const r = c.report;
  await createOutputFolder(out);
  const saved = await saveModel(out, c.model);
  if (r.seenInTraining > 0) {
    ctx.stderr.write(
      `loupe: warning: ${r.seenInTraining} of the ${r.good} good images were used to train this model; they score lower than new good parts, so the threshold is optimistic (calibrate on images the model has not seen)\n`,
    );
  }
  const note = modelExtensionNote(out);
  if (o.out !== undefined && note) ctx.stderr.write(`loupe: note: ${note}\n`);
  const thresholds = (t: { image: number; pixel?: number }): Record<string, number> => ({ image: roundSignificant(t.image), ...(t.pixel !== undefined ? { pixel: roundSignificant(t.pixel) } : {}) });
  if (o.json) {
    const record = {
      model: resolve(out),
      source: resolve(modelFile),
      kind: c.model.kind,
      method: r.method,
      ...(o.targetFpr !== undefined ? { targetFpr: o.targetFpr } : {}),
      before: thresholds(r.before),
      after: thresholds(r.after),
      good: r.good,
      defects: r.defects,
      goodFlagged: r.goodFlagged,
      defectsFlagged: r.defectsFlagged,
      seenInTraining: r.seenInTraining,
      bytes: saved.bytes,
    };
    await write(ctx.stdout, `${JSON.stringify(record)}\n`);
    return 0;
  }
  const fmt = (v: number | undefined): string => (v === undefined ? 'n/a' : v.toFixed(4));
  const pixel = r.before.pixel !== undefined || r.after.pixel !== undefined;
  const lines = [
    `calibrated ${resolve(modelFile)} (${c.model.kind}) on ${r.good} good${r.defects > 0 ? ` and ${r.defects} defective` : ''} image${r.good + r.defects === 1 ? '' : 's'}`,
    `method    ${r.method}: ${METHOD_TEXT[r.method](o.targetFpr)}`,
    `image threshold (raw)  ${fmt(r.before.image)} -> ${fmt(r.after.image)}${c.model.kind === 'svm' ? '  (margin of the best defect class over the good class)' : ''}`,
    ...(pixel ? [`pixel threshold (raw)  ${fmt(r.before.pixel)} -> ${fmt(r.after.pixel)}`] : []),
    `at the new threshold: ${r.goodFlagged}/${r.good} good flagged${r.defects > 0 ? `, ${r.defectsFlagged}/${r.defects} defective flagged` : ''}`,
    `wrote ${resolve(out)}${out === modelFile ? ' (in place)' : ''}`,
  ];
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
