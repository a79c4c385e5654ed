// PatchCore memory bank: the patch embeddings of good training images, reduced by greedy k-center
// (farthest-point) coreset selection in the native engine (distances on a seeded random projection, as
// in PatchCore's ApproximateGreedyCoresetSampler), optionally stored as fp16 and capped in size.
//
// Size: n * d * (4 bytes fp32 | 2 bytes fp16). Scoring always runs on fp32 rows (the native kNN is
// fp32); with fp16 storage the in-memory rows are the fp16-rounded values, so what is saved is exactly
// what was evaluated.
import { LoupeError } from '../../errors.js';
import type { KnnNative } from './scorer.js';

export type BankStorage = 'fp32' | 'fp16';

export interface MemoryBank {
  /** [n][d] row-major. With fp16 storage, already rounded through fp16. */
  vectors: Float32Array;
  n: number;
  d: number;
  storage: BankStorage;
  /** Patches the coreset was selected from. */
  sourcePatches: number;
}

export interface MemoryBankOptions {
  /** Fraction of training patches kept (PatchCore: 0.01 - 0.1). 1 keeps every patch. */
  coresetRatio?: number;
  /** Hard cap on rows. */
  maxEntries?: number;
  /** Hard cap on the stored size in MiB (rows * d * bytes per value). */
  maxMB?: number;
  storage?: BankStorage;
  /** Seed of the coreset's first centre and projection. */
  seed?: number;
  /** Dimension of the random projection the coreset distances use (PatchCore: 128; 0 = full). */
  coresetProjectionDim?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  threads?: number;
}

export const BYTES_PER_VALUE: Readonly<Record<BankStorage, number>> = { fp32: 4, fp16: 2 };

/** Stored size of a bank in bytes. */
export function bankBytes(bank: Pick<MemoryBank, 'n' | 'd' | 'storage'>): number {
  return bank.n * bank.d * BYTES_PER_VALUE[bank.storage];
}

/** Stored size in MiB (2^20 bytes). */
export function bankMB(bank: Pick<MemoryBank, 'n' | 'd' | 'storage'>): number {
  return bankBytes(bank) / 1048576;
}

/** How many rows a bank built from `sourcePatches` patches of dim `d` gets under the options. */
export function coresetSize(sourcePatches: number, d: number, options: MemoryBankOptions = {}): number {
  const ratio = options.coresetRatio ?? 0.01;
  if (!(ratio > 0 && ratio <= 1)) throw new LoupeError('INVALID_ARGUMENT', `coresetRatio must be in (0, 1], got ${ratio}`);
  let m = Math.ceil(sourcePatches * ratio);
  if (options.maxEntries !== undefined) m = Math.min(m, Math.floor(options.maxEntries));
  if (options.maxMB !== undefined) {
    const bytes = BYTES_PER_VALUE[options.storage ?? 'fp32'] * d;
    m = Math.min(m, Math.floor((options.maxMB * 1048576) / bytes));
  }
  return Math.max(1, Math.min(m, sourcePatches));
}

/** Selects the coreset (native greedy k-center) and copies its rows. */
export async function buildMemoryBank(
  native: KnnNative,
  features: Float32Array,
  n: number,
  d: number,
  options: MemoryBankOptions = {},
  onProgress?: (done: number, total: number) => void,
): Promise<MemoryBank> {
  if (features.length < n * d || n < 1) throw new LoupeError('INVALID_ARGUMENT', `memory bank: expected ${n} x ${d} features`);
  const m = coresetSize(n, d, options);
  const storage = options.storage ?? 'fp32';
  let vectors: Float32Array;
  if (m >= n) {
    vectors = features.slice(0, n * d);
  } else {
    const opts: { seed?: number; projectionDim?: number; backend?: 'auto' | 'cpu' | 'cuda'; threads?: number } = {
      seed: options.seed ?? 0,
      projectionDim: options.coresetProjectionDim ?? 128,
    };
    if (options.backend !== undefined) opts.backend = options.backend;
    if (options.threads !== undefined) opts.threads = options.threads;
    const idx = await native.greedyCoreset(features, n, d, m, opts, onProgress);
    vectors = gatherRows(features, d, idx);
  }
  if (storage === 'fp16') roundThroughFp16(vectors);
  return { vectors, n: vectors.length / d, d, storage, sourcePatches: n };
}

/** Rows idx of a [*][d] matrix. */
export function gatherRows(src: Float32Array, d: number, idx: ArrayLike<number>): Float32Array {
  const out = new Float32Array(idx.length * d);
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i]!;
    out.set(src.subarray(r * d, r * d + d), i * d);
  }
  return out;
}

// --- IEEE 754 binary16 conversion (round to nearest, ties to even) ---------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> binary16 bits, round-to-nearest-even; overflow -> +-Inf; NaN kept. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero).
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    const rounded = rem > mid || (rem === mid && (half & 1)) ? half + 1 : half;
    return sign | rounded;
  }
  const half = mant >>> 13;
  const rem = mant & 0x1fff;
  let out = (e << 10) | half;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) out += 1; // may carry into the exponent: correct
  if ((out & 0x7c00) === 0x7c00) return sign | 0x7c00;
  return sign | out;
}

/** binary16 bits -> number. */
export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Float32Array -> Uint16Array of binary16 bits. */
export function encodeFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]!);
  return out;
}

/** Uint16Array of binary16 bits -> Float32Array (table-driven). */
export function decodeFloat16(bits: Uint16Array): Float32Array {
  const table = fp16Table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

let table16: Float32Array | null = null;
function fp16Table(): Float32Array {
  if (!table16) {
    table16 = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table16[h] = float16BitsToFloat32(h);
  }
  return table16;
}

/** Rounds every value to the nearest binary16 value, in place. */
export function roundThroughFp16(values: Float32Array): Float32Array {
  const table = fp16Table();
  for (let i = 0; i < values.length; i++) values[i] = table[float32ToFloat16Bits(values[i]!)]!;
  return values;
}
