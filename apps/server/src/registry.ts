// The model directory and the models loaded from it.
//
// Layout: <dir>/<name>.loupe is version 1 of <name>; <dir>/<name>/<version>.loupe (version = a positive
// integer) holds numbered versions (what Train writes). Both kinds of Loupe model file are served: 'svm'
// classifiers and 'one-class' PatchCore models. The directory is rescanned on every listing, so files
// copied in appear without a restart; LoadModel/UnloadModel/DeleteModel change what is in memory.
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import { basename, join, relative } from 'node:path';

import { MODEL_FILE_EXTENSION } from '@loupe/core';

import { loadInspector, type Inspector, type ModelKindName } from './inspectors.js';
import type { Logger } from './log.js';

export type ModelStateName = 'available' | 'loading' | 'loaded' | 'failed';

export interface ModelHeaderSummary {
  kind: ModelKindName;
  method: string;
  classes: string[];
  layer: string;
  createdAt: string;
  weightsHash: string;
}

export interface ModelEntry {
  name: string;
  version: string;
  /** Absolute path. */
  file: string;
  /** Relative to the model directory. */
  relFile: string;
  sizeBytes: number;
  mtimeMs: number;
  header: ModelHeaderSummary | null;
  state: ModelStateName;
  error: string;
  inspector: Inspector | null;
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
  if (!validModelName(name)) throw new RegistryError('INVALID_ARGUMENT', `invalid model name '${name}' (${MODEL_NAME_RULE})`);
}

function key(name: string, version: string): string {
  return `${name}@${version}`;
}

/** Reads the JSON header line of a model file without reading its payload. */
export async function readHeaderLine(file: string, max = 64 * 1024 * 1024): Promise<Record<string, unknown>> {
  const fh = await fs.open(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.alloc(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) throw new Error('no header line (is this a Loupe model file?)');
      const part = buf.subarray(0, bytesRead);
      const nl = part.indexOf(0x0a);
      if (nl >= 0) {
        chunks.push(part.subarray(0, nl));
        break;
      }
      chunks.push(part);
      total += bytesRead;
      if (total > max) throw new Error('header line too long');
    }
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || (parsed as Record<string, unknown>)['magic'] !== 'loupe-model') throw new Error('not a Loupe model file');
    return parsed as Record<string, unknown>;
  } finally {
    await fh.close();
  }
}

export function summarizeHeader(h: Record<string, unknown>): ModelHeaderSummary {
  const kind = h['kind'];
  if (kind !== 'svm' && kind !== 'one-class') throw new Error(`unsupported model kind ${JSON.stringify(kind)}`);
  if (kind === 'svm') {
    return {
      kind,
      method: 'svm',
      classes: Array.isArray(h['classes']) ? (h['classes'] as unknown[]).map(String) : [],
      layer: String(h['layer'] ?? ''),
      createdAt: String(h['createdAt'] ?? ''),
      weightsHash: String(h['weightsHash'] ?? ''),
    };
  }
  return {
    kind,
    method: String(h['method'] ?? ''),
    classes: ['good', 'anomaly'],
    layer: 'res3d,res4f',
    createdAt: String(h['createdAt'] ?? ''),
    weightsHash: String(h['weightsHash'] ?? ''),
  };
}

function compareVersions(a: string, b: string): number {
  return Number(a) - Number(b);
}

export interface RegistryOptions {
  dir: string;
  /** sha256 of the engine's CNN weights: models trained on other weights are refused. */
  weightsHash: string | undefined;
  log: Logger;
}

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
    const found = new Map<string, { name: string; version: string; file: string }>();
    const top = await fs.readdir(this.opts.dir, { withFileTypes: true });
    for (const d of top) {
      if (d.isFile() && d.name.endsWith(MODEL_FILE_EXTENSION)) {
        const name = basename(d.name, MODEL_FILE_EXTENSION);
        if (!validModelName(name)) this.warnOnce(`ignored:${d.name}`, 'model file ignored: its name is not a valid model name', { file: d.name, rule: MODEL_NAME_RULE });
        else if (!found.has(key(name, '1'))) found.set(key(name, '1'), { name, version: '1', file: join(this.opts.dir, d.name) });
      } else if (d.isDirectory() && validModelName(d.name)) {
        let inner: string[];
        try {
          inner = await fs.readdir(join(this.opts.dir, d.name));
        } catch {
          continue;
        }
        for (const f of inner) {
          if (!f.endsWith(MODEL_FILE_EXTENSION)) continue;
          const version = basename(f, MODEL_FILE_EXTENSION);
          if (!VERSION_RE.test(version)) continue;
          // <name>/<v>.loupe wins over a flat <name>.loupe for the same version
          found.set(key(d.name, version), { name: d.name, version, file: join(this.opts.dir, d.name, f) });
        }
      }
    }
    for (const [k, f] of found) {
      let st;
      try {
        st = await fs.stat(f.file);
      } catch {
        continue;
      }
      const old = this.entries.get(k);
      if (old && old.file === f.file && old.mtimeMs === st.mtimeMs && old.sizeBytes === st.size) continue;
      let header: ModelHeaderSummary | null = null;
      let error = '';
      try {
        header = summarizeHeader(await readHeaderLine(f.file));
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
        this.opts.log.warn('model file unreadable: listed as failed', { model: f.name, version: f.version, file: relative(this.opts.dir, f.file), error });
      }
      const entry: ModelEntry = {
        name: f.name,
        version: f.version,
        file: f.file,
        relFile: relative(this.opts.dir, f.file),
        sizeBytes: st.size,
        mtimeMs: st.mtimeMs,
        header,
        state: old?.state === 'loaded' ? 'loaded' : header ? 'available' : 'failed',
        error,
        inspector: old?.inspector ?? null,
        inspections: old?.inspections ?? 0,
      };
      if (old?.state === 'loaded' && (old.mtimeMs !== st.mtimeMs || old.sizeBytes !== st.size)) {
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
    if (!e) throw new RegistryError('NOT_FOUND', `model '${name}' has no version ${version} (versions: ${versions.map((v) => v.version).join(', ')})`);
    return e;
  }

  /** The inspector to use for a request: the given version, else the newest LOADED version. */
  resolve(name: string, version = ''): { entry: ModelEntry; inspector: Inspector } {
    if (!name) throw new RegistryError('INVALID_ARGUMENT', "the 'model' field is empty: name the model to apply");
    if (!validModelName(name)) throw new RegistryError('INVALID_ARGUMENT', `the 'model' field '${name}' is not a valid model name`);
    const versions = this.list({ name });
    if (versions.length === 0) throw new RegistryError('NOT_FOUND', `unknown model '${name}' (the 'model' field)`);
    let e: ModelEntry | undefined;
    if (version) {
      e = versions.find((v) => v.version === version);
      if (!e) throw new RegistryError('NOT_FOUND', `model '${name}' has no version ${version}`);
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
      e.inspector = await loadInspector(e.file, e.header.kind, this.opts.weightsHash);
      e.state = 'loaded';
      e.error = '';
      this.opts.log.info('model loaded', { model: e.name, version: e.version, kind: e.header.kind, ms: Math.round(performance.now() - t0), description: e.inspector.description });
    } catch (err) {
      e.state = 'failed';
      e.inspector = null;
      e.error = err instanceof Error ? err.message : String(err);
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
      if (!newest) continue;
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
