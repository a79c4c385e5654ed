// ONE thread budget per process. Three pools compete for the cores:
//   1. the engine's compute threads (OpenMP/oneDNN) - where ~all the time goes (~100+ ms/image on CPU);
//   2. libvips threads inside each sharp operation (sharp.concurrency) - decode + resize, ~ms/image;
//   3. the libuv threadpool (UV_THREADPOOL_SIZE, default 4) - it only *hosts* blocking jobs: one per
//      in-flight sharp operation, file read, and native session run (the addon's AsyncWorker). Its
//      threads mostly wait on the work above, so its size caps concurrency rather than using cores.
//
// Policy: the engine gets every core; decoding runs ONE image at a time with ONE libvips thread,
// overlapped with inference of the previous batch. Per image, decoding a 256x256 PNG to 224x224
// costs 4-9 ms of CPU and ResNet-50 inference 70-90 ms of CPU (bench/threads.mjs, 2-core box), so
// decoding the next batch takes well under a tenth of this batch's inference: one thread hides it
// behind the engine at the price of one briefly shared core. Giving decoding N libvips threads x
// several images at once buys nothing (it is already hidden) and, while it runs, puts 2-5x more
// runnable threads than cores next to the engine's OpenMP team, whose barriers stall whenever one
// member is descheduled (the "thread fight"; re-measure with bench/threads.mjs on idle machines).
//
// UV_THREADPOOL_SIZE must be set before the pool starts (the first fs/crypto/zlib/sharp call), so
// only the process entry point can set it: the CLI does `process.env.UV_THREADPOOL_SIZE ??=
// String(recommendedUvThreadpoolSize())` as its first statement. Libraries must not.
import { availableParallelism } from 'node:os';
import sharp from 'sharp';

import { LoupeError } from './errors.js';

export interface ThreadBudget {
  /** Cores this process may use. */
  readonly total: number;
  /** Compute threads for each engine session. */
  readonly engineThreads: number;
  /** libvips threads per sharp operation (sharp.concurrency). */
  readonly sharpThreads: number;
  /** Images decoded at the same time by the feature pipeline. */
  readonly decodeConcurrency: number;
}

export interface ThreadBudgetOptions {
  /** Cores to use; default $LOUPE_THREADS, else os.availableParallelism(). */
  total?: number;
  /** Images decoded concurrently; default 1 (see the policy above). */
  decodeConcurrency?: number;
  /** libvips threads per decode; default 1. */
  sharpThreads?: number;
  /** Engine threads; default `total`. */
  engineThreads?: number;
}

let current: ThreadBudget | undefined;

/** Most threads a budget may name (the native binding's limit). */
export const MAX_THREADS = 4096;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1 || v > MAX_THREADS) throw new LoupeError('INVALID_ARGUMENT', `${name} must be an integer in [1, ${MAX_THREADS}], got ${v}`);
  return v;
}

function defaultTotal(): number {
  const env = process.env['LOUPE_THREADS'];
  if (env === undefined || env.trim() === '') return availableParallelism();
  if (!/^\s*\d+\s*$/.test(env)) throw new LoupeError('INVALID_ARGUMENT', `LOUPE_THREADS must be an integer in [1, ${MAX_THREADS}], got '${env}'`);
  return positiveInt('LOUPE_THREADS', Number(env));
}

/**
 * Sets the process thread budget: applies sharp.concurrency and the libvips cache setting now, and
 * is read by Engine sessions opened afterwards. Call once at startup (the CLI does); calling again
 * changes later sessions only.
 */
export function configureThreads(options: ThreadBudgetOptions | number = {}): ThreadBudget {
  const o = typeof options === 'number' ? { total: options } : options;
  const total = positiveInt('threads', o.total ?? defaultTotal());
  const budget: ThreadBudget = {
    total,
    engineThreads: positiveInt('engineThreads', o.engineThreads ?? total),
    sharpThreads: positiveInt('sharpThreads', o.sharpThreads ?? 1),
    decodeConcurrency: positiveInt('decodeConcurrency', o.decodeConcurrency ?? 1),
  };
  sharp.concurrency(budget.sharpThreads);
  // Every image is decoded once: libvips' operation cache would only hold memory.
  sharp.cache(false);
  current = budget;
  return budget;
}

/** The budget in force (configured with defaults on first use). */
export function threadBudget(): ThreadBudget {
  return current ?? configureThreads();
}

/**
 * libuv pool size that never starves the pipeline: decodes + file reads + one run per session +
 * headroom for fs/zlib/crypto. The default of 4 suffices for one session; set it before the pool starts.
 */
export function recommendedUvThreadpoolSize(budget: ThreadBudget = threadBudget(), sessions = 1): number {
  return Math.max(4, budget.decodeConcurrency * 2 + sessions + 2);
}
