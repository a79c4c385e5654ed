// A typed client for the Loupe server (used by `loupe --server ...`, the tests and the benchmark).
// Promises for the unary calls; inspectMany() streams images with a bounded window of unanswered images
// (so neither side buffers more than the window), honouring write() backpressure, and hands every
// response to a callback as it arrives (out of order; matched by id).
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';

import * as grpc from '@grpc/grpc-js';

import { HealthCheckRequest, HealthCheckResponse_ServingStatus, HealthClient } from './gen/grpc/health/v1/health.js';
import {
  DeleteModelRequest,
  GetModelRequest,
  GetStatsRequest,
  InspectionClient,
  InspectOneRequest,
  InspectRequest,
  ListInspectionsRequest,
  ListModelsRequest,
  LoadModelRequest,
  TrainRequest,
  UnloadModelRequest,
  type GetStatsResponse,
  type InspectOneResponse,
  type InspectResponse,
  type ListInspectionsResponse,
  type ModelInfo,
  type TrainProgress,
  type DeepPartial,
} from './gen/loupe/v1/inspection.js';

export interface ClientTls {
  /** PEM CA bundle to trust (default: the system roots). */
  ca?: string | Buffer;
  /** Client certificate and key (mutual TLS). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Override the name checked against the server certificate. */
  serverName?: string;
}

export interface ClientOptions {
  /** true = TLS with the system roots; an object = TLS with these files/PEMs. */
  tls?: boolean | ClientTls;
  /** Bearer token sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Largest message both ways (default 16 MB, the server's default). */
  maxMessageBytes?: number;
  /** Default deadline of unary calls, ms (default 60 s; inspection streams have none). */
  timeoutMs?: number;
  /**
   * Keepalive pings on an idle connection every `timeMs` (default 30 s, not below the server's
   * keepalive.minPingIntervalMs: it closes the connection of a client that pings more often), and a
   * connection whose ping is not answered within `timeoutMs` (default 10 s) is dropped, so a connection a
   * NAT or firewall silently forgot is noticed and the next call opens a new one.
   */
  keepalive?: { timeMs?: number; timeoutMs?: number };
}

let ipServernameDropped = false;

/**
 * grpc-js passes the target host to tls.connect as the SNI server name even when it is an IP address,
 * which RFC 6066 does not allow: Node warns (DEP0123) on every call of `loupe --server 10.0.0.5:50051 --tls`
 * and will ignore it in a future version. Such a server name is dropped here, as Node will drop it; the
 * certificate is still checked against the address (tls.connect falls back to `host`). Once per process.
 */
function dropIpServername(): void {
  if (ipServernameDropped) return;
  ipServernameDropped = true;
  const connect = tls.connect;
  const patched = function (this: unknown, ...args: unknown[]): tls.TLSSocket {
    const [first] = args;
    if (first && typeof first === 'object' && typeof (first as tls.ConnectionOptions).servername === 'string' && isIP((first as tls.ConnectionOptions).servername!)) {
      const { servername: _ip, ...rest } = first as tls.ConnectionOptions;
      args[0] = rest;
    }
    return (connect as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
  };
  tls.connect = patched as typeof tls.connect;
}

function pem(v: string | Buffer | undefined): Buffer | null {
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  return v.includes('-----BEGIN') ? Buffer.from(v) : readFileSync(v);
}

/** The name of a gRPC status code ('NOT_FOUND' for 5), for messages and JSON. */
export function statusName(code: number): string {
  return grpc.status[code] ?? `CODE_${code}`;
}

/** "host:port" (IPv6 as [::1]:port). */
export function parseAddress(address: string): string {
  const a = address.trim();
  if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(a)) throw new Error(`server address must be HOST:PORT, got '${address}'`);
  return a;
}

export type InspectItem = Omit<Partial<InspectRequest>, 'image'> & { id: string; image: Buffer | (() => Buffer | Promise<Buffer>) };

export interface InspectManyOptions {
  /** Unanswered images at most (default 32). */
  window?: number;
  /** Called for every response, in arrival order. */
  onResponse: (r: InspectResponse) => void;
  signal?: AbortSignal;
}

export interface InspectManySummary {
  sent: number;
  answered: number;
  /** The stream's final status (OK unless the call itself failed). */
  status: grpc.status;
  details: string;
}

export class LoupeClient {
  readonly inspection: InstanceType<typeof InspectionClient>;
  readonly health: InstanceType<typeof HealthClient>;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly tlsInUse: boolean;

  constructor(address: string, opts: ClientOptions = {}) {
    const target = parseAddress(address);
    let creds: grpc.ChannelCredentials;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': opts.maxMessageBytes ?? 16 * 1024 * 1024,
      'grpc.max_send_message_length': opts.maxMessageBytes ?? 16 * 1024 * 1024,
      'grpc.keepalive_time_ms': opts.keepalive?.timeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': opts.keepalive?.timeoutMs ?? 10_000,
    };
    if (opts.tls) {
      dropIpServername();
      const t: ClientTls = opts.tls === true ? {} : opts.tls;
      creds = grpc.credentials.createSsl(pem(t.ca), pem(t.key), pem(t.cert));
      if (t.serverName) channelOptions['grpc.ssl_target_name_override'] = t.serverName;
    } else creds = grpc.credentials.createInsecure();
    this.inspection = new InspectionClient(target, creds, channelOptions);
    this.health = new HealthClient(target, creds, channelOptions);
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.tlsInUse = Boolean(opts.tls);
  }

  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', `Bearer ${this.token}`);
    return md;
  }

  private deadline(ms = this.timeoutMs): { deadline: Date } {
    return { deadline: new Date(Date.now() + ms) };
  }

  private call<Req, Res>(fn: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown, req: Req, timeoutMs?: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn(req, this.metadata(), this.deadline(timeoutMs), (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  /**
   * Resolves once the channel is READY, or has failed outright (a refused port: the call then fails at
   * once, with the reason); rejects when it is still connecting after timeoutMs, as with a peer that
   * accepts TCP but never speaks gRPC (an inspection stream has no deadline and would wait for ever).
   */
  connected(timeoutMs = 10_000): Promise<void> {
    const channel = this.inspection.getChannel();
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        const s = grpc.connectivityState;
        if (state === s.READY || state === s.TRANSIENT_FAILURE || state === s.SHUTDOWN) return resolve();
        channel.watchConnectivityState(state, deadline, (err) => {
          if (err) reject(new Error(`no gRPC answer within ${Math.round(timeoutMs / 1000)} s: the address accepts connections but does not talk gRPC${this.tlsInUse ? ' over TLS' : ''} (is it a Loupe server, and is --tls right?)`));
          else check();
        });
      };
      check();
    });
  }

  /** Waits until the channel is connected (or the deadline passes). */
  waitForReady(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => this.inspection.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
  }

  async checkHealth(service = '', timeoutMs = 5_000): Promise<'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'SERVICE_UNKNOWN'> {
    const r = await this.call(this.health.check.bind(this.health), HealthCheckRequest.fromPartial({ service }), timeoutMs);
    return (HealthCheckResponse_ServingStatus[r.status] ?? 'UNKNOWN') as 'SERVING';
  }

  inspectOne(req: Partial<InspectOneRequest> & { image: Buffer }, timeoutMs?: number): Promise<InspectOneResponse> {
    return this.call(this.inspection.inspectOne.bind(this.inspection), InspectOneRequest.fromPartial(req), timeoutMs);
  }

  listModels(req: Partial<ListModelsRequest> = {}): Promise<ModelInfo[]> {
    return this.call(this.inspection.listModels.bind(this.inspection), ListModelsRequest.fromPartial(req)).then((r) => r.models);
  }

  getModel(name: string, version = ''): Promise<ModelInfo> {
    return this.call(this.inspection.getModel.bind(this.inspection), GetModelRequest.fromPartial({ name, version })).then((r) => r.model!);
  }

  loadModel(name: string, version = ''): Promise<ModelInfo> {
    return this.call(this.inspection.loadModel.bind(this.inspection), LoadModelRequest.fromPartial({ name, version }), 600_000).then((r) => r.model!);
  }

  unloadModel(name: string, version = ''): Promise<ModelInfo[]> {
    return this.call(this.inspection.unloadModel.bind(this.inspection), UnloadModelRequest.fromPartial({ name, version })).then((r) => r.models);
  }

  deleteModel(name: string, version: string): Promise<ModelInfo> {
    return this.call(this.inspection.deleteModel.bind(this.inspection), DeleteModelRequest.fromPartial({ name, version })).then((r) => r.model!);
  }

  listInspections(req: Partial<ListInspectionsRequest> = {}): Promise<ListInspectionsResponse> {
    return this.call(this.inspection.listInspections.bind(this.inspection), ListInspectionsRequest.fromPartial(req));
  }

  getStats(): Promise<GetStatsResponse> {
    return this.call(this.inspection.getStats.bind(this.inspection), GetStatsRequest.fromPartial({}));
  }

  /** Trains a model; onProgress sees every progress message; resolves with the new model. */
  train(req: DeepPartial<TrainRequest>, onProgress?: (p: TrainProgress) => void, signal?: AbortSignal): Promise<ModelInfo> {
    return new Promise((resolve, reject) => {
      const call = this.inspection.train(TrainRequest.fromPartial(req), this.metadata());
      let model: ModelInfo | undefined;
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('data', (m: { progress?: TrainProgress; model?: ModelInfo }) => {
        if (m.progress) onProgress?.(m.progress);
        if (m.model) model = m.model;
      });
      call.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
      call.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        if (model) resolve(model);
        else reject(new Error('the training stream ended without a model'));
      });
    });
  }

  /**
   * Streams `items` over one Inspect call with at most `window` unanswered images, calling onResponse
   * for each answer as it arrives. Image bytes may be given lazily (a function), so a large folder is
   * read as it is sent, never all at once. Resolves when the stream has ended.
   */
  inspectMany(items: Iterable<InspectItem> | AsyncIterable<InspectItem>, opts: InspectManyOptions): Promise<InspectManySummary> {
    const window = Math.max(1, opts.window ?? 32);
    const call = this.inspection.inspect(this.metadata());
    let sent = 0;
    let answered = 0;
    let wake: (() => void) | undefined;
    const wakeUp = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let finished = false;
    let needDrain = false;
    call.on('drain', () => {
      needDrain = false;
      wakeUp();
    });
    const ended = new Promise<InspectManySummary>((resolve) => {
      call.on('data', (r: InspectResponse) => {
        answered++;
        opts.onResponse(r);
        wakeUp();
      });
      call.on('status', (st: grpc.StatusObject) => {
        finished = true;
        wakeUp();
        resolve({ sent, answered, status: st.code, details: st.details });
      });
      call.on('error', () => {
        /* reported through 'status' */
      });
    });
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const pump = async (): Promise<void> => {
      try {
        for await (const item of items as AsyncIterable<InspectItem>) {
          while (!finished && sent - answered >= window) await new Promise<void>((r) => (wake = r));
          if (finished) return;
          const image = typeof item.image === 'function' ? await item.image() : item.image;
          if (finished) return;
          needDrain = !call.write(InspectRequest.fromPartial({ ...item, image }));
          sent++;
          while (!finished && needDrain) await new Promise<void>((r) => (wake = r));
        }
        if (!finished) call.end();
      } catch (err) {
        call.cancel();
        throw err;
      }
    };
    const pumping = pump();
    return Promise.all([pumping, ended]).then(([, s]) => {
      opts.signal?.removeEventListener('abort', onAbort);
      return s;
    });
  }

  close(): void {
    this.inspection.close();
    this.health.close();
  }
}
