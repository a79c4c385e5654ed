// From an accepted image to a recorded result: admission (bounded queue), a bounded number of images in
// progress at once (decode -> shared batcher -> model), deadlines and cancellation, then the result is
// committed to the inspection log BEFORE the caller may send it.
//
// Memory is bounded: waiting images hold only their encoded bytes (maxQueue images, maxQueueBytes
// bytes server-wide; beyond that RESOURCE_EXHAUSTED), and at most maxActive images are decoded (a
// 600 KB tensor each) at any time.
import { createHash, randomUUID } from 'node:crypto';

import { status as Status } from '@grpc/grpc-js';
import { EmptyImageError, isLoupeError } from '@loupe/core';

import type { DynamicBatcher } from './batcher.js';
import type { ModelInspector, Outcome } from './inspectors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { RegistryError, type ModelEntry, type ModelRegistry } from './registry.js';
import { LogWriteError, type InspectionLog, type VerdictName } from './store.js';

/**
 * A per-image failure: its gRPC status code and, for programs, its reason: the LoupeError code when
 * @loupe/core raised it (IMAGE_DECODE, IMAGE_TOO_LARGE, ...), else the status code's name.
 */
export class ItemFailure extends Error {
  readonly reason: string;

  constructor(
    readonly code: Status,
    message: string,
    reason?: string,
  ) {
    super(message);
    this.name = 'ItemFailure';
    this.reason = reason ?? Status[code] ?? String(code);
  }
}

export interface WorkItem {
  clientId: string;
  image: Buffer;
  model: string;
  modelVersion: string;
  wantHeatmap: boolean;
  /** Absolute deadline (Date.now() ms), if any. */
  deadlineAt: number | undefined;
  /** The call's cancellation. */
  signal: AbortSignal;
  /** performance.now() at receipt. */
  receivedAt: number;
  source: string;
  peer: string;
}

export interface ItemResult {
  inspectionId: string;
  model: string;
  modelVersion: string;
  verdict: VerdictName;
  outcome: Outcome;
  queueMs: number;
  totalMs: number;
  time: Date;
}

/** Room left in an answer for everything but its heatmap (ids, scores, class names, timings). */
const HEATMAP_HEADROOM_BYTES = 64 * 1024;

export interface PipelineOptions {
  maxQueue: number;
  maxQueueBytes: number;
  maxActive: number;
  maxImageBytes: number;
  maxImagePixels: number;
  /** The gRPC message limit (answers included). */
  maxMessageBytes: number;
  /** Hash image bytes so identical images in one batch share an engine view. */
  dedupe: boolean;
}

interface Waiting {
  item: WorkItem;
  start: () => void;
  fail: (f: ItemFailure) => void;
}

/** How the image is named to core (its errors then name it) and in the server's own messages. */
function imageName(item: WorkItem): string {
  return item.clientId || '<image>';
}

function quoted(item: WorkItem): string {
  return `'${imageName(item)}'`;
}

const REGISTRY_CODES: Record<RegistryError['kind'], Status> = {
  NOT_FOUND: Status.NOT_FOUND,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  INTERNAL: Status.INTERNAL,
};


export class InspectionPipeline {
  private readonly waiting: Waiting[] = [];
  private waitingBytes = 0;
  private activeCount = 0;
  private closing = false;
  private readonly idleWaiters: (() => void)[] = [];
  inspections = 0;
  anomalous = 0;
  errors = 0;

  constructor(
    private readonly opts: PipelineOptions,
    private readonly registry: ModelRegistry,
    private readonly batcher: DynamicBatcher,
    private readonly store: InspectionLog,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  get queueDepth(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.activeCount;
  }

  /** Stop admitting new images (shutdown); queued and active ones still finish. */
  stopAdmitting(): void {
    this.closing = true;
  }

  /** Resolves when nothing is queued or active. */
  idle(): Promise<void> {
    if (this.waiting.length === 0 && this.activeCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Inspects one image. Resolves with the recorded result; rejects with ItemFailure (never anything
   * else). Synchronous checks (empty image, size, unknown model, full queue) reject before any await.
   */
  async inspect(item: WorkItem): Promise<ItemResult> {
    try {
      return await this.run(item);
    } catch (err) {
      const f = this.toFailure(err, item);
      // An image its client cancelled (or vanished with) got no answer, so it is no error of the service;
      // the Prometheus counter still shows it, under code CANCELLED.
      if (f.code !== Status.CANCELLED) this.errors++;
      this.metrics.imageErrors.inc({ code: Status[f.code] ?? String(f.code) });
      this.metrics.tick();
      return Promise.reject(f);
    }
  }

  private toFailure(err: unknown, item: WorkItem): ItemFailure {
    if (err instanceof ItemFailure) return err;
    // The log cannot commit: nothing is answered unrecorded; the client may send it again (health says
    // NOT_SERVING meanwhile, so a load balancer sends it elsewhere).
    if (err instanceof LogWriteError) return new ItemFailure(Status.UNAVAILABLE, `image ${quoted(item)} not answered: ${err.message}; send it again later`);
    // Registry problems are about the request's model: the message names the image too.
    if (err instanceof RegistryError) return new ItemFailure(REGISTRY_CODES[err.kind], `image ${quoted(item)}: ${err.message}`);
    if (isLoupeError(err)) {
      if (err.code === 'ABORTED') return this.abortFailure(item);
      // The image's own fault (core names it by its id, as `loupe predict` names a file).
      if (err.code.startsWith('IMAGE_')) return new ItemFailure(Status.INVALID_ARGUMENT, err.message, err.code);
      if (err.code === 'ENGINE_UNAVAILABLE') return new ItemFailure(Status.UNAVAILABLE, `image ${quoted(item)}: ${err.message}`, err.code);
      // Anything else core raises while inspecting is the server's problem (model, engine), not the client's.
      this.log.error('inspection failed', { id: item.clientId, model: item.model, error: err });
      return new ItemFailure(Status.INTERNAL, `image ${quoted(item)}: inspection failed: ${err.message}`, err.code);
    }
    if ((err as { name?: unknown } | null)?.name === 'AbortError') return this.abortFailure(item);
    this.log.error('inspection failed', { id: item.clientId, model: item.model, error: err });
    return new ItemFailure(Status.INTERNAL, `image ${quoted(item)}: inspection failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  private abortFailure(item: WorkItem): ItemFailure {
    if (item.deadlineAt !== undefined && Date.now() >= item.deadlineAt) return new ItemFailure(Status.DEADLINE_EXCEEDED, `image ${quoted(item)} missed its deadline`);
    if (this.closing && !item.signal.aborted) return new ItemFailure(Status.UNAVAILABLE, `image ${quoted(item)}: not inspected, the server is shutting down`);
    return new ItemFailure(Status.CANCELLED, `image ${quoted(item)} was cancelled`);
  }

  private async run(item: WorkItem): Promise<ItemResult> {
    if (this.closing) throw new ItemFailure(Status.UNAVAILABLE, `image ${quoted(item)}: not inspected, the server is shutting down`);
    // Its result could not be recorded, so it could not be answered: say so without inspecting it.
    const logError = this.store.writeError;
    if (logError) throw logError;
    // core's own error, in the words its decoder uses for an empty file (reason IMAGE_EMPTY), before any queueing.
    if (item.image.length === 0) throw new EmptyImageError(imageName(item));
    if (item.image.length > this.opts.maxImageBytes) {
      throw new ItemFailure(Status.INVALID_ARGUMENT, `image ${quoted(item)}: the 'image' field is ${item.image.length} bytes; the limit is ${this.opts.maxImageBytes}`);
    }
    const { entry, inspector } = this.registry.resolve(item.model, item.modelVersion);
    if (item.signal.aborted) throw new ItemFailure(Status.CANCELLED, `image ${quoted(item)} was cancelled`);
    if (item.deadlineAt !== undefined && Date.now() >= item.deadlineAt) throw new ItemFailure(Status.DEADLINE_EXCEEDED, `image ${quoted(item)} missed its deadline`);

    // Per-item abort: the call's cancellation or the image's deadline, whichever comes first.
    const ac = new AbortController();
    const onCallAbort = (): void => ac.abort(item.signal.reason);
    item.signal.addEventListener('abort', onCallAbort, { once: true });
    let deadlineTimer: NodeJS.Timeout | undefined;
    if (item.deadlineAt !== undefined) {
      deadlineTimer = setTimeout(() => ac.abort(new Error('deadline exceeded')), Math.max(0, item.deadlineAt - Date.now()));
    }
    try {
      await this.admit(item, ac.signal);
      const startedAt = performance.now();
      let outcome: Outcome;
      try {
        outcome = await inspector.inspect(
          {
            image: item.image,
            name: imageName(item),
            wantHeatmap: item.wantHeatmap,
            signal: ac.signal,
            maxImagePixels: this.opts.maxImagePixels,
            maxHeatmapBytes: Math.max(HEATMAP_HEADROOM_BYTES, this.opts.maxMessageBytes - HEATMAP_HEADROOM_BYTES),
            contentKey: this.opts.dedupe ? createHash('sha1').update(item.image).digest('base64') : undefined,
          },
          this.batcher,
        );
      } finally {
        this.release();
      }
      if (ac.signal.aborted) throw ac.signal.reason instanceof Error && ac.signal.reason.message === 'deadline exceeded' ? new ItemFailure(Status.DEADLINE_EXCEEDED, `image ${quoted(item)} missed its deadline`) : this.abortFailure(item);
      return await this.finish(item, entry, outcome, startedAt);
    } finally {
      if (deadlineTimer) clearTimeout(deadlineTimer);
      item.signal.removeEventListener('abort', onCallAbort);
    }
  }

  /** Waits for a pipeline slot (FIFO), or fails at once when the waiting room is full. */
  private admit(item: WorkItem, signal: AbortSignal): Promise<void> {
    if (this.activeCount < this.opts.maxActive && this.waiting.length === 0) {
      this.activeCount++;
      this.metrics.active.set(this.activeCount);
      return Promise.resolve();
    }
    if (this.waiting.length >= this.opts.maxQueue || this.waitingBytes + item.image.length > this.opts.maxQueueBytes) {
      throw new ItemFailure(
        Status.RESOURCE_EXHAUSTED,
        `image ${quoted(item)} not inspected: server overloaded: ${this.waiting.length} images (${Math.round(this.waitingBytes / 1048576)} MB) already waiting; retry later or keep fewer images in flight`,
      );
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiting = {
        item,
        start: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        fail: reject,
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          this.waitingBytes -= item.image.length;
          this.metrics.queueDepth.set(this.waiting.length);
          reject(signal.reason instanceof Error && signal.reason.message === 'deadline exceeded' ? new ItemFailure(Status.DEADLINE_EXCEEDED, `image ${quoted(item)} missed its deadline (waited in the queue)`) : this.abortFailure(item));
          this.checkIdle();
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(w);
      this.waitingBytes += item.image.length;
      this.metrics.queueDepth.set(this.waiting.length);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) {
      this.waitingBytes -= next.item.image.length;
      this.metrics.queueDepth.set(this.waiting.length);
      next.start(); // the slot passes straight to the next image
    } else {
      this.activeCount--;
      this.metrics.active.set(this.activeCount);
      this.checkIdle();
    }
  }

  private checkIdle(): void {
    if (this.waiting.length === 0 && this.activeCount === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async finish(item: WorkItem, entry: ModelEntry, outcome: Outcome, startedAt: number): Promise<ItemResult> {
    const now = performance.now();
    const time = new Date();
    const verdict: VerdictName = outcome.verdict;
    const result: ItemResult = {
      inspectionId: randomUUID(),
      model: entry.name,
      modelVersion: entry.version,
      verdict,
      outcome,
      queueMs: startedAt - item.receivedAt,
      totalMs: now - item.receivedAt,
      time,
    };
    // Written before it is sent: an acknowledged result is never lost.
    await this.store.record({
      inspectionId: result.inspectionId,
      clientId: item.clientId,
      timeMs: time.getTime(),
      model: entry.name,
      modelVersion: entry.version,
      verdict,
      score: outcome.score,
      defectType: outcome.defectType ?? '',
      latencyMs: result.totalMs,
      source: item.source,
      peer: item.peer,
      image: this.store.keepsImage(verdict) ? item.image : undefined,
    });
    this.inspections++;
    if (verdict === 'anomalous') this.anomalous++;
    this.registry.countInspection(entry);
    this.metrics.images.inc({ model: entry.name, verdict });
    this.metrics.imageSeconds.observe({ model: entry.name }, result.totalMs / 1000);
    this.metrics.tick();
    return result;
  }
}
