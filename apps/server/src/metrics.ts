// Prometheus metrics (prom-client, one registry per server) and the HTTP endpoint that serves them.
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'code'>;
  readonly requestSeconds: Histogram<'method'>;
  readonly images: Counter<'model' | 'verdict'>;
  readonly imageErrors: Counter<'code'>;
  readonly imageSeconds: Histogram<'model'>;
  readonly batchSize: Histogram;
  readonly batchSeconds: Histogram;
  readonly queueDepth: Gauge;
  readonly active: Gauge;
  readonly openStreams: Gauge;
  readonly imagesPerSecond: Gauge;
  readonly loadedModels: Gauge;
  readonly trainings: Gauge;

  // images/s over a sliding window of 1-second buckets
  private readonly window: number[] = new Array<number>(10).fill(0);
  private windowStart = Math.floor(Date.now() / 1000);

  constructor() {
    const registers = [this.registry];
    // Default metrics keep their standard names under one prefix: loupe_process_resident_memory_bytes, ...
    collectDefaultMetrics({ register: this.registry, prefix: 'loupe_' });
    this.requests = new Counter({ name: 'loupe_grpc_requests_total', help: 'gRPC calls by method and final status code', labelNames: ['method', 'code'], registers });
    this.requestSeconds = new Histogram({
      name: 'loupe_grpc_request_duration_seconds',
      help: 'gRPC call duration (a stream: its whole life)',
      labelNames: ['method'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.images = new Counter({ name: 'loupe_inspections_total', help: 'Images answered with a result, by model and verdict', labelNames: ['model', 'verdict'], registers });
    this.imageErrors = new Counter({ name: 'loupe_inspection_errors_total', help: 'Images answered with an error, by gRPC code name', labelNames: ['code'], registers });
    this.imageSeconds = new Histogram({
      name: 'loupe_inspection_latency_seconds',
      help: 'Per-image latency, receipt to result',
      labelNames: ['model'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.batchSize = new Histogram({ name: 'loupe_batch_size', help: 'Images per engine batch chosen by the dynamic batcher', buckets: [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256], registers });
    this.batchSeconds = new Histogram({ name: 'loupe_batch_duration_seconds', help: 'Engine time per batch', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16], registers });
    this.queueDepth = new Gauge({ name: 'loupe_queue_depth', help: 'Images waiting for a pipeline slot', registers });
    this.active = new Gauge({ name: 'loupe_active_images', help: 'Images being decoded, inferred or scored', registers });
    this.openStreams = new Gauge({ name: 'loupe_open_streams', help: 'Open Inspect streams', registers });
    this.imagesPerSecond = new Gauge({
      name: 'loupe_images_per_second',
      help: 'Images answered per second over the last 10 s',
      registers,
      collect: () => {
        this.imagesPerSecond.set(this.rate());
      },
    });
    this.loadedModels = new Gauge({ name: 'loupe_loaded_models', help: 'Loaded model versions', registers });
    this.trainings = new Gauge({ name: 'loupe_trainings_running', help: 'Trainings running', registers });
  }

  private roll(now: number): void {
    const sec = Math.floor(now / 1000);
    const steps = Math.min(this.window.length, sec - this.windowStart);
    for (let i = 0; i < steps; i++) {
      this.window.shift();
      this.window.push(0);
    }
    if (sec > this.windowStart) this.windowStart = sec;
  }

  /** Counts one answered image for images/s. */
  tick(now = Date.now()): void {
    this.roll(now);
    this.window[this.window.length - 1]! += 1;
  }

  /** Images per second over the last full 10 s (the current second counts partially). */
  rate(now = Date.now()): number {
    this.roll(now);
    const total = this.window.reduce((a, b) => a + b, 0);
    const span = this.window.length - 1 + (now % 1000) / 1000;
    return span > 0 ? total / span : 0;
  }
}

/** Serves GET /metrics (Prometheus text format) and GET /healthz. */
export async function startMetricsServer(metrics: Metrics, host: string, port: number): Promise<{ server: HttpServer; port: number }> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
        },
      );
      return;
    }
    if (req.method === 'GET' && url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
