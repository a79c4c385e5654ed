// The container image, built and run for real with Debian's podman (runtime runc, explicit ulimits: crun
// fails in VMs with hybrid cgroups): deploy/build-image.sh builds the base (cached by its recipe's hash)
// and the image; the container runs as a non-root user with the weights inside, its health check
// (`loupe health`) passes, every bottle test image streamed through the published port is answered once
// and recorded, and `podman stop` drains it (exit 0, the log closed).
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { LoupeClient, type InspectItem } from '@loupe/client';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { BOTTLE, hasSharedData, REPO_ROOT, SVM_MODEL } from './fixtures.js';
import { freePort } from './helpers/nginx.js';

const run = promisify(execFile);
const fixtures = inject('fixtureModels');
const TAG = 'localhost/loupe:test';
const NAME = `loupe-test-${process.pid}`;
/** What podman needs on these machines (see deploy/build-image.sh). */
const PODMAN = ['--runtime', 'runc'];
const ULIMITS = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768'];

/** Why containers cannot run here, or '' when they can. */
function containersUnavailable(): string {
  for (const c of ['podman', 'runc', 'mmdebstrap']) {
    try {
      execFileSync('sh', ['-c', `command -v ${c}`], { stdio: 'pipe' });
    } catch {
      return `${c} is not installed (Debian: apt-get install podman runc mmdebstrap; tools/bootstrap.sh does it as root)`;
    }
  }
  try {
    execFileSync('podman', [...PODMAN, 'info'], { stdio: 'pipe', timeout: 60_000 });
  } catch (err) {
    return `podman cannot run here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim().split('\n').pop()}`;
  }
  return '';
}

const why = containersUnavailable();
if (why) process.stderr.write(`[container.test] SKIPPED: ${why}\n`);

describe.skipIf(!fixtures || !hasSharedData() || why !== '')('container image (podman + runc)', () => {
  let models: string;
  let port: number;

  beforeAll(async () => {
    const t0 = Date.now();
    await run('bash', [join(REPO_ROOT, 'deploy', 'build-image.sh'), TAG], { maxBuffer: 64 << 20 });
    process.stderr.write(`[container.test] image built in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    // The models volume belongs to the image's user (uid 10001): it holds the SQLite log too.
    models = mkdtempSync(join(tmpdir(), 'loupe-container-models-'));
    cpSync(join(fixtures, `${SVM_MODEL}.loupe`), join(models, `${SVM_MODEL}.loupe`));
    for (const p of [models, join(models, `${SVM_MODEL}.loupe`)]) chownSync(p, 10001, 10001);
    port = await freePort();
  }, 900_000);

  afterAll(async () => {
    await run('podman', [...PODMAN, 'rm', '-f', NAME]).catch(() => undefined);
    await run('podman', ['rmi', '-f', TAG]).catch(() => undefined);
    if (models) rmSync(models, { recursive: true, force: true });
  });

  it('runs as a non-root user, passes its health check, answers every bottle test image once through the published port, and drains on podman stop', async () => {
    // The weights are inside the image: the server starts without fetching anything.
    await run('podman', [...PODMAN, 'run', '-d', '--name', NAME, ...ULIMITS, '-p', `127.0.0.1:${port}:50051`, '-v', `${models}:/var/lib/loupe/models`, '-e', 'LOUPE_SERVER_THREADS=2', TAG]);
    const client = new LoupeClient(`127.0.0.1:${port}`);
    try {
      const end = Date.now() + 120_000;
      for (;;) {
        const st = await client.checkHealth('', 2_000).catch(() => 'DOWN');
        if (st === 'SERVING') break;
        if (Date.now() > end) throw new Error(`the container did not serve:\n${(await run('podman', ['logs', NAME]).catch((e: Error) => ({ stdout: e.message, stderr: '' }))).stdout}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      // the image's own HEALTHCHECK (loupe --server 127.0.0.1:50051 health) passes
      await run('podman', [...PODMAN, 'healthcheck', 'run', NAME]);
      expect((await run('podman', [...PODMAN, 'exec', NAME, 'id', '-u'])).stdout.trim()).toBe('10001');

      const test = join(BOTTLE(), 'test');
      const items: InspectItem[] = [];
      for (const sub of readdirSync(test).sort()) for (const f of readdirSync(join(test, sub)).sort()) items.push({ id: `${sub}/${f}`, image: readFileSync(join(test, sub, f)), model: SVM_MODEL });
      const answers = new Map<string, number>();
      const errors: string[] = [];
      const summary = await client.inspectMany(items, {
        window: 16,
        onResponse: (a) => {
          answers.set(a.id, (answers.get(a.id) ?? 0) + 1);
          if (!a.result) errors.push(`${a.id}: ${a.error?.message ?? 'no result'}`);
        },
      });
      expect(summary.status).toBe(0);
      expect(errors).toEqual([]);
      expect([...answers.keys()].sort()).toEqual(items.map((i) => i.id).sort());
      expect([...answers.values()].every((n) => n === 1)).toBe(true);
    } finally {
      client.close();
    }

    // podman stop sends the image's STOPSIGNAL (SIGTERM) through tini: a graceful drain, exit 0
    await run('podman', [...PODMAN, 'stop', '-t', '60', NAME]);
    const state = (await run('podman', ['inspect', NAME, '--format', '{{.State.ExitCode}}'])).stdout.trim();
    const logs = (await run('podman', ['logs', NAME])).stdout;
    expect(state).toBe('0');
    expect(logs).toContain('"msg":"stopped"');
    // the log was flushed and closed: every result is in the SQLite file on the volume
    const db = new Database(join(models, 'inspections.db'), { readonly: true });
    try {
      const n = (db.prepare('SELECT count(*) AS n FROM inspections').get() as { n: number }).n;
      expect(n).toBe(readdirSync(join(BOTTLE(), 'test')).reduce((a, sub) => a + readdirSync(join(BOTTLE(), 'test', sub)).length, 0));
    } finally {
      db.close();
    }
  }, 600_000);
});
