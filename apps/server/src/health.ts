// The standard grpc.health.v1.Health service. Services: "" (the server), "loupe.v1.Inspection", and
// one per model name: SERVING while a version of it is loaded, NOT_SERVING while none is. The overall
// status ("" and the API) is open to load balancers and orchestrators; with bearer tokens configured, what
// names models (a model's status, an unknown name's NOT_FOUND, List) needs a token too, unless
// auth.openHealth says otherwise.
import { Metadata, status as Status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceError } from '@grpc/grpc-js';

import {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponse,
  type HealthListRequest,
  type HealthServer,
} from '@loupe/client/gen/grpc/health/v1/health';
import type { TokenCheck } from './interceptors.js';
import type { ModelRegistry } from './registry.js';

export const INSPECTION_SERVICE_NAME = 'loupe.v1.Inspection';

export class HealthState {
  private serving = false;
  private recording = true;
  private readonly watchers = new Set<{ service: string; call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>; last: ServingStatus | undefined }>();

  constructor(
    private readonly registry: ModelRegistry,
    /** The token rule for model names (none: everything open). */
    private readonly modelsNeed: TokenCheck | null = null,
  ) {
    registry.on('change', () => this.notify());
  }

  /** UNAUTHENTICATED for a call that asks about models without a valid token; null when it may. */
  private refusal(service: string | null, metadata: Metadata): ServiceError | null {
    if (!this.modelsNeed || service === '' || service === INSPECTION_SERVICE_NAME) return null;
    const r = this.modelsNeed(metadata);
    if (r.ok) return null;
    const what = service === null ? 'the list of services' : 'the health of a model';
    return { code: Status.UNAUTHENTICATED, details: `${r.details}: ${what} needs a token (the overall status, service "", does not)`, metadata: new Metadata() } as ServiceError;
  }

  /** Overall status ("" and the API service). */
  setServing(serving: boolean): void {
    this.serving = serving;
    this.notify();
  }

  /**
   * Whether results can be recorded (the inspection log commits): a server that can answer nothing is
   * NOT_SERVING, so that a load balancer stops sending it images, and SERVING again when the log recovers.
   */
  setRecording(recording: boolean): void {
    this.recording = recording;
    this.notify();
  }

  /** Status of a service name, or undefined when the name is unknown. */
  statusOf(service: string): ServingStatus | undefined {
    const up = this.serving && this.recording;
    const overall = up ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    if (service === '' || service === INSPECTION_SERVICE_NAME) return overall;
    if (!this.registry.has(service)) return undefined;
    return up && this.registry.isServing(service) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  all(): Record<string, ServingStatus> {
    const out: Record<string, ServingStatus> = {};
    for (const s of ['', INSPECTION_SERVICE_NAME, ...this.registry.names()]) out[s] = this.statusOf(s)!;
    return out;
  }

  private notify(): void {
    for (const w of this.watchers) this.push(w);
  }

  private push(w: { service: string; call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>; last: ServingStatus | undefined }): void {
    const s = this.statusOf(w.service) ?? ServingStatus.SERVICE_UNKNOWN;
    if (s === w.last) return;
    w.last = s;
    w.call.write(HealthCheckResponse.fromPartial({ status: s }));
  }

  /** Ends every Watch call (shutdown: they would otherwise keep the server open). */
  endWatches(): void {
    for (const w of this.watchers) {
      try {
        w.call.end();
      } catch {
        // already gone
      }
    }
    this.watchers.clear();
  }

  implementation(): HealthServer {
    return {
      check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) => {
        const refused = this.refusal(call.request.service, call.metadata);
        if (refused) return callback(refused);
        const s = this.statusOf(call.request.service);
        if (s === undefined) {
          callback({ code: Status.NOT_FOUND, details: `unknown service '${call.request.service}'` } as ServiceError);
          return;
        }
        callback(null, HealthCheckResponse.fromPartial({ status: s }));
      },
      list: (call: ServerUnaryCall<HealthListRequest, HealthListResponse>, callback: sendUnaryData<HealthListResponse>) => {
        const refused = this.refusal(null, call.metadata);
        if (refused) return callback(refused);
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [k, v] of Object.entries(this.all())) statuses[k] = HealthCheckResponse.fromPartial({ status: v });
        callback(null, HealthListResponse.fromPartial({ statuses }));
      },
      watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        const refused = this.refusal(call.request.service, call.metadata);
        if (refused) {
          call.emit('error', refused);
          return;
        }
        const w = { service: call.request.service, call, last: undefined as ServingStatus | undefined };
        this.watchers.add(w);
        const drop = (): void => {
          this.watchers.delete(w);
        };
        call.on('cancelled', drop);
        call.on('close', drop);
        call.on('error', drop);
        this.push(w);
      },
    };
  }
}
