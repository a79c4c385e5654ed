// Server interceptors: bearer-token authentication (everything but health) and per-call metrics
// (request counts by final status code, call durations).
import { createHash, timingSafeEqual } from 'node:crypto';

import { Metadata, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';

import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

const OPEN_PREFIXES = ['/grpc.health.v1.Health/'];

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Refuses calls without `authorization: Bearer <one of tokens>` with UNAUTHENTICATED; health stays open. */
export function authInterceptor(tokens: readonly string[], log: Logger): ServerInterceptor {
  const accepted = tokens.map(digest);
  const ok = (presented: string): boolean => {
    const d = digest(presented);
    let match = false;
    for (const a of accepted) match = timingSafeEqual(a, d) || match; // no early exit: constant time
    return match;
  };
  return (methodDescriptor, call) => {
    if (accepted.length === 0 || OPEN_PREFIXES.some((p) => methodDescriptor.path.startsWith(p))) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata: Metadata, mdNext: (m: Metadata) => void) => {
            const header = metadata.get('authorization')[0];
            const value = typeof header === 'string' ? header : header?.toString('utf8');
            const m = value ? /^Bearer\s+(.+)$/i.exec(value.trim()) : null;
            if (!m || !ok(m[1]!)) {
              log.warn('unauthenticated call refused', { method: methodDescriptor.path, peer: call.getPeer(), reason: value ? 'wrong token' : 'no bearer token' });
              call.sendStatus({ code: Status.UNAUTHENTICATED, details: value ? 'invalid bearer token' : 'missing bearer token (metadata "authorization: Bearer <token>")', metadata: new Metadata() });
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
