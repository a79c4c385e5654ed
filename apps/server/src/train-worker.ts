// The training process (forked by training.ts): trains one model with @loupe/core on its own engine
// instance (trainOneClass / trainClassifier / trainHybrid) and writes it with core's saveModel, so a model trained here
// carries the same metadata as one trained by `loupe train` or the library (training image hashes, CNN
// weights hash, preprocessing, thresholds, good class; `category` = the model's name). Inspection in the
// server process never waits for it. Talks to the parent over IPC: it receives one TrainJob and sends
// progress (core's TrainingProgress stages, plus starting and saving), then 'done' or 'error', then exits.
// It writes the model into the training's private folder; the server publishes it. When the server goes
// away, the worker removes that folder and exits (it never outlives its server for long, nor publishes).
import { rmSync } from 'node:fs';

import { configureThreads, Engine, saveModel, trainClassifier, trainHybrid, trainOneClass, type LoupeModel, type Flip, type SvmLayer, type TrainingProgress } from '@loupe/core';

export interface TrainJob {
  kind: 'svm' | 'one-class' | 'hybrid';
  /** The model's name: recorded as its category. */
  name: string;
  /** maskPath: a hybrid model's defect mask, when the client sent one. */
  images: { path: string; label: string; name: string; maskPath?: string }[];
  /** Where to write the model: in `tempDir`; the server publishes it once the training is done. */
  outFile: string;
  /** The training's private folder (the images, the model): removed if the server goes away. */
  tempDir: string;
  weights?: string | undefined;
  backend: 'auto' | 'cpu' | 'cuda';
  threads: number;
  /** Unset fields: core's defaults. */
  svm: { layer: SvmLayer; lambda?: number | undefined; epochs?: number | undefined; seed: number };
  oneClass: { coresetRatio?: number | undefined; seed: number; validationFraction?: number | undefined; thresholdQuantile?: number | undefined };
  hybrid: { coresetRatio?: number | undefined; seed: number; validationFraction?: number | undefined; shots?: number | undefined; flips?: Flip[] | undefined };
}

export type WorkerMessage =
  | { type: 'progress'; stage: string; done: number; total: number; message?: string }
  | { type: 'done'; bytes: number }
  | { type: 'error'; code: string; message: string };

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });
}

const progress = (p: TrainingProgress): void => void send({ type: 'progress', stage: p.stage, done: p.done, total: p.total });

async function train(job: TrainJob): Promise<number> {
  configureThreads({ total: job.threads });
  await send({ type: 'progress', stage: 'starting', done: 0, total: 0, message: 'loading the CNN weights' });
  const engine = await Engine.open({ backend: job.backend, threads: job.threads, maxBatch: 8, ...(job.weights ? { weights: job.weights } : {}) });
  const extra = { trainedBy: 'loupe-server', images: job.images.length };
  let model: LoupeModel;
  let note = '';
  if (job.kind === 'svm') {
    const s = job.svm;
    const t = await trainClassifier({
      engine,
      data: job.images.map((i) => ({ path: i.path, label: i.label })),
      layer: s.layer,
      ...(s.lambda !== undefined ? { lambda: s.lambda } : {}),
      ...(s.epochs !== undefined ? { epochs: s.epochs } : {}),
      seed: s.seed,
      // Client images are not kept: no feature cache entries on the server's disk.
      cache: false,
      batchSize: 8,
      threads: job.threads,
      backend: job.backend,
      onProgress: progress,
      category: job.name,
      // Sample paths would name this process's temporary copies, deleted once it ends.
      recordSamples: false,
      extra,
    });
    model = t.model;
    note = `SVM on ${s.layer}: ${t.classes.length} classes (${t.classes.join(', ')}), good class '${t.model.goodClass}'`;
  } else if (job.kind === 'hybrid') {
    const h = job.hybrid;
    const t = await trainHybrid({
      engine,
      data: job.images.map((i) => ({ path: i.path, label: i.label, ...(i.maskPath ? { maskPath: i.maskPath } : {}) })),
      ...(h.coresetRatio !== undefined ? { coresetRatio: h.coresetRatio } : {}),
      ...(h.validationFraction !== undefined ? { validationFraction: h.validationFraction } : {}),
      ...(h.shots !== undefined ? { shots: h.shots } : {}),
      ...(h.flips !== undefined ? { head: { flips: h.flips } } : {}),
      seed: h.seed,
      category: job.name,
      batchSize: 8,
      threads: job.threads,
      backend: job.backend,
      onProgress: progress,
      extra,
    });
    model = t.model;
    note = [t.model.hybrid.describe(), ...t.warnings.map((w) => `warning: ${w}`)].join('; ');
  } else {
    const o = job.oneClass;
    const t = await trainOneClass({
      engine,
      good: job.images.map((i) => i.path),
      ...(o.coresetRatio !== undefined ? { coresetRatio: o.coresetRatio } : {}),
      ...(o.validationFraction !== undefined ? { validationFraction: o.validationFraction } : {}),
      ...(o.thresholdQuantile !== undefined ? { thresholdQuantile: o.thresholdQuantile } : {}),
      seed: o.seed,
      category: job.name,
      batchSize: 8,
      threads: job.threads,
      backend: job.backend,
      onProgress: progress,
      extra,
    });
    model = t.model;
    note = [t.model.patchcore.describe(), ...t.warnings.map((w) => `warning: ${w}`)].join('; ');
  }
  await send({ type: 'progress', stage: 'saving', done: 0, total: 1, message: note });
  const r = await saveModel(job.outFile, model);
  return r.bytes;
}

/** Core names images by their path: here, temporary copies; the client knows them by their names. */
function clientNames(message: string, job: TrainJob): string {
  let m = message;
  for (const i of job.images) if (m.includes(i.path)) m = m.split(i.path).join(i.name);
  return m;
}

// The server is gone (its end of the IPC channel closed: it exited, or was killed with -9): stop now, and
// take the private folder with the images along. Nothing is published: that is the server's step.
let tempDir: string | undefined;
process.on('disconnect', () => {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  process.exit(1);
});

process.once('message', (job: TrainJob) => {
  tempDir = job.tempDir;
  train(job).then(
    async (bytes) => {
      await send({ type: 'done', bytes });
      process.exit(0);
    },
    async (err: unknown) => {
      const code = String((err as { code?: unknown } | null)?.code ?? 'INTERNAL');
      await send({ type: 'error', code, message: clientNames(err instanceof Error ? err.message : String(err), job) });
      process.exit(1);
    },
  );
});
