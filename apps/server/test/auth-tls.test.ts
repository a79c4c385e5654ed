// Bearer tokens (UNAUTHENTICATED without one; the overall health stays open, per-model health does not), TLS and mutual TLS, with throwaway
// certificates made by openssl in a temporary folder at test time.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { LoupeClient, type LoupeServer } from '../dist/index.js';
import { bottleImages, client, grpcError, inspectAll, makeCerts, modelDirWithFixtures, smallImage, startInProcess, SVM_MODEL, type Certs } from './fixtures.js';

const fixtures = inject('fixtureModels');

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!fixtures)('bearer-token authentication', () => {
  let dir: string;
  let server: LoupeServer;
  let img: Buffer;

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    server = await startInProcess(dir, { auth: { tokens: ['s3cret', 'other-token'] } });
    img = await smallImage(bottleImages('train/good', 1)[0]!);
  });

  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses calls without a token or with a wrong one (UNAUTHENTICATED), unary and streaming', async () => {
    for (const token of [undefined, 'wrong']) {
      const c = client(server.port, token ? { token } : {});
      const e = await grpcError(c.listModels());
      expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(e.details).toMatch(token ? /invalid bearer token/ : /missing bearer token/);
      const { responses, summary } = await inspectAll(c, [{ id: 'a', image: img, model: SVM_MODEL }]);
      expect(responses).toEqual([]);
      expect(summary.status).toBe(grpc.status.UNAUTHENTICATED);
      c.close();
    }
  });

  it('accepts every configured token', async () => {
    for (const token of ['s3cret', 'other-token']) {
      const c = client(server.port, { token });
      expect((await c.listModels()).length).toBe(2);
      const { responses } = await inspectAll(c, [{ id: 'a', image: img, model: SVM_MODEL }]);
      expect(responses[0]!.result).toBeDefined();
      c.close();
    }
  });

  it('keeps the overall health open to probes; per-model health, Watch and List need the token (issue 16, item 9)', async () => {
    const anon = client(server.port);
    const authed = client(server.port, { token: 's3cret' });
    try {
      expect(await anon.checkHealth('')).toBe('SERVING');
      expect(await anon.checkHealth('loupe.v1.Inspection')).toBe('SERVING');
      // A model's status (and whether a name exists at all) names the models: not without a token.
      for (const name of [SVM_MODEL, 'no-such-model']) {
        const e = await grpcError(anon.checkHealth(name));
        expect(e.code, name).toBe(grpc.status.UNAUTHENTICATED);
        expect(e.details, name).toMatch(/^missing bearer token .*: the health of a model needs a token \(the overall status, service "", does not\)$/);
      }
      expect((await grpcError(client(server.port, { token: 'wrong' }).checkHealth(SVM_MODEL))).code).toBe(grpc.status.UNAUTHENTICATED);
      const list = await grpcError(healthList(anon));
      expect(list.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(list.details).toMatch(/the list of services needs a token/);
      const watch = await grpcError(healthWatchFirst(anon, SVM_MODEL));
      expect(watch.code).toBe(grpc.status.UNAUTHENTICATED);
      // With the token: all of it.
      expect(await authed.checkHealth(SVM_MODEL)).toBe('SERVING');
      expect((await grpcError(authed.checkHealth('no-such-model'))).code).toBe(grpc.status.NOT_FOUND);
      expect(Object.keys(await healthList(authed))).toEqual(expect.arrayContaining(['', 'loupe.v1.Inspection', SVM_MODEL]));
      expect(await healthWatchFirst(authed, SVM_MODEL)).toBe(1); // SERVING
    } finally {
      anon.close();
      authed.close();
    }
  });
});

describe.skipIf(!fixtures)('bearer tokens with auth.openHealth', () => {
  let dir: string;
  let server: LoupeServer;

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    server = await startInProcess(dir, { auth: { tokens: ['s3cret'], openHealth: true } });
  });

  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers per-model health and List without a token; the API still needs one', async () => {
    const anon = client(server.port);
    try {
      expect(await anon.checkHealth(SVM_MODEL)).toBe('SERVING');
      expect(Object.keys(await healthList(anon))).toEqual(expect.arrayContaining([SVM_MODEL]));
      expect((await grpcError(anon.listModels())).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      anon.close();
    }
  });
});

/** Health.List through the client's health stub (with its token, if any). */
function healthList(c: LoupeClient): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) =>
    c.health.list({}, c.metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!.statuses))),
  );
}

/** The first status a Health.Watch of `service` sends. */
function healthWatchFirst(c: LoupeClient, service: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = c.health.watch({ service }, c.metadata(), { deadline: Date.now() + 5000 });
    call.on('data', (r: { status: number }) => {
      resolve(r.status);
      call.cancel();
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

describe.skipIf(!fixtures || !hasOpenssl())('TLS and mutual TLS', () => {
  let certs: Certs;
  let dir: string;
  let tlsServer: LoupeServer;
  let mtlsServer: LoupeServer;

  beforeAll(async () => {
    certs = makeCerts();
    dir = modelDirWithFixtures(fixtures);
    tlsServer = await startInProcess(dir, { tls: { cert: certs.serverCert, key: certs.serverKey }, db: { path: `${dir}/tls.db` } });
    mtlsServer = await startInProcess(dir, { tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca }, db: { path: `${dir}/mtls.db` }, auth: { tokens: ['t0k'] } });
  });

  afterAll(async () => {
    await tlsServer?.stop();
    await mtlsServer?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  const fails = async (c: LoupeClient): Promise<number> => {
    const e = await grpcError(c.listModels());
    c.close();
    return e.code;
  };

  it('server TLS: a client trusting the CA connects; plaintext and untrusting clients do not', async () => {
    const ok = client(tlsServer.port, { tls: { ca: certs.ca } });
    expect((await ok.listModels()).length).toBe(2);
    expect(await ok.checkHealth()).toBe('SERVING');
    ok.close();
    const byName = new LoupeClient(`localhost:${tlsServer.port}`, { tls: { ca: certs.ca } });
    expect((await byName.listModels()).length).toBe(2);
    byName.close();
    expect(await fails(client(tlsServer.port, { timeoutMs: 3000 }))).toBe(grpc.status.UNAVAILABLE);
    expect(await fails(client(tlsServer.port, { tls: { ca: certs.otherCa }, timeoutMs: 3000 }))).toBe(grpc.status.UNAVAILABLE);
  });

  it('mutual TLS: only a client certificate signed by the configured CA gets in (and the token still counts)', async () => {
    const ok = client(mtlsServer.port, { tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }, token: 't0k' });
    expect((await ok.listModels()).length).toBe(2);
    ok.close();
    const noToken = client(mtlsServer.port, { tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } });
    expect(await fails(noToken)).toBe(grpc.status.UNAUTHENTICATED);
    expect(await fails(client(mtlsServer.port, { tls: { ca: certs.ca }, token: 't0k', timeoutMs: 3000 }))).toBe(grpc.status.UNAVAILABLE);
    expect(await fails(client(mtlsServer.port, { tls: { ca: certs.ca, cert: certs.otherClientCert, key: certs.otherClientKey }, token: 't0k', timeoutMs: 3000 }))).toBe(
      grpc.status.UNAVAILABLE,
    );
  });
});
