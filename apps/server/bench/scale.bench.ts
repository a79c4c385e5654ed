// Fleet capacity on this machine: images/s of 1, 2, 3 replicas behind nginx and with client round_robin
// (@loupe/client over a static list), one replica on SQLite vs PostgreSQL, and the CPU each process spent
// per image (server replicas, nginx, PostgreSQL: utime+stime from /proc), all in one run on the same
// images. Every replica runs with one engine thread, so 1 -> 2 replicas adds a core and 3 replicas on a
// 2-core machine shows what oversubscription costs. Dedupe is off (every image costs an engine view).
// Prints a markdown table and a JSON line.
//   cd apps/server && npx vitest run -c vitest.bench.config.ts        (LOUPE_SCALE_IMAGES=N, default 480)
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';

import { LoupeClient, type InspectItem } from '@loupe/client';
import { expect, inject, it } from 'vitest';

import { BOTTLE, modelDirWithFixtures, smallImage, spawnServer, SVM_MODEL, type ChildServer } from '../test/fixtures.js';
import { startNginx } from '../test/helpers/nginx.js';
import { startPostgres } from '../test/helpers/postgres.js';

const IMAGES = Number(process.env['LOUPE_SCALE_IMAGES'] ?? 480);
const STREAMS = 16;
const TICK = 100; // clock ticks per second (Linux USER_HZ)

/**
 * CPU seconds (user + system) of a process; with `children`, also of its children: the live ones, and
 * those that exited and were reaped (cutime + cstime: PostgreSQL's backends come and go with connections).
 */
function cpuSeconds(pid: number, children = false): number {
  const one = (p: number, reaped = false): number => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12]) + (reaped ? Number(fields[13]) + Number(fields[14]) : 0)) / TICK;
    } catch {
      return 0;
    }
  };
  let total = one(pid, children);
  if (children) {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const f = readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === pid) total += one(Number(d));
      } catch {
        // gone
      }
    }
  }
  return total;
}

interface Row {
  setup: string;
  replicas: number;
  log: 'sqlite' | 'postgres';
  via: 'direct' | 'nginx' | 'round_robin';
  imagesPerS: number;
  serverCpuMsPerImage: number;
  nginxCpuMsPerImage: number | null;
  postgresCpuMsPerImage: number | null;
}

it('fleet capacity', async () => {
  const fixtures = inject('fixtureModels');
  expect(fixtures).not.toBe('');
  const test = join(BOTTLE(), 'test');
  const pool: Buffer[] = [];
  for (const sub of readdirSync(test).sort()) for (const f of readdirSync(join(test, sub)).sort()) pool.push(await smallImage(join(test, sub, f)));
  const pg = await startPostgres();
  const dir = modelDirWithFixtures(fixtures);
  const rows: Row[] = [];
  try {
    const measure = async (setup: string, replicas: number, log: Row['log'], via: Row['via']): Promise<void> => {
      await pg.query('TRUNCATE TABLE inspections').catch(() => undefined);
      const servers: ChildServer[] = [];
      for (let i = 0; i < replicas; i++) {
        const args = ['--models', dir, '--port', '0', '--threads', '1'];
        // Dedupe off: the 83 test images repeat over the run, and shared engine views would hide the cost.
        const env = { LOUPE_SERVER_DEDUPE: 'false', ...(log === 'postgres' ? { LOUPE_SERVER_DB_URL: pg.url } : {}) };
        servers.push(await spawnServer(log === 'sqlite' ? [...args, '--db', join(dir, `bench-${i}.db`)] : args, env));
      }
      const proxy = via === 'nginx' ? await startNginx(servers.map((s) => `127.0.0.1:${s.port}`)) : null;
      const target = proxy ? `127.0.0.1:${proxy.port}` : servers.map((s) => `127.0.0.1:${s.port}`);
      const client = new LoupeClient(target);
      const run = async (n: number, tag: string): Promise<number> => {
        const t0 = performance.now();
        let answered = 0;
        await Promise.all(
          Array.from({ length: STREAMS }, (_, s) => {
            const items: InspectItem[] = [];
            for (let i = s; i < n; i += STREAMS) items.push({ id: `${tag}-${i}`, image: pool[i % pool.length]!, model: SVM_MODEL });
            return client.inspectMany(items, { window: 8, onResponse: (a) => void (a.result && answered++) });
          }),
        );
        expect(answered).toBe(n);
        return (performance.now() - t0) / 1000;
      };
      try {
        await run(STREAMS * 4, 'warm'); // connections, first batches, oneDNN primitives
        const cpu0 = { server: servers.reduce((a, s) => a + cpuSeconds(s.child.pid!), 0), nginx: proxy ? cpuSeconds(proxy.pid) : 0, pg: pg.pid ? cpuSeconds(pg.pid, true) : 0 };
        const seconds = await run(IMAGES, 'run');
        const cpu1 = { server: servers.reduce((a, s) => a + cpuSeconds(s.child.pid!), 0), nginx: proxy ? cpuSeconds(proxy.pid) : 0, pg: pg.pid ? cpuSeconds(pg.pid, true) : 0 };
        rows.push({
          setup,
          replicas,
          log,
          via,
          imagesPerS: IMAGES / seconds,
          serverCpuMsPerImage: ((cpu1.server - cpu0.server) * 1000) / IMAGES,
          nginxCpuMsPerImage: proxy ? ((cpu1.nginx - cpu0.nginx) * 1000) / IMAGES : null,
          postgresCpuMsPerImage: log === 'postgres' ? ((cpu1.pg - cpu0.pg) * 1000) / IMAGES : null,
        });
        process.stderr.write(`[scale] ${JSON.stringify(rows[rows.length - 1])}\n`);
      } finally {
        client.close();
        await proxy?.stop();
        for (const s of servers) s.child.kill('SIGTERM');
        await Promise.all(servers.map((s) => s.exited));
      }
    };
    await measure('1 replica, SQLite, direct', 1, 'sqlite', 'direct');
    await measure('1 replica, PostgreSQL, direct', 1, 'postgres', 'direct');
    await measure('1 replica, PostgreSQL, nginx', 1, 'postgres', 'nginx');
    await measure('2 replicas, PostgreSQL, nginx', 2, 'postgres', 'nginx');
    await measure('2 replicas, PostgreSQL, round_robin', 2, 'postgres', 'round_robin');
    await measure('3 replicas, PostgreSQL, nginx', 3, 'postgres', 'nginx');
    await measure('3 replicas, PostgreSQL, round_robin', 3, 'postgres', 'round_robin');
  } finally {
    await pg.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  const base = rows.find((r) => r.replicas === 1 && r.log === 'postgres' && r.via === 'direct')!;
  const f = (v: number | null, d = 2): string => (v === null ? '-' : v.toFixed(d));
  const lines = [
    '| setup | images/s | ratio to 1 replica (PostgreSQL, direct) | server CPU ms/image | nginx CPU ms/image | PostgreSQL CPU ms/image |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.setup} | ${f(r.imagesPerS, 1)} | ${f(r.imagesPerS / base.imagesPerS)} | ${f(r.serverCpuMsPerImage, 1)} | ${f(r.nginxCpuMsPerImage)} | ${f(r.postgresCpuMsPerImage)} |`),
  ];
  const cpu = execFileSync('sh', ['-c', "lscpu | grep -E 'Model name|^CPU\\(s\\)'"], { encoding: 'utf8' }).trim();
  process.stdout.write(`\n${lines.join('\n')}\n\n${cpu}\ncores: ${cpus().length}; load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}; images per setup: ${IMAGES} (224x224 JPEG of the bottle test set), ${STREAMS} streams, window 8\n`);
  process.stdout.write(`${JSON.stringify({ images: IMAGES, streams: STREAMS, rows })}\n`);
});
