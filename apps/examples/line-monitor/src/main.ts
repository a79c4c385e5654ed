// `line-monitor MODEL DIR`: argument parsing, output and exit codes around monitorFolder (monitor.ts).
// Entry: bin/line-monitor.cjs, which calls run(argv) and exits with what it returns.
import { stat } from 'node:fs/promises';

import { configureThreads, isLoupeError, type InspectionOutcome } from '@loupe/core';

import { exitCodeOf, monitorFolder, type MonitorSummary } from './monitor.js';

export const USAGE = `usage: line-monitor MODEL DIR [--json] [--batch-size N] [--threads N]

Inspects every image under DIR (JPEG, PNG, WebP, TIFF, GIF; recursively) with the Loupe model MODEL
(a .loupe file from trainOneClass/trainClassifier, \`loupe train\` or the server) and prints one line per
image, then a summary.

  --json          one JSON object per line: {"file", "verdict", "score", "rawScore", "defectType"} or
                  {"file", "error": {"code", "message"}}, then {"total", "good", "anomalous", "unreadable"}
  --batch-size N  images per engine run (default 8)
  --threads N     cores to use (default $LOUPE_THREADS or all)

Exit status: 0 every image good, 1 some anomalous, 2 some unreadable (or the run could not start),
130 interrupted.`;

class UsageError extends Error {}

interface Args {
  model: string;
  dir: string;
  json: boolean;
  batchSize: number;
  threads: number | undefined;
}

function positiveInt(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} needs a positive integer, got '${value ?? ''}'`);
  return n;
}

function parseArgs(argv: readonly string[]): Args | 'help' {
  const positional: string[] = [];
  let json = false;
  let batchSize = 8;
  let threads: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return 'help';
    else if (a === '--json') json = true;
    else if (a === '--batch-size') batchSize = positiveInt(a, argv[++i]);
    else if (a === '--threads') threads = positiveInt(a, argv[++i]);
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
    else positional.push(a);
  }
  if (positional.length !== 2) throw new UsageError(`expected MODEL and DIR, got ${positional.length} argument${positional.length === 1 ? '' : 's'}`);
  return { model: positional[0]!, dir: positional[1]!, json, batchSize, threads };
}

function humanLine(o: InspectionOutcome): string {
  if (o.error) return `ERROR      ${o.name}: ${o.error.code} ${o.error.message}`;
  const r = o.result;
  return `${r.verdict === 'good' ? 'good     ' : 'ANOMALOUS'}  ${r.score.toFixed(3)}  ${o.name}${r.defectType ? `  (${r.defectType})` : ''}`;
}

function jsonLine(o: InspectionOutcome): string {
  if (o.error) return JSON.stringify({ file: o.name, error: { code: o.error.code, message: o.error.message } });
  const r = o.result;
  return JSON.stringify({ file: o.name, verdict: r.verdict, score: r.score, rawScore: r.rawScore, defectType: r.defectType });
}

function summaryLine(s: MonitorSummary): string {
  return `${s.total} image${s.total === 1 ? '' : 's'}: ${s.good} good, ${s.anomalous} anomalous, ${s.unreadable} unreadable (${s.seconds.toFixed(1)} s)`;
}

/** Runs the app; returns the exit status. */
export async function run(argv: readonly string[]): Promise<number> {
  let args: Args | 'help';
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`line-monitor: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { model, dir, json } = args;
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    // A typo in DIR is the operator's mistake, not an unreadable image: say so before loading anything.
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) {
      process.stderr.write(`line-monitor: ${dir}: no such folder\n`);
      return 2;
    }
    configureThreads(args.threads);
    const summary = await monitorFolder(model, dir, {
      batchSize: args.batchSize,
      signal: controller.signal,
      onReady: (info) => {
        if (!json) process.stdout.write(`model ${info.model}: ${info.description}\n${info.images} images under ${dir}, engine ${info.backend}\n`);
      },
      onImage: (o) => process.stdout.write(`${json ? jsonLine(o) : humanLine(o)}\n`),
    });
    if (summary.total === 0) {
      process.stderr.write(`line-monitor: no images under ${dir}\n`);
      return 2;
    }
    const { seconds: _, ...counts } = summary;
    process.stdout.write(`${json ? JSON.stringify(counts) : summaryLine(summary)}\n`);
    return exitCodeOf(summary);
  } catch (err) {
    if (isLoupeError(err) && err.code === 'ABORTED') {
      process.stderr.write('line-monitor: interrupted\n');
      return 130;
    }
    if (isLoupeError(err)) {
      process.stderr.write(`line-monitor: ${err.code}: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
