// Dynamic batching: every image of every open call goes through ONE engine session; the batcher packs
// the queued images (views) into engine batches.
//
// Policy: a batch is dispatched when an engine slot is free (maxInflightBatches) and either a full
// batch (maxBatchSize views) is waiting or the oldest waiting view has waited maxQueueDelayMs. While
// the engine is busy, views accumulate, so under load every batch is full and the engine never waits
// on the delay; under light load an image waits at most maxQueueDelayMs for company. Jobs that need
// different taps (an SVM on fc1000, PatchCore on res3d+res4f) are batched separately, oldest group
// first, so no batch computes layers it does not need. Identical images (same bytes, same
// preprocessing: the caller's content key) queued together share one engine view when `dedupe` is on:
// each still gets its own result, the engine computes the view once. The engine runs off the JS thread (the addon's
// async worker): the event loop only packs tensors and slices outputs.
import { AbortError, INPUT_ELEMENTS, tapElements, type EngineSession, type TapName, type TapOutputs, type TensorBatch } from '@loupe/core';

export interface BatchInfo {
  /** Views the engine ran. */
  size: number;
  /** Images (jobs) answered from the batch (> size when identical images shared views). */
  jobs: number;
  /** Engine time of the batch. */
  ms: number;
  taps: readonly TapName[];
}

export interface RunInfo {
  /** Views in the engine batch this job ran in. */
  batchSize: number;
  /** Images answered from that batch. */
  batchJobs: number;
  /** Enqueue to outputs. */
  waitAndRunMs: number;
}

interface Job {
  /** The session it runs on: int8 models run on their own calibration's session, never batched with others. */
  engine: BatchEngine;
  data: Float32Array;
  views: number;
  taps: readonly TapName[];
  key: string;
  contentKey: string | undefined;
  /** View offset of this job's data in its batch (set at dispatch). */
  offset: number;
  enqueuedAt: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  resolve: (v: { out: Record<string, Float32Array>; info: RunInfo }) => void;
  reject: (e: unknown) => void;
}

export interface BatcherOptions {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  maxInflightBatches: number;
  /** Share one engine view between identical queued images (same content key). Default true. */
  dedupe?: boolean;
  onBatch?: (info: BatchInfo) => void;
}

/** What runs a batch: core's EngineSession (or anything with its run()). */
export type BatchEngine = Pick<EngineSession, 'run'>;

let nextEngineId = 1;

export class DynamicBatcher {
  private readonly groups = new Map<string, Job[]>();
  private inflight = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private pendingViews = 0;
  private closed = false;
  // Batches group jobs by session (then taps); sessions are told apart by a number.
  private readonly engineIds = new WeakMap<BatchEngine, number>();
  batches = 0;
  views = 0;
  jobs = 0;
  readonly histogram = new Map<number, number>();

  constructor(
    private readonly engine: BatchEngine,
    readonly options: BatcherOptions,
  ) {}

  /** Views waiting for a batch. */
  get queued(): number {
    return this.pendingViews;
  }

  get running(): number {
    return this.inflight;
  }

  /**
   * Queues `input` (one or more 224x224 views) for the next batch with the same taps; resolves with
   * this job's slice of the outputs. Rejects with AbortError if `signal` fires before the batch starts.
   */
  submit<T extends TapName>(input: TensorBatch, taps: readonly T[], signal?: AbortSignal, contentKey?: string, engine: BatchEngine = this.engine): Promise<{ out: TapOutputs<T>; info: RunInfo }> {
    if (this.closed) return Promise.reject(new AbortError(new Error('the server is shutting down')));
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    const sorted = [...new Set(taps)].sort();
    let id = this.engineIds.get(engine);
    if (id === undefined) {
      id = nextEngineId++;
      this.engineIds.set(engine, id);
    }
    const key = `${id}|${sorted.join(',')}`;
    return new Promise((resolve, reject) => {
      const job: Job = {
        engine,
        data: input.data,
        views: input.batch,
        taps: sorted,
        key,
        contentKey: this.options.dedupe === false ? undefined : contentKey,
        offset: 0,
        enqueuedAt: performance.now(),
        signal,
        onAbort: undefined,
        resolve: resolve as Job['resolve'],
        reject,
      };
      if (signal) {
        job.onAbort = () => this.cancel(job);
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      let q = this.groups.get(key);
      if (!q) {
        q = [];
        this.groups.set(key, q);
      }
      q.push(job);
      this.pendingViews += job.views;
      this.pump();
    });
  }

  /** A PatchTapRunner-compatible view of the batcher bound to one job's signal; records RunInfo. */
  runner(signal?: AbortSignal, onInfo?: (info: RunInfo) => void, contentKey?: string, engine?: BatchEngine): { run<T extends TapName>(input: TensorBatch, taps: readonly T[]): Promise<TapOutputs<T>> } {
    let calls = 0;
    return {
      run: async <T extends TapName>(input: TensorBatch, taps: readonly T[]): Promise<TapOutputs<T>> => {
        const key = contentKey === undefined ? undefined : `${contentKey}#${calls++}`;
        const { out, info } = await this.submit(input, taps, signal, key, engine);
        onInfo?.(info);
        return out;
      },
    };
  }

  private cancel(job: Job): void {
    const q = this.groups.get(job.key);
    const i = q ? q.indexOf(job) : -1;
    if (i < 0 || !q) return; // already dispatched: its result is simply dropped by the caller
    q.splice(i, 1);
    this.pendingViews -= job.views;
    job.reject(new AbortError(job.signal?.reason));
  }

  /** The group whose oldest job is oldest. */
  private oldestGroup(): Job[] | undefined {
    let best: Job[] | undefined;
    for (const q of this.groups.values()) if (q.length > 0 && (!best || q[0]!.enqueuedAt < best[0]!.enqueuedAt)) best = q;
    return best;
  }

  private groupViews(q: Job[]): number {
    let n = 0;
    for (const j of q) {
      n += j.views;
      if (n >= this.options.maxBatchSize) break;
    }
    return n;
  }

  private pump(): void {
    while (this.inflight < this.options.maxInflightBatches && this.pendingViews > 0) {
      // A full group goes first; otherwise the oldest group once its head has waited long enough.
      let pick: Job[] | undefined;
      for (const q of this.groups.values()) if (q.length > 0 && this.groupViews(q) >= this.options.maxBatchSize) pick = pick && pick[0]!.enqueuedAt <= q[0]!.enqueuedAt ? pick : q;
      if (!pick) {
        const oldest = this.oldestGroup();
        if (!oldest) break;
        const due = oldest[0]!.enqueuedAt + this.options.maxQueueDelayMs;
        const now = performance.now();
        if (now < due) {
          this.arm(due - now);
          break;
        }
        pick = oldest;
      }
      this.dispatch(pick);
    }
  }

  private arm(delayMs: number): void {
    const at = performance.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(0, Math.ceil(delayMs)));
  }

  private dispatch(q: Job[]): void {
    const jobs: Job[] = [];
    const unique: Job[] = [];
    const byContent = new Map<string, number>();
    const maxJobs = this.options.maxBatchSize * 8;
    let views = 0;
    while (q.length > 0 && jobs.length < maxJobs) {
      const j = q[0]!;
      const same = j.contentKey !== undefined ? byContent.get(j.contentKey) : undefined;
      if (same === undefined && jobs.length > 0 && views + j.views > this.options.maxBatchSize) break;
      q.shift();
      jobs.push(j);
      this.pendingViews -= j.views;
      if (j.signal && j.onAbort) j.signal.removeEventListener('abort', j.onAbort);
      if (same !== undefined) j.offset = same;
      else {
        j.offset = views;
        if (j.contentKey !== undefined) byContent.set(j.contentKey, views);
        unique.push(j);
        views += j.views;
      }
    }
    const taps = jobs[0]!.taps as TapName[];
    let data: Float32Array;
    if (unique.length === 1) data = unique[0]!.data;
    else {
      data = new Float32Array(views * INPUT_ELEMENTS);
      for (const j of unique) data.set(j.data, j.offset * INPUT_ELEMENTS);
    }
    this.inflight++;
    const started = performance.now();
    jobs[0]!.engine.run({ data, batch: views }, taps).then(
      (out: Record<string, Float32Array>) => {
        const ms = performance.now() - started;
        this.finish(views, jobs.length, ms, taps);
        for (const j of jobs) {
          const slice: Record<string, Float32Array> = {};
          for (const t of taps) {
            const per = tapElements(t);
            slice[t] = j.offset === 0 && j.views === views ? out[t]! : out[t]!.subarray(j.offset * per, (j.offset + j.views) * per);
          }
          j.resolve({ out: slice, info: { batchSize: views, batchJobs: jobs.length, waitAndRunMs: performance.now() - j.enqueuedAt } });
        }
      },
      (err: unknown) => {
        this.finish(views, jobs.length, performance.now() - started, taps);
        for (const j of jobs) j.reject(err);
      },
    );
  }

  private finish(views: number, jobs: number, ms: number, taps: readonly TapName[]): void {
    this.inflight--;
    this.batches++;
    this.views += views;
    this.jobs += jobs;
    this.histogram.set(views, (this.histogram.get(views) ?? 0) + 1);
    this.options.onBatch?.({ size: views, jobs, ms, taps });
    this.pump();
  }

  /** Rejects every queued job (shutdown) and refuses new ones. */
  close(reason = 'the server is shutting down'): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const q of this.groups.values()) {
      for (const j of q.splice(0)) {
        if (j.signal && j.onAbort) j.signal.removeEventListener('abort', j.onAbort);
        j.reject(new AbortError(new Error(reason)));
      }
    }
    this.pendingViews = 0;
  }
}
