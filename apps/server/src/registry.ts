// The model directory and the models loaded from it.
//
// Layout: <dir>/<name>.loupe is version 1 of <name>; <dir>/<name>/<version>.loupe (version = a positive
// integer) holds numbered versions (what Train writes). Both kinds of Loupe model file are served: 'svm'
// classifiers and 'one-class' PatchCore models. The directory is rescanned on every listing, so files
// copied in appear without a restart; LoadModel/UnloadModel/DeleteModel change what is in memory.
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';

import { MODEL_FILE_EXTENSION, readModelHeader, summarizeModelHeader, type Engine, type ModelSummary } from '@loupe/core';

import { ModelInspector } from './inspectors.js';
import { clip } from './limits.js';
import type { Logger } from './log.js';

export type ModelStateName = 'available' | 'loading' | 'loaded' | 'failed';

export interface ModelEntry {
  name: string;
  version: string;
  /** Absolute path. */
  file: string;
  /** Relative to the model directory. */
  relFile: string;
  sizeBytes: number;
  mtimeMs: number;
  /** core's summary of the file's header (null when the header cannot be read). */
  header: ModelSummary | null;
  state: ModelStateName;
  error: string;
  inspector: ModelInspector | null;
  inspections: number;
}

export class RegistryError extends Error {
  constructor(
    readonly kind: 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'INTERNAL',
    message: string,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const VERSION_RE = /^[1-9][0-9]{0,8}$/;

/** The rule validModelName applies, for messages. */
export const MODEL_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, no '..'; at most 128";

export function validModelName(name: string): boolean {
  return NAME_RE.test(name) && !name.endsWith(MODEL_FILE_EXTENSION) && !name.includes('..');
}

function requireModelName(name: string): void {
  if (!validModelName(name)) throw new RegistryError('INVALID_ARGUMENT', `invalid model name '${clip(name)}' (${MODEL_NAME_RULE})`);
}

function key(name: string, version: string): string {
  return `${name}@${version}`;
}

/**
 * core's error about a model file, for ModelInfo.error and messages: the file is named by the caller
 * (relative to the models folder), so a leading "<absolute path>: " is dropped and other mentions made relative.
 */
function fileError(err: unknown, file: string, relFile: string): string {
  let m = err instanceof Error ? err.message : String(err);
  if (m.startsWith(`${file}: `)) m = m.slice(file.length + 2);
  return m.split(file).join(relFile);
}

/**
 * How long reading a model file may take. core opens model files only when regular (a FIFO or a device is
 * refused at once); these bound the rest (a hung network file system): the file is FAILED saying so, and
 * the listing or load that asked goes on.
 */
const HEADER_TIMEOUT_MS = 10_000;
const LOAD_TIMEOUT_MS = 120_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s (a file system not answering?)`)), ms);
  });
  p.catch(() => {}); // lost the race: its own failure is no longer anyone's
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function compareVersions(a: string, b: string): number {
  return Number(a) - Number(b);
}

export interface RegistryOptions {
  dir: string;
  /** The CNN every model runs on: core refuses models trained on other weights. */
  engine: Engine;
  /** Where one-class kNN searches run (the server's engine backend); default core's choice. */
  backend?: 'auto' | 'cpu' | 'cuda';
  /** The server's own files that may live in the models folder (its inspection log): never warned about. */
  ownFiles?: readonly string[];
  log: Logger;
}

/** SQLite's companions of a database file. */
const SQLITE_SUFFIXES = ['', '-wal', '-shm', '-journal'];

/** A model being written (core's writeFileAtomic: `.<name>.<pid>.<random>.tmp`, renamed into place when complete). */
const ATOMIC_TEMP = /^\..+\.\d+\.[0-9a-f]{12}\.tmp$/;

/** Emits 'change' (name) whenever a model's state changes (health uses it). */
export class ModelRegistry extends EventEmitter {
  private readonly entries = new Map<string, ModelEntry>();
  private readonly loading = new Map<string, Promise<ModelEntry>>();
  private readonly reserved = new Set<string>();
  private scanning: Promise<void> | undefined;

  constructor(private readonly opts: RegistryOptions) {
    super();
  }

  get dir(): string {
    return this.opts.dir;
  }

  /** Re-reads the directory: new files appear, removed ones disappear (unless loaded). */
  scan(): Promise<void> {
    this.scanning ??= this.doScan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async doScan(): Promise<void> {
    if (!(await fs.stat(this.opts.dir).catch(() => undefined))) {
      // A fresh server trains into it; say so, a mistyped path would otherwise look like "no models".
      await fs.mkdir(this.opts.dir, { recursive: true });
      this.opts.log.info('models folder created (it did not exist)', { dir: this.opts.dir });
    }
    const dir = this.opts.dir;
    const own = new Set((this.opts.ownFiles ?? []).flatMap((f) => SQLITE_SUFFIXES.map((s) => resolve(f + s))));
    // Every entry of the folder that is not a model is named once in a warning: a model saved as
    // `bottle` (no extension) or `Bottle v2.loupe` must not look like "the server has no such model".
    const skip = (rel: string, why: string): void => this.warnOnce(`skipped:${rel}:${why}`, `models folder: ${rel} skipped: ${why}`, { file: rel, reason: why });
    const found = new Map<string, { name: string; version: string; file: string; size: number; mtimeMs: number }>();
    /** Stats (following links) and keeps only regular files; anything else is skipped with a warning. */
    const regular = async (file: string): Promise<{ size: number; mtimeMs: number } | 'dir' | undefined> => {
      const st = await fs.stat(file).catch(() => undefined);
      const rel = relative(dir, file);
      if (!st) {
        skip(rel, 'it cannot be read (a dangling link?)');
        return undefined;
      }
      if (st.isDirectory()) return 'dir';
      if (!st.isFile()) {
        skip(rel, 'not a regular file');
        return undefined;
      }
      return { size: st.size, mtimeMs: st.mtimeMs };
    };
    const flat = new Map<string, { file: string; size: number; mtimeMs: number }>();
    for (const entry of await fs.readdir(dir)) {
      const file = join(dir, entry);
      if (own.has(resolve(file)) || ATOMIC_TEMP.test(entry)) continue;
      const st = await regular(file);
      if (st === undefined) continue;
      if (st === 'dir') {
        if (!validModelName(entry)) {
          skip(entry, `a folder whose name is not a model name (${MODEL_NAME_RULE})`);
          continue;
        }
        let inner: string[];
        try {
          inner = await fs.readdir(file);
        } catch (err) {
          skip(entry, `the folder cannot be read (${err instanceof Error ? err.message : String(err)})`);
          continue;
        }
        for (const f of inner) {
          if (ATOMIC_TEMP.test(f)) continue;
          const rel = join(entry, f);
          const ist = await regular(join(file, f));
          if (ist === undefined) continue;
          if (ist === 'dir') {
            skip(rel, `a folder inside a model's folder (versions are ${entry}/<version>${MODEL_FILE_EXTENSION})`);
            continue;
          }
          const version = f.endsWith(MODEL_FILE_EXTENSION) ? basename(f, MODEL_FILE_EXTENSION) : undefined;
          if (version === undefined || !VERSION_RE.test(version)) {
            skip(rel, `not a model version file (versions are ${entry}/<version>${MODEL_FILE_EXTENSION}, the version a positive integer)`);
            continue;
          }
          found.set(key(entry, version), { name: entry, version, file: join(file, f), ...ist });
        }
        continue;
      }
      if (!entry.endsWith(MODEL_FILE_EXTENSION)) {
        skip(entry, `not a model file: model files are NAME${MODEL_FILE_EXTENSION} or NAME/<version>${MODEL_FILE_EXTENSION} (a model saved without the extension: rename it ${entry}${MODEL_FILE_EXTENSION})`);
        continue;
      }
      const name = basename(entry, MODEL_FILE_EXTENSION);
      if (!validModelName(name)) {
        skip(entry, `'${name}' is not a valid model name (${MODEL_NAME_RULE})`);
        continue;
      }
      flat.set(name, { file, ...st });
    }
    for (const [name, f] of flat) {
      // <name>/1.loupe wins over a flat <name>.loupe (both would be version 1).
      if (found.has(key(name, '1'))) skip(relative(dir, f.file), `${join(name, `1${MODEL_FILE_EXTENSION}`)} is version 1 of '${name}'`);
      else found.set(key(name, '1'), { name, version: '1', ...f });
    }
    for (const [k, f] of found) {
      const old = this.entries.get(k);
      if (old && old.file === f.file && old.mtimeMs === f.mtimeMs && old.sizeBytes === f.size) continue;
      let header: ModelSummary | null = null;
      let error = '';
      try {
        header = summarizeModelHeader(await withTimeout(readModelHeader(f.file), HEADER_TIMEOUT_MS, 'reading its header'));
      } catch (err) {
        error = fileError(err, f.file, relative(dir, f.file));
        this.opts.log.warn('model file unreadable: listed as failed', { model: f.name, version: f.version, file: relative(dir, f.file), error });
      }
      const entry: ModelEntry = {
        name: f.name,
        version: f.version,
        file: f.file,
        relFile: relative(dir, f.file),
        sizeBytes: f.size,
        mtimeMs: f.mtimeMs,
        header,
        state: old?.state === 'loaded' ? 'loaded' : header ? 'available' : 'failed',
        error,
        inspector: old?.inspector ?? null,
        inspections: old?.inspections ?? 0,
      };
      if (old?.state === 'loaded' && (old.mtimeMs !== f.mtimeMs || old.sizeBytes !== f.size)) {
        this.opts.log.warn('model file changed on disk while loaded; the loaded copy stays until reloaded', { model: f.name, version: f.version });
        entry.mtimeMs = old.mtimeMs;
        entry.sizeBytes = old.sizeBytes;
      }
      this.entries.set(k, entry);
      if (!old) this.emit('change', f.name);
    }
    for (const [k, e] of this.entries) {
      if (!found.has(k) && e.state !== 'loaded' && e.state !== 'loading') {
        this.entries.delete(k);
        this.emit('change', e.name);
      }
    }
  }

  private readonly warned = new Set<string>();

  /** Logs a warning once per server (rescans would repeat it for every request). */
  private warnOnce(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.log.warn(msg, fields);
  }

  list(filter: { name?: string; loadedOnly?: boolean } = {}): ModelEntry[] {
    return [...this.entries.values()]
      .filter((e) => (!filter.name || e.name === filter.name) && (!filter.loadedOnly || e.state === 'loaded'))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : compareVersions(a.version, b.version)));
  }

  names(): string[] {
    return [...new Set([...this.entries.values()].map((e) => e.name))];
  }

  /** Whether any version of `name` is loaded. */
  isServing(name: string): boolean {
    return this.list({ name }).some((e) => e.state === 'loaded');
  }

  has(name: string): boolean {
    return this.list({ name }).length > 0;
  }

  /** One version (newest when version is empty). */
  get(name: string, version = ''): ModelEntry {
    requireModelName(name);
    const versions = this.list({ name });
    if (versions.length === 0) throw new RegistryError('NOT_FOUND', `no model named '${name}' in the model directory`);
    if (!version) return versions[versions.length - 1]!;
    const e = versions.find((v) => v.version === version);
    if (!e) throw new RegistryError('NOT_FOUND', `model '${name}' has no version ${clip(version)} (versions: ${versions.map((v) => v.version).join(', ')})`);
    return e;
  }

  /** The inspector to use for a request: the given version, else the newest LOADED version. */
  resolve(name: string, version = ''): { entry: ModelEntry; inspector: ModelInspector } {
    if (!name) throw new RegistryError('INVALID_ARGUMENT', "the 'model' field is empty: name the model to apply");
    if (!validModelName(name)) throw new RegistryError('INVALID_ARGUMENT', `the 'model' field '${clip(name)}' is not a valid model name (${MODEL_NAME_RULE})`);
    const versions = this.list({ name });
    if (versions.length === 0) throw new RegistryError('NOT_FOUND', `unknown model '${name}' (the 'model' field)`);
    let e: ModelEntry | undefined;
    if (version) {
      e = versions.find((v) => v.version === version);
      if (!e) throw new RegistryError('NOT_FOUND', `model '${name}' has no version ${clip(version)}`);
    } else {
      // The newest loaded version; else the newest that failed, so the error below says why.
      const newest = [...versions].reverse();
      e = newest.find((v) => v.state === 'loaded') ?? newest.find((v) => v.state === 'failed' && v.error);
      if (!e) throw new RegistryError('FAILED_PRECONDITION', `model '${name}' is not loaded (LoadModel it first)`);
    }
    // A failed load says why: LoadModel would only fail the same way again.
    if (e.state === 'failed' && e.error) throw new RegistryError('FAILED_PRECONDITION', `model '${name}' version ${e.version} (${e.relFile}) failed to load: ${e.error}`);
    if (e.state !== 'loaded' || !e.inspector) throw new RegistryError('FAILED_PRECONDITION', `model '${name}' version ${e.version} is not loaded (LoadModel it first)`);
    return { entry: e, inspector: e.inspector };
  }

  async load(name: string, version = ''): Promise<ModelEntry> {
    await this.scan();
    const e = this.get(name, version);
    if (e.state === 'loaded') return e;
    const k = key(e.name, e.version);
    let p = this.loading.get(k);
    if (!p) {
      p = this.doLoad(e).finally(() => this.loading.delete(k));
      this.loading.set(k, p);
    }
    return p;
  }

  private async doLoad(e: ModelEntry): Promise<ModelEntry> {
    if (!e.header) throw new RegistryError('FAILED_PRECONDITION', `${e.relFile} cannot be loaded: ${e.error}`);
    e.state = 'loading';
    this.emit('change', e.name);
    const t0 = performance.now();
    try {
      // core validates the whole model here (layers, thresholds, shapes, the CNN weights): a model that
      // could not inspect is FAILED with the reason, never LOADED.
      e.inspector = await withTimeout(ModelInspector.open(e.file, { engine: this.opts.engine, ...(this.opts.backend !== undefined ? { backend: this.opts.backend } : {}) }), LOAD_TIMEOUT_MS, 'loading it');
      e.state = 'loaded';
      e.error = '';
      this.opts.log.info('model loaded', { model: e.name, version: e.version, kind: e.header.kind, ms: Math.round(performance.now() - t0), description: e.inspector.description });
    } catch (err) {
      e.state = 'failed';
      e.inspector = null;
      e.error = fileError(err, e.file, e.relFile);
      this.opts.log.warn('model load failed', { model: e.name, version: e.version, error: e.error });
      this.emit('change', e.name);
      throw new RegistryError('FAILED_PRECONDITION', `cannot load model '${e.name}' version ${e.version}: ${e.error}`);
    }
    this.emit('change', e.name);
    return e;
  }

  unload(name: string, version = ''): ModelEntry[] {
    requireModelName(name);
    const targets = version ? [this.get(name, version)] : this.list({ name }).filter((e) => e.state === 'loaded');
    if (!version && this.list({ name }).length === 0) throw new RegistryError('NOT_FOUND', `no model named '${name}'`);
    for (const e of targets) {
      // In-flight images keep their own reference to the inspector and finish normally.
      e.inspector = null;
      e.state = e.header ? 'available' : 'failed';
      this.opts.log.info('model unloaded', { model: e.name, version: e.version });
    }
    if (targets.length > 0) this.emit('change', name);
    return targets;
  }

  async delete(name: string, version: string): Promise<ModelEntry> {
    if (!version) throw new RegistryError('INVALID_ARGUMENT', 'DeleteModel needs a version');
    await this.scan();
    const e = this.get(name, version);
    // The file goes first: a delete that fails (read-only folder) must leave a loaded model serving.
    // unlink, not rm: rm answers a refused unlink by trying the file as a folder (ENOTDIR scandir).
    try {
      await fs.unlink(e.file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        const why = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? `permission denied (${code}): the models folder is not writable by the server` : err instanceof Error ? err.message : String(err);
        throw new RegistryError('FAILED_PRECONDITION', `cannot delete model '${e.name}' version ${e.version} (${e.relFile}): ${why}; it stays ${e.state}`);
      }
    }
    this.unload(name, version);
    this.entries.delete(key(e.name, e.version));
    this.opts.log.info('model deleted', { model: e.name, version: e.version, file: e.relFile });
    this.emit('change', name);
    return { ...e, state: 'available', inspector: null };
  }

  /** Reserves the next version number of `name` (for a training) and returns it with its file path. */
  async reserveNextVersion(name: string): Promise<{ version: string; file: string; release: () => void }> {
    requireModelName(name);
    await this.scan();
    let max = 0;
    for (const e of this.list({ name })) max = Math.max(max, Number(e.version));
    for (const r of this.reserved) if (r.startsWith(`${name}@`)) max = Math.max(max, Number(r.slice(name.length + 1)));
    const version = String(max + 1);
    const k = key(name, version);
    this.reserved.add(k);
    return { version, file: join(this.opts.dir, name, `${version}${MODEL_FILE_EXTENSION}`), release: () => this.reserved.delete(k) };
  }

  /** Loads the newest version of every model; failures are logged, not thrown. */
  async loadAllLatest(): Promise<void> {
    await this.scan();
    for (const name of this.names()) {
      const versions = this.list({ name }).filter((e) => e.header);
      const newest = versions[versions.length - 1];
      // A version that failed is not retried until its file changes (a rescan would reload it every time).
      if (!newest || newest.state === 'failed') continue;
      try {
        await this.load(name, newest.version);
      } catch {
        // logged by doLoad
      }
    }
  }

  countInspection(entry: ModelEntry): void {
    entry.inspections++;
  }
}
