// The ONE output contract of `loupe predict` and `loupe --server ... inspect|predict`: whichever way an image
// was inspected (the local Inspector, or the server's stream), it becomes a PredictLine, and this module
// alone turns lines into JSON, human text, heatmap file names, the summary and the exit code.
//
// JSON, one line per image, in input order:
//   {"file", "verdict": "good"|"anomalous", "score", "rawScore", "defectType": string|null,
//    "classScores"?: {class: score}, "heatmap"?, "mask"?}
//   {"file", "error": {"code", "message"}}
// then a last line {"total", "good", "anomalous", "errors"}. score, rawScore and classScores are rounded to
// 4 decimal places (round4). Human: `<verdict padded>  <score 4dp>  <file>[  <defectType>]` per image, then
// a summary line. Exit: 0 all good, 1 some anomalous, 2 some not inspected.
import * as path from 'node:path';

import { escapeXml, writeFileAtomic } from '@loupe/core';

import { write } from './context.js';
import { EXIT_ANOMALOUS, EXIT_OK, EXIT_SOME_FAILED } from './errors.js';
import { printable } from './format.js';

/** --json of predict and inspect, for --help. */
export const PREDICT_JSON_HELP =
  'one JSON line per image, in input order: {"file", "verdict": "good"|"anomalous", "score", "rawScore", "defectType", "classScores"?, "heatmap"?, "mask"?} ' +
  'or {"file", "error": {"code", "message"}}; then {"total", "good", "anomalous", "errors"}';

/** The exit codes of predict and inspect, for --help (one rule, local and remote). */
export const EXIT_CODES_HELP = [
  'Exit status (local and --server alike):',
  '  0    every image was inspected and is good',
  '  1    some image is anomalous (or the command itself failed: a bad model file, a server error)',
  '  2    some image could not be inspected (or a usage error: a bad option, a path that does not exist)',
  '  130  interrupted (Ctrl-C)',
].join('\n');
export const EXIT_CODES_SHORT = 'exit 0 all good, 1 some anomalous, 2 some not inspected, 130 interrupted';

export interface InspectedLine {
  readonly file: string;
  readonly verdict: 'good' | 'anomalous';
  readonly score: number;
  readonly rawScore: number;
  readonly defectType: string | null;
  /** Classifiers: per-class scores in the model's class order. */
  readonly classScores?: readonly { readonly name: string; readonly score: number }[];
  /** Written heatmap overlay and mask PNGs (--heatmaps). */
  heatmap?: string;
  mask?: string;
  readonly error?: undefined;
}

export interface FailedLine {
  readonly file: string;
  /** LoupeError code (IMAGE_DECODE, ...) locally, ItemError.reason remotely; TOO_LARGE / UNREADABLE for files the client could not send. */
  readonly error: { readonly code: string; readonly message: string };
}

export type PredictLine = InspectedLine | FailedLine;

/** Every score the contract prints, rounded to 4 decimal places (no "-0"). */
export function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4 + 0;
}

/** The JSON of one line, keys in the contract's order. */
export function lineJson(l: PredictLine): string {
  if (l.error) return JSON.stringify({ file: l.file, error: { code: l.error.code, message: l.error.message } });
  return JSON.stringify({
    file: l.file,
    verdict: l.verdict,
    score: round4(l.score),
    rawScore: round4(l.rawScore),
    defectType: l.defectType,
    ...(l.classScores && l.classScores.length > 0 ? { classScores: Object.fromEntries(l.classScores.map((c) => [c.name, round4(c.score)])) } : {}),
    ...(l.heatmap !== undefined ? { heatmap: l.heatmap } : {}),
    ...(l.mask !== undefined ? { mask: l.mask } : {}),
  });
}

/** Width of the verdict column ('anomalous'). */
const VERDICT_WIDTH = 9;

/** The human line of one image: `<verdict>  <score>  <file>[  <defectType>]`; errors: `error  ------  <file>  <CODE>: <message>`. */
export function lineHuman(l: PredictLine): string {
  if (l.error) return `${'error'.padEnd(VERDICT_WIDTH)}  ${'-'.repeat(6)}  ${printable(l.file)}  ${l.error.code}: ${printable(l.error.message)}`;
  return `${l.verdict.padEnd(VERDICT_WIDTH)}  ${round4(l.score).toFixed(4)}  ${printable(l.file)}${l.defectType ? `  ${printable(l.defectType)}` : ''}`;
}

/** Counts of a run and the exit code they make. */
export class Tally {
  total = 0;
  good = 0;
  anomalous = 0;
  errors = 0;

  add(l: PredictLine): void {
    this.total++;
    if (l.error) this.errors++;
    else if (l.verdict === 'anomalous') this.anomalous++;
    else this.good++;
  }

  json(): string {
    return JSON.stringify({ total: this.total, good: this.good, anomalous: this.anomalous, errors: this.errors });
  }

  human(): string {
    const n = (k: number, one: string, many = `${one}s`): string => `${k} ${k === 1 ? one : many}`;
    return `${n(this.total, 'image')}: ${this.good} good, ${this.anomalous} anomalous, ${n(this.errors, 'error')} (score >= 0.5 = anomalous)`;
  }

  /** 2 when some image could not be inspected, else 1 when some is anomalous, else 0. */
  exitCode(): number {
    if (this.errors > 0) return EXIT_SOME_FAILED;
    return this.anomalous > 0 ? EXIT_ANOMALOUS : EXIT_OK;
  }
}

/**
 * Where the heatmaps of a run go: `<name>_heatmap.png` (and `_mask.png`) per image, `<name>` the image's
 * path below the folder it was found in, separators as '_' (MVTec repeats 000.png in every defect folder),
 * letters and digits of any script kept, made unique; and an index.html that shows them all.
 */
export class HeatmapFolder {
  private readonly used = new Set<string>();
  private readonly rows: InspectedLine[] = [];

  constructor(readonly dir: string) {}

  /** The overlay and mask paths of an image whose output name is `name`. */
  paths(name: string): { heatmap: string; mask: string } {
    const base = name.replace(/[^\p{L}\p{N}_.-]+/gu, '_') || 'image';
    let stem = base;
    for (let n = 2; this.used.has(stem); n++) stem = `${base}-${n}`;
    this.used.add(stem);
    return { heatmap: path.join(this.dir, `${stem}_heatmap.png`), mask: path.join(this.dir, `${stem}_mask.png`) };
  }

  /** Writes one PNG (atomically). */
  async writePng(file: string, png: Uint8Array): Promise<void> {
    await writeFileAtomic(file, png);
  }

  add(l: PredictLine): void {
    if (!l.error && l.heatmap !== undefined) this.rows.push(l);
  }

  get count(): number {
    return this.rows.length;
  }

  /** index.html beside the PNGs. */
  async writeIndex(model: string): Promise<string> {
    const h = escapeXml;
    const rel = (p: string): string => path.relative(this.dir, p).split(path.sep).map(encodeURIComponent).join('/');
    const masks = this.rows.some((p) => p.mask !== undefined);
    const rows = this.rows.map(
      (p) =>
        `<tr class="${p.verdict}"><td>${h(p.file)}</td><td>${h(p.verdict)}</td><td>${round4(p.score).toFixed(4)}</td><td>${round4(p.rawScore).toFixed(4)}</td><td>${h(p.defectType ?? '')}</td>` +
        `<td><a href="${rel(p.heatmap!)}"><img src="${rel(p.heatmap!)}" alt="heatmap"></a></td>` +
        (masks ? `<td>${p.mask !== undefined ? `<a href="${rel(p.mask)}"><img src="${rel(p.mask)}" alt="mask"></a>` : ''}</td>` : '') +
        '</tr>',
    );
    const html = [
      '<!DOCTYPE html>',
      '<html lang="en"><head><meta charset="utf-8"><title>Loupe heatmaps</title>',
      '<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}' +
        'img{max-width:192px;max-height:192px}tr.anomalous td:nth-child(2){color:#b00020;font-weight:600}</style></head><body>',
      `<h1>Heatmaps</h1><p>Model ${h(model)}. Score 0.5 = the model's threshold (anomalous at or above it). ` +
        `Heatmap colours are on a fixed scale (green-yellow = the pixel threshold); white outline${masks ? ' and mask' : ''} = pixels above the pixel threshold.</p>`,
      `<table><thead><tr><th>file</th><th>verdict</th><th>score</th><th>raw</th><th>defect type</th><th>heatmap</th>${masks ? '<th>mask</th>' : ''}</tr></thead><tbody>`,
      ...rows,
      '</tbody></table></body></html>',
    ].join('\n');
    const file = path.join(this.dir, 'index.html');
    await writeFileAtomic(file, html);
    return file;
  }
}

/** Prints the lines of a run (JSON or human), counts them, and ends with the summary; returns the exit code. */
export class PredictPrinter {
  readonly tally = new Tally();

  constructor(
    private readonly stdout: NodeJS.WritableStream,
    private readonly json: boolean,
    private readonly heatmaps?: HeatmapFolder,
    /** Called before each write (a progress bar clears itself). */
    private readonly beforeWrite: () => void = () => {},
  ) {}

  async emit(l: PredictLine): Promise<void> {
    this.tally.add(l);
    this.heatmaps?.add(l);
    this.beforeWrite();
    await write(this.stdout, `${this.json ? lineJson(l) : lineHuman(l)}\n`);
  }

  /** The summary line (and the heatmap index); the exit code of the run. */
  async finish(model: string): Promise<number> {
    let index: string | undefined;
    if (this.heatmaps) index = await this.heatmaps.writeIndex(model);
    this.beforeWrite();
    if (this.json) await write(this.stdout, `${this.tally.json()}\n`);
    else await write(this.stdout, `${this.tally.human()}${index ? `; heatmaps: ${index}` : ''}\n`);
    return this.tally.exitCode();
  }
}
