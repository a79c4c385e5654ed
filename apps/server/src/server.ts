// The Loupe server: one engine, one dynamic batcher, the model registry, the inspection log, the gRPC
// server (Inspection + Health + reflection), the metrics endpoint, and a graceful stop.
import { readFileSync, statSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';

import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { configureThreads, Engine } from '@loupe/core';

import { DynamicBatcher } from './batcher.js';
import { redactConfig, type ServerConfig } from './config.js';
import { DESCRIPTOR_SET_BASE64 } from './gen/descriptor-set.js';
import { HealthService } from './gen/grpc/health/v1/health.js';
import { InspectionService } from './gen/loupe/v1/inspection.js';
import { HealthState } from './health.js';
import { authInterceptor, metricsInterceptor } from './interceptors.js';
import { createLogger, type Logger } from './log.js';
import { Metrics, startMetricsServer } from './metrics.js';
import { InspectionPipeline } from './pipeline.js';
import { ModelRegistry } from './registry.js';
import { inspectionService, type InspectStream, type ServiceContext } from './service.js';
import { InspectionStore } from './store.js';
import { Trainer } from './training.js';

export interface StartOptions {
  logger?: Logger;
  /** Use this engine instead of opening one from config.engine (tests share one). */
  engine?: Engine;
}

export class LoupeServer {
  private stopping: Promise<void> | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly config: ServerConfig,
    /** The bound gRPC port. */
    readonly port: number,
    /** The bound metrics port, or null when metrics are off. */
    readonly metricsPort: number | null,
    private readonly grpcServer: grpc.Server,
    private readonly httpServer: HttpServer | null,
    readonly ctx: ServiceContext,
    private readonly health: HealthState,
    private readonly streams: Set<InspectStream>,
  ) {}

  get log(): Logger {
    return this.ctx.log;
  }

  /** "host:port" a local client can dial. */
  get address(): string {
    const h = this.config.host === '0.0.0.0' || this.config.host === '::' ? '127.0.0.1' : this.config.host;
    return `${h.includes(':') ? `[${h}]` : h}:${this.port}`;
  }

  static async start(config: ServerConfig, opts: StartOptions = {}): Promise<LoupeServer> {
    const log = opts.logger ?? createLogger(config.log.level);
    log.info('starting', { config: redactConfig(config) });
    // Before the engine loads (seconds): a file given as the models folder fails now, naming it.
    const modelsDir = statSync(config.modelsDir, { throwIfNoEntry: false });
    if (modelsDir && !modelsDir.isDirectory()) throw new Error(`the models folder ${config.modelsDir} is a file, not a folder (give the folder that holds the .loupe files)`);
    if (config.engine.threads !== undefined) configureThreads({ total: config.engine.threads });
    const engine =
      opts.engine ??
      (await Engine.open({
        backend: config.engine.backend,
        precision: config.engine.precision,
        maxBatch: config.batching.maxBatchSize,
        ...(config.engine.threads !== undefined ? { threads: config.engine.threads } : {}),
        ...(config.engine.weights !== undefined ? { weights: config.engine.weights } : {}),
      }));
    const session = engine.openSession({ backend: config.engine.backend, precision: config.engine.precision, maxBatch: config.batching.maxBatchSize, ...(config.engine.threads !== undefined ? { threads: config.engine.threads } : {}) });
    log.info('engine ready', { backend: session.backend, device: session.device, threads: session.threads, weightsHash: engine.weightsHash });

    const metrics = new Metrics();
    const store = new InspectionStore(config.db.path, {
      synchronous: config.db.synchronous,
      storeImages: config.db.storeImages,
      retentionDays: config.db.retentionDays,
      maxRows: config.db.maxRows,
    });
    const registry = new ModelRegistry({ dir: config.modelsDir, engine, backend: config.engine.backend, ownFiles: [config.db.path], log });
    registry.on('change', () => metrics.loadedModels.set(registry.list({ loadedOnly: true }).length));
    const batcher = new DynamicBatcher(session, {
      maxBatchSize: config.batching.maxBatchSize,
      maxQueueDelayMs: config.batching.maxQueueDelayMs,
      maxInflightBatches: config.batching.maxInflightBatches,
      dedupe: config.batching.dedupe,
      onBatch: (b) => {
        metrics.batchSize.observe(b.size);
        metrics.batchSeconds.observe(b.ms / 1000);
        log.debug('batch', { size: b.size, images: b.jobs, ms: Math.round(b.ms), taps: b.taps.join(',') });
      },
    });
    const pipeline = new InspectionPipeline(
      {
        maxQueue: config.flow.maxQueue,
        maxQueueBytes: config.flow.maxQueueBytes,
        maxActive: config.flow.maxActive,
        maxImageBytes: config.limits.maxImageBytes,
        maxImagePixels: config.limits.maxImagePixels,
        maxMessageBytes: config.limits.maxMessageBytes,
        dedupe: config.batching.dedupe,
      },
      registry,
      batcher,
      store,
      metrics,
      log,
    );
    const trainer = new Trainer(
      { maxConcurrent: config.training.maxConcurrent, threads: config.training.threads, maxImages: config.training.maxImages, weights: config.engine.weights, backend: config.engine.backend },
      registry,
      metrics,
      log,
    );
    const health = new HealthState(registry);
    if (config.autoload) await registry.loadAllLatest();
    else await registry.scan();

    const ctx: ServiceContext = { config, registry, pipeline, batcher, store, trainer, metrics, log, startedAt: new Date(), backend: session.backend, device: session.device };
    const streams = new Set<InspectStream>();
    const interceptors = [metricsInterceptor(metrics), authInterceptor(config.auth.tokens, log)];
    const server = new grpc.Server({
      'grpc.max_receive_message_length': config.limits.maxMessageBytes,
      'grpc.max_send_message_length': config.limits.maxMessageBytes,
      'grpc.keepalive_time_ms': config.keepalive.timeMs,
      'grpc.keepalive_timeout_ms': config.keepalive.timeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': config.keepalive.minPingIntervalMs,
      interceptors,
    });
    server.addService(InspectionService, inspectionService(ctx, streams));
    server.addService(HealthService, health.implementation());
    if (config.reflection) {
      const pkg = loadFileDescriptorSetFromBuffer(Buffer.from(DESCRIPTOR_SET_BASE64, 'base64'));
      new ReflectionService(pkg).addToServer(server);
    }

    let creds: grpc.ServerCredentials;
    if (config.tls) {
      const clientCa = config.tls.clientCa ? readFileSync(config.tls.clientCa) : null;
      creds = grpc.ServerCredentials.createSsl(clientCa, [{ cert_chain: readFileSync(config.tls.cert), private_key: readFileSync(config.tls.key) }], clientCa !== null);
    } else creds = grpc.ServerCredentials.createInsecure();
    const target = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
    let port: number;
    let http: { server: HttpServer; port: number } | null = null;
    try {
      port = await new Promise<number>((resolve, reject) => server.bindAsync(target, creds, (err, p) => (err ? reject(err) : resolve(p))));
      if (config.metrics.port !== null) {
        const { host: mh, port: mp } = config.metrics;
        http = await startMetricsServer(metrics, mh, mp).catch((err: unknown) => {
          throw new Error(`cannot serve metrics on ${mh}:${mp}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        });
      }
    } catch (err) {
      // A half-started server must not keep its gRPC port (and the process) alive after saying it failed.
      server.forceShutdown();
      batcher.close();
      store.close();
      throw err;
    }

    const s = new LoupeServer(config, port, http?.port ?? null, server, http?.server ?? null, ctx, health, streams);
    health.setServing(true);
    if (config.db.retentionDays > 0 || config.db.maxRows > 0) {
      const prune = (): void => {
        try {
          const n = store.prune();
          if (n > 0) log.info('retention: old results deleted', { rows: n });
        } catch (err) {
          log.warn('retention failed', { error: err });
        }
      };
      prune();
      s.retentionTimer = setInterval(prune, 10 * 60_000);
      s.retentionTimer.unref();
    }
    log.info('serving', {
      address: `${config.host}:${port}`,
      tls: config.tls ? (config.tls.clientCa ? 'mutual' : 'server') : 'off',
      auth: config.auth.tokens.length > 0 ? 'bearer' : 'off',
      metricsPort: http?.port ?? null,
      models: registry.list().map((e) => `${e.name}@${e.version}:${e.state}`),
    });
    return s;
  }

  /**
   * Graceful stop: health goes NOT_SERVING, no new calls or images are accepted, images already read
   * are answered, open streams end (UNAVAILABLE if the client had more to send), trainings are
   * stopped, the inspection log is flushed and closed. After `graceMs` whatever is left is cancelled.
   */
  stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.stopping ??= this.doStop(graceMs);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    const { log, pipeline, batcher, store, trainer } = this.ctx;
    const t0 = performance.now();
    log.info('shutting down', { graceMs, openStreams: this.streams.size, queued: pipeline.queueDepth, active: pipeline.active });
    this.health.setServing(false);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    pipeline.stopAdmitting();
    trainer.killAll();
    for (const s of [...this.streams]) s.shutdown();
    this.health.endWatches();
    const drained = new Promise<void>((resolve) => this.grpcServer.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all([drained, pipeline.idle()]).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      log.warn('grace period over: cancelling what is left', { queued: pipeline.queueDepth, active: pipeline.active });
      this.grpcServer.forceShutdown();
    }
    batcher.close();
    await pipeline.idle();
    store.close();
    if (this.httpServer) await new Promise<void>((resolve) => this.httpServer!.close(() => resolve()));
    log.info('stopped', { ms: Math.round(performance.now() - t0), inspections: pipeline.inspections, recorded: store.count });
  }
}

/** Starts a server (see LoupeServer.start). */
export function startServer(config: ServerConfig, opts: StartOptions = {}): Promise<LoupeServer> {
  return LoupeServer.start(config, opts);
}
