// A typed client for the Loupe server (used by `loupe --server ...`, the server's tests, the benchmark and
// plant systems). Promises for the unary calls; inspectMany() streams images with a bounded window of
// unanswered images (so neither side buffers more than the window), honouring write() backpressure, and
// hands every response to a callback as it arrives (out of order; matched by id). With `resume`, a stream
// that a server's death cuts off is reopened (round_robin picks a live server) and the unanswered images
// are sent again, so each image is answered once. Unary calls are retried on UNAVAILABLE by grpc-js
// itself (the channel's service config below), not by hand-written loops.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';

import * as grpc from '@grpc/grpc-js';

import { resolveTarget } from './address.js';

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
  Verdict,
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
  /** Attempts of a call grpc-js retries on UNAVAILABLE, the first included (default 5; 1 = no retry). */
  maxAttempts?: number;
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

/** The calls grpc-js retries by itself on UNAVAILABLE: all but Train and LoadModel (long, not repeatable at no cost). */
const RETRIED_METHODS = ['Inspect', 'InspectOne', 'ListModels', 'GetModel', 'UnloadModel', 'DeleteModel', 'ListInspections', 'GetStats'];

/**
 * grpc's service config: round_robin over every resolved address (pick_first, the default, would send
 * every call to one server), and a retryPolicy for UNAVAILABLE (a server restarting, a connection a
 * load balancer dropped) with exponential backoff. grpc-js retries a streaming call only until its first
 * answer (then it is committed); a stream cut later is resumed by inspectMany({ resume }).
 */
export function serviceConfig(maxAttempts = 5): string {
  return JSON.stringify({
    loadBalancingConfig: [{ round_robin: {} }],
    methodConfig: [
      {
        name: RETRIED_METHODS.map((method) => ({ service: 'loupe.v1.Inspection', method })).concat([{ service: 'grpc.health.v1.Health', method: 'Check' }]),
        retryPolicy: { maxAttempts, initialBackoff: '0.1s', maxBackoff: '2s', backoffMultiplier: 2, retryableStatusCodes: ['UNAVAILABLE'] },
      },
    ],
  });
}

/**
 * Whether a stream that ended so may be resumed: UNAVAILABLE (a server gone, draining or restarting), or
 * a reset of the HTTP/2 stream itself (RST_STREAM, which grpc-js reports as INTERNAL): what a proxy such
 * as nginx sends when the replica behind it dies mid-stream. A server's own INTERNAL comes with trailers
 * and other details, and is not resumed.
 */
export function resumable(status: grpc.status, details: string): boolean {
  return status === grpc.status.UNAVAILABLE || (status === grpc.status.INTERNAL && /^Received RST_STREAM with code 2\b/.test(details));
}

export type VerdictName = 'good' | 'anomalous' | 'unspecified';

/** The verdict as a string ('good', 'anomalous'; 'unspecified' for an unset field). */
export function verdictName(v: Verdict | undefined): VerdictName {
  return v === Verdict.VERDICT_GOOD ? 'good' : v === Verdict.VERDICT_ANOMALOUS ? 'anomalous' : 'unspecified';
}

export type InspectItem = Omit<Partial<InspectRequest>, 'image'> & { id: string; image: Buffer | (() => Buffer | Promise<Buffer>) };

/** An answer of the stream, with the verdict also as a string (undefined when the item failed). */
export type InspectAnswer = InspectResponse & { verdict: VerdictName | undefined };

export interface ResumeOptions {
  /** Streams opened in a row without a single answer before giving up (default 8). */
  maxAttempts?: number;
  /** Wait before the first reopening, doubled each time up to maxBackoffMs (defaults 200 ms, 5 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface InspectManyOptions {
  /** Unanswered images at most (default 32). */
  window?: number;
  /** Called once for every image sent, in arrival order. */
  onResponse: (r: InspectAnswer) => void;
  signal?: AbortSignal;
  /**
   * When a stream ends UNAVAILABLE (a server killed, restarting or draining), open a new one (to another
   * server where the channel has several) and send the unanswered images again, so every image is
   * answered exactly once. Off by default: the call then ends with the status, as before.
   */
  resume?: boolean | ResumeOptions;
  /** Called before each reopening, with the status that ended the previous stream. */
  onResume?: (info: { attempt: number; status: grpc.status; details: string; unanswered: number }) => void;
}

export interface InspectManySummary {
  /** Images taken from the input (each counted once, however often it was sent). */
  sent: number;
  answered: number;
  /** Images sent again after a stream was cut, and streams opened after the first. */
  resent: number;
  resumes: number;
  /** The final status (OK unless the call failed, and with resume, could not be resumed). */
  status: grpc.status;
  details: string;
}

export class LoupeClient {
  readonly inspection: InstanceType<typeof InspectionClient>;
  readonly health: InstanceType<typeof HealthClient>;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly tlsInUse: boolean;

  /** The gRPC target the channel resolves (see resolveTarget). */
  readonly target: string;

  /**
   * `address`: 'host:port', 'dns:///host:port', or several IP:PORT (an array or comma-separated): calls
   * are spread over the servers with round_robin and retried on UNAVAILABLE.
   */
  constructor(address: string | readonly string[], opts: ClientOptions = {}) {
    const target = resolveTarget(address);
    this.target = target;
    let creds: grpc.ChannelCredentials;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': opts.maxMessageBytes ?? 16 * 1024 * 1024,
      'grpc.max_send_message_length': opts.maxMessageBytes ?? 16 * 1024 * 1024,
      'grpc.keepalive_time_ms': opts.keepalive?.timeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': opts.keepalive?.timeoutMs ?? 10_000,
      'grpc.service_config': serviceConfig(opts.maxAttempts),
      'grpc.enable_retries': 1,
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

  inspectOne(req: Partial<InspectOneRequest> & { image: Buffer }, timeoutMs?: number): Promise<InspectOneResponse & { verdict: VerdictName | undefined }> {
    return this.call(this.inspection.inspectOne.bind(this.inspection), InspectOneRequest.fromPartial(req), timeoutMs).then((r) => ({
      ...r,
      verdict: r.result ? verdictName(r.result.verdict) : undefined,
    }));
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
   * Streams `items` with at most `window` unanswered images, calling onResponse for each answer as it
   * arrives. Image bytes may be given lazily (a function), so a large folder is read as it is sent, never
   * all at once (and read again if it must be resent). Resolves when the stream has ended. An id may occur
   * more than once: answers of one id are matched to its images in turn.
   */
  async inspectMany(items: Iterable<InspectItem> | AsyncIterable<InspectItem>, opts: InspectManyOptions): Promise<InspectManySummary> {
    const window = Math.max(1, opts.window ?? 32);
    const resume: Required<ResumeOptions> | undefined = opts.resume
      ? { maxAttempts: 8, initialBackoffMs: 200, maxBackoffMs: 5_000, ...(opts.resume === true ? {} : opts.resume) }
      : undefined;
    const source: AsyncIterator<InspectItem> | Iterator<InspectItem> =
      Symbol.asyncIterator in items ? (items as AsyncIterable<InspectItem>)[Symbol.asyncIterator]() : (items as Iterable<InspectItem>)[Symbol.iterator]();
    // Taken from the input and not yet answered, in the order taken (a resumed stream sends them first);
    // byId: the sequence numbers of each id's unanswered images, oldest first.
    const unanswered = new Map<number, InspectItem>();
    const byId = new Map<string, number[]>();
    let taken = 0;
    let answered = 0;
    let resent = 0;
    let resumes = 0;
    let exhausted = false;
    let aborted = false;

    // The server answers an id over its length limit with the id cut to the limit: such an answer belongs to
    // the oldest unanswered image whose id it begins (else that image would wait forever and hold the window).
    const idOf = (answerId: string): string | undefined => {
      if (byId.has(answerId)) return answerId;
      if (answerId.length === 0) return undefined;
      let best: { id: string; seq: number } | undefined;
      for (const [id, seqs] of byId) if (id.length > answerId.length && id.startsWith(answerId) && (!best || seqs[0]! < best.seq)) best = { id, seq: seqs[0]! };
      return best?.id;
    };
    const answer = (r: InspectResponse): void => {
      const id = idOf(r.id);
      const seqs = id === undefined ? undefined : byId.get(id);
      const seq = seqs?.shift();
      if (seq === undefined) return; // not an id of ours: never passed on
      if (seqs!.length === 0) byId.delete(id!);
      unanswered.delete(seq);
      answered++;
      opts.onResponse({ ...r, verdict: r.result ? verdictName(r.result.verdict) : undefined });
    };

    // One Inspect call: resends `replay`, then takes new items while the window allows.
    const stream = (replay: InspectItem[]): Promise<{ status: grpc.status; details: string; progressed: boolean }> => {
      const call = this.inspection.inspect(this.metadata());
      let finished = false;
      let needDrain = false;
      let progressed = false;
      let wake: (() => void) | undefined;
      const wakeUp = (): void => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const onAbort = (): void => {
        aborted = true;
        call.cancel();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      call.on('drain', () => {
        needDrain = false;
        wakeUp();
      });
      const ended = new Promise<{ status: grpc.status; details: string }>((resolve) => {
        call.on('data', (r: InspectResponse) => {
          progressed = true;
          answer(r);
          wakeUp();
        });
        call.on('status', (st: grpc.StatusObject) => {
          finished = true;
          wakeUp();
          resolve({ status: st.code, details: st.details });
        });
        call.on('error', () => {
          /* reported through 'status' */
        });
      });
      const send = async (item: InspectItem): Promise<void> => {
        const image = typeof item.image === 'function' ? await item.image() : item.image;
        if (finished) return;
        needDrain = !call.write(InspectRequest.fromPartial({ ...item, image }));
        while (!finished && needDrain) await new Promise<void>((r) => (wake = r));
      };
      const pump = async (): Promise<void> => {
        try {
          for (const item of replay) {
            if (finished) return;
            await send(item);
          }
          while (!finished && !exhausted) {
            while (!finished && unanswered.size >= window) await new Promise<void>((r) => (wake = r));
            if (finished) return;
            const next = await source.next();
            if (next.done) {
              exhausted = true;
              break;
            }
            const item = next.value;
            // Counted as taken before it is written: if the stream dies first, it is resent.
            const seq = taken++;
            unanswered.set(seq, item);
            const seqs = byId.get(item.id);
            if (seqs) seqs.push(seq);
            else byId.set(item.id, [seq]);
            if (finished) return;
            await send(item);
          }
          if (!finished) call.end();
        } catch (err) {
          call.cancel();
          throw err;
        }
      };
      return Promise.all([pump(), ended])
        .then(([, st]) => ({ ...st, progressed }))
        .finally(() => opts.signal?.removeEventListener('abort', onAbort));
    };

    const finish = async (status: grpc.status, details: string): Promise<InspectManySummary> => {
      // An input left unread is closed (a generator's finally blocks run), as for await would.
      if (!exhausted) await source.return?.();
      return { sent: taken, answered, resent, resumes, status, details };
    };
    let backoff = resume?.initialBackoffMs ?? 0;
    let fruitless = 0;
    for (let replay: InspectItem[] = []; ; ) {
      const st = await stream(replay);
      const done = st.status === grpc.status.OK && exhausted && unanswered.size === 0;
      if (done || !resume || aborted || !resumable(st.status, st.details)) return finish(st.status, st.details);
      fruitless = st.progressed ? 1 : fruitless + 1;
      if (st.progressed) backoff = resume.initialBackoffMs;
      if (fruitless >= resume.maxAttempts) {
        return finish(st.status, `${st.details} (gave up after ${fruitless} attempts without an answer; ${unanswered.size} images unanswered)`);
      }
      opts.onResume?.({ attempt: resumes + 1, status: st.status, details: st.details, unanswered: unanswered.size });
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(resume.maxBackoffMs, backoff * 2);
      if (aborted) return finish(grpc.status.CANCELLED, 'cancelled');
      replay = [...unanswered.values()];
      resent += replay.length;
      resumes++;
    }
  }

  close(): void {
    this.inspection.close();
    this.health.close();
  }
}
