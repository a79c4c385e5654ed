// loupe dataset stats DIR: the layout detected, images per label, and every file skipped and why.
import { formatCountsTable, formatSkipReport, labelCounts, loadGroups } from '@loupe/core';

import { scanWithProgress } from '../classification.js';

import { write, type RunContext } from '../context.js';

export interface DatasetStatsOptions {
  json?: boolean;
  groups?: string;
  quick?: boolean;
}

export async function datasetStatsCommand(dir: string, o: DatasetStatsOptions, ctx: RunContext): Promise<number> {
  const ds = await scanWithProgress(dir, ctx, o.quick ? 'header' : 'decode');
  const groups = o.groups ? await loadGroups(o.groups, ds) : undefined;
  const counts = labelCounts(ds.items, ds.labels);
  const mvtecSplits = ds.layout === 'mvtec'
    ? { train: labelCounts(ds.items.filter((i) => i.mvtecSplit === 'train'), ds.labels), test: labelCounts(ds.items.filter((i) => i.mvtecSplit === 'test'), ds.labels) }
    : undefined;
  const groupCount = groups ? new Set(groups.values()).size : undefined;
  const byReason: Record<string, number> = {};
  for (const s of ds.skipped) byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;

  if (o.json) {
    await write(
      ctx.stdout,
      `${JSON.stringify({
        root: ds.root,
        layout: ds.layout,
        labels: [...ds.labels],
        counts: Object.fromEntries(counts.map((c) => [c.label, c.count])),
        total: ds.items.length,
        ...(mvtecSplits ? { mvtec: { train: Object.fromEntries(mvtecSplits.train.map((c) => [c.label, c.count])), test: Object.fromEntries(mvtecSplits.test.map((c) => [c.label, c.count])) } } : {}),
        ...(groupCount !== undefined ? { groups: groupCount } : {}),
        skipped: ds.skipped.map((s) => ({ file: s.relPath, reason: s.reason, ...(s.detail ? { detail: s.detail } : {}) })),
        skippedByReason: byReason,
      })}\n`,
    );
    return 0;
  }
  const lines = [
    `${ds.root}`,
    `layout: ${ds.layout === 'mvtec' ? 'MVTec category (train/good + test/<type>, pooled for classification)' : 'folder-per-label (<label>/ folders)'}`,
    `labels: ${ds.labels.length} (${ds.labels.join(', ')})`,
    ...(groupCount !== undefined ? [`groups: ${groupCount} (from ${o.groups})`] : []),
    '',
    formatCountsTable(mvtecSplits ? { 'train/': mvtecSplits.train, 'test/': mvtecSplits.test, images: counts } : { images: counts }),
    '',
    formatSkipReport(ds.skipped),
  ];
  const smallest = Math.min(...counts.map((c) => c.count));
  const largest = Math.max(...counts.map((c) => c.count));
  if (counts.length > 1 && largest > 2 * smallest) lines.push('', `note: imbalanced (${largest} vs ${smallest} images per label); consider \`loupe train --balance\` and read the balanced accuracy`);
  await write(ctx.stdout, `${lines.join('\n')}\n`);
  return 0;
}
