// On-disk cache of per-image CNN features, so re-training on the same images skips the network.
//
// Key: sha256 of the image file's bytes + layer + CNN weights hash + preprocessing (fit mode, decoder
// version) + the session's feature variant (an int8 session's calibration; none for fp32). The content hash
// (not the path) is the identity: a renamed or copied image hits, an edited one misses. Layout:
// <dir>/<weightsHash[0:16]>/<layer>.<fit>.d<DECODE_VERSION>[.<variant>]/<sha[0:2]>/<sha>.f32,
// one small file per image:
//
//   "LPFEAT01" | uint32 LE element count | uint32 0 | float32 LE x count | sha256(key | data) (32 bytes)
//
// The trailing digest covers the full key, so a damaged, truncated or misplaced entry is detected;
// such entries are treated as misses and rewritten, never an error. Writes are atomic (temp file +
// rename) but not fsynced: a cache entry lost or torn by a crash is only recomputed.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';

import type { Engine } from './engine.js';
import { AbortError, ImageReadError, LoupeError, messageOf } from './errors.js';
import { streamFeatures } from './features.js';
import { readRegularFile } from './files.js';
import { DECODE_VERSION, type FitMode } from './image/decode.js';
import { isTapName, tapElements, type TapName } from './model.js';
import { loupeHome } from './weights/paths.js';

const MAGIC = Buffer.from('LPFEAT01', 'latin1');
const HEADER_BYTES = 16;
const DIGEST_BYTES = 32;

/** $LOUPE_HOME/features: the default feature cache. */
export function featureCacheDir(home: string = loupeHome()): string {
  return join(home, 'features');
}

export interface FeatureCacheKey {
  /** sha256 of the CNN weights (Engine.weightsHash). */
  readonly weightsHash: string;
  readonly layer: TapName;
  /** How images are fitted to 224x224 (the only preprocessing choice). */
  readonly fit: FitMode;
  /** EngineSession.featureVariant: features of an int8 session are not fp32's. */
  readonly variant?: string | undefined;
}

export interface FeatureCacheOptions extends FeatureCacheKey {
  /** Default featureCacheDir(). */
  readonly dir?: string;
}

/** sha256 (hex) of bytes. */
export function contentHash(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** contentHash of each file, read one at a time (thousands of reads at once would exhaust file descriptors). */
export async function fileContentHashes(files: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) out.push(contentHash(await readRegularFile(f)));
  return out;
}

/** One (weights, layer, fit) slice of the cache. */
export class FeatureCache {
  readonly dir: string;
  readonly key: FeatureCacheKey;
  private readonly elements: number;
  private readonly root: string;

  constructor(opts: FeatureCacheOptions) {
    if (!isTapName(opts.layer)) throw new LoupeError('INVALID_ARGUMENT', `unknown layer '${String(opts.layer)}'`);
    if (!/^[0-9a-f]{16,}$/i.test(opts.weightsHash)) throw new LoupeError('INVALID_ARGUMENT', `weightsHash must be a hex digest, got '${opts.weightsHash}'`);
    if (opts.fit !== 'squash' && opts.fit !== 'crop') throw new LoupeError('INVALID_ARGUMENT', `fit must be 'squash' or 'crop', got '${String(opts.fit)}'`);
    this.dir = opts.dir ?? featureCacheDir();
    if (opts.variant !== undefined && !/^[\w.-]+$/.test(opts.variant)) throw new LoupeError('INVALID_ARGUMENT', `variant must be a plain name, got '${opts.variant}'`);
    this.key = { weightsHash: opts.weightsHash.toLowerCase(), layer: opts.layer, fit: opts.fit, variant: opts.variant };
    this.elements = tapElements(opts.layer);
    this.root = join(this.dir, this.key.weightsHash.slice(0, 16), `${opts.layer}.${opts.fit}.d${DECODE_VERSION}${opts.variant !== undefined ? `.${opts.variant}` : ''}`);
  }

  /** Where the entry of an image with this content hash lives. */
  entryPath(sha256: string): string {
    return join(this.root, sha256.slice(0, 2), `${sha256}.f32`);
  }

  private digest(sha256: string, data: Uint8Array): Buffer {
    const { weightsHash, layer, fit, variant } = this.key;
    return createHash('sha256').update(`${weightsHash}|${layer}|${fit}|d${DECODE_VERSION}|${variant !== undefined ? `${variant}|` : ''}${sha256}|`).update(data).digest();
  }

  /** The cached features, or undefined on a miss or an invalid entry (`corrupt` says which). */
  async get(sha256: string): Promise<{ features: Float32Array } | { features: undefined; corrupt: boolean }> {
    let buf: Buffer;
    try {
      buf = await fs.readFile(this.entryPath(sha256));
    } catch {
      return { features: undefined, corrupt: false };
    }
    const dataBytes = this.elements * 4;
    if (
      buf.length !== HEADER_BYTES + dataBytes + DIGEST_BYTES ||
      !buf.subarray(0, 8).equals(MAGIC) ||
      buf.readUInt32LE(8) !== this.elements ||
      buf.readUInt32LE(12) !== 0
    ) {
      return { features: undefined, corrupt: true };
    }
    const data = buf.subarray(HEADER_BYTES, HEADER_BYTES + dataBytes);
    if (!this.digest(sha256, data).equals(buf.subarray(HEADER_BYTES + dataBytes))) return { features: undefined, corrupt: true };
    // A copy: aligned, and independent of the read buffer.
    const out = new Float32Array(this.elements);
    new Uint8Array(out.buffer).set(data);
    return { features: out };
  }

  /** Stores features atomically; resolves false (never rejects) when the cache cannot be written. */
  async put(sha256: string, features: Float32Array): Promise<boolean> {
    if (features.length !== this.elements) throw new LoupeError('INVALID_ARGUMENT', `${this.key.layer} features have ${this.elements} values, got ${features.length}`);
    const data = new Uint8Array(features.buffer, features.byteOffset, features.byteLength);
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeUInt32LE(this.elements, 8);
    const file = this.entryPath(sha256);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await fs.mkdir(dirname(file), { recursive: true });
      await fs.writeFile(tmp, Buffer.concat([header, data, this.digest(sha256, data)]));
      await fs.rename(tmp, file);
      return true;
    } catch {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      return false;
    }
  }
}

export interface CachedFeatureProgress {
  /** Images finished (from the cache or computed). */
  readonly done: number;
  readonly total: number;
  /** Of those, taken from the cache. */
  readonly cached: number;
}

export interface CachedExtractOptions {
  readonly engine: Engine;
  readonly layer: TapName;
  /** Default 'squash'. */
  readonly fit?: FitMode;
  /** Cache directory; default featureCacheDir(); false: no cache (everything computed). */
  readonly cacheDir?: string | false;
  /** Images per engine run; default 32. */
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: CachedFeatureProgress) => void;
  /**
   * 'throw' (default): the first unreadable or undecodable image fails the call. 'skip': it is listed in
   * `invalid` (its `features` entry is empty) and the others go on.
   */
  readonly onInvalidImage?: 'throw' | 'skip';
}

export interface CachedExtractResult {
  /** One vector per input file, in input order (empty for the files in `invalid`). */
  readonly features: Float32Array[];
  /** With onInvalidImage 'skip': the files that could not be read or decoded, in input order. */
  readonly invalid: { readonly index: number; readonly error: LoupeError }[];
  /** sha256 of each input file. */
  readonly hashes: string[];
  /** Images taken from the cache. */
  readonly cached: number;
  /** Images run through the engine (distinct contents only). */
  readonly computed: number;
  /** Invalid cache entries found (recomputed and rewritten). */
  readonly corrupt: number;
  /** Entries that could not be written (read-only or full cache dir); the features are still returned. */
  readonly writeFailures: number;
}

/**
 * Features of one layer for image files, through the cache. Files are read once: the bytes that are
 * hashed are the bytes that are decoded, so an entry always matches its key.
 */
export async function extractFeaturesCached(files: readonly string[], opts: CachedExtractOptions): Promise<CachedExtractResult> {
  const fit = opts.fit ?? 'squash';
  const batchSize = opts.batchSize ?? 32;
  const cache = opts.cacheDir === false ? undefined : new FeatureCache({ weightsHash: opts.engine.weightsHash, layer: opts.layer, fit, variant: opts.engine.featureVariant, ...(opts.cacheDir !== undefined ? { dir: opts.cacheDir } : {}) });
  const total = files.length;
  const features: Float32Array[] = new Array(total);
  const hashes: string[] = new Array(total);
  let cached = 0;
  let computed = 0;
  let corrupt = 0;
  let writeFailures = 0;
  let done = 0;
  const skip = opts.onInvalidImage === 'skip';
  const invalid: { index: number; error: LoupeError }[] = [];
  const markInvalid = (index: number, error: LoupeError): void => {
    invalid.push({ index, error });
    features[index] = new Float32Array(0);
    done++;
  };
  // Chunks bound the encoded bytes held in memory while keeping engine batches full.
  const chunk = Math.max(64, batchSize * 4);
  for (let start = 0; start < total; start += chunk) {
    if (opts.signal?.aborted) break;
    const end = Math.min(total, start + chunk);
    const misses = new Map<string, { name: string; data: Buffer; indices: number[] }>();
    for (let i = start; i < end; i++) {
      const file = files[i] as string;
      let data: Buffer;
      try {
        data = await readRegularFile(file);
      } catch (err) {
        const e = new ImageReadError(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : messageOf(err), err);
        if (!skip) throw e;
        markInvalid(i, e);
        hashes[i] = '';
        continue;
      }
      const sha = contentHash(data);
      hashes[i] = sha;
      const pending = misses.get(sha);
      if (pending) {
        pending.indices.push(i);
        continue;
      }
      const hit = cache ? await cache.get(sha) : { features: undefined, corrupt: false };
      if (hit.features) {
        features[i] = hit.features;
        cached++;
        done++;
        continue;
      }
      if (hit.corrupt) corrupt++;
      misses.set(sha, { name: file, data, indices: [i] });
    }
    opts.onProgress?.({ done, total, cached });
    const todo = [...misses.entries()];
    if (todo.length > 0) {
      const stream = streamFeatures(
        todo.map(([, m]) => ({ name: m.name, data: m.data })),
        {
          engine: opts.engine,
          layer: opts.layer,
          batchSize,
          decode: { fit },
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(skip
            ? {
                onInvalidImage: 'skip' as const,
                onSkip: (error: LoupeError, index: number) => {
                  for (const i of (todo[index] as [string, { indices: number[] }])[1].indices) markInvalid(i, error);
                },
              }
            : {}),
        },
      );
      for await (const batch of stream) {
        for (const item of batch) {
          const [sha, m] = todo[item.index] as [string, { indices: number[] }];
          const f = item.features[opts.layer];
          for (const i of m.indices) features[i] = f;
          computed++;
          done += m.indices.length;
          if (cache && !(await cache.put(sha, f))) writeFailures++;
        }
        opts.onProgress?.({ done, total, cached });
      }
    }
  }
  if (opts.signal?.aborted) {
    throw new AbortError(opts.signal.reason);
  }
  invalid.sort((a, b) => a.index - b.index);
  return { features, hashes, invalid, cached, computed, corrupt, writeFailures };
}
