// The training process (forked by training.ts): trains one model with @loupe/core on its own engine
// instance and writes the model file, so inspection in the server process never waits for it. Talks to
// the parent over IPC: it receives one TrainJob and sends progress, then 'done' or 'error', then exits.
import {
  configureThreads,
  Engine,
  extractFeatures,
  fileContentHashes,
  loadAddon,
  nativeSvmTrainer,
  PatchCoreModel,
  savePatchCore,
  saveSvmModel,
  trainSvmClassifier,
  isTapName,
  type TapName,
} from '@loupe/core';

export interface TrainJob {
  kind: 'svm' | 'one-class';
  images: { path: string; label: string; name: string }[];
  outFile: string;
  weights?: string | undefined;
  backend: 'auto' | 'cpu' | 'cuda';
  threads: number;
  svm: { layer: string; lambda?: number | undefined; epochs?: number | undefined; seed: number };
  oneClass: { coresetRatio: number; seed: number; validationFraction: number; thresholdQuantile: number };
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

const GOOD_NAMES = /^(good|ok|normal|pass|no[_-]?defect)$/i;

async function train(job: TrainJob): Promise<number> {
  configureThreads({ total: job.threads });
  await send({ type: 'progress', stage: 'starting', done: 0, total: 0, message: 'loading the CNN weights' });
  const engine = await Engine.open({ backend: job.backend, threads: job.threads, maxBatch: 8, ...(job.weights ? { weights: job.weights } : {}) });
  const paths = job.images.map((i) => i.path);
  if (job.kind === 'svm') {
    const layer = job.svm.layer as TapName;
    if (!isTapName(layer)) throw Object.assign(new Error(`unknown layer '${job.svm.layer}'`), { code: 'INVALID_ARGUMENT' });
    const feats = await extractFeatures(
      job.images.map((i) => i.path),
      {
        engine,
        layer,
        batchSize: 8,
        onProgress: (p) => void send({ type: 'progress', stage: 'features', done: p.done, total: p.total }),
      },
    );
    const dim = feats[0]!.features[layer].length;
    const data = new Float32Array(feats.length * dim);
    feats.forEach((f, i) => data.set(f.features[layer], i * dim));
    await send({ type: 'progress', stage: 'svm', done: 0, total: 1 });
    const addon = await loadAddon();
    const model = await trainSvmClassifier({ data, rows: feats.length, cols: dim }, job.images.map((i) => i.label), {
      trainer: nativeSvmTrainer(addon),
      trainerName: 'native',
      layer,
      ...(job.svm.lambda !== undefined ? { lambda: job.svm.lambda } : {}),
      ...(job.svm.epochs !== undefined ? { epochs: job.svm.epochs } : {}),
      seed: job.svm.seed,
      threads: job.threads,
    });
    await send({ type: 'progress', stage: 'svm', done: 1, total: 1 });
    await send({ type: 'progress', stage: 'saving', done: 0, total: 1 });
    const goodClass = model.classes.find((c) => GOOD_NAMES.test(c));
    const r = await saveSvmModel(job.outFile, model, {
      weightsHash: engine.weightsHash,
      preprocessing: { mode: 'caffe', size: 224, fit: 'squash', filter: 'cubic' },
      extra: { trainedBy: 'loupe-server', images: job.images.length, ...(goodClass ? { goodClass } : {}) },
    });
    return r.bytes;
  }
  const model = await PatchCoreModel.train(engine, paths, {
    config: {
      coresetRatio: job.oneClass.coresetRatio,
      seed: job.oneClass.seed,
      validationFraction: job.oneClass.validationFraction,
      thresholdQuantile: job.oneClass.thresholdQuantile,
    },
    batchSize: 8,
    threads: job.threads,
    onProgress: (stage, done, total) => void send({ type: 'progress', stage, done, total }),
  });
  await send({ type: 'progress', stage: 'saving', done: 0, total: 1, message: model.describe() });
  // The training images by content, as loupe train records them (evaluate warns about seen images).
  const r = await savePatchCore(job.outFile, model, { trainHashes: await fileContentHashes(paths) });
  return r.bytes;
}

process.once('message', (job: TrainJob) => {
  train(job).then(
    async (bytes) => {
      await send({ type: 'done', bytes });
      process.exit(0);
    },
    async (err: unknown) => {
      const code = String((err as { code?: unknown } | null)?.code ?? 'INTERNAL');
      await send({ type: 'error', code, message: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    },
  );
});
