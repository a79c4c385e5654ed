// Label counts and a plain-text table of them.

import { compareStrings } from './util.js';

export interface LabelCount {
  readonly label: string;
  readonly count: number;
}

/**
 * Counts per label. Order: `labels` when given (labels with no items get 0), else sorted by label.
 */
export function labelCounts(items: readonly { label: string }[], labels?: readonly string[]): LabelCount[] {
  const counts = new Map<string, number>();
  for (const l of labels ?? []) counts.set(l, 0);
  for (const it of items) counts.set(it.label, (counts.get(it.label) ?? 0) + 1);
  const order = labels ? [...labels, ...[...counts.keys()].filter((l) => !labels.includes(l)).sort(compareStrings)] : [...counts.keys()].sort(compareStrings);
  return order.map((label) => ({ label, count: counts.get(label) ?? 0 }));
}

/** Named columns of counts (e.g. {train: [...], test: [...]}) as one aligned text table with totals. */
export function formatCountsTable(columns: Readonly<Record<string, readonly LabelCount[]>>): string {
  const names = Object.keys(columns);
  const labels: string[] = [];
  for (const n of names) for (const c of columns[n] ?? []) if (!labels.includes(c.label)) labels.push(c.label);
  const get = (n: string, l: string): number => columns[n]?.find((c) => c.label === l)?.count ?? 0;
  const header = ['label', ...names];
  const rows = labels.map((l) => [l, ...names.map((n) => String(get(n, l)))]);
  rows.push(['total', ...names.map((n) => String((columns[n] ?? []).reduce((s, c) => s + c.count, 0)))]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [fmt(header), sep, ...rows.slice(0, -1).map(fmt), sep, fmt(rows[rows.length - 1] ?? [])].join('\n');
}
