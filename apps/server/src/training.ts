// Training runs in a child process (train-worker.js): its engine, decoding and SVM/coreset math never
// block the server's event loop or its inference engine, and a training crash cannot take the server
// down. The training images are written to a private temporary folder for the child; the model is
// written under the version reserved for it, then (optionally) loaded without a restart.
import { fork, type ChildProcess } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { status as Status } from '@grpc/grpc-js';
import { checkClassifierOptions, checkHybridHeadOptions, checkOneClassOptions, findGoodClass, type Flip, SVM_LAYERS, writeFileAtomic, type SvmLayer } from '@loupe/core';

import { ModelKind, type TrainRequest } from '@loupe/client/gen/loupe/v1/inspection';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { clip, FIELD_LIMITS, fieldTooLong } from './limits.js';
import { ItemFailure } from './pipeline.js';
import type { ModelEntry, ModelRegistry } from './registry.js';
import type { TrainJob, WorkerMessage } from './train-worker.js';

export interface TrainProgressEvent {
  stage: string;
  done: number;
  total: number;
  elapsedS: number;
  message: string;
}

export interface TrainerOptions {
  maxConcurrent: number;
  threads: number;
  maxImages: number;
  weights: string | undefined;
  backend: 'auto' | 'cpu' | 'cuda';
}

function workerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const js = join(here, 'train-worker.js');
  // Under a TypeScript test runner this module is the .ts source: use the built worker.
  return existsSync(js) ? js : join(here, '..', 'dist', 'train-worker.js');
}

const SAFE_NAME = /[^A-Za-z0-9._-]+/g;

/** Private folders of trainings (the images sent, the model being written): loupe-train-<server pid>-XXXXXX. */
export const TRAIN_TEMP_PREFIX = 'loupe-train-';

/**
 * Makes a model's folder (one level: the models folder exists) unless it is there, and checks that the
 * server can write in it. Returns the folder when this call made it. A recursive mkdir is not used: on a
 * read-only file system it reports ENOENT, which is how Train used to answer INTERNAL "ENOENT mkdir".
 */
async function modelFolder(folder: string): Promise<string | undefined> {
  let made: string | undefined;
  try {
    await mkdir(folder);
    made = folder;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!(await stat(folder)).isDirectory()) throw Object.assign(new Error(`${folder} is a file`), { code: 'ENOTDIR' });
  }
  await access(folder, constants.W_OK);
  return made;
}

/** What is wrong with writing into the models folder, in words for the client (no server paths). */
function folderProblem(err: unknown, name: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EROFS') return "the server's models folder is on a read-only file system";
  if (code === 'EACCES' || code === 'EPERM') return `the server's models folder is not writable by the server (${code})`;
  if (code === 'ENOENT') return "the server's models folder no longer exists";
  if (code === 'ENOSPC') return "no space is left on the disk of the server's models folder";
  if (code === 'EEXIST' || code === 'ENOTDIR') return `a file named '${name}' stands where the model's folder should be in the models folder`;
  return `${code ?? 'error'} writing to the server's models folder`;
}

/**
 * Removes the private folders of trainings whose server is gone (killed with -9 while training: nothing
 * ran its cleanup). A folder of a live process is left alone. Returns how many were removed.
 */
export async function sweepTrainingLeftovers(log: Logger, root = tmpdir()): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const m = new RegExp(`^${TRAIN_TEMP_PREFIX}(\\d+)-`).exec(entry);
    if (!m || alive(Number(m[1]))) continue;
    try {
      await rm(join(root, entry), { recursive: true, force: true });
      removed++;
    } catch (err) {
      log.warn('cannot remove a stale training folder', { folder: join(root, entry), error: err });
    }
  }
  if (removed > 0) log.info('removed the temporary folders of trainings whose server is gone', { folders: removed, in: root });
  return removed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The request's options as core's: 0 = unset (proto3), so @loupe/core's defaults apply (lambda by
 * cross-validation, SVM_DEFAULTS.epochs, DEFAULT_PATCHCORE_CONFIG's coreset, hold-out and quantile). Any
 * other value goes to core as sent (NaN and infinities included, for core's rules to refuse).
 */
function coreOptions(req: TrainRequest): Pick<TrainJob, 'svm' | 'oneClass' | 'hybrid'> {
  const s = req.svm;
  const o = req.oneClass;
  const h = req.hybrid;
  const set = (v: number | undefined): number | undefined => (v === undefined || v === 0 ? undefined : v);
  return {
    svm: { layer: (s?.layer || 'fc1000') as SvmLayer, lambda: set(s?.lambda), epochs: set(s?.epochs), seed: s?.seed ?? 0 },
    oneClass: { coresetRatio: set(o?.coresetRatio), seed: o?.seed ?? 0, validationFraction: set(o?.validationFraction), thresholdQuantile: set(o?.thresholdQuantile) },
    hybrid: {
      coresetRatio: set(h?.coresetRatio),
      seed: h?.seed ?? 0,
      validationFraction: set(h?.validationFraction),
      shots: set(h?.shots),
      // no_flips: none; an empty list: core's default. Names are core's to check.
      flips: h?.noFlips ? [] : h?.flips.length ? (h.flips as Flip[]) : undefined,
    },
  };
}

type KindName = 'svm' | 'one-class' | 'hybrid';

export class Trainer {
  private readonly children = new Set<ChildProcess>();
  private running = 0;
  private shuttingDown = false;
  /** Trainings in progress per model name, and their kind. */
  private readonly byName = new Map<string, { kind: KindName; count: number }>();

  constructor(
    private readonly opts: TrainerOptions,
    private readonly registry: ModelRegistry,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  get active(): number {
    return this.running;
  }

  /** Validates the request; throws ItemFailure(INVALID_ARGUMENT) naming the problem. */
  private validate(req: TrainRequest): KindName {
    const bad = (m: string): never => {
      throw new ItemFailure(Status.INVALID_ARGUMENT, m);
    };
    if (!req.name) bad('name the model to train');
    const kinds: Partial<Record<ModelKind, KindName>> = { [ModelKind.MODEL_KIND_SVM]: 'svm', [ModelKind.MODEL_KIND_ONE_CLASS]: 'one-class', [ModelKind.MODEL_KIND_HYBRID]: 'hybrid' };
    const kind = kinds[req.kind] ?? bad('kind must be MODEL_KIND_SVM, MODEL_KIND_ONE_CLASS or MODEL_KIND_HYBRID');
    if (req.images.length === 0) bad('no training images');
    if (req.images.length > this.opts.maxImages) bad(`${req.images.length} training images; this server takes at most ${this.opts.maxImages} per request`);
    req.images.forEach((im, i) => {
      const long = fieldTooLong(`images[${i}].name`, im.name, FIELD_LIMITS.trainImageName) ?? fieldTooLong(`images[${i}].label`, im.label, FIELD_LIMITS.label);
      if (long) bad(long);
      if (im.image.length === 0) bad(`training image ${im.name || i} is empty`);
    });
    if (kind === 'svm') {
      const unlabelled = req.images.findIndex((im) => !im.label);
      if (unlabelled >= 0) bad(`SVM training image ${req.images[unlabelled]!.name || unlabelled} has no label`);
      if (new Set(req.images.map((im) => im.label)).size < 2) bad('an SVM needs images of at least 2 classes');
      const layer = req.svm?.layer;
      if (layer && !(SVM_LAYERS as readonly string[]).includes(layer)) bad(`svm.layer '${clip(layer)}' is not a layer an SVM can use (${SVM_LAYERS.join(' or ')})`);
    }
    if (kind === 'hybrid') {
      const unlabelled = req.images.findIndex((im) => !im.label);
      if (unlabelled >= 0) bad(`hybrid training image ${req.images[unlabelled]!.name || unlabelled} has no label (the good parts' label, or a defect type)`);
      const labels = [...new Set(req.images.map((im) => im.label))];
      const good = findGoodClass(labels);
      if (good === undefined) bad(`no label names the good parts (labels: ${labels.map((l) => clip(l)).join(', ')}); label them good (or ok, normal, pass, no_defect)`);
      const masked = req.images.findIndex((im) => im.mask.length > 0 && im.label === good);
      if (masked >= 0) bad(`training image ${req.images[masked]!.name || masked} is labelled ${clip(good!)} but has a defect mask`);
    } else {
      const masked = req.images.findIndex((im) => im.mask.length > 0);
      if (masked >= 0) bad(`training image ${req.images[masked]!.name || masked} has a mask; masks are for hybrid models' defect images`);
    }
    // core's rules for the options, applied now (not seconds later in the training process), one field at
    // a time so that the message names the request's field.
    const { svm, oneClass, hybrid } = coreOptions(req);
    const fields: [string, () => void][] =
      kind === 'svm'
        ? [
            ['svm.lambda', () => checkClassifierOptions({ lambda: svm.lambda })],
            ['svm.epochs', () => checkClassifierOptions({ epochs: svm.epochs })],
          ]
        : kind === 'hybrid'
          ? [
              ['hybrid.coreset_ratio', () => checkOneClassOptions({ coresetRatio: hybrid.coresetRatio })],
              ['hybrid.validation_fraction', () => checkOneClassOptions({ validationFraction: hybrid.validationFraction })],
              [
                'hybrid.flips',
                () => {
                  if (req.hybrid?.noFlips && req.hybrid.flips.length > 0) throw new Error('give flips or no_flips, not both');
                  checkHybridHeadOptions(hybrid.flips !== undefined ? { flips: hybrid.flips } : {});
                },
              ],
            ]
          : [
              ['one_class.coreset_ratio', () => checkOneClassOptions({ coresetRatio: oneClass.coresetRatio })],
              ['one_class.validation_fraction', () => checkOneClassOptions({ validationFraction: oneClass.validationFraction })],
              ['one_class.threshold_quantile', () => checkOneClassOptions({ thresholdQuantile: oneClass.thresholdQuantile })],
            ];
    for (const [field, check] of fields) {
      try {
        check();
      } catch (err) {
        bad(`${field}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return kind;
  }

  /**
   * Trains a model; calls onProgress while it runs and resolves with the new (scanned, maybe loaded)
   * model entry. Rejects with ItemFailure. Aborting `signal` kills the training process.
   */
  async train(req: TrainRequest, onProgress: (p: TrainProgressEvent) => void, signal: AbortSignal): Promise<ModelEntry> {
    const kind = this.validate(req);
    if (this.running >= this.opts.maxConcurrent) {
      throw new ItemFailure(Status.RESOURCE_EXHAUSTED, `${this.running} training(s) already running (the limit is ${this.opts.maxConcurrent}); retry later`);
    }
    // The slot is taken before the first await (two requests cannot both pass the check) and given back
    // in `finally` whatever fails, a bad model name included (it used to keep the slot for good).
    // Trainings of one name at once (training.maxConcurrent > 1) must agree on the kind, and the last
    // one to end is the one that may remove a folder left empty.
    const sibling = this.byName.get(req.name);
    if (sibling && sibling.kind !== kind) {
      throw new ItemFailure(Status.FAILED_PRECONDITION, `a ${sibling.kind} training of model '${req.name}' is running; train this ${kind} model under another name`);
    }
    this.byName.set(req.name, { kind, count: (sibling?.count ?? 0) + 1 });
    this.running++;
    this.metrics.trainings.set(this.running);
    const started = performance.now();
    const progress = (stage: string, done: number, total: number, message = ''): void =>
      onProgress({ stage, done, total, elapsedS: (performance.now() - started) / 1000, message });
    let reservation: Awaited<ReturnType<ModelRegistry['reserveNextVersion']>> | undefined;
    let dir: string | undefined;
    let createdModelDir: string | undefined;
    let trained = false;
    try {
      reservation = await this.registry.reserveNextVersion(req.name);
      // A line asking for 'boc' must not get an SVM where it had a one-class model: one kind per name.
      const other = this.registry.list({ name: req.name }).filter((e) => e.header && e.header.kind !== kind);
      if (other.length > 0) {
        throw new ItemFailure(
          Status.FAILED_PRECONDITION,
          `model '${req.name}' is a ${other[0]!.header!.kind} model (version${other.length > 1 ? 's' : ''} ${other.map((e) => e.version).join(', ')}); train this ${kind} model under another name, or delete those versions first`,
        );
      }
      // Versioned models live in <dir>/<name>/<version>.loupe. Made before the images are received, so a
      // models folder the server cannot write to fails the request at once, saying so.
      try {
        createdModelDir = await modelFolder(dirname(reservation.file));
      } catch (err) {
        this.log.error('cannot create the model folder', { model: req.name, folder: dirname(reservation.file), error: err });
        throw new ItemFailure(Status.FAILED_PRECONDITION, `cannot train model '${req.name}': ${folderProblem(err, req.name)}`);
      }
      dir = await mkdtemp(join(tmpdir(), `${TRAIN_TEMP_PREFIX}${process.pid}-`));
      progress('receiving', 0, req.images.length, `training ${kind} model '${req.name}' version ${reservation.version} on ${req.images.length} images`);
      const images: TrainJob['images'] = [];
      for (let i = 0; i < req.images.length; i++) {
        const im = req.images[i]!;
        const name = im.name || `image-${i}`;
        const path = join(dir, `${String(i).padStart(6, '0')}-${name.replace(SAFE_NAME, '_').slice(-80)}`);
        await writeFile(path, im.image);
        let maskPath: string | undefined;
        if (im.mask.length > 0) {
          maskPath = `${path}.mask`;
          await writeFile(maskPath, im.mask);
        }
        images.push({ path, label: im.label || 'good', name, ...(maskPath ? { maskPath } : {}) });
      }
      const { svm, oneClass, hybrid } = coreOptions(req);
      // The worker writes the model into its private folder; only this process publishes it (below), so a
      // worker that outlives its server (kill -9) never adds a version nobody accepted.
      const staged = join(dir, 'model.loupe');
      const job: TrainJob = {
        kind,
        name: req.name,
        images,
        outFile: staged,
        tempDir: dir,
        weights: this.opts.weights,
        backend: this.opts.backend,
        threads: this.opts.threads,
        svm,
        oneClass,
        hybrid,
      };
      await this.runChild(job, progress, signal);
      if (signal.aborted) throw new ItemFailure(Status.CANCELLED, 'training cancelled');
      const model = await readFile(staged);
      // Never over another version: replicas sharing the models folder reserve version numbers each in its
      // own memory, so another one may have published this number meanwhile; then the next one is taken.
      for (let attempt = 1; ; attempt++) {
        try {
          await writeFileAtomic(reservation.file, model, 0o644, { replace: false });
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 10) {
            this.log.warn('model version taken meanwhile (another server published it): taking the next one', { model: req.name, version: reservation.version });
            reservation.release();
            reservation = await this.registry.reserveNextVersion(req.name);
            continue;
          }
          this.log.error('cannot save the trained model', { model: req.name, file: reservation.file, error: err });
          throw new ItemFailure(Status.FAILED_PRECONDITION, `cannot save model '${req.name}' version ${reservation.version}: ${folderProblem(err, req.name)}`);
        }
      }
      trained = true;
      progress('loading', 0, 1);
      await this.registry.scan();
      let entry = this.registry.get(req.name, reservation.version);
      if (req.load) entry = await this.registry.load(req.name, reservation.version);
      progress('done', 1, 1);
      this.log.info('model trained', { model: req.name, version: reservation.version, kind, images: req.images.length, seconds: Number(((performance.now() - started) / 1000).toFixed(1)) });
      return entry;
    } finally {
      reservation?.release();
      if (dir) await rm(dir, { recursive: true, force: true });
      // A failed or cancelled first version leaves no empty model folder behind, unless another training
      // of the name is still to write there (rmdir also refuses a folder that is no longer empty).
      const mine = this.byName.get(req.name)!;
      if (mine.count > 1) this.byName.set(req.name, { ...mine, count: mine.count - 1 });
      else this.byName.delete(req.name);
      if (!trained && createdModelDir && !this.byName.has(req.name)) await rmdir(createdModelDir).catch(() => undefined);
      this.running--;
      this.metrics.trainings.set(this.running);
    }
  }

  private runChild(job: TrainJob, progress: (stage: string, done: number, total: number, message?: string) => void, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(new ItemFailure(Status.CANCELLED, 'training cancelled'));
      const child = fork(workerPath(), [], {
        serialization: 'advanced',
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        env: { ...process.env, LOUPE_THREADS: String(job.threads), UV_THREADPOOL_SIZE: '4' },
      });
      this.children.add(child);
      let settled = false;
      let failure: ItemFailure | undefined;
      const tail: string[] = [];
      const keep = (chunk: Buffer): void => {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) tail.push(line.trim());
        tail.splice(0, Math.max(0, tail.length - 20));
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      const onAbort = (): void => {
        failure = new ItemFailure(Status.CANCELLED, 'training cancelled');
        child.kill('SIGTERM');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      let done = false;
      child.on('message', (m: WorkerMessage) => {
        if (m.type === 'progress') progress(m.stage, m.done, m.total, m.message);
        else if (m.type === 'done') done = true;
        else if (m.type === 'error') {
          // The request's fault (a bad image, no good label, too few images of a class): INVALID_ARGUMENT.
          const code = /^(IMAGE_|INVALID_ARGUMENT|DATASET_|SPLIT_)/.test(m.code) ? Status.INVALID_ARGUMENT : Status.INTERNAL;
          failure = new ItemFailure(code, `training failed: ${m.message}`);
        }
      });
      child.on('error', (err) => {
        failure ??= new ItemFailure(Status.INTERNAL, `cannot start the training process: ${err.message}`);
      });
      child.on('exit', (code, sig) => {
        this.children.delete(child);
        signal.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        if (done && code === 0) return resolve();
        if (this.shuttingDown && !failure) return reject(new ItemFailure(Status.UNAVAILABLE, 'training stopped: the server is shutting down; send the training again when it is back'));
        const said = tail.slice(-5).join(' | ');
        reject(failure ?? new ItemFailure(Status.INTERNAL, `the training process exited (${sig ?? `code ${code}`})${said ? `: ${said}` : ''}`));
      });
      child.send(job);
    });
  }

  /** Kills every training process (server shutdown). */
  killAll(): void {
    this.shuttingDown = true;
    for (const c of this.children) c.kill('SIGTERM');
  }
}
