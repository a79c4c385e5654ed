// Charts as SVG (and PNG through sharp): confusion-matrix heatmap, ROC curve, score histogram.

import type { ConfusionMatrix } from '../metrics/classification.js';
import { mixColor, num, svgDocument, svgText, svgToPng } from './svg.js';

const WHITE: [number, number, number] = [255, 255, 255];
const BLUE: [number, number, number] = [8, 69, 148];

export interface ConfusionChartOptions {
  title?: string;
  /** Cell size in px. Default 72. */
  cell?: number;
}

/**
 * Heatmap of the row-normalised confusion matrix (colour = % of the true class), each cell labelled
 * with its count and row %, with per-class recall on the right (like MATLAB's confusionchart).
 */
export function confusionMatrixSvg(cm: ConfusionMatrix, opts: ConfusionChartOptions = {}): string {
  const k = cm.classes.length;
  const cell = opts.cell ?? 72;
  const longest = Math.max(...cm.classes.map((c) => c.length), 4);
  const left = Math.min(220, 28 + longest * 7.5);
  const top = (opts.title ? 40 : 12) + Math.min(160, longest * 6.5 + 20);
  const right = 84;
  const width = left + k * cell + right;
  const height = top + k * cell + 44;
  const parts: string[] = [];
  if (opts.title) parts.push(svgText(width / 2, 26, opts.title, { size: 16, anchor: 'middle', weight: 'bold' }));
  for (let i = 0; i < k; i++) {
    const row = cm.counts[i] as number[];
    const pct = cm.rowPercent[i] as number[];
    for (let j = 0; j < k; j++) {
      const x = left + j * cell;
      const y = top + i * cell;
      const p = (pct[j] as number) / 100;
      const fill = row.reduce((a, b) => a + b, 0) === 0 ? '#f4f4f4' : mixColor(WHITE, BLUE, p);
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${fill}" stroke="#bbbbbb" stroke-width="1"/>`);
      const ink = p > 0.55 ? '#ffffff' : '#222222';
      parts.push(svgText(x + cell / 2, y + cell / 2 - 2, String(row[j]), { size: Math.round(cell / 4.5), anchor: 'middle', fill: ink, weight: i === j ? 'bold' : 'normal' }));
      parts.push(svgText(x + cell / 2, y + cell / 2 + cell / 5, `${(pct[j] as number).toFixed(1)}%`, { size: Math.round(cell / 7), anchor: 'middle', fill: ink }));
    }
    const support = row.reduce((a, b) => a + b, 0);
    const recall = support === 0 ? '-' : `${((100 * (row[i] as number)) / support).toFixed(1)}%`;
    parts.push(svgText(left + k * cell + 10, top + i * cell + cell / 2 + 5, recall, { size: 13 }));
    parts.push(svgText(left - 8, top + i * cell + cell / 2 + 5, cm.classes[i] as string, { size: 13, anchor: 'end' }));
    const cx = left + i * cell + cell / 2;
    parts.push(svgText(cx + 4, top - 8, cm.classes[i] as string, { size: 13, anchor: 'start', rotate: -45 }));
  }
  parts.push(svgText(left + k * cell + 10, top - 8, 'recall', { size: 12, fill: '#555' }));
  parts.push(svgText(left + (k * cell) / 2, top + k * cell + 30, 'predicted class', { size: 13, anchor: 'middle', fill: '#555' }));
  parts.push(svgText(14, top + (k * cell) / 2, 'true class', { size: 13, anchor: 'middle', fill: '#555', rotate: -90 }));
  return svgDocument(Math.ceil(width), Math.ceil(height), parts.join(''));
}

export function confusionMatrixPng(cm: ConfusionMatrix, opts: ConfusionChartOptions = {}): Promise<Buffer> {
  return svgToPng(confusionMatrixSvg(cm, opts));
}

export interface CurveSeries {
  readonly label: string;
  readonly x: readonly number[];
  readonly y: readonly number[];
  readonly color?: string;
}

export interface LineChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** Draw the y = x diagonal (chance line of a ROC curve). */
  diagonal?: boolean;
  xMax?: number;
  yMax?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

/** A simple line chart over [0, xMax] x [0, yMax] (ROC, PRO curves). */
export function lineChartSvg(series: readonly CurveSeries[], opts: LineChartOptions = {}): string {
  const width = opts.width ?? 480;
  const height = opts.height ?? 420;
  const m = { l: 60, r: 20, t: opts.title ? 40 : 16, b: 52 };
  const pw = width - m.l - m.r;
  const ph = height - m.t - m.b;
  const xMax = opts.xMax ?? 1;
  const yMax = opts.yMax ?? 1;
  const sx = (v: number): number => m.l + (Math.min(v, xMax) / xMax) * pw;
  const sy = (v: number): number => m.t + ph - (Math.min(v, yMax) / yMax) * ph;
  const parts: string[] = [];
  if (opts.title) parts.push(svgText(width / 2, 26, opts.title, { size: 15, anchor: 'middle', weight: 'bold' }));
  for (let i = 0; i <= 5; i++) {
    const fx = (i / 5) * xMax;
    const fy = (i / 5) * yMax;
    parts.push(`<line x1="${num(sx(fx))}" y1="${m.t}" x2="${num(sx(fx))}" y2="${m.t + ph}" stroke="#eeeeee"/>`);
    parts.push(`<line x1="${m.l}" y1="${num(sy(fy))}" x2="${m.l + pw}" y2="${num(sy(fy))}" stroke="#eeeeee"/>`);
    parts.push(svgText(sx(fx), m.t + ph + 18, num(fx), { size: 11, anchor: 'middle', fill: '#555' }));
    parts.push(svgText(m.l - 8, sy(fy) + 4, num(fy), { size: 11, anchor: 'end', fill: '#555' }));
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#888888"/>`);
  if (opts.diagonal) parts.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${num(sx(Math.min(xMax, yMax)))}" y2="${num(sy(Math.min(xMax, yMax)))}" stroke="#aaaaaa" stroke-dasharray="4 4"/>`);
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts: string[] = [];
    for (let p = 0; p < s.x.length; p++) pts.push(`${num(sx(s.x[p] as number))},${num(sy(s.y[p] as number))}`);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    const ly = m.t + ph - 12 - (series.length - 1 - i) * 18;
    parts.push(`<line x1="${m.l + pw - 190}" y1="${ly - 4}" x2="${m.l + pw - 170}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    parts.push(svgText(m.l + pw - 164, ly, s.label, { size: 12 }));
  });
  if (opts.xLabel) parts.push(svgText(m.l + pw / 2, height - 12, opts.xLabel, { size: 13, anchor: 'middle' }));
  if (opts.yLabel) parts.push(svgText(16, m.t + ph / 2, opts.yLabel, { size: 13, anchor: 'middle', rotate: -90 }));
  return svgDocument(width, height, parts.join(''));
}

/** ROC curve(s) with the chance diagonal. Labels typically carry the AUROC, e.g. "bottle (AUROC 0.981)". */
export function rocCurveSvg(series: readonly CurveSeries[], opts: Omit<LineChartOptions, 'diagonal'> = {}): string {
  return lineChartSvg(series, { title: 'ROC curve', xLabel: 'false positive rate', yLabel: 'true positive rate', ...opts, diagonal: true });
}

export function rocCurvePng(series: readonly CurveSeries[], opts: Omit<LineChartOptions, 'diagonal'> = {}): Promise<Buffer> {
  return svgToPng(rocCurveSvg(series, opts));
}

export interface HistogramOptions {
  title?: string;
  bins?: number;
  width?: number;
  height?: number;
  /** Decision threshold to mark with a vertical line. */
  threshold?: number;
  xLabel?: string;
}

/** Overlaid histograms of anomaly scores of normal and anomalous samples (optionally a threshold line). */
export function scoreHistogramSvg(groups: { normal: readonly number[]; anomalous: readonly number[] }, opts: HistogramOptions = {}): string {
  const width = opts.width ?? 560;
  const height = opts.height ?? 360;
  const bins = opts.bins ?? 30;
  const m = { l: 56, r: 20, t: opts.title ? 62 : 34, b: 50 };
  const pw = width - m.l - m.r;
  const ph = height - m.t - m.b;
  const all = [...groups.normal, ...groups.anomalous, ...(opts.threshold !== undefined ? [opts.threshold] : [])];
  let lo = all.length ? Math.min(...all) : 0;
  let hi = all.length ? Math.max(...all) : 1;
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  }
  const count = (xs: readonly number[]): number[] => {
    const c = new Array<number>(bins).fill(0);
    for (const v of xs) c[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]! += 1;
    return c;
  };
  const cn = count(groups.normal);
  const ca = count(groups.anomalous);
  const yMax = Math.max(1, ...cn, ...ca);
  const bw = pw / bins;
  const parts: string[] = [];
  if (opts.title) parts.push(svgText(width / 2, 26, opts.title, { size: 15, anchor: 'middle', weight: 'bold' }));
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#888888"/>`);
  const bars = (c: number[], color: string): void => {
    c.forEach((v, i) => {
      if (v === 0) return;
      const h = (v / yMax) * ph;
      parts.push(`<rect x="${num(m.l + i * bw)}" y="${num(m.t + ph - h)}" width="${num(bw)}" height="${num(h)}" fill="${color}" fill-opacity="0.55" stroke="${color}" stroke-width="0.5"/>`);
    });
  };
  bars(cn, '#1f77b4');
  bars(ca, '#d62728');
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    parts.push(svgText(m.l + (pw * i) / 4, m.t + ph + 18, Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3), { size: 11, anchor: 'middle', fill: '#555' }));
    parts.push(svgText(m.l - 8, m.t + ph - (ph * i) / 4 + 4, String(Math.round((yMax * i) / 4)), { size: 11, anchor: 'end', fill: '#555' }));
  }
  if (opts.threshold !== undefined) {
    const x = m.l + ((opts.threshold - lo) / (hi - lo)) * pw;
    parts.push(`<line x1="${num(x)}" y1="${m.t}" x2="${num(x)}" y2="${m.t + ph}" stroke="#333333" stroke-dasharray="5 3" stroke-width="1.5"/>`);
    parts.push(svgText(x + 4, m.t + 14, `threshold ${opts.threshold.toPrecision(3)}`, { size: 11 }));
  }
  // Legend above the plot, so it never hides bars or the threshold label.
  const ly = m.t - 22;
  parts.push(`<rect x="${m.l}" y="${ly}" width="12" height="12" fill="#1f77b4" fill-opacity="0.55"/>`);
  parts.push(svgText(m.l + 18, ly + 10, `normal (${groups.normal.length})`, { size: 12 }));
  parts.push(`<rect x="${m.l + 150}" y="${ly}" width="12" height="12" fill="#d62728" fill-opacity="0.55"/>`);
  parts.push(svgText(m.l + 168, ly + 10, `anomalous (${groups.anomalous.length})`, { size: 12 }));
  parts.push(svgText(m.l + pw / 2, height - 12, opts.xLabel ?? 'anomaly score', { size: 13, anchor: 'middle' }));
  parts.push(svgText(16, m.t + ph / 2, 'images', { size: 13, anchor: 'middle', rotate: -90 }));
  return svgDocument(width, height, parts.join(''));
}

export function scoreHistogramPng(groups: { normal: readonly number[]; anomalous: readonly number[] }, opts: HistogramOptions = {}): Promise<Buffer> {
  return svgToPng(scoreHistogramSvg(groups, opts));
}

