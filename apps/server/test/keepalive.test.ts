// Keepalive (issue 16, "Also"), with raw node:http2 clients and a TCP proxy that plays a NAT:
//   - the server pings idle connections every keepalive.timeMs;
//   - a connection a NAT silently dropped (no FIN, no RST: packets just vanish) is closed by the server
//     when its ping goes unanswered, and the open Inspect stream on it is dropped with its work; the
//     client, with keepalive of its own, notices too and its next call goes through a new connection;
//   - a client that pings more often than keepalive.minPingIntervalMs gets GOAWAY ENHANCE_YOUR_CALM
//     "too_many_pings" (gRPC's rule; grpc-js's server did not enforce it), while pings right after data
//     (bandwidth probes) and pings at the allowed rate are fine.
import * as http2 from 'node:http2';
import * as net from 'node:net';

import * as grpc from '@grpc/grpc-js';
import { describe, expect, inject, it } from 'vitest';

import { LoupeClient, proto } from '../dist/index.js';
import { bottleImages, smallImage, SVM_MODEL } from './fixtures.js';
import { useServer } from './use-server.js';

const fixtures = inject('fixtureModels');

/** A TCP proxy to 127.0.0.1:`port`; `drop()` makes every connection open now a black hole (as a NAT that forgot them). */
async function natProxy(port: number): Promise<{ port: number; drop: () => void; close: () => Promise<void> }> {
  const live = new Set<{ a: net.Socket; b: net.Socket; dropped: boolean }>();
  const server = net.createServer((a) => {
    const b = net.connect(port, '127.0.0.1');
    const pair = { a, b, dropped: false };
    live.add(pair);
    a.on('data', (d) => pair.dropped || b.write(d));
    b.on('data', (d) => pair.dropped || a.write(d));
    const end = (): void => {
      live.delete(pair);
      a.destroy();
      b.destroy();
    };
    // A dropped connection says nothing to either side, ever: closes are swallowed too.
    a.on('close', () => pair.dropped || end());
    b.on('close', () => pair.dropped || end());
    a.on('error', () => {});
    b.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    drop: () => {
      for (const p of live) p.dropped = true;
    },
    close: async () => {
      for (const p of live) (p.a.destroy(), p.b.destroy());
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

/** A raw HTTP/2 connection to the server; resolves with its GOAWAY (code, data) or null if none came before `ms`. */
function rawSession(port: number): http2.ClientHttp2Session {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on('error', () => {});
  return s;
}

function goawayOf(s: http2.ClientHttp2Session): Promise<{ code: number; data: string } | null> {
  return new Promise((resolve) => {
    s.once('goaway', (code, _last, data) => resolve({ code, data: data?.toString('utf8') ?? '' }));
    s.once('close', () => resolve(null));
  });
}

/** An empty-message unary Health.Check over a raw session (5-byte frame of a 0-length message). */
function rawHealthCheck(s: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('data', () => {});
    req.on('end', resolve);
    req.on('error', reject);
    req.end(Buffer.alloc(5));
  });
}

describe.skipIf(!fixtures)('keepalive', () => {
  const f = useServer(fixtures!, { keepalive: { timeMs: 400, timeoutMs: 400, minPingIntervalMs: 300 } });

  it('the server pings an idle connection every keepalive.timeMs', async () => {
    const s = rawSession(f.server.port);
    let pings = 0;
    s.on('ping', () => pings++);
    await new Promise((r) => setTimeout(r, 1500));
    s.close();
    expect(pings).toBeGreaterThanOrEqual(2);
  });

  it('a connection a NAT dropped: the server notices (its ping unanswered) and drops the stream on it; the client reconnects', async () => {
    const proxy = await natProxy(f.server.port);
    const image = await smallImage(bottleImages('train/good', 1)[0]!);
    const behindNat = new LoupeClient(`127.0.0.1:${proxy.port}`, { keepalive: { timeMs: 400, timeoutMs: 400 } });
    try {
      // An open, idle Inspect stream through the NAT (one image answered, then nothing).
      const call = behindNat.inspection.inspect(behindNat.metadata());
      const statusP = new Promise<grpc.StatusObject>((r) => call.on('status', r));
      call.on('error', () => {});
      const first = new Promise<void>((r) => call.once('data', () => r()));
      call.write(proto.InspectRequest.fromPartial({ id: 'a', image, model: SVM_MODEL }));
      await first;
      expect((await f.client.getStats()).openStreams).toBe(1);
      proxy.drop();
      const serverMs = await until('the server to drop the stream', async () => (await f.client.getStats()).openStreams === 0, 5000);
      // The client's own keepalive fails too: its stream ends, and a new call opens a new connection.
      const st = await statusP;
      expect(st.code).toBe(grpc.status.UNAVAILABLE);
      expect(await behindNat.checkHealth('', 5000)).toBe('SERVING');
      process.stderr.write(`[keepalive] dropped connection: the server dropped its stream ${serverMs} ms later\n`);
    } finally {
      behindNat.close();
      await proxy.close();
    }
  });

  it('a client that pings too often gets GOAWAY ENHANCE_YOUR_CALM too_many_pings; others are not disturbed', async () => {
    const abuser = rawSession(f.server.port);
    const goaway = goawayOf(abuser);
    const timer = setInterval(() => abuser.destroyed || abuser.ping(() => {}), 20);
    const g = await Promise.race([goaway, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    clearInterval(timer);
    abuser.destroy();
    expect(g).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, data: 'too_many_pings' });
    expect(await f.client.checkHealth('')).toBe('SERVING');
  });

  it('pings at the allowed rate, or right after the server sent data, are fine', async () => {
    const polite = rawSession(f.server.port);
    const busy = rawSession(f.server.port);
    let closed = false;
    for (const s of [polite, busy]) s.once('goaway', () => (closed = true));
    const end = Date.now() + 2000;
    let nextPolite = 0;
    while (Date.now() < end) {
      // A call, then a ping at once (as bandwidth estimators do), every 20 ms.
      await rawHealthCheck(busy);
      busy.ping(() => {});
      if (Date.now() >= nextPolite) {
        polite.ping(() => {});
        nextPolite = Date.now() + 400;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(closed).toBe(false);
    expect(polite.destroyed || busy.destroyed).toBe(false);
    polite.close();
    busy.close();
  });
});
