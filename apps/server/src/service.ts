// The loupe.v1.Inspection service: gRPC handlers over the pipeline, the registry, the trainer and the
// inspection log.
//
// Inspect streams, flow control end to end:
// - reading: at most `maxInFlightPerStream` unanswered images per stream; at the window the stream is
//   paused (HTTP/2 flow control then holds the client's writes), and resumed as answers go out;
// - writing: responses go through write(); when it returns false the stream waits for 'drain' and the
//   unsent answers count against the window, so a client that stops reading stops being read;
// - server-wide: a full waiting room answers RESOURCE_EXHAUSTED per image instead of growing memory;
// - cancel/disconnect: the stream's queued images are dropped (their batcher and queue slots freed);
// - per-image deadlines (deadline_ms) and the call's own deadline are both enforced.
import { setMaxListeners } from 'node:events';

import { Metadata, status as Status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream, type ServiceError } from '@grpc/grpc-js';

import type { DynamicBatcher } from './batcher.js';
import type { ServerConfig } from './config.js';
import {
  BatchSizeCount,
  DeleteModelResponse,
  GetModelResponse,
  GetStatsResponse,
  InspectionRecord,
  InspectionResult,
  InspectOneResponse,
  InspectResponse,
  ListInspectionsResponse,
  ListModelsResponse,
  LoadModelResponse,
  ModelInfo,
  ModelKind,
  ModelState,
  TrainResponse,
  UnloadModelResponse,
  Verdict,
  type DeleteModelRequest,
  type GetModelRequest,
  type GetStatsRequest,
  type InspectionServer,
  type InspectOneRequest,
  type InspectRequest,
  type ListInspectionsRequest,
  type ListModelsRequest,
  type LoadModelRequest,
  type TrainRequest,
  type UnloadModelRequest,
} from '@loupe/client/gen/loupe/v1/inspection';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { ItemFailure, type InspectionPipeline, type ItemResult, type WorkItem } from './pipeline.js';
import { RegistryError, type ModelEntry, type ModelRegistry } from './registry.js';
import { clip, FIELD_LIMITS, fieldTooLong, MAX_TIMER_MS, truncateUtf8 } from './limits.js';
import { PageTokenError, type InspectionLog } from './store.js';
import type { Trainer } from './training.js';

export interface ServiceContext {
  config: ServerConfig;
  registry: ModelRegistry;
  pipeline: InspectionPipeline;
  batcher: DynamicBatcher;
  store: InspectionLog;
  trainer: Trainer;
  metrics: Metrics;
  log: Logger;
  startedAt: Date;
  backend: string;
  device: string;
}

/** Trailing metadata key of InspectOne errors: ItemError.reason of a unary call. */
export const REASON_METADATA_KEY = 'loupe-reason';

function serviceError(code: Status, details: string, reason?: string): ServiceError {
  const metadata = new Metadata();
  if (reason) metadata.set(REASON_METADATA_KEY, reason);
  return Object.assign(new Error(details), { code, details, metadata }) as ServiceError;
}

function toServiceError(err: unknown, log: Logger, what: string): ServiceError {
  if (err instanceof ItemFailure) return serviceError(err.code, err.message);
  if (err instanceof RegistryError) {
    const code = { NOT_FOUND: Status.NOT_FOUND, INVALID_ARGUMENT: Status.INVALID_ARGUMENT, FAILED_PRECONDITION: Status.FAILED_PRECONDITION, INTERNAL: Status.INTERNAL }[err.kind];
    return serviceError(code, err.message);
  }
  if (err instanceof PageTokenError) return serviceError(Status.INVALID_ARGUMENT, err.message);
  log.error(`${what} failed`, { error: err });
  return serviceError(Status.INTERNAL, `${what} failed: ${err instanceof Error ? err.message : String(err)}`);
}

export function modelInfo(e: ModelEntry): ModelInfo {
  const h = e.header;
  const state = { available: ModelState.MODEL_STATE_AVAILABLE, loading: ModelState.MODEL_STATE_LOADING, loaded: ModelState.MODEL_STATE_LOADED, failed: ModelState.MODEL_STATE_FAILED }[e.state];
  const created = h?.createdAt ? new Date(h.createdAt) : undefined;
  return ModelInfo.fromPartial({
    name: e.name,
    version: e.version,
    kind: h?.kind === 'svm' ? ModelKind.MODEL_KIND_SVM : h?.kind === 'one-class' ? ModelKind.MODEL_KIND_ONE_CLASS : h?.kind === 'hybrid' ? ModelKind.MODEL_KIND_HYBRID : ModelKind.MODEL_KIND_UNSPECIFIED,
    state,
    classes: h ? [...h.classes] : [],
    layer: h?.layer ?? '',
    method: h?.method ?? '',
    sizeBytes: e.sizeBytes,
    createdAt: created && !Number.isNaN(created.getTime()) ? created : undefined,
    weightsHash: h?.weightsHash ?? '',
    error: e.error,
    description: e.inspector?.description ?? '',
    inspections: e.inspections,
    file: e.relFile,
  });
}

function toResult(r: ItemResult): InspectionResult {
  const o = r.outcome;
  return InspectionResult.fromPartial({
    inspectionId: r.inspectionId,
    verdict: r.verdict === 'anomalous' ? Verdict.VERDICT_ANOMALOUS : Verdict.VERDICT_GOOD,
    score: o.score,
    // One contract with @loupe/core's InspectionResult: null (good parts, one-class models) is '' on the wire.
    defectType: o.defectType ?? '',
    classScores: o.classScores,
    heatmapPng: o.heatmapPng ?? Buffer.alloc(0),
    model: r.model,
    modelVersion: r.modelVersion,
    timings: { queueMs: r.queueMs, decodeMs: o.decodeMs, inferenceMs: o.inferenceMs, postprocessMs: o.postprocessMs, totalMs: r.totalMs, batchSize: o.batchSize },
    inspectedAt: r.time,
    rawScore: o.rawScore,
    peak: o.peak ? { x: o.peak.x, y: o.peak.y } : undefined,
  });
}

/**
 * The earliest of the image's own budget and the call's deadline, as Date.now() ms; none beyond
 * MAX_TIMER_MS from now (a Node timer would overflow and fire at once: deadline_ms = 2^31 answered
 * CANCELLED immediately).
 */
function deadlineOf(deadlineMs: number, callDeadline: Date | number): number | undefined {
  const now = Date.now();
  const own = deadlineMs > 0 ? now + deadlineMs : Infinity;
  const call = callDeadline instanceof Date ? callDeadline.getTime() : callDeadline;
  const d = Math.min(own, Number.isFinite(call) ? call : Infinity);
  return Number.isFinite(d) && d - now <= MAX_TIMER_MS ? d : undefined;
}

/** Why an image request's strings are refused (INVALID_ARGUMENT, naming the field), or undefined. */
function requestFieldError(req: { id: string; source: string }): string | undefined {
  return fieldTooLong('id', req.id, FIELD_LIMITS.id) ?? fieldTooLong('source', req.source, FIELD_LIMITS.source);
}

/** One open Inspect stream. */
export class InspectStream {
  private received = 0;
  private inflight = 0;
  private halfClosed = false;
  private ended = false;
  private paused = false;
  private draining = false;
  private shuttingDown = false;
  private readonly outbox: InspectResponse[] = [];
  private readonly ac = new AbortController();
  private readonly peer: string;
  private readonly window: number;

  constructor(
    private readonly call: ServerDuplexStream<InspectRequest, InspectResponse>,
    private readonly ctx: ServiceContext,
    private readonly onClose: (s: InspectStream) => void,
  ) {
    setMaxListeners(0, this.ac.signal); // one listener per queued image of this stream
    this.peer = call.getPeer();
    this.window = ctx.config.flow.maxInFlightPerStream;
    call.on('data', (req: InspectRequest) => this.onRequest(req));
    call.on('end', () => {
      this.halfClosed = true;
      this.maybeFinish();
    });
    call.on('cancelled', () => this.close('cancelled'));
    call.on('error', (err: Error) => {
      ctx.log.debug('inspect stream error', { peer: this.peer, error: err });
      this.close('error');
    });
    call.on('close', () => this.close('closed'));
  }

  get unanswered(): number {
    return this.inflight;
  }

  private onRequest(req: InspectRequest): void {
    if (this.ended) return;
    this.received++;
    this.inflight++;
    if (this.inflight >= this.window && !this.paused) {
      this.paused = true;
      this.call.pause();
    }
    if (!req.id) {
      this.send(InspectResponse.fromPartial({ id: '', error: { code: Status.INVALID_ARGUMENT, reason: 'INVALID_ARGUMENT', message: "the 'id' field is empty: every image needs an id (InspectRequest.id)" } }));
      return;
    }
    const tooLong = requestFieldError(req);
    if (tooLong) {
      // The id comes back cut to its limit: the answer must stay small whatever was sent.
      this.ctx.metrics.imageErrors.inc({ code: 'INVALID_ARGUMENT' });
      this.send(InspectResponse.fromPartial({ id: truncateUtf8(req.id, FIELD_LIMITS.id), error: { code: Status.INVALID_ARGUMENT, reason: 'INVALID_ARGUMENT', message: `image '${clip(req.id)}': ${tooLong}` } }));
      return;
    }
    const item: WorkItem = {
      clientId: req.id,
      image: req.image,
      model: req.model,
      modelVersion: req.modelVersion,
      wantHeatmap: req.wantHeatmap,
      deadlineAt: deadlineOf(req.deadlineMs, this.call.getDeadline()),
      signal: this.ac.signal,
      receivedAt: performance.now(),
      source: req.source,
      peer: this.peer,
    };
    this.ctx.pipeline.inspect(item).then(
      (r) => this.send(InspectResponse.fromPartial({ id: req.id, result: toResult(r) })),
      (f: ItemFailure) => this.send(InspectResponse.fromPartial({ id: req.id, error: { code: f.code, message: f.message, reason: f.reason } })),
    );
  }

  private send(resp: InspectResponse): void {
    if (this.ended) return;
    this.outbox.push(resp);
    this.flush();
  }

  private flush(): void {
    while (!this.draining && this.outbox.length > 0 && !this.ended) {
      const r = this.outbox.shift()!;
      this.inflight--;
      if (!this.call.write(r)) {
        this.draining = true;
        this.call.once('drain', () => {
          this.draining = false;
          this.flush();
        });
      }
    }
    if (this.paused && !this.shuttingDown && this.inflight < this.window) {
      this.paused = false;
      this.call.resume();
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.ended || this.inflight > 0 || this.outbox.length > 0) return;
    if (this.halfClosed) {
      if (this.received === 0) {
        this.end(Status.INVALID_ARGUMENT, 'the stream ended without sending an image');
      } else this.end(Status.OK);
    } else if (this.shuttingDown) {
      this.end(Status.UNAVAILABLE, 'the server is shutting down: images not answered on this stream were not inspected; send them again');
    }
  }

  private end(code: Status, details = ''): void {
    if (this.ended) return;
    this.ended = true;
    if (code === Status.OK) this.call.end();
    else this.call.emit('error', serviceError(code, details));
    this.onClose(this);
  }

  /** Graceful shutdown: read no more; answer what was read; then end the stream. */
  shutdown(): void {
    this.shuttingDown = true;
    if (!this.paused) {
      this.paused = true;
      this.call.pause();
    }
    this.maybeFinish();
  }

  /** The client went away (or the call failed): drop its queued work. */
  close(reason: string): void {
    if (!this.ac.signal.aborted) this.ac.abort(new Error(`stream ${reason}`));
    if (!this.ended) {
      this.ended = true;
      this.onClose(this);
    }
  }
}

export function inspectionService(ctx: ServiceContext, streams: Set<InspectStream>): InspectionServer {
  const { registry, pipeline, store, trainer, log, metrics } = ctx;
  const unary = <Req, Res>(what: string, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res) => {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      Promise.resolve()
        .then(() => fn(call.request, call))
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(toServiceError(err, log, what)),
        );
    };
  };

  return {
    inspect: (call: ServerDuplexStream<InspectRequest, InspectResponse>) => {
      const s = new InspectStream(call, ctx, (x) => {
        streams.delete(x);
        metrics.openStreams.set(streams.size);
      });
      streams.add(s);
      metrics.openStreams.set(streams.size);
    },

    inspectOne: (call: ServerUnaryCall<InspectOneRequest, InspectOneResponse>, callback: sendUnaryData<InspectOneResponse>) => {
      const req = call.request;
      const tooLong = requestFieldError(req);
      if (tooLong) return callback(serviceError(Status.INVALID_ARGUMENT, `image '${clip(req.id)}': ${tooLong}`, 'INVALID_ARGUMENT'));
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort(new Error('cancelled')));
      const item: WorkItem = {
        clientId: req.id,
        image: req.image,
        model: req.model,
        modelVersion: req.modelVersion,
        wantHeatmap: req.wantHeatmap,
        deadlineAt: deadlineOf(0, call.getDeadline()),
        signal: ac.signal,
        receivedAt: performance.now(),
        source: req.source,
        peer: call.getPeer(),
      };
      pipeline.inspect(item).then(
        (r) => callback(null, InspectOneResponse.fromPartial({ id: req.id, result: toResult(r) })),
        (f: ItemFailure) => callback(serviceError(f.code, f.message, f.reason)),
      );
    },

    train: (call: ServerWritableStream<TrainRequest, TrainResponse>) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort(new Error('cancelled')));
      const write = (m: TrainResponse): void => {
        if (!ac.signal.aborted) call.write(m);
      };
      trainer
        .train(call.request, (p) => write(TrainResponse.fromPartial({ progress: p })), ac.signal)
        .then(
          (entry) => {
            write(TrainResponse.fromPartial({ model: modelInfo(entry) }));
            call.end();
          },
          (err: unknown) => {
            if (!ac.signal.aborted) call.emit('error', toServiceError(err, log, 'Train'));
          },
        );
    },

    listModels: unary('ListModels', async (req: ListModelsRequest) => {
      await registry.scan();
      return ListModelsResponse.fromPartial({ models: registry.list({ name: req.name, loadedOnly: req.loadedOnly }).map(modelInfo) });
    }),

    getModel: unary('GetModel', async (req: GetModelRequest) => {
      await registry.scan();
      return GetModelResponse.fromPartial({ model: modelInfo(registry.get(req.name, req.version)) });
    }),

    loadModel: unary('LoadModel', async (req: LoadModelRequest) => LoadModelResponse.fromPartial({ model: modelInfo(await registry.load(req.name, req.version)) })),

    unloadModel: unary('UnloadModel', async (req: UnloadModelRequest) => {
      await registry.scan();
      return UnloadModelResponse.fromPartial({ models: registry.unload(req.name, req.version).map(modelInfo) });
    }),

    deleteModel: unary('DeleteModel', async (req: DeleteModelRequest) => DeleteModelResponse.fromPartial({ model: modelInfo(await registry.delete(req.name, req.version)) })),

    listInspections: unary('ListInspections', async (req: ListInspectionsRequest) => {
      const tooLong = fieldTooLong('client_id', req.clientId, FIELD_LIMITS.id) ?? fieldTooLong('page_token', req.pageToken, FIELD_LIMITS.pageToken) ?? fieldTooLong('model', req.model, FIELD_LIMITS.id);
      if (tooLong) throw new ItemFailure(Status.INVALID_ARGUMENT, tooLong);
      const verdict = req.verdict === Verdict.VERDICT_GOOD ? 'good' : req.verdict === Verdict.VERDICT_ANOMALOUS ? 'anomalous' : undefined;
      const page = await store.list({
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        sinceMs: req.since?.getTime(),
        untilMs: req.until?.getTime(),
        model: req.model,
        verdict,
        clientId: req.clientId,
        oldestFirst: req.oldestFirst,
        // A page ends early rather than grow past half a message (rows are bounded, see store.ts).
        maxBytes: Math.floor(ctx.config.limits.maxMessageBytes / 2),
      });
      return ListInspectionsResponse.fromPartial({
        inspections: page.items.map((r) =>
          InspectionRecord.fromPartial({
            inspectionId: r.inspectionId,
            clientId: r.clientId,
            inspectedAt: new Date(r.timeMs),
            model: r.model,
            modelVersion: r.modelVersion,
            verdict: r.verdict === 'anomalous' ? Verdict.VERDICT_ANOMALOUS : Verdict.VERDICT_GOOD,
            score: r.score,
            defectType: r.defectType,
            latencyMs: r.latencyMs,
            source: r.source,
            hasImage: r.hasImage,
          }),
        ),
        nextPageToken: page.nextPageToken,
      });
    }),

    getStats: unary('GetStats', (_req: GetStatsRequest) => {
      const b = ctx.batcher;
      const c = ctx.config;
      return GetStatsResponse.fromPartial({
        startedAt: ctx.startedAt,
        uptimeS: (Date.now() - ctx.startedAt.getTime()) / 1000,
        inspectionsTotal: pipeline.inspections,
        anomalousTotal: pipeline.anomalous,
        errorsTotal: pipeline.errors,
        imagesPerSecond: metrics.rate(),
        queueDepth: pipeline.queueDepth,
        active: pipeline.active,
        openStreams: streams.size,
        batchesTotal: b.batches,
        meanBatchSize: b.batches > 0 ? b.views / b.batches : 0,
        batchSizes: [...b.histogram.entries()].sort((x, y) => x[0] - y[0]).map(([size, count]) => BatchSizeCount.fromPartial({ size, count })),
        backend: ctx.backend,
        device: ctx.device,
        maxBatchSize: c.batching.maxBatchSize,
        maxQueueDelayMs: c.batching.maxQueueDelayMs,
        maxInFlight: c.flow.maxInFlightPerStream,
        maxQueue: c.flow.maxQueue,
        recordedTotal: store.count,
        loadedModels: registry.list({ loadedOnly: true }).length,
        trainingsRunning: trainer.active,
        meanImagesPerBatch: b.batches > 0 ? b.jobs / b.batches : 0,
        dedupe: c.batching.dedupe,
      });
    }),
  };
}
