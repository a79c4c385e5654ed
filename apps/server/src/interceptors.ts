// Server interceptors: bearer-token authentication (everything but health, which checks its own) and per-call metrics
// (request counts by final status code, call durations).
import { createHash, timingSafeEqual } from 'node:crypto';

import { Metadata, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';

import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

const OPEN_PREFIXES = ['/grpc.health.v1.Health/'];

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Checks a call's `authorization: Bearer <token>` against the configured tokens (constant time). */
export type TokenCheck = (metadata: Metadata) => { ok: true } | { ok: false; details: string; reason: string };

export function tokenCheck(tokens: readonly string[]): TokenCheck {
  const accepted = tokens.map(digest);
  const known = (presented: string): boolean => {
    const d = digest(presented);
    let match = false;
    for (const a of accepted) match = timingSafeEqual(a, d) || match; // no early exit: constant time
    return match;
  };
  return (metadata) => {
    if (accepted.length === 0) return { ok: true };
    const header = metadata.get('authorization')[0];
    const value = typeof header === 'string' ? header : header?.toString('utf8');
    const m = value ? /^Bearer\s+(.+)$/i.exec(value.trim()) : null;
    if (m && known(m[1]!)) return { ok: true };
    return value
      ? { ok: false, details: 'invalid bearer token', reason: 'wrong token' }
      : { ok: false, details: 'missing bearer token (metadata "authorization: Bearer <token>")', reason: 'no bearer token' };
  };
}

/**
 * Refuses calls without `authorization: Bearer <one of tokens>` with UNAUTHENTICATED. Health passes: its
 * overall status is open to probes, and the health service checks the token itself for what names models
 * (per-model status, List; see health.ts).
 */
export function authInterceptor(check: TokenCheck, enabled: boolean, log: Logger): ServerInterceptor {
  return (methodDescriptor, call) => {
    if (!enabled || OPEN_PREFIXES.some((p) => methodDescriptor.path.startsWith(p))) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata: Metadata, mdNext: (m: Metadata) => void) => {
            const r = check(metadata);
            if (!r.ok) {
              log.warn('unauthenticated call refused', { method: methodDescriptor.path, peer: call.getPeer(), reason: r.reason });
              call.sendStatus({ code: Status.UNAUTHENTICATED, details: r.details, metadata: new Metadata() });
              return;
            }
            mdNext(metadata);
          },
        });
      },
    });
  };
}

/** Counts every call by method and final status code and times it. */
export function metricsInterceptor(metrics: Metrics): ServerInterceptor {
  return (methodDescriptor, call) => {
    const started = performance.now();
    const method = methodDescriptor.path.replace(/^\//, '');
    let done = false;
    const count = (code: Status): void => {
      if (done) return;
      done = true;
      metrics.requests.inc({ method, code: Status[code] ?? String(code) });
      metrics.requestSeconds.observe({ method }, (performance.now() - started) / 1000);
    };
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => count(Status.CANCELLED) }),
      sendStatus: (st, next) => {
        count(st.code);
        next(st);
      },
    });
  };
}
