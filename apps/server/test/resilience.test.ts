// The server as a process among failing peers: a client killed mid-stream (and one that cancels) leaves
// it healthy with nothing left queued; kill -9 of the server mid-stream loses no acknowledged result
// (each one is committed to SQLite before it is sent); SIGTERM stops it gracefully.
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { proto, type LoupeClient } from '../dist/index.js';
import { bottleImages, client, modelDirWithFixtures, read, smallImage, spawnServer, SERVER_DIR, SVM_MODEL, type ChildServer } from './fixtures.js';

const fixtures = inject('fixtureModels');

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function* endless(image: Buffer, model: string, prefix: string): Generator<{ id: string; image: Buffer; model: string }> {
  for (let i = 0; ; i++) yield { id: `${prefix}-${i}`, image, model };
}

describe.skipIf(!fixtures)('resilience', () => {
  let dir: string;
  let image: Buffer;
  const servers: ChildServer[] = [];
  const start = async (args: string[] = []): Promise<ChildServer> => {
    const s = await spawnServer(['--models', dir, '--port', '0', '--db', join(dir, 'log.db'), ...args]);
    servers.push(s);
    return s;
  };

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures);
    image = await smallImage(bottleImages('train/good', 1)[0]!);
  });

  afterAll(async () => {
    for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a client killed mid-stream, or one that cancels, leaves the server healthy with nothing queued', async () => {
    const srv = await start();
    const c = client(srv.port);
    try {
      const imageFile = join(dir, 'img.jpg');
      writeFileSync(imageFile, image);
      // a client process with more images in flight than the server's window, killed hard
      const victim = spawn(process.execPath, [join(SERVER_DIR, 'test', 'helpers', 'stream-client.mjs'), `127.0.0.1:${srv.port}`, SVM_MODEL, imageFile, '64'], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        victim.stdout!.on('data', (d: Buffer) => {
          if (/answered (\d+)/.test(d.toString()) && Number(/answered (\d+)\s*$/.exec(d.toString().trim())?.[1] ?? 0) >= 3) resolve();
        });
        victim.on('exit', () => reject(new Error('the client exited early')));
      });
      const during = await c.getStats();
      expect(during.openStreams).toBe(1);
      expect(during.active + during.queueDepth).toBeGreaterThan(0);
      victim.kill('SIGKILL');

      // a client that cancels its own stream mid-way
      const ac = new AbortController();
      let got = 0;
      const cancelled = await c.inspectMany(endless(image, SVM_MODEL, 'x'), {
        window: 32,
        signal: ac.signal,
        onResponse: () => {
          if (++got === 2) ac.abort();
        },
      });
      expect(cancelled.status).toBe(grpc.status.CANCELLED);

      await until('the dead streams to be cleaned up', async () => {
        const s = await c.getStats();
        return s.openStreams === 0 && s.queueDepth === 0 && s.active === 0;
      });
      // The images the two clients abandoned are no errors of the service (Prometheus counts them as CANCELLED).
      expect((await c.getStats()).errorsTotal).toBe(0);
      expect(await c.checkHealth()).toBe('SERVING');
      const r = await c.inspectOne({ id: 'after', image, model: SVM_MODEL });
      expect(r.result).toBeDefined();
      expect(srv.child.exitCode).toBeNull();
    } finally {
      c.close();
      srv.child.kill('SIGTERM');
      expect((await srv.exited).code).toBe(0);
    }
  });

  it('kill -9 mid-stream: after a restart every acknowledged result is in the inspection log', async () => {
    const srv = await start();
    let c: LoupeClient = client(srv.port);
    const acked = new Map<string, string>();
    const summary = await c.inspectMany(endless(image, SVM_MODEL, 'k'), {
      window: 32,
      onResponse: (r) => {
        if (r.result) acked.set(r.id, r.result.inspectionId);
        if (acked.size === 100) srv.child.kill('SIGKILL');
      },
    });
    c.close();
    expect(summary.status).toBe(grpc.status.UNAVAILABLE);
    expect((await srv.exited).signal).toBe('SIGKILL');
    expect(acked.size).toBeGreaterThanOrEqual(100);

    const again = await start();
    c = client(again.port);
    try {
      const recorded = new Map<string, string>();
      let token = '';
      do {
        const page = await c.listInspections({ pageSize: 1000, pageToken: token, oldestFirst: true });
        for (const r of page.inspections) recorded.set(r.inspectionId, r.clientId);
        token = page.nextPageToken;
      } while (token);
      const missing = [...acked].filter(([, inspectionId]) => !recorded.has(inspectionId));
      expect(missing).toEqual([]);
      for (const [id, inspectionId] of acked) expect(recorded.get(inspectionId)).toBe(id);
      expect((await c.getStats()).recordedTotal).toBe(recorded.size);
    } finally {
      c.close();
      again.child.kill('SIGTERM');
      await again.exited;
    }
  });

  it('SIGTERM mid-training: the client is told to send it again (UNAVAILABLE), no model folder is left', async () => {
    const srv = await start();
    const c = client(srv.port);
    const images = bottleImages('train/good', 30).map((f) => ({ image: read(f), label: '', name: f }));
    let signalled = false;
    const err = await c
      .train({ name: 'interrupted', kind: proto.ModelKind.MODEL_KIND_ONE_CLASS, images }, (p) => {
        if (p.stage === 'features' && !signalled) {
          signalled = true;
          srv.child.kill('SIGTERM');
        }
      })
      .then(() => undefined, (e: grpc.ServiceError) => e);
    c.close();
    expect(signalled).toBe(true);
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(err?.details).toMatch(/the server is shutting down; send the training again/);
    expect((await srv.exited).code).toBe(0);
    expect(existsSync(join(dir, 'interrupted'))).toBe(false);
  });

  it('SIGTERM mid-stream: answers what it read, ends the stream UNAVAILABLE, exits 0 with the log closed', async () => {
    const srv = await start();
    const c = client(srv.port);
    const results = new Map<string, string>();
    const ids: string[] = [];
    let signalled = false;
    const summary = await c.inspectMany(endless(image, SVM_MODEL, 't'), {
      window: 32,
      onResponse: (r) => {
        ids.push(r.id);
        if (r.result) results.set(r.id, r.result.inspectionId);
        if (results.size === 40 && !signalled) {
          signalled = true;
          srv.child.kill('SIGTERM');
        }
      },
    });
    c.close();
    expect(summary.status).toBe(grpc.status.UNAVAILABLE);
    expect(summary.details).toMatch(/shutting down/);
    expect(new Set(ids).size).toBe(ids.length);
    const exit = await srv.exited;
    expect(exit.code).toBe(0);
    expect(srv.logs.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    // the log was checkpointed and closed: readable as a plain database file
    const db = new Database(join(dir, 'log.db'), { readonly: true });
    try {
      const have = new Set((db.prepare('SELECT inspection_id FROM inspections').all() as { inspection_id: string }[]).map((r) => r.inspection_id));
      expect([...results.values()].filter((x) => !have.has(x))).toEqual([]);
    } finally {
      db.close();
    }
  });
});
