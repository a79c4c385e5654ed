// Multiclass classification metrics: confusion matrix, per-class precision/recall/F1, accuracy, mean
// per-class accuracy (Omer & Abbas 2022, Table 2 = balanced accuracy), macro-F1, good-vs-defect accuracy.

import { LoupeError } from '../errors.js';

export interface ConfusionMatrix {
  /** Row/column order. Rows = true class, columns = predicted class. */
  readonly classes: readonly string[];
  /** counts[true][pred] */
  readonly counts: number[][];
  /** counts normalised per row (true class), in percent; rows with no samples are all 0. */
  readonly rowPercent: number[][];
  readonly total: number;
}

function classOrder(trueLabels: readonly string[], predLabels: readonly string[], classes?: readonly string[]): string[] {
  if (classes) {
    const known = new Set(classes);
    const extra = [...new Set([...trueLabels, ...predLabels])].filter((l) => !known.has(l));
    if (extra.length > 0) throw new LoupeError('INVALID_ARGUMENT', `labels not in the class list: ${extra.join(', ')}`);
    return [...classes];
  }
  return [...new Set([...trueLabels, ...predLabels])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkLengths(trueLabels: readonly unknown[], predLabels: readonly unknown[]): void {
  if (trueLabels.length !== predLabels.length) {
    throw new LoupeError('INVALID_ARGUMENT', `${trueLabels.length} true labels but ${predLabels.length} predictions`);
  }
}

export function confusionMatrix(trueLabels: readonly string[], predLabels: readonly string[], classes?: readonly string[]): ConfusionMatrix {
  checkLengths(trueLabels, predLabels);
  const order = classOrder(trueLabels, predLabels, classes);
  const idx = new Map(order.map((c, i) => [c, i]));
  const counts = order.map(() => order.map(() => 0));
  for (let i = 0; i < trueLabels.length; i++) {
    const row = counts[idx.get(trueLabels[i] as string) as number] as number[];
    const c = idx.get(predLabels[i] as string) as number;
    row[c] = (row[c] as number) + 1;
  }
  const rowPercent = counts.map((row) => {
    const s = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (s === 0 ? 0 : (100 * v) / s));
  });
  return { classes: order, counts, rowPercent, total: trueLabels.length };
}

export interface ClassMetrics {
  readonly label: string;
  /** True samples of this class. */
  readonly support: number;
  /** Samples predicted as this class. */
  readonly predicted: number;
  readonly truePositives: number;
  /** TP / predicted (0 when nothing was predicted as this class). */
  readonly precision: number;
  /** TP / support = per-class accuracy (0 when support is 0). */
  readonly recall: number;
  /** Harmonic mean of precision and recall (0 when both are 0). */
  readonly f1: number;
}

export interface BinaryCounts {
  /** Defect predicted as defect. */
  readonly tp: number;
  /** Good predicted as defect. */
  readonly fp: number;
  /** Good predicted as good. */
  readonly tn: number;
  /** Defect predicted as good. */
  readonly fn: number;
}

export interface GoodVsDefect extends BinaryCounts {
  readonly goodLabel: string;
  /** (tp + tn) / total: a wrong defect type still counts as correct. */
  readonly accuracy: number;
  /** Defects caught: tp / (tp + fn) (0 with no defects). */
  readonly defectRecall: number;
  /** Good parts passed: tn / (tn + fp) (0 with no good parts). */
  readonly goodRecall: number;
}

export interface ClassificationMetrics {
  readonly confusion: ConfusionMatrix;
  readonly perClass: readonly ClassMetrics[];
  /** Overall accuracy: correct / total. */
  readonly accuracy: number;
  /** Mean per-class accuracy (mean recall over classes with support > 0) = balanced accuracy. */
  readonly meanPerClassAccuracy: number;
  /** Same value as meanPerClassAccuracy, by its other name. */
  readonly balancedAccuracy: number;
  /** Mean F1 over classes with support > 0 or predictions > 0. */
  readonly macroF1: number;
  /** Present when `goodLabel` is one of the classes. */
  readonly goodVsDefect?: GoodVsDefect;
  readonly total: number;
  readonly correct: number;
}

export function goodVsDefect(trueLabels: readonly string[], predLabels: readonly string[], goodLabel = 'good'): GoodVsDefect {
  checkLengths(trueLabels, predLabels);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < trueLabels.length; i++) {
    const tGood = trueLabels[i] === goodLabel;
    const pGood = predLabels[i] === goodLabel;
    if (tGood && pGood) tn++;
    else if (tGood) fp++;
    else if (pGood) fn++;
    else tp++;
  }
  const total = trueLabels.length;
  return {
    goodLabel,
    tp,
    fp,
    tn,
    fn,
    accuracy: total === 0 ? 0 : (tp + tn) / total,
    defectRecall: tp + fn === 0 ? 0 : tp / (tp + fn),
    goodRecall: tn + fp === 0 ? 0 : tn / (tn + fp),
  };
}

export function classificationMetrics(
  trueLabels: readonly string[],
  predLabels: readonly string[],
  opts: { classes?: readonly string[]; goodLabel?: string } = {},
): ClassificationMetrics {
  const confusion = confusionMatrix(trueLabels, predLabels, opts.classes);
  const k = confusion.classes.length;
  const perClass: ClassMetrics[] = confusion.classes.map((label, i) => {
    const row = confusion.counts[i] as number[];
    const support = row.reduce((a, b) => a + b, 0);
    let predicted = 0;
    for (let r = 0; r < k; r++) predicted += (confusion.counts[r] as number[])[i] as number;
    const tp = row[i] as number;
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { label, support, predicted, truePositives: tp, precision, recall, f1 };
  });
  const total = confusion.total;
  const correct = perClass.reduce((s, c) => s + c.truePositives, 0);
  const present = perClass.filter((c) => c.support > 0);
  const meanPerClassAccuracy = present.length === 0 ? 0 : present.reduce((s, c) => s + c.recall, 0) / present.length;
  const f1Classes = perClass.filter((c) => c.support > 0 || c.predicted > 0);
  const macroF1 = f1Classes.length === 0 ? 0 : f1Classes.reduce((s, c) => s + c.f1, 0) / f1Classes.length;
  const goodLabel = opts.goodLabel ?? 'good';
  const result: ClassificationMetrics = {
    confusion,
    perClass,
    accuracy: total === 0 ? 0 : correct / total,
    meanPerClassAccuracy,
    balancedAccuracy: meanPerClassAccuracy,
    macroF1,
    total,
    correct,
    ...(confusion.classes.includes(goodLabel) ? { goodVsDefect: goodVsDefect(trueLabels, predLabels, goodLabel) } : {}),
  };
  return result;
}

/** The confusion matrix as aligned text (counts, and row % in parentheses). */
export function formatConfusionMatrix(cm: ConfusionMatrix): string {
  const head = ['true \\ pred', ...cm.classes];
  const rows = cm.classes.map((c, i) => [
    c,
    ...((cm.counts[i] as number[]).map((v, j) => `${v} (${((cm.rowPercent[i] as number[])[j] as number).toFixed(1)}%)`)),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [fmt(head), ...rows.map(fmt)].join('\n');
}
