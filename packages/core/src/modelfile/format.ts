// The Loupe model file: one self-describing file.
//
//   line 1: JSON header, UTF-8, no raw newlines (so `head -1 model.loupe | jq .` shows it), then '\n'
//   rest:   binary payload: named little-endian sections (float32 / int32 / int8 / uint8), each aligned
//           to 8 bytes within the payload.
//
// The header starts with {"magic":"loupe-model","formatVersion":1,"kind":...} and lists the payload's
// byte length, its sha256 and every section's dtype, shape, offset and length. Loading checks all of
// them and raises ModelFileError naming the file and the field.

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { endianness } from 'node:os';

import { openRegularFile, readRegularFile } from '../files.js';
import { writeFileAtomic } from './atomic.js';
import { ModelFileError } from './errors.js';

export const MODEL_MAGIC = 'loupe-model';
export const MODEL_FORMAT_VERSION = 1;
/** Conventional extension. */
export const MODEL_FILE_EXTENSION = '.loupe';
/** Largest header accepted when reading (guards against reading a huge non-model file as a header). */
export const MAX_HEADER_BYTES = 64 * 1024 * 1024;

export type ModelKind = 'svm' | 'one-class' | 'hybrid';
export const MODEL_KINDS: readonly ModelKind[] = ['svm', 'one-class', 'hybrid'];

export type SectionDType = 'float32' | 'int32' | 'int8' | 'uint8';
export type SectionArray = Float32Array | Int32Array | Int8Array | Uint8Array;

const DTYPE_BYTES: Record<SectionDType, number> = { float32: 4, int32: 4, int8: 1, uint8: 1 };

export interface ModelSection {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: SectionArray;
}

export interface SectionEntry {
  readonly name: string;
  readonly dtype: SectionDType;
  readonly shape: number[];
  /** Offset within the payload. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface PayloadInfo {
  readonly byteLength: number;
  /** sha256 (hex) of the payload bytes. */
  readonly sha256: string;
  readonly endianness: 'little';
  readonly sections: SectionEntry[];
}

/** Fields every model header has; kinds add their own (JSON values). */
export interface ModelHeaderBase {
  readonly magic: typeof MODEL_MAGIC;
  readonly formatVersion: number;
  readonly kind: ModelKind;
  /** ISO 8601. */
  readonly createdAt: string;
  readonly payload: PayloadInfo;
  readonly [field: string]: unknown;
}

/** What the caller provides: kind-specific JSON fields (no magic/version/payload). */
export interface ModelHeaderInput {
  readonly kind: ModelKind;
  /** Default: now. Pass a fixed value for byte-identical files. */
  readonly createdAt?: string;
  readonly [field: string]: unknown;
}

function dtypeOf(a: SectionArray): SectionDType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int8Array) return 'int8';
  return 'uint8';
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function requireLittleEndian(file: string): void {
  if (endianness() !== 'LE') throw new ModelFileError('MODEL_INCOMPATIBLE', file, 'model files are little-endian; this host is big-endian');
}

/** Serialises a model to bytes (header line + payload). */
export function encodeModel(header: ModelHeaderInput, sections: readonly ModelSection[]): Buffer {
  requireLittleEndian('<model>');
  const entries: SectionEntry[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const s of sections) {
    if (names.has(s.name)) throw new ModelFileError('MODEL_WRITE', '<model>', `duplicate section '${s.name}'`, { field: 'payload.sections' });
    names.add(s.name);
    const count = s.shape.reduce((a, b) => a * b, 1);
    if (count !== s.data.length) {
      throw new ModelFileError('MODEL_WRITE', '<model>', `section '${s.name}' has ${s.data.length} values for shape [${s.shape.join(', ')}]`, { field: `payload.sections.${s.name}` });
    }
    offset = align8(offset);
    entries.push({ name: s.name, dtype: dtypeOf(s.data), shape: [...s.shape], byteOffset: offset, byteLength: s.data.byteLength });
    offset += s.data.byteLength;
  }
  const payload = Buffer.alloc(offset);
  sections.forEach((s, i) => {
    const e = entries[i] as SectionEntry;
    payload.set(new Uint8Array(s.data.buffer, s.data.byteOffset, s.data.byteLength), e.byteOffset);
  });
  const sha256 = createHash('sha256').update(payload).digest('hex');
  const { kind, createdAt, ...rest } = header;
  for (const reserved of ['magic', 'formatVersion', 'payload']) {
    if (reserved in rest) throw new ModelFileError('MODEL_WRITE', '<model>', `'${reserved}' is written by the encoder`, { field: reserved });
  }
  const full = {
    magic: MODEL_MAGIC,
    formatVersion: MODEL_FORMAT_VERSION,
    kind,
    createdAt: createdAt ?? new Date().toISOString(),
    ...rest,
    payload: { byteLength: payload.length, sha256, endianness: 'little', sections: entries },
  };
  const json = JSON.stringify(full);
  return Buffer.concat([Buffer.from(json, 'utf8'), Buffer.from('\n'), payload]);
}

export interface DecodedModel<H extends ModelHeaderBase = ModelHeaderBase> {
  readonly header: H;
  /** Copies (properly aligned), keyed by section name. */
  readonly sections: ReadonlyMap<string, SectionArray>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const MAGIC_PREFIX = `{"magic":"${MODEL_MAGIC}"`;

/** Parses and validates model bytes. `file` is used in error messages. */
export function decodeModel(bytes: Uint8Array, file: string, opts: { kinds?: readonly ModelKind[] } = {}): DecodedModel {
  requireLittleEndian(file);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length === 0) throw new ModelFileError('MODEL_NOT_A_MODEL', file, 'the file is empty');
  const prefixLen = Math.min(buf.length, MAGIC_PREFIX.length);
  if (buf.subarray(0, prefixLen).toString('latin1') !== MAGIC_PREFIX.slice(0, prefixLen)) {
    throw new ModelFileError('MODEL_NOT_A_MODEL', file, `not a Loupe model file (it does not start with ${MAGIC_PREFIX})`, { field: 'magic' });
  }
  const nl = buf.indexOf(0x0a);
  if (nl < 0) {
    if (buf.length >= MAX_HEADER_BYTES) throw new ModelFileError('MODEL_CORRUPT', file, `no header end within ${MAX_HEADER_BYTES} bytes`, { field: 'header' });
    throw new ModelFileError('MODEL_TRUNCATED', file, `the header is cut off after ${buf.length} bytes`, { field: 'header' });
  }
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch (err) {
    throw new ModelFileError('MODEL_CORRUPT', file, `the header is not valid JSON (${err instanceof Error ? err.message : String(err)})`, { field: 'header', cause: err });
  }
  if (!isObject(header) || header['magic'] !== MODEL_MAGIC) throw new ModelFileError('MODEL_NOT_A_MODEL', file, `magic is not '${MODEL_MAGIC}'`, { field: 'magic' });
  const version = header['formatVersion'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new ModelFileError('MODEL_CORRUPT', file, `formatVersion must be a positive integer, got ${JSON.stringify(version)}`, { field: 'formatVersion' });
  }
  if (version > MODEL_FORMAT_VERSION) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `format version ${version} is newer than this Loupe supports (${MODEL_FORMAT_VERSION}); upgrade Loupe`, { field: 'formatVersion' });
  }
  const kind = header['kind'];
  if (typeof kind !== 'string' || !(MODEL_KINDS as readonly string[]).includes(kind)) {
    throw new ModelFileError('MODEL_CORRUPT', file, `unknown model kind ${JSON.stringify(kind)} (expected ${MODEL_KINDS.join(' | ')})`, { field: 'kind' });
  }
  if (opts.kinds && !opts.kinds.includes(kind as ModelKind)) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `this is a '${kind}' model; expected ${opts.kinds.map((k) => `'${k}'`).join(' or ')}`, { field: 'kind' });
  }
  if (typeof header['createdAt'] !== 'string') throw new ModelFileError('MODEL_CORRUPT', file, 'missing or not a string', { field: 'createdAt' });
  const payloadInfo = header['payload'];
  if (!isObject(payloadInfo)) throw new ModelFileError('MODEL_CORRUPT', file, 'missing payload description', { field: 'payload' });
  const byteLength = payloadInfo['byteLength'];
  const sha = payloadInfo['sha256'];
  const entries = payloadInfo['sections'];
  if (typeof byteLength !== 'number' || !Number.isInteger(byteLength) || byteLength < 0) {
    throw new ModelFileError('MODEL_CORRUPT', file, `not a non-negative integer: ${JSON.stringify(byteLength)}`, { field: 'payload.byteLength' });
  }
  if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) throw new ModelFileError('MODEL_CORRUPT', file, 'not a sha256 hex digest', { field: 'payload.sha256' });
  if (payloadInfo['endianness'] !== 'little') throw new ModelFileError('MODEL_INCOMPATIBLE', file, `unsupported endianness ${JSON.stringify(payloadInfo['endianness'])}`, { field: 'payload.endianness' });
  if (!Array.isArray(entries)) throw new ModelFileError('MODEL_CORRUPT', file, 'not an array', { field: 'payload.sections' });
  const payload = buf.subarray(nl + 1);
  if (payload.length < byteLength) {
    throw new ModelFileError('MODEL_TRUNCATED', file, `the payload has ${payload.length} bytes, the header says ${byteLength} (the file is cut off)`, { field: 'payload.byteLength' });
  }
  if (payload.length > byteLength) {
    throw new ModelFileError('MODEL_CORRUPT', file, `${payload.length - byteLength} unexpected bytes after the payload`, { field: 'payload.byteLength' });
  }
  const actual = createHash('sha256').update(payload).digest('hex');
  if (actual !== sha) {
    throw new ModelFileError('MODEL_CORRUPT', file, `checksum mismatch: header ${sha}, payload ${actual} (the file is damaged)`, { field: 'payload.sha256' });
  }
  const sections = new Map<string, SectionArray>();
  entries.forEach((e: unknown, i: number) => {
    const field = `payload.sections[${i}]`;
    if (!isObject(e)) throw new ModelFileError('MODEL_CORRUPT', file, 'not an object', { field });
    const name = e['name'];
    const dtype = e['dtype'];
    const shape = e['shape'];
    const off = e['byteOffset'];
    const len = e['byteLength'];
    if (typeof name !== 'string' || name === '' || sections.has(name)) throw new ModelFileError('MODEL_CORRUPT', file, `bad or duplicate name ${JSON.stringify(name)}`, { field: `${field}.name` });
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw new ModelFileError('MODEL_CORRUPT', file, `unknown dtype ${JSON.stringify(dtype)}`, { field: `${field}.dtype` });
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
      throw new ModelFileError('MODEL_CORRUPT', file, `bad shape ${JSON.stringify(shape)}`, { field: `${field}.shape` });
    }
    const size = DTYPE_BYTES[dtype as SectionDType];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (typeof off !== 'number' || typeof len !== 'number' || !Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len !== count * size || off + len > byteLength) {
      throw new ModelFileError('MODEL_CORRUPT', file, `section '${name}' (${dtype} [${(shape as number[]).join(', ')}]) does not fit: offset ${JSON.stringify(off)}, length ${JSON.stringify(len)}, payload ${byteLength} bytes`, { field: `${field}.byteLength` });
    }
    const copy = new Uint8Array(len);
    copy.set(payload.subarray(off, off + len));
    const arr: SectionArray =
      dtype === 'float32' ? new Float32Array(copy.buffer) : dtype === 'int32' ? new Int32Array(copy.buffer) : dtype === 'int8' ? new Int8Array(copy.buffer) : copy;
    sections.set(name, arr);
  });
  return { header: header as ModelHeaderBase, sections };
}

/** Encodes and writes a model atomically. Returns the bytes written and the payload sha256. */
export async function writeModelFile(file: string, header: ModelHeaderInput, sections: readonly ModelSection[]): Promise<{ bytes: number; sha256: string }> {
  let data: Buffer;
  try {
    data = encodeModel(header, sections);
  } catch (err) {
    if (err instanceof ModelFileError) throw new ModelFileError(err.code, file, err.message.replace(/^<model>: /, ''), { ...(err.field ? { field: err.field } : {}), cause: err });
    throw err;
  }
  try {
    await writeFileAtomic(file, data);
  } catch (err) {
    throw new ModelFileError('MODEL_WRITE', file, `cannot write: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const nl = data.indexOf(0x0a);
  return { bytes: data.length, sha256: createHash('sha256').update(data.subarray(nl + 1)).digest('hex') };
}

/** Reads and validates a model file. */
export async function readModelFile(file: string, opts: { kinds?: readonly ModelKind[] } = {}): Promise<DecodedModel> {
  let bytes: Buffer;
  try {
    // Regular files only (a FIFO would hang the read, a link to a device grow it without end).
    bytes = await readRegularFile(file);
  } catch (err) {
    throw new ModelFileError('MODEL_READ', file, `cannot read: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return decodeModel(bytes, file, opts);
}

/**
 * True when `file` begins as every Loupe model file does, whatever state the rest is in (a truncated model
 * still counts): what a new model may replace without destroying something else.
 */
export async function startsAsModelFile(file: string): Promise<boolean> {
  const fh = (await openRegularFile(file).catch(() => null))?.handle;
  if (!fh) return false;
  try {
    const head = Buffer.alloc(MAGIC_PREFIX.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.toString('latin1') === MAGIC_PREFIX;
  } finally {
    await fh.close();
  }
}

/** Reads only the JSON header (first line), without loading or checking the payload. */
export async function readModelHeader(file: string): Promise<ModelHeaderBase> {
  let fh: fs.FileHandle;
  try {
    ({ handle: fh } = await openRegularFile(file));
  } catch (err) {
    throw new ModelFileError('MODEL_READ', file, `cannot read: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(chunk, 0, chunk.length, total));
      } catch (err) {
        // EISDIR (a folder given as the model) and I/O errors: name the file, as open() failures do.
        throw new ModelFileError('MODEL_READ', file, `cannot read: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      if (bytesRead === 0) break;
      const part = chunk.subarray(0, bytesRead);
      chunks.push(part);
      total += bytesRead;
      if (part.includes(0x0a) || total >= MAX_HEADER_BYTES) break;
    }
    const buf = Buffer.concat(chunks);
    const nl = buf.indexOf(0x0a);
    const head = nl >= 0 ? buf.subarray(0, nl + 1) : buf;
    // Validate the header alone: decode with an empty payload would fail on the length, so check fields.
    try {
      decodeModel(head, file);
    } catch (err) {
      if (!(err instanceof ModelFileError) || !(err.field?.startsWith('payload.byteLength') || err.field === 'payload.sha256')) throw err;
    }
    return JSON.parse(head.toString('utf8')) as ModelHeaderBase;
  } finally {
    await fh.close();
  }
}
