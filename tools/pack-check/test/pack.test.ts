// Loupe as a user outside the monorepo gets it: `npm pack` of every package, the tarballs installed with
// npm into fresh folders in the temp directory (no workspace, no links), then
//   (a) an app on the installed @loupe/core opens the engine and inspects an image with a small model while
//       the system's oneDNN, OpenMP and OpenCL libraries cannot be found (a mount namespace binds /dev/null
//       over them; ldd inside shows the repository's own build failing and the installed addon resolving
//       them beside itself), with no npm on PATH;
//   (b) a plant script on the installed @loupe/client alone streams the MVTec bottle test images to two
//       real servers (round robin), one is killed -9 mid-stream, and every image is answered exactly once.
// The sizes and ldd figures of docs/packaging.md come from this file (PACK_REPORT=FILE writes them).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LoupeClient } from '@loupe/client';
import { Engine, Inspector, saveModel, trainOneClass } from '@loupe/core';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(here, '../../..');
const FIXTURES = resolve(here, '../fixtures');
const PLATFORM = `${process.platform}-${process.arch}`;

/** Package folders in dependency order; each is packed as a user would publish it. */
const PACKAGES = [`native/npm/${PLATFORM}`, 'native', 'packages/core', 'packages/client', 'apps/server', 'apps/cli'];
/** What the C/C++ runtime provides on any glibc system; every other library must come with the addon. */
const SYSTEM_LIB = /^(linux-vdso|ld-linux[^ ]*|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s)\.so/;

function sharedDir(): string {
  const candidates = [process.env['LOUPE_SHARED_DIR'], join(ROOT, '..', 'shared')].filter((x): x is string => !!x);
  for (const c of candidates) if (existsSync(join(c, 'datasets', 'mvtec_ad', 'bottle'))) return c;
  throw new Error(`the shared datasets were not found (looked in ${candidates.join(', ')}); set LOUPE_SHARED_DIR`);
}
const BOTTLE = (): string => join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle');
const pngs = (dir: string): string[] =>
  readdirSync(dir, { recursive: true })
    .map((f) => join(dir, String(f)))
    .filter((f) => f.endsWith('.png') && statSync(f).isFile())
    .sort();

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** ldd as soname -> path ('not found' kept as null). */
function parseLdd(out: string): Map<string, string | null> {
  const libs = new Map<string, string | null>();
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(not found|(\S+))/.exec(line);
    if (m) libs.set(m[1]!, m[3] ?? null);
  }
  return libs;
}

/** A fresh npm project in `dir` with the tarballs installed from the registry's cache, not the workspace. */
function npmInstall(dir: string, tarballs: string[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `loupe-pack-${relative(work, dir).replace(/\W/g, '-')}`, private: true, type: 'module' }));
  // --prefer-offline: the registry's packages come from npm's cache when there (CI time), else the registry.
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...tarballs], dir);
}

const dirSize = (p: string): number => {
  const st = lstatSync(p);
  if (!st.isDirectory()) return st.size;
  return readdirSync(p).reduce((n, f) => n + dirSize(join(p, f)), 0);
};

let work: string;
const tarballs = new Map<string, { file: string; name: string; size: number; unpackedSize: number; entryCount: number; files: string[] }>();
const report: Record<string, unknown> = {};
let model: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'loupe-pack-'));
  expect(relative(ROOT, work).startsWith('..')).toBe(true); // outside the repository: no workspace to fall back on
  const dest = join(work, 'tarballs');
  mkdirSync(dest);
  for (const dir of PACKAGES) {
    const out = run('npm', ['pack', '--json', '--pack-destination', dest, '--loglevel=error'], join(ROOT, dir));
    const [info] = JSON.parse(out.slice(out.indexOf('['))) as { name: string; filename: string; size: number; unpackedSize: number; entryCount: number; files: { path: string }[] }[];
    tarballs.set(dir, { file: join(dest, info!.filename), name: info!.name, size: info!.size, unpackedSize: info!.unpackedSize, entryCount: info!.entryCount, files: info!.files.map((f) => f.path) });
  }
  // A small one-class model (10 good bottles), made by the repository's core: the installed app and the
  // servers only load it.
  const engine = await Engine.open({ maxBatch: 8 });
  const oc = await trainOneClass({ engine, good: pngs(join(BOTTLE(), 'train', 'good')).slice(0, 10), coresetRatio: 0.1, validationFraction: 0.2, category: 'bottle', batchSize: 8 });
  model = join(work, 'bottle.loupe');
  await saveModel(model, oc.model);
}, 600_000);

afterAll(() => {
  if (process.env['PACK_REPORT']) writeFileSync(process.env['PACK_REPORT'], `${JSON.stringify(report, null, 2)}\n`);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the tarballs', () => {
  it('are publishable: licence, files, exports, engines; the platform package says os/cpu/libc', () => {
    for (const [dir, t] of tarballs) {
      const pkg = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as Record<string, unknown>;
      expect(pkg['private'], dir).toBeUndefined();
      expect(String(pkg['license']), dir).toMatch(/^Apache-2\.0/);
      expect(pkg['engines'], dir).toMatchObject({ node: '>=20.19' });
      expect(t.files, dir).toContain('LICENSE');
      expect(t.files, dir).toContain('package.json');
      expect(t.files.filter((f) => /(^|\/)test\/|\.test\.ts$/.test(f)), dir).toEqual([]);
    }
    const platform = JSON.parse(readFileSync(join(ROOT, PACKAGES[0]!, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(platform).toMatchObject({ os: [process.platform], cpu: [process.arch], libc: ['glibc'] });
    expect(tarballs.get(PACKAGES[0]!)!.files).toEqual(expect.arrayContaining(['loupe_native.node', 'libdnnl.so.2', 'libgomp.so.1', 'libdnnl.so.2.copyright']));
    // @loupe/native itself is the loader: the binary comes from the platform package only.
    expect(tarballs.get('native')!.files.filter((f) => f.endsWith('.node'))).toEqual([]);
    report['tarballs'] = Object.fromEntries([...tarballs.values()].map((t) => [t.name, { tarballBytes: t.size, unpackedBytes: t.unpackedSize, files: t.entryCount }]));
  });

  it('ship the sources their declaration and source maps point at', () => {
    let maps = 0;
    for (const [dir, t] of tarballs) {
      for (const f of t.files.filter((x) => x.endsWith('.map'))) {
        const map = JSON.parse(readFileSync(join(ROOT, dir, f), 'utf8')) as { sources: string[] };
        for (const s of map.sources) expect(t.files, `${dir}/${f} -> ${s}`).toContain(join(dirname(f), s));
        maps++;
      }
    }
    expect(maps).toBeGreaterThan(100);
  });
});

describe('(a) an app on the installed @loupe/core, without the system oneDNN', () => {
  let app: string;
  let addon: string;

  beforeAll(async () => {
    app = join(work, 'app');
    npmInstall(app, ['native/npm/' + PLATFORM, 'native', 'packages/core', 'packages/client', 'apps/cli'].map((d) => tarballs.get(d)!.file));
    addon = join(app, 'node_modules', '@loupe', `native-${PLATFORM}`, 'loupe_native.node');
  }, 600_000);

  it('installs real packages (no links) with the addon and its libraries side by side', () => {
    for (const p of ['native', `native-${PLATFORM}`, 'core', 'client', 'cli']) {
      const d = join(app, 'node_modules', '@loupe', p);
      expect(lstatSync(d).isSymbolicLink(), p).toBe(false);
      report[`installed:@loupe/${p}`] = dirSize(d);
    }
    report['installed:app node_modules (core + native + client + cli + sharp + commander + grpc)'] = dirSize(join(app, 'node_modules'));
    expect(existsSync(join(app, 'node_modules', '@loupe', 'server'))).toBe(false); // the CLI's optional peer
    const bin = join(app, 'node_modules', '.bin', 'loupe');
    expect(run(bin, ['--version'], app).trim()).toBe('0.1.0');
    const ldd = run('ldd', [addon], app);
    report['ldd'] = ldd.trim().split('\n').map((l) => l.trim().replace(/ \(0x[0-9a-f]+\)$/, '').replace(app, '<app>'));
    const outside = [...parseLdd(ldd)].filter(([soname, path]) => !SYSTEM_LIB.test(soname) && (!path || dirname(path) !== dirname(addon)));
    expect(outside).toEqual([]);
  });

  it('inspects an image with the system libraries hidden and no npm on PATH, as the repository build does', async () => {
    // The libraries the repository's build takes from the system (oneDNN, OpenMP, OpenCL loader).
    const repoAddon = join(ROOT, 'native', 'build', 'Release', 'loupe_native.node');
    const systemLibs = [...parseLdd(run('ldd', [repoAddon], ROOT))].filter(([soname]) => !SYSTEM_LIB.test(soname)).map(([, p]) => realpathSync(p!));
    expect(systemLibs.some((p) => /libdnnl\.so/.test(p))).toBe(true);
    const image = pngs(join(BOTTLE(), 'test', 'broken_large'))[0]!;
    // PATH: node alone (no npm, no npx).
    const bin = join(work, 'bin');
    mkdirSync(bin, { recursive: true });
    if (!existsSync(join(bin, 'node'))) symlinkSync(process.execPath, join(bin, 'node'));
    cpSync(join(FIXTURES, 'inspect-one.mjs'), join(app, 'inspect-one.mjs'));
    const script = [
      'set -e',
      ...systemLibs.map((p) => `mount --bind /dev/null '${p}'`),
      `echo '--- repository build'; ldd '${repoAddon}' 2>&1 || true`,
      `echo '--- installed'; ldd '${addon}'`,
      `echo '--- run'; PATH='${bin}' exec node inspect-one.mjs '${model}' '${image}'`,
    ].join('\n');
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { cwd: app, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [, repoLdd, installedLdd, out] = r.stdout.split(/^--- .*$/m);
    // The hiding works: the repository's build cannot find oneDNN any more...
    expect(repoLdd).toMatch(/(libdnnl|libgomp|libOpenCL)\.so[^\n]*(file too short|not found)/);
    // ...and the installed addon resolves every non-system library beside itself.
    for (const [soname, path] of parseLdd(installedLdd!)) if (!SYSTEM_LIB.test(soname)) expect(path && dirname(path), soname).toBe(dirname(addon));
    const got = JSON.parse(out!.trim()) as { backend: string; verdict: string; score: number };
    // The same answer as the repository's core on the same image.
    const engine = await Engine.open({ maxBatch: 1 });
    const want = await (await Inspector.open(model, { engine })).inspect(image);
    expect(got.verdict).toBe(want.verdict);
    expect(got.score).toBeCloseTo(want.score, 5);
    expect(got.backend).toMatch(/onednn/i);
    report['inspectHidden'] = { image: relative(sharedDir(), image), ...got };
  });
});

describe('(a) load failures of the installed addon', () => {
  const app = (): string => join(work, 'app');
  const importNative = (hide: string[]): { status: number | null; stderr: string } => {
    const script = [...hide.map((p) => `mount --bind /dev/null '${p}'`), `exec node --input-type=module -e "await import('@loupe/native')"`].join('\n');
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { cwd: app(), encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  };

  it('a library missing beside the addon is named, with where it should be and the command that fixes it', () => {
    const dir = join(app(), 'node_modules', '@loupe', `native-${PLATFORM}`);
    const lib = join(dir, 'libdnnl.so.2');
    // The bundled copy moved away and the system's hidden: nothing provides libdnnl.so.2.
    const system = realpathSync(parseLdd(run('ldd', [join(ROOT, 'native', 'build', 'Release', 'loupe_native.node')], ROOT)).get('libdnnl.so.2')!);
    renameSync(lib, `${lib}.away`);
    try {
      const r = importNative([system]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('ERR_LOUPE_NATIVE_LOAD');
      expect(r.stderr).toContain(`libdnnl.so.2 should be in ${dir} beside the addon`);
      expect(r.stderr).toContain(`npm install --force @loupe/native-${PLATFORM}`);
    } finally {
      renameSync(`${lib}.away`, lib);
    }
  });

  it('a platform package that is not installed is named, with the command that installs it', () => {
    const dir = join(app(), 'node_modules', '@loupe', `native-${PLATFORM}`);
    renameSync(dir, `${dir}.away`);
    try {
      const r = importNative([]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('ERR_LOUPE_NATIVE_NOT_BUILT');
      expect(r.stderr).toContain(`the platform package @loupe/native-${PLATFORM} is not installed`);
      expect(r.stderr).toContain(`npm install @loupe/native-${PLATFORM}`);
    } finally {
      renameSync(`${dir}.away`, dir);
    }
  });
});

interface Server {
  child: ChildProcess;
  port: number;
  exited: Promise<NodeJS.Signals | number | null>;
}

/** A real server from the repository's build, on a free loopback port, with its own models folder. */
function startServer(models: string): Promise<Server> {
  const child = spawn(process.execPath, [join(ROOT, 'apps', 'server', 'dist', 'main.js'), '--host', '127.0.0.1', '--port', '0', '--models', models, '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<NodeJS.Signals | number | null>((r) => child.on('exit', (code, signal) => r(signal ?? code)));
  const logs: string[] = [];
  child.stderr!.on('data', (c: Buffer) => logs.push(c.toString()));
  return new Promise((resolvePromise, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line);
      if (line.includes('"msg":"serving"')) resolvePromise({ child, port: Number((JSON.parse(line) as { address: string }).address.split(':').pop()), exited });
    });
    void exited.then((x) => reject(new Error(`the server exited (${x}) before serving:\n${logs.join('\n')}`)));
  });
}

describe('(b) a plant script on the installed @loupe/client alone', () => {
  let plant: string;
  const servers: Server[] = [];

  beforeAll(async () => {
    plant = join(work, 'plant');
    npmInstall(plant, [tarballs.get('packages/client')!.file]);
    cpSync(join(FIXTURES, 'plant-stream.mjs'), join(plant, 'plant-stream.mjs'));
    for (const name of ['s1', 's2']) {
      const models = join(work, `models-${name}`);
      mkdirSync(models);
      cpSync(model, join(models, 'bottle.loupe'));
      servers.push(await startServer(models));
    }
  }, 600_000);

  afterAll(() => {
    for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  });

  it('installs only the client, gRPC and protobuf: no sharp, no SQLite, no native code', () => {
    const installed = readdirSync(join(plant, 'node_modules'), { recursive: true }).map(String);
    expect(installed).toContain(join('@loupe', 'client'));
    for (const heavy of ['sharp', 'better-sqlite3', join('@loupe', 'core'), join('@loupe', 'native'), join('@loupe', 'server'), '@img']) expect(installed, heavy).not.toContain(heavy);
    expect(installed.filter((f) => f.endsWith('.node'))).toEqual([]);
    report['installed:@loupe/client'] = dirSize(join(plant, 'node_modules', '@loupe', 'client'));
    report['installed:plant node_modules (client + grpc-js + protobuf)'] = dirSize(join(plant, 'node_modules'));
  });

  it('streams the bottle test images to two servers; one killed -9 mid-stream, every image is answered exactly once', async () => {
    const images = pngs(join(BOTTLE(), 'test'));
    expect(images.length).toBe(83);
    const targets = servers.map((s) => `127.0.0.1:${s.port}`).join(',');
    const child = spawn(process.execPath, ['plant-stream.mjs', targets, 'bottle', join(BOTTLE(), 'test')], { cwd: plant, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const answers = new Map<string, number>();
    const resumes: unknown[] = [];
    let summary: Record<string, number> | undefined;
    let killed: Promise<NodeJS.Signals | number | null> | undefined;
    let answeredAtKill = 0;
    const lines = createInterface({ input: child.stdout! });
    for await (const line of lines) {
      const o = JSON.parse(line) as { id?: string; verdict?: string; error?: string; resume?: number; summary?: Record<string, number> };
      if (o.summary) summary = o.summary;
      else if (o.resume !== undefined) resumes.push(o);
      else if (o.id) {
        expect(o.error).toBeUndefined();
        expect(['good', 'anomalous']).toContain(o.verdict);
        answers.set(o.id, (answers.get(o.id) ?? 0) + 1);
        if (answers.size === 20 && !killed) {
          // The server holding the stream (one stream: one server) is the one to kill.
          const open = await Promise.all(servers.map(async (s) => {
            const c = new LoupeClient(`127.0.0.1:${s.port}`);
            try {
              return (await c.getStats()).openStreams;
            } finally {
              c.close();
            }
          }));
          const victim = servers[open.findIndex((n) => n > 0)];
          expect(victim, `open streams per server: ${open.join(', ')}`).toBeDefined();
          answeredAtKill = answers.size;
          victim!.child.kill('SIGKILL');
          killed = victim!.exited;
        }
      }
    }
    const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', r)));
    expect(stderr).toBe('');
    expect(await killed).toBe('SIGKILL');
    expect(answeredAtKill).toBeLessThan(images.length); // it was killed mid-stream
    expect(code).toBe(0);
    // exactly once: every image, no other id, no id twice
    expect([...answers.keys()].sort()).toEqual(images);
    expect([...answers.values()].every((n) => n === 1)).toBe(true);
    expect(summary).toMatchObject({ images: 83, sent: 83, answered: 83, status: 0 });
    expect(summary!['resumes']).toBeGreaterThanOrEqual(1);
    expect(summary!['resent']).toBeGreaterThanOrEqual(1); // images in flight on the killed server went to the other
    report['failover'] = { images: images.length, answeredAtKill, resumes: summary!['resumes'], resent: summary!['resent'] };
  });
});
