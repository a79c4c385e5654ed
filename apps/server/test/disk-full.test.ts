// The server's disks failing for real (issue 16, items 5 and 10): the server runs in a user + mount
// namespace (unshare) with its inspection log on a tmpfs of a few MB, or its models folder mounted
// read-only, and the test fills and frees that tmpfs from outside (through /proc/PID/root).
//   - Log disk full: images are answered UNAVAILABLE saying the log's disk is full, never answered
//     unrecorded; health is NOT_SERVING while it lasts and SERVING again once space is freed; the log
//     passes PRAGMA integrity_check.
//   - Start with the log's disk full, or with a log path that cannot be opened: the start fails naming
//     the file and the cause.
//   - Train into a read-only models folder: FAILED_PRECONDITION saying so (it came back INTERNAL).
// Skipped, with a note, where unprivileged user namespaces are not available.
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { proto, type LoupeClient } from '../dist/index.js';
import { bottleImages, client, modelDirWithFixtures, read, smallImage, spawnServer, SVM_MODEL, type ChildServer } from './fixtures.js';

const fixtures = inject('fixtureModels');

/** Whether this machine lets a process mount a tmpfs in a user namespace of its own. */
function canUnshare(): boolean {
  try {
    execFileSync('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d" && rmdir "$d"'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

const namespaces = canUnshare();
if (!namespaces) process.stderr.write('[skip] disk-full tests: unshare --user --mount is not available here\n');

/** Wraps a server command line: mounts a tmpfs of `size` on `dir` (in a namespace of its own), runs `setup`, then execs the server. */
const onTmpfs =
  (dir: string, size: string, setup = 'true') =>
  (argv: string[]): string[] => ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', `mount -t tmpfs -o size=${size} tmpfs "$0" && ${setup} && exec "$@"`, dir, ...argv];

/** Wraps a server command line: `dir` bind-mounted read-only in a namespace of its own. */
const readOnly =
  (dir: string) =>
  (argv: string[]): string[] => ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', dir, ...argv];

/** Fills the file system of `file` (written from outside the namespace) until it is full. */
function fill(file: string): number {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * 1024, 7);
  let bytes = 0;
  try {
    for (;;) bytes += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return bytes;
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

describe.skipIf(!fixtures || !namespaces)('the disks under the server', () => {
  let dir: string;
  let image: Buffer;
  const servers: ChildServer[] = [];

  beforeAll(async () => {
    dir = modelDirWithFixtures(fixtures!);
    image = await smallImage(bottleImages('train/good', 1)[0]!);
  });

  afterAll(() => {
    for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('item 5: a full log disk: UNAVAILABLE naming it, nothing answered unrecorded, NOT_SERVING until space is freed', async () => {
    const dbDir = join(dir, 'dbfs');
    mkdirSync(dbDir);
    const srv = await spawnServer(['--models', dir, '--port', '0', '--db', join(dbDir, 'inspections.db')], {}, onTmpfs(dbDir, '4m'));
    servers.push(srv);
    const inside = (f: string): string => `/proc/${srv.child.pid}/root${join(dbDir, f)}`;
    const c: LoupeClient = client(srv.port);
    const ok = new Set<string>();
    const send = async (prefix: string, n: number): Promise<proto.InspectResponse[]> => {
      const out: proto.InspectResponse[] = [];
      await c.inspectMany(
        Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, image, model: SVM_MODEL })),
        { window: 4, onResponse: (r) => (out.push(r), r.result && ok.add(r.id)) },
      );
      return out;
    };
    expect((await send('before', 8)).every((r) => r.result)).toBe(true);
    expect(await c.checkHealth('')).toBe('SERVING');

    const ballast = inside('ballast');
    const filled = fill(ballast);
    expect(filled).toBeGreaterThan(1024 * 1024);
    // Answers until the log's next commit needs a page the disk no longer has.
    let refused: proto.InspectResponse | undefined;
    for (let round = 0; round < 50 && !refused; round++) refused = (await send(`full${round}`, 8)).find((r) => r.error);
    expect(refused?.error).toMatchObject({
      code: grpc.status.UNAVAILABLE,
      message: expect.stringMatching(/not answered: the inspection log inspections\.db cannot record results: the disk holding it is full \(.*\); send it again later$/),
    });
    const flippedMs = await until('health NOT_SERVING', async () => (await c.checkHealth('')) === 'NOT_SERVING', 2000);
    expect(await c.checkHealth(SVM_MODEL)).toBe('NOT_SERVING');
    // While it lasts, images are refused at once, saying why; none is answered with a result.
    const during = await send('during', 6);
    expect(during.every((r) => r.error?.code === grpc.status.UNAVAILABLE && /disk holding it is full/.test(r.error.message))).toBe(true);

    unlinkSync(ballast);
    const recoveredMs = await until('health SERVING again', async () => (await c.checkHealth('')) === 'SERVING', 5000);
    expect((await send('after', 8)).every((r) => r.result)).toBe(true);
    process.stderr.write(`[disk-full] NOT_SERVING ${flippedMs} ms after the first refusal; SERVING again ${recoveredMs} ms after space was freed\n`);

    // Every image answered with a result is in the log, and the log is sound. Checked on a copy: SQLite
    // resolves /proc/PID/root to this process's own root, so it cannot open the file where it is.
    const copy = join(dir, 'copy');
    mkdirSync(copy);
    for (const f of ['inspections.db', 'inspections.db-wal']) if (existsSync(inside(f))) copyFileSync(inside(f), join(copy, f));
    const db = new Database(join(copy, 'inspections.db'));
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const logged = new Set((db.prepare('SELECT client_id FROM inspections').all() as { client_id: string }[]).map((r) => r.client_id));
      for (const id of ok) expect(logged.has(id), id).toBe(true);
    } finally {
      db.close();
    }
    c.close();
    srv.child.kill('SIGTERM');
    expect((await srv.exited).code).toBe(0);
  });

  it('item 10: a start whose log cannot be opened (disk full, a file in the way) fails naming the log file', async () => {
    const fullDir = join(dir, 'fullfs');
    mkdirSync(fullDir);
    const full = await spawnServer(['--models', dir, '--port', '0', '--db', join(fullDir, 'inspections.db')], {}, onTmpfs(fullDir, '1m', `(head -c 2000000 /dev/zero > "$0/ballast" 2>/dev/null || true)`)).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(full).toMatch(new RegExp(`cannot start: cannot open the inspection log ${join(fullDir, 'inspections.db').replace(/[/.]/g, '\\$&')}: the disk holding it is full \\(database or disk is full\\)`));

    writeFileSync(join(dir, 'a-file'), 'not a folder');
    const blocked = await spawnServer(['--models', dir, '--port', '0', '--db', join(dir, 'a-file', 'inspections.db')]).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(blocked).toMatch(/cannot start: cannot open the inspection log .*a-file\/inspections\.db: a file is in the way of its folder \(EEXIST/);
  });

  it('item 10: Train into a read-only models folder is FAILED_PRECONDITION saying so, not INTERNAL', async () => {
    const logDir = mkdtempSync(join(tmpdir(), 'loupe-rw-'));
    const srv = await spawnServer(['--models', dir, '--port', '0', '--db', join(logDir, 'ro.db')], {}, readOnly(dir));
    servers.push(srv);
    const c = client(srv.port);
    const images = bottleImages('train/good', 3).map((f) => ({ image: read(f), label: '', name: f }));
    const err = await c.train({ name: 'ro-model', kind: proto.ModelKind.MODEL_KIND_ONE_CLASS, images }).then(() => undefined, (e: grpc.ServiceError) => e);
    expect(err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err?.details).toBe("cannot train model 'ro-model': the server's models folder is on a read-only file system");
    expect(existsSync(join(dir, 'ro-model'))).toBe(false);
    // A delete the folder refuses leaves the model where it was, saying why.
    const del = await c.deleteModel(SVM_MODEL, '1').then(() => undefined, (e: grpc.ServiceError) => e);
    expect(del?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(del?.details).toMatch(/EROFS/);
    c.close();
    srv.child.kill('SIGTERM');
    await srv.exited;
    rmSync(logDir, { recursive: true, force: true });
  });
});
