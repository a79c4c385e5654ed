// What the train/evaluate/calibrate/demo commands share around @loupe/core's training and evaluation:
// progress bars for core's stages, the feature-cache setting, and the human tables of a classification.
// No rule lives here: the protocols, metrics and model files are core's.
import { resolve } from 'node:path';

import { formatConfusionMatrix, GOOD_LABEL, scanDataset, type ClassificationMetrics, type Dataset, type TrainingProgress, type VerifyLevel } from '@loupe/core';

import type { RunContext } from './context.js';
import { ProgressBar } from './progress.js';

/** A progress bar is drawn only on a terminal, when asked for, and for more than one item. */
export function progressEnabled(ctx: RunContext, total: number): boolean {
  return ctx.opts.progress && total > 1 && Boolean(ctx.stderr.isTTY);
}

/** What each of core's training stages is called on the bar. */
const STAGE_LABELS: Record<TrainingProgress['stage'], string> = {
  scan: 'scanning',
  features: 'features',
  coreset: 'coreset',
  thresholds: 'thresholds',
  svm: 'svm',
  head: 'head',
  evaluate: 'held-out',
};

/** Progress bars for core's onProgress (a new bar whenever the stage changes); clear() before printing. */
export function stageProgress(ctx: RunContext, labels: Partial<Record<string, string>> = {}): { onProgress: (p: TrainingProgress) => void; clear: () => void } {
  let bar: ProgressBar | undefined;
  let current = '';
  return {
    onProgress: (p) => {
      if (p.stage !== current) {
        bar?.clear();
        current = p.stage;
        bar = p.total > 1 ? new ProgressBar(labels[p.stage] ?? STAGE_LABELS[p.stage] ?? p.stage, p.total, ctx.stderr, progressEnabled(ctx, p.total), p.stage === 'coreset' ? 'rows' : 'img') : undefined;
      }
      bar?.update(p.done, p.done === p.total);
    },
    clear: () => bar?.clear(),
  };
}

/**
 * Scans a dataset (MVTec category or folder-per-label, auto-detected) with a progress bar. Default 'decode':
 * every image is decoded as the CNN will see it, so train, evaluate and `dataset stats` skip (and report)
 * the same files, a truncated one included, rather than failing minutes into a run.
 */
export async function scanWithProgress(dir: string, ctx: RunContext, verify: VerifyLevel = 'decode'): Promise<Dataset> {
  let bar: ProgressBar | undefined;
  try {
    return await scanDataset(dir, {
      verify,
      onProgress: (done, total) => {
        bar ??= new ProgressBar('scanning', total, ctx.stderr, progressEnabled(ctx, total));
        bar.update(done);
      },
    });
  } finally {
    bar?.clear();
  }
}

/** Where the feature cache lives: $LOUPE_FEATURE_CACHE ('off' disables it), else core's default ($LOUPE_HOME/features). */
export function featureCacheSetting(noCache: boolean | undefined): string | false | undefined {
  if (noCache) return false;
  const env = process.env['LOUPE_FEATURE_CACHE'];
  if (env === undefined || env.trim() === '') return undefined;
  return env.trim().toLowerCase() === 'off' ? false : resolve(env);
}

/** The `cache` option of core's training/evaluation for `--no-cache` (false) and $LOUPE_FEATURE_CACHE. */
export function cacheOption(cache: boolean): { cache?: string | false } {
  const c = featureCacheSetting(!cache);
  return c === undefined ? {} : { cache: c };
}

/** A warning line for feature cache entries that could not be written (the features were still computed). */
export function cacheWriteWarning(ctx: RunContext, failures: number): void {
  if (failures > 0) ctx.stderr.write(`loupe: warning: ${failures} feature cache entr${failures === 1 ? 'y' : 'ies'} could not be written (features were still computed)\n`);
}

const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;

/**
 * Human summary of an evaluation: confusion matrix (counts + row %), per-class P/R/F1, headline numbers.
 * `evaluated`: what the images are called in notes ('held-back' after train, 'evaluated' in evaluate).
 */
export function formatMetrics(m: ClassificationMetrics, evaluated = 'held-back', goodLabel = GOOD_LABEL): string {
  const lines: string[] = [];
  lines.push('Confusion matrix (rows: true class, columns: predicted; counts and row %):');
  lines.push(...formatConfusionMatrix(m.confusion).split('\n').map((l) => `  ${l}`));
  lines.push('');
  const head = ['class', 'support', 'precision', 'recall', 'F1'];
  // A class with no held-back images has no recall (and no precision without predictions): n/a, not 0%.
  const rows = m.perClass.map((c) => [c.label, String(c.support), c.predicted > 0 ? pct(c.precision) : 'n/a', c.support > 0 ? pct(c.recall) : 'n/a', c.support > 0 || c.predicted > 0 ? pct(c.f1) : 'n/a']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')}`;
  lines.push(fmt(head), ...rows.map(fmt), '');
  lines.push(`accuracy            ${pct(m.accuracy)}  (${m.correct}/${m.total})`);
  lines.push(`balanced accuracy   ${pct(m.balancedAccuracy)}  (mean per-class accuracy)`);
  lines.push(`macro F1            ${pct(m.macroF1)}`);
  if (m.goodVsDefect) {
    const g = m.perClass.find((c) => c.label === goodLabel)?.support ?? 0;
    const d = m.total - g;
    lines.push(`good vs defect      ${pct(m.goodVsDefect.accuracy)}  (defects caught ${d > 0 ? pct(m.goodVsDefect.defectRecall) : 'n/a'}, good passed ${g > 0 ? pct(m.goodVsDefect.goodRecall) : 'n/a'})`);
  }
  const absent = m.perClass.filter((c) => c.support === 0).map((c) => c.label);
  if (absent.length > 0) lines.push(`note: no ${evaluated} images of ${absent.join(', ')}: those figures are not measured (balanced accuracy leaves them out)`);
  return lines.join('\n');
}
