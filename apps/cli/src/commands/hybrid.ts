// loupe train DIR --mode hybrid: core's trainHybrid (memory bank from the good images + a supervised head
// from the labelled defects, fused; held-out protocol with --split/--shots/--groups) then saveModel. This
// file checks the outputs, reports progress and formats what core returns. evaluate/predict/calibrate treat
// hybrid models through core's Inspector like the other kinds (oneclass.ts, predict.ts).
import * as path from 'node:path';

import { Inspector, saveModel, trainHybrid, writeOneClassReport, type Flip, type OneClassEvaluation } from '@loupe/core';

import { stageProgress } from '../classification.js';
import { openEngine, runOptions, write, type RunContext } from '../context.js';
import { formatSeconds, roundSignificant as round } from '../format.js';
import { checkOutputDir, checkWritableOutput, createOutputFolder, modelExtensionNote } from '../outputs.js';

export interface HybridTrainOptions {
  /** The model file (its extension already settled). */
  out: string;
  /** Held-out fraction (undefined: none). */
  split?: number;
  shots?: number;
  /** The head's test-time flips (undefined: core's default). */
  flips?: Flip[];
  seed: number;
  groups?: string;
  coreset: number;
  projection?: number;
  storage: 'fp32' | 'fp16';
  maxBankMb?: number;
  report?: string;
  json: boolean;
}

function r4(x: number | null | undefined): number | null {
  return x === null || x === undefined || !Number.isFinite(x) ? null : round(x);
}

function fixed(x: number | null | undefined, digits = 4): string {
  return x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
}

/** The held-out figures of an evaluation, as the JSON line carries them. */
function figures(e: OneClassEvaluation | null): Record<string, number | null> {
  return {
    imageAuroc: r4(e?.imageAuroc),
    pixelAuroc: r4(e?.pixelAuroc),
    f1Max: r4(e?.f1Max),
    balancedAccuracy: r4(e?.balancedAccuracy),
  };
}

export async function trainHybridCommand(dir: string, o: HybridTrainOptions, ctx: RunContext): Promise<number> {
  await checkWritableOutput(o.out); // before the minutes of feature extraction, not after
  if (o.report) await checkOutputDir(o.report, '--report', [dir]);
  const t0 = performance.now();
  const engine = await openEngine(ctx);
  const loadMs = performance.now() - t0;
  const progress = stageProgress(ctx);
  let t;
  try {
    t = await trainHybrid({
      engine,
      data: dir,
      seed: o.seed,
      ...(o.split !== undefined ? { split: o.split } : {}),
      ...(o.shots !== undefined ? { shots: o.shots } : {}),
      ...(o.flips !== undefined ? { head: { flips: o.flips } } : {}),
      ...(o.groups !== undefined ? { groups: o.groups } : {}),
      coresetRatio: o.coreset,
      storage: o.storage,
      ...(o.projection !== undefined ? { projectionDim: o.projection } : {}),
      ...(o.maxBankMb !== undefined ? { maxBankMB: o.maxBankMb } : {}),
      ...runOptions(ctx),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.clear();
  }
  if (t.skipped.length > 0 && !o.json) ctx.stderr.write(`loupe: ${t.skipped.length} file(s) skipped (see \`loupe dataset stats ${dir}\`)\n`);
  await createOutputFolder(o.out);
  const saved = await saveModel(o.out, t.model);
  const h = t.model.hybrid;
  const e = t.heldOut;
  const c = t.counts;
  let reportHtml: string | undefined;
  if (o.report && e) {
    const inspector = await Inspector.open(t.model, { engine, name: o.out, backend: ctx.opts.backend, threads: ctx.budget.engineThreads });
    reportHtml = (await writeOneClassReport(o.report, e, inspector, { engine, modelFile: o.out })).html;
  }
  const category = t.model.category ?? path.basename(path.resolve(dir));
  if (o.json) {
    const record = {
      model: path.resolve(o.out),
      mode: 'hybrid',
      category,
      layout: t.layout,
      head: h.hasHead,
      flips: h.flips,
      defectTypes: t.defectTypes,
      ...(e ? { perDefectType: Object.fromEntries(e.perDefectType.map((p) => [p.type, { images: p.images, imageAuroc: r4(p.imageAuroc), flagged: p.flagged }])) } : {}),
      ...(e?.defectTypeAccuracy ? { defectTypeAccuracy: r4(e.defectTypeAccuracy.accuracy) } : {}),
      oneClass: t.heldOutOneClass ? figures(t.heldOutOneClass) : null,
      thresholds: { image: r4(h.imageThreshold), pixel: r4(h.pixelThreshold) },
      split: o.split ?? 0,
      shots: o.shots ?? null,
      seed: o.seed,
      groupAware: t.split.groupAware,
      warnings: t.warnings,
      bytes: saved.bytes,
      ...(reportHtml ? { report: reportHtml } : {}),
      timings: { modelLoadS: round(loadMs / 1000, 4), ...t.timings },
      backend: engine.backend,
    };
    // Details first; the held-out figures and the counts are the LAST line (scripts read it with `tail -1`).
    const summary = {
      ...figures(e),
      counts: {
        trainGood: c.trainGood,
        bankImages: c.bankImages,
        validationImages: c.validationImages,
        trainDefects: c.trainDefects,
        maskedDefects: c.maskedDefects,
        unusedDefects: c.unusedDefects,
        heldOutGood: c.heldOutGood,
        heldOutDefects: c.heldOutDefects,
        falseAlarms: e?.falseAlarms ?? null,
        missed: e?.missed ?? null,
      },
    };
    await write(ctx.stdout, `${JSON.stringify(record)}\n${JSON.stringify(summary)}\n`);
  } else {
    const lines = [
      `trained a hybrid model on ${category} (${t.layout}): ${c.trainGood} good images (${c.bankImages} in the memory bank, ${c.validationImages} kept out for the fusion), ` +
        `${c.trainDefects} labelled defect${c.trainDefects === 1 ? '' : 's'} (${c.maskedDefects} with masks)${o.shots !== undefined ? `, at most ${o.shots} per type` : ''}`,
      h.describe(),
    ];
    if (e) {
      const oc = t.heldOutOneClass;
      lines.push(
        '',
        `held out (${Math.round((o.split ?? 0) * 100)}% of test/good and of each defect type${t.split.groupAware ? ', group-aware' : ''}, seed ${o.seed}): ${c.heldOutGood} good, ${c.heldOutDefects} defective`,
        `  hybrid       image AUROC ${fixed(e.imageAuroc)}   pixel AUROC ${fixed(e.pixelAuroc)}   F1-max ${fixed(e.f1Max)}   balanced accuracy at threshold ${fixed(e.balancedAccuracy)}`,
        ...(oc && oc !== e ? [`  memory bank  image AUROC ${fixed(oc.imageAuroc)}   pixel AUROC ${fixed(oc.pixelAuroc)}   F1-max ${fixed(oc.f1Max)}   balanced accuracy at threshold ${fixed(oc.balancedAccuracy)}`] : []),
        `  at the threshold: ${e.defective - e.missed}/${e.defective} defective flagged, ${e.falseAlarms}/${e.good} good flagged` +
          (e.defectTypeAccuracy ? `; defect type right for ${(100 * e.defectTypeAccuracy.accuracy).toFixed(1)}% of ${e.defectTypeAccuracy.images}` : ''),
      );
      if (e.seenInTraining > 0) lines.push(`  warning: ${e.seenInTraining} held-out images have the content of training images`);
    }
    lines.push(
      '',
      `time: ${formatSeconds(t.timings.totalS * 1000)} (bank ${formatSeconds(t.timings.bankS * 1000)}, head ${formatSeconds(t.timings.headS * 1000)}, held-out ${formatSeconds(t.timings.evaluateS * 1000)}) on ${engine.backend}, ${engine.device}`,
      `wrote ${o.out} (${(saved.bytes / 2 ** 20).toFixed(1)} MB)`,
      ...(reportHtml ? [`report: ${reportHtml}`] : []),
    );
    await write(ctx.stdout, `${lines.join('\n')}\n`);
  }
  for (const w of t.warnings) ctx.stderr.write(`loupe: warning: ${w}\n`);
  const note = modelExtensionNote(o.out);
  if (note) ctx.stderr.write(`loupe: note: ${note}\n`);
  return 0;
}
