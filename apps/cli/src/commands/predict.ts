// loupe predict MODEL IMG|DIR...: every model kind through core's Inspector (inspectMany, batched through
// the engine), printed by the one output contract (inspection-output.ts) that remote predict/inspect share.
import { mkdir } from 'node:fs/promises';

import {
  Inspector,
  loadModel,
  ModelFileError,
  renderHeatmapPng,
  renderMaskPng,
  type InspectionOutcome,
  type LoupeModel,
} from '@loupe/core';

import { progressEnabled } from '../classification.js';
import { openEngine, type RunContext } from '../context.js';
import { UsageError } from '../errors.js';
import { HeatmapFolder, PredictPrinter, type InspectedLine, type PredictLine } from '../inspection-output.js';
import { expandInputs } from '../inputs.js';
import { checkOutputDir } from '../outputs.js';
import { ProgressBar } from '../progress.js';

export interface PredictCommandOptions {
  json?: boolean;
  heatmaps?: string;
  classifier?: string;
}

/** A model file for --classifier: an SVM with at least one defect class. */
async function loadClassifier(file: string): Promise<LoupeModel & { kind: 'svm' }> {
  const m = await loadModel(file);
  if (m.kind !== 'svm') throw new ModelFileError('MODEL_INCOMPATIBLE', file, `--classifier needs an SVM model (loupe train --mode svm); this is a '${m.kind}' model`, { field: 'kind' });
  if (!m.classifier.classes.some((c) => c !== m.goodClass)) throw new ModelFileError('MODEL_INCOMPATIBLE', file, `the classifier has no defect classes (only ${m.goodClass})`, { field: 'classes' });
  return m;
}

/** The classifier's likeliest defect class (never its good class): the one-class model said WHETHER, this says WHICH. */
export async function predictCommand(modelFile: string, inputs: string[], o: PredictCommandOptions, ctx: RunContext): Promise<number> {
  if (o.heatmaps) await checkOutputDir(o.heatmaps, '--heatmaps', inputs);
  const images = await expandInputs(inputs);
  // The model (and the classifier) before the engine: a bad file costs no engine load.
  const model = await loadModel(modelFile);
  if (model.kind === 'svm' && (o.heatmaps !== undefined || o.classifier !== undefined)) {
    throw new UsageError(`${modelFile}: --heatmaps and --classifier apply to one-class models; this is an SVM classifier (it names the defect type itself)`);
  }
  const classifierModel = o.classifier !== undefined ? await loadClassifier(o.classifier) : undefined;
  const engine = await openEngine(ctx);
  const knn = { backend: ctx.opts.backend, threads: ctx.budget.engineThreads } as const;
  const inspector = await Inspector.open(model, { engine, name: modelFile, ...knn });
  const classifier = classifierModel ? await Inspector.open(classifierModel, { engine, name: o.classifier! }) : undefined;

  const heatmaps = o.heatmaps !== undefined ? new HeatmapFolder(o.heatmaps) : undefined;
  if (o.heatmaps !== undefined) await mkdir(o.heatmaps, { recursive: true });
  const bar = new ProgressBar('predict', images.length, ctx.stderr, progressEnabled(ctx, images.length));
  const printer = new PredictPrinter(ctx.stdout, Boolean(o.json), heatmaps, () => bar.clear());
  const batchSize = ctx.opts.batchSize;

  /** An outcome as a contract line (heatmap PNGs written on the way). */
  const toLine = async (out: InspectionOutcome, defectType?: string | null): Promise<PredictLine> => {
    const file = images[out.index]!.file;
    if (out.error) return { file, error: { code: out.error.code, message: out.error.message } };
    const r = out.result;
    const line: InspectedLine = {
      file,
      verdict: r.verdict,
      score: r.score,
      rawScore: r.rawScore,
      defectType: defectType !== undefined && r.verdict === 'anomalous' ? defectType : r.defectType,
      ...(r.classScores ? { classScores: r.classScores } : {}),
    };
    if (heatmaps && r.heatmap) {
      const p = heatmaps.paths(images[out.index]!.name);
      await heatmaps.writePng(p.heatmap, await renderHeatmapPng(file, r.heatmap));
      await heatmaps.writePng(p.mask, await renderMaskPng(r.heatmap));
      line.heatmap = p.heatmap;
      line.mask = p.mask;
    }
    return line;
  };

  // With --classifier, a batch of one-class outcomes waits for the classifier's look at its anomalous images.
  let pending: InspectionOutcome[] = [];
  const flush = async (): Promise<void> => {
    const batch = pending;
    pending = [];
    const types = new Map<number, string | null>();
    const flagged = batch.filter((x) => x.result?.verdict === 'anomalous');
    if (classifier && flagged.length > 0) {
      let k = 0;
      for await (const c of classifier.inspectMany(flagged.map((x) => images[x.index]!.file), { batchSize, signal: ctx.signal })) {
        types.set(flagged[k++]!.index, c.result?.likeliestDefect ?? null);
      }
    }
    for (const x of batch) await printer.emit(await toLine(x, classifier ? (types.get(x.index) ?? null) : undefined));
  };

  try {
    for await (const out of inspector.inspectMany(
      images.map((i) => i.file),
      { batchSize, heatmap: heatmaps !== undefined, signal: ctx.signal, onProgress: (done) => bar.update(done) },
    )) {
      if (!classifier) {
        await printer.emit(await toLine(out));
        continue;
      }
      pending.push(out);
      if (pending.length >= batchSize) await flush();
    }
    await flush();
  } finally {
    bar.clear();
  }
  return printer.finish(modelFile);
}
