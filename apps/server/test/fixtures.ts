// Shared test helpers: where the real data is, training the fixture models, starting servers (in this
// process or as a child process), throwaway TLS certificates.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Engine, saveModel, trainClassifier, trainOneClass } from '@loupe/core';

import { loadConfig, LoupeClient, LoupeServer, silentLogger, type InspectItem, type InspectManySummary, type ServerConfig } from '../dist/index.js';
import type { InspectResponse } from '@loupe/client/gen/loupe/v1/inspection';

const here = dirname(fileURLToPath(import.meta.url));
export const SERVER_DIR = resolve(here, '..');
export const REPO_ROOT = resolve(SERVER_DIR, '../..');

/** The shared data folder: $LOUPE_SHARED_DIR, else ../shared beside the repository. */
export function sharedDir(): string {
  const candidates = [process.env['LOUPE_SHARED_DIR'], join(REPO_ROOT, '..', 'shared'), join(REPO_ROOT, 'shared')].filter((x): x is string => !!x);
  for (const c of candidates) if (existsSync(join(c, 'datasets', 'mvtec_ad', 'bottle'))) return c;
  throw new Error(`the shared datasets were not found (looked in ${candidates.join(', ')}); set LOUPE_SHARED_DIR`);
}

export function hasSharedData(): boolean {
  try {
    sharedDir();
    return true;
  } catch {
    return false;
  }
}

export const BOTTLE = (): string => join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle');

/** Sorted image files of a bottle sub-folder, [from, from + n). */
export function bottleImages(sub: string, n: number, from = 0): string[] {
  const dir = join(BOTTLE(), sub);
  return readdirSync(dir)
    .filter((f) => /\.(png|jpe?g)$/i.test(f))
    .sort()
    .slice(from, from + n)
    .map((f) => join(dir, f));
}

export const SVM_MODEL = 'bottle-svm';
export const ONE_CLASS_MODEL = 'bottle-oneclass';

/**
 * Trains the two fixture models into `dir` (see global-setup.ts) the way every Loupe model is made: core's
 * trainClassifier / trainOneClass, then saveModel.
 */
export async function trainFixtureModels(dir: string): Promise<void> {
  const engine = await Engine.open({ maxBatch: 8 });
  const classes: [string, string][] = [
    ['good', 'train/good'],
    ['broken_large', 'test/broken_large'],
    ['contamination', 'test/contamination'],
  ];
  const data = classes.flatMap(([label, sub]) => bottleImages(sub, 5).map((path) => ({ path, label })));
  const svm = await trainClassifier({ engine, data, layer: 'fc1000', cache: false, batchSize: 8, extra: { fixture: true } });
  await saveModel(join(dir, `${SVM_MODEL}.loupe`), { ...svm.model, category: 'bottle' });
  const oc = await trainOneClass({ engine, good: bottleImages('train/good', 10, 5), coresetRatio: 0.1, validationFraction: 0.2, category: 'bottle', batchSize: 8 });
  await saveModel(join(dir, `${ONE_CLASS_MODEL}.loupe`), oc.model);
}

/** A fresh model directory holding copies of the fixture models. */
export function modelDirWithFixtures(fixtures: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-server-test-'));
  for (const f of readdirSync(fixtures)) if (f.endsWith('.loupe')) cpSync(join(fixtures, f), join(dir, f));
  return dir;
}

export function testConfig(modelsDir: string, overrides: Record<string, unknown> = {}): ServerConfig {
  return loadConfig({
    env: {},
    overrides: { modelsDir, host: '127.0.0.1', port: 0, log: { level: 'silent' }, shutdownGraceMs: 20_000, ...overrides },
  });
}

let sharedEngine: Promise<Engine> | undefined;
/** One engine per test process (the weights load once). */
export function testEngine(): Promise<Engine> {
  sharedEngine ??= Engine.open({ maxBatch: 32 });
  return sharedEngine;
}

export async function startInProcess(modelsDir: string, overrides: Record<string, unknown> = {}): Promise<LoupeServer> {
  return LoupeServer.start(testConfig(modelsDir, overrides), { logger: silentLogger, engine: await testEngine() });
}

export interface ChildServer {
  child: ChildProcess;
  port: number;
  metricsPort: number | null;
  logs: string[];
  /** Resolves with the exit code/signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs `node dist/main.js ARGS` and waits for its "serving" log line. `wrap` turns that command line into
 * another that ends by exec'ing it (e.g. in a mount namespace), so the child's pid is still the server's.
 */
export function spawnServer(args: string[], env: NodeJS.ProcessEnv = {}, wrap?: (argv: string[]) => string[]): Promise<ChildServer> {
  const argv = [process.execPath, join(SERVER_DIR, 'dist', 'main.js'), '--host', '127.0.0.1', ...args];
  const [cmd, ...rest] = wrap ? wrap(argv) : argv;
  const child = spawn(cmd!, rest, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return new Promise((resolvePromise, reject) => {
    let buf = '';
    let done = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (!done && line.includes('"msg":"serving"')) {
          done = true;
          const rec = JSON.parse(line) as { address: string; metricsPort: number | null };
          resolvePromise({ child, port: Number(rec.address.split(':').pop()), metricsPort: rec.metricsPort, logs, exited });
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => logs.push(`[stderr] ${chunk.toString('utf8').trimEnd()}`));
    void exited.then(({ code, signal }) => {
      if (!done) reject(new Error(`the server exited (${signal ?? code}) before serving:\n${logs.join('\n')}`));
    });
  });
}

export function client(port: number, opts: ConstructorParameters<typeof LoupeClient>[1] = {}): LoupeClient {
  return new LoupeClient(`127.0.0.1:${port}`, opts);
}

export interface Certs {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
}

/** A throwaway CA, a server certificate for localhost/127.0.0.1 and client certificates (openssl). */
export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-certs-'));
  const p = (f: string): string => join(dir, f);
  const ossl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  const mkCa = (name: string): void => {
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '2', '-subj', `/CN=${name}`);
  };
  const mkLeaf = (name: string, ca: string, ext: string): void => {
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${name}`);
    writeFileSync(p(`${name}.ext`), ext);
    ossl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.pem`), '-CAkey', p(`${ca}.key`), '-CAcreateserial', '-out', p(`${name}.pem`), '-days', '2', '-extfile', p(`${name}.ext`));
  };
  mkCa('test-ca');
  mkCa('other-ca');
  mkLeaf('server', 'test-ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  mkLeaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  mkLeaf('intruder', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    ca: p('test-ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.pem'),
    otherClientCert: p('intruder.pem'),
    otherClientKey: p('intruder.key'),
  };
}

export const read = (f: string): Buffer => readFileSync(f);

/** Resident set size of a process, bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A real image as a 224x224 JPEG (what the engine sees anyway): ~10 KB, cheap to decode, for load tests. */
export async function smallImage(file: string): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  return sharp(file).resize(224, 224, { fit: 'fill' }).jpeg({ quality: 90 }).toBuffer();
}

export interface Collected {
  responses: InspectResponse[];
  summary: InspectManySummary;
}

/** Streams `items` over one Inspect call and collects every response in arrival order. */
export async function inspectAll(c: LoupeClient, items: InspectItem[], window = 16): Promise<Collected> {
  const responses: InspectResponse[] = [];
  const summary = await c.inspectMany(items, { window, onResponse: (r) => responses.push(r) });
  return { responses, summary };
}

/** Rejection of a promise as a gRPC error (fails if it resolves). */
export async function grpcError(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}
