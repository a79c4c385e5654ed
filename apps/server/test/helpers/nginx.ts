// A real nginx (Debian's) as the gRPC load balancer in front of several servers: HTTP/2 from the client to
// nginx and from nginx to each replica (grpc_pass), its config written from deploy/nginx/loupe.conf.template
// (the one the compose file uses), its files in a temp folder.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { REPO_ROOT } from '../fixtures.js';

export interface TestNginx {
  port: number;
  /** nginx's one process (master_process off). */
  pid: number;
  /** What nginx wrote to its error log. */
  errors(): string;
  stop(): Promise<void>;
}

/** nginx's path, or null with the reason. */
export function nginxBinary(): { bin: string | null; why: string } {
  for (const b of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (existsSync(b)) return { bin: b, why: '' };
  return { bin: null, why: 'nginx is not installed (Debian: apt-get install nginx-light)' };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The deployable config (deploy/nginx/loupe.conf.template) with the upstream servers and port filled in. */
export function nginxConfig(upstreams: string[], port: number): string {
  const template = readFileSync(join(REPO_ROOT, 'deploy', 'nginx', 'loupe.conf.template'), 'utf8');
  return template.replace('${LOUPE_UPSTREAM_SERVERS}', upstreams.map((u) => `server ${u} max_fails=1 fail_timeout=2s;`).join('\n    ')).replace('${LOUPE_PROXY_LISTEN}', `127.0.0.1:${port}`);
}

export async function startNginx(upstreams: string[]): Promise<TestNginx> {
  const { bin, why } = nginxBinary();
  if (!bin) throw new Error(why);
  const dir = mkdtempSync(join(tmpdir(), 'loupe-nginx-'));
  const port = await freePort();
  // The main context is the test's own (temp paths, foreground); the http part is the deployable one.
  const conf = `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${nginxConfig(upstreams, port)}
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  try {
    execFileSync(bin, ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'pipe' });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const child: ChildProcess = spawn(bin, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const end = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGKILL');
      const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: child.pid!,
    errors: () => (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.on('exit', () => r()));
        child.kill('SIGQUIT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
