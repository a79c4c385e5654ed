// A real PostgreSQL server for tests: Debian's postgresql binaries, a fresh cluster (initdb) in a temp
// folder, listening on a free loopback port and a socket in that folder. PostgreSQL refuses to run as
// root, and CI runs as root: then the cluster belongs to, and the server runs as, the unprivileged
// `postgres` user the Debian package creates (else `nobody`).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

export interface TestPostgres {
  /** postgres://loupe:loupe@127.0.0.1:PORT/loupe */
  url: string;
  port: number;
  /** The postmaster's pid (its backends are its children), while it runs. */
  readonly pid: number | undefined;
  /** Stops the server (fast shutdown; 'immediate' = crash-like). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** One query through a fresh connection. */
  query<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

/** The folder of initdb/postgres, or null (with the reason) where PostgreSQL is not installed. */
export function postgresBinDir(): { dir: string | null; why: string } {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return { dir: null, why: `PostgreSQL is not installed (${root} is missing; Debian: apt-get install postgresql)` };
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) return { dir: null, why: `no ${root}/*/bin/initdb` };
  return { dir: join(root, versions[0]!, 'bin'), why: '' };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function runAs(): { uid: number; gid: number; user: string } | null {
  if (userInfo().uid !== 0) return null;
  for (const user of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
      return { uid, gid, user };
    } catch {
      // try the next
    }
  }
  throw new Error('running as root and neither a postgres nor a nobody user exists to run PostgreSQL as');
}

export async function startPostgres(): Promise<TestPostgres> {
  const { dir: bin, why } = postgresBinDir();
  if (!bin) throw new Error(why);
  const owner = runAs();
  const base = mkdtempSync(join(tmpdir(), 'loupe-pg-'));
  const data = join(base, 'data');
  if (owner) {
    chownSync(base, owner.uid, owner.gid);
    chmodSync(base, 0o700);
  }
  // cwd: the unprivileged user may not be allowed into the test's working directory.
  const as = { cwd: base, ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) };
  const pwfile = join(base, 'pw');
  writeFileSync(pwfile, 'loupe');
  if (owner) chownSync(pwfile, owner.uid, owner.gid);
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'loupe', '--pwfile', pwfile, '-A', 'scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale', 'C'], { ...as, stdio: 'pipe' });
  const port = await freePort();
  const url = `postgres://loupe:loupe@127.0.0.1:${port}/loupe`;
  const adminUrl = `postgres://loupe:loupe@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | null = null;
  const logs: string[] = [];

  const start = async (): Promise<void> => {
    // fsync stays on (the default): the kill -9 tests rely on a commit meaning what it means in a plant.
    child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', base, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100'], { ...as, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (b: Buffer) => logs.push(b.toString()));
    child.stderr!.on('data', (b: Buffer) => logs.push(b.toString()));
    const end = Date.now() + 30_000;
    for (;;) {
      const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await c.end().catch(() => undefined);
        if (child.exitCode !== null || Date.now() > end) {
          // a server that started but never answered must not outlive the test
          child.kill('SIGQUIT');
          throw new Error(`PostgreSQL did not start:\n${logs.join('')}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.on('exit', () => r()));
    c.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await exited;
    child = null;
  };
  try {
    await start();
  } catch (err) {
    rmSync(base, { recursive: true, force: true });
    throw err;
  }
  // initdb made the `postgres` database; the tests use their own.
  {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query('CREATE DATABASE loupe');
    await c.end();
  }
  return {
    url,
    port,
    get pid() {
      return child?.pid;
    },
    stop,
    start,
    async query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query<T>(sql, params)).rows;
      } finally {
        await c.end();
      }
    },
    async destroy(): Promise<void> {
      await stop('fast');
      rmSync(base, { recursive: true, force: true });
    },
  };
}
