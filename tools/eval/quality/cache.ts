// Cached inputs of the quality experiments (tools/eval/quality.ts explore): per category and view
// configuration, the engine's res3d/res4f taps of every image (fp16 on disk, under $LOUPE_HOME/quality-cache
// or --cache, never in the repository); per split seed and feature configuration, the memory bank and
// every image's k nearest bank rows. Everything downstream (image scores, heads, fusion) is iterated on
// these, so a change to a head costs seconds, not a CNN pass.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join, relative } from 'node:path';

import sharp from 'sharp';

import {
  buildPatchEmbeddings,
  createRng,
  decodeFloat16,
  encodeFloat16,
  flipGrid,
  INPUT_ELEMENTS,
  INPUT_SIZE,
  loadAddon,
  prepareImage,
  rgbToCaffe,
  scanMvtecOneClass,
  SparseRandomProjection,
  parseGroupsCsv,
  resolveGroups,
  type Engine,
} from '../../../packages/core/src/internal.js';

export const RES3D = 28 * 28 * 512;
export const RES4F = 14 * 14 * 1024;
export const TAPS_PER_VIEW = RES3D + RES4F;
export const D = 1536;
export const P = 784;

export interface Item {
  path: string;
  relPath: string;
  label: string;
  mvtecSplit: 'train' | 'test';
  maskPath?: string;
}

export interface CategoryData {
  name: string;
  root: string;
  items: Item[];
  groups: Map<string, string> | undefined;
}

export function log(msg: string): void {
  process.stderr.write(`[quality] ${msg}\n`);
}

export async function loadCategory(root: string, name: string): Promise<CategoryData> {
  const ds = await scanMvtecOneClass(root, { verify: 'decode', dedupe: false });
  const items: Item[] = [...ds.train, ...ds.test].map((i) => ({
    path: i.path,
    relPath: i.relPath,
    label: i.label,
    mvtecSplit: i.mvtecSplit === 'train' ? 'train' : 'test',
    ...(i.maskPath ? { maskPath: i.maskPath } : {}),
  }));
  const gf = join(root, 'groups.csv');
  const groups = existsSync(gf) ? resolveGroups(parseGroupsCsv(readFileSync(gf, 'utf8'), gf), { root, items }, { source: gf }) : undefined;
  return { name, root, items, groups };
}

/** Views of an image as the engine sees them. */
export type ViewName = 'base' | 'hflip' | 'vflip' | 'hvflip' | 'up448';

export function viewsPerImage(view: ViewName): number {
  return view === 'up448' ? 4 : 1;
}

async function viewTensor(path: string, view: ViewName): Promise<Float32Array> {
  if (view === 'up448') {
    const S = 2 * INPUT_SIZE;
    const { data } = await sharp(path).removeAlpha().toColourspace('srgb').resize(S, S, { fit: 'fill', kernel: 'cubic' }).raw().toBuffer({ resolveWithObject: true });
    const rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const ch = rgb.length / (S * S);
    const out = new Float32Array(4 * INPUT_ELEMENTS);
    for (let t = 0; t < 4; t++) {
      const oy = (t >> 1) * INPUT_SIZE;
      const ox = (t & 1) * INPUT_SIZE;
      const tile = new Uint8Array(INPUT_SIZE * INPUT_SIZE * 3);
      for (let y = 0; y < INPUT_SIZE; y++)
        for (let x = 0; x < INPUT_SIZE; x++)
          for (let c = 0; c < 3; c++) tile[(y * INPUT_SIZE + x) * 3 + c] = rgb[((oy + y) * S + ox + x) * ch + (ch === 1 ? 0 : c)]!;
      rgbToCaffe(tile, out, t);
    }
    return out;
  }
  const t = (await prepareImage(path)).tensor;
  if (view === 'base') return t;
  // Core's flipGrid, as the hybrid's test-time flips use it; the half turn is both flips.
  const S = INPUT_SIZE;
  return view === 'hvflip' ? flipGrid(flipGrid(t, S, S, 3, 'hflip'), S, S, 3, 'vflip') : flipGrid(t, S, S, 3, view);
}

// Node's readFileSync/writeFileSync stop at 2 GiB; the up448 taps of magnetic tile are 6.5 GB.
const CHUNK = 1 << 30;
function readBig(file: string): Uint16Array {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = new Uint16Array(size / 2);
    // Byte views of at most CHUNK bytes (a Uint8Array cannot span more than 4 GiB).
    for (let o = 0; o < size; ) {
      const n = Math.min(CHUNK, size - o);
      o += readSync(fd, new Uint8Array(out.buffer, o, n), 0, n, o);
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
function writeBig(file: string, bits: Uint16Array): void {
  const fd = openSync(file + '.part', 'w');
  try {
    for (let o = 0; o < bits.byteLength; ) {
      const n = Math.min(CHUNK, bits.byteLength - o);
      o += writeSync(fd, new Uint8Array(bits.buffer, bits.byteOffset + o, n), 0, n);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(file + '.part', file);
}

/** fp16 taps of every image of a category for one view configuration. */
export class TapStore {
  private constructor(
    readonly n: number,
    readonly views: number,
    private readonly bits: Uint16Array,
    /** Item index -> row (a store of some items only); undefined: row = item index. */
    private readonly rowOf?: Map<number, number>,
  ) {}

  /** Whether item i is in the store. */
  has(i: number): boolean {
    return this.rowOf ? this.rowOf.has(i) : i < this.n;
  }

  static async open(engine: Engine, cat: CategoryData, view: ViewName, cacheRoot: string, only?: readonly number[]): Promise<TapStore> {
    const dir = join(cacheRoot, cat.name.replace(/[\\/]/g, '_'), `taps-${view}${only ? '-defects' : ''}`);
    const file = join(dir, 'taps.f16');
    const index = join(dir, 'index.json');
    const picked = only ? [...only] : cat.items.map((_, i) => i);
    const rels = picked.map((i) => cat.items[i]!.relPath);
    const views = viewsPerImage(view);
    const rowOf = only ? new Map(picked.map((i, r) => [i, r])) : undefined;
    if (existsSync(file) && existsSync(index) && JSON.stringify(JSON.parse(readFileSync(index, 'utf8')).rels) === JSON.stringify(rels)) {
      return new TapStore(rels.length, views, readBig(file), rowOf);
    }
    mkdirSync(dir, { recursive: true });
    const per = views * TAPS_PER_VIEW;
    const bits = new Uint16Array(rels.length * per);
    const batch = Math.max(1, Math.floor(8 / views));
    const t0 = performance.now();
    for (let s = 0; s < rels.length; s += batch) {
      const e = Math.min(rels.length, s + batch);
      const tensors = await Promise.all(picked.slice(s, e).map((i) => viewTensor(cat.items[i]!.path, view)));
      const data = new Float32Array(tensors.reduce((a, t) => a + t.length, 0));
      let off = 0;
      for (const t of tensors) (data.set(t, off), (off += t.length));
      const out = await engine.run({ data, batch: (e - s) * views }, ['res3d', 'res4f']);
      for (let k = 0; k < (e - s) * views; k++) {
        const o = s * per + k * TAPS_PER_VIEW;
        bits.set(encodeFloat16(out.res3d.subarray(k * RES3D, (k + 1) * RES3D)), o);
        bits.set(encodeFloat16(out.res4f.subarray(k * RES4F, (k + 1) * RES4F)), o + RES3D);
      }
      if ((s / batch) % 20 === 0) log(`${cat.name} ${view}: taps ${e}/${rels.length} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
    writeBig(file, bits);
    writeFileSync(index, JSON.stringify({ rels }));
    return new TapStore(rels.length, views, bits, rowOf);
  }

  /** res3d and res4f of image i's views (float32, views concatenated). */
  taps(item: number): { res3d: Float32Array; res4f: Float32Array } {
    const i = this.rowOf ? this.rowOf.get(item)! : item;
    if (i === undefined) throw new Error(`item ${item} is not in this tap store`);
    const per = this.views * TAPS_PER_VIEW;
    const res3d = new Float32Array(this.views * RES3D);
    const res4f = new Float32Array(this.views * RES4F);
    for (let v = 0; v < this.views; v++) {
      const o = i * per + v * TAPS_PER_VIEW;
      res3d.set(decodeFloat16(this.bits.subarray(o, o + RES3D)), v * RES3D);
      res4f.set(decodeFloat16(this.bits.subarray(o + RES3D, o + TAPS_PER_VIEW)), v * RES4F);
    }
    return { res3d, res4f };
  }
}

/** How taps become patch rows. */
export interface FeatureConfig {
  /** Weight of the res4f part (res3d keeps 1). */
  w4?: number;
  /** Neighbourhood of the average pool: 3 (PatchCore) or 1 (none) or 5. */
  pool?: 1 | 3 | 5;
}

export function featureKey(f: FeatureConfig): string {
  return `w4=${f.w4 ?? 1},pool=${f.pool ?? 3}`;
}

function poolNxN(src: Float32Array, views: number, h: number, w: number, c: number, k: number): Float32Array {
  // Average pool, stride 1, zero padding, divided by k*k (count_include_pad), per view.
  const out = new Float32Array(src.length);
  const r = (k - 1) >> 1;
  const tmp = new Float32Array(h * w * c);
  for (let v = 0; v < views; v++) {
    const base = v * h * w * c;
    // horizontal
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * c;
        for (let dx = -r; dx <= r; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const s = base + (y * w + xx) * c;
          for (let ch = 0; ch < c; ch++) tmp[o + ch] = tmp[o + ch]! + src[s + ch]!;
        }
      }
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = base + (y * w + x) * c;
        for (let dy = -r; dy <= r; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          const s = (yy * w + x) * c;
          for (let ch = 0; ch < c; ch++) out[o + ch] = out[o + ch]! + tmp[s + ch]! / (k * k);
        }
      }
    tmp.fill(0);
  }
  return out;
}

/** Patch rows [views * 784][1536] of image i. */
export function embed(store: TapStore, i: number, f: FeatureConfig = {}): Float32Array {
  const { res3d, res4f } = store.taps(i);
  const views = store.views;
  const pool = f.pool ?? 3;
  let rows: Float32Array;
  if (pool === 3) {
    rows = new Float32Array(views * P * D);
    buildPatchEmbeddings(res3d, res4f, views, rows);
  } else {
    // Pool here (1 = identity), then let the native builder do its 3x3 pool on a pre-unpooled input is not
    // possible; so build with the native path on taps that undo nothing: pool manually and upsample.
    const a = pool === 1 ? res3d : poolNxN(res3d, views, 28, 28, 512, pool);
    const b = pool === 1 ? res4f : poolNxN(res4f, views, 14, 14, 1024, pool);
    rows = new Float32Array(views * P * D);
    const addon = nativeSync();
    const ax = addon.bilinearAxis(14, 28);
    for (let v = 0; v < views; v++)
      for (let y = 0; y < 28; y++)
        for (let x = 0; x < 28; x++) {
          const o = (v * P + y * 28 + x) * D;
          rows.set(a.subarray(v * RES3D + (y * 28 + x) * 512, v * RES3D + (y * 28 + x + 1) * 512), o);
          const y0 = ax.i0[y]!, y1 = ax.i1[y]!, ly = ax.lambda[y]!;
          const x0 = ax.i0[x]!, x1 = ax.i1[x]!, lx = ax.lambda[x]!;
          const bb = v * RES4F;
          for (let ch = 0; ch < 1024; ch++) {
            const q = (yy: number, xx: number): number => b[bb + (yy * 14 + xx) * 1024 + ch]!;
            rows[o + 512 + ch] = (1 - ly) * ((1 - lx) * q(y0, x0) + lx * q(y0, x1)) + ly * ((1 - lx) * q(y1, x0) + lx * q(y1, x1));
          }
        }
  }
  const w4 = f.w4 ?? 1;
  if (w4 !== 1) for (let r = 0; r < views * P; r++) for (let ch = 512; ch < D; ch++) rows[r * D + ch] = rows[r * D + ch]! * w4;
  return rows;
}

let addonCache: Awaited<ReturnType<typeof loadAddon>> | undefined;
export async function native(): Promise<Awaited<ReturnType<typeof loadAddon>>> {
  addonCache ??= await loadAddon();
  return addonCache;
}
function nativeSync(): Awaited<ReturnType<typeof loadAddon>> {
  if (!addonCache) throw new Error('call native() first');
  return addonCache;
}

/** A memory bank and every image's k nearest bank rows (cached per split and feature configuration). */
export interface BankScores {
  /** Bank rows [n][D]. */
  bank: Float32Array;
  n: number;
  /** Item index of each bank row's image. */
  rowImage: Int32Array;
  /** Per item: [views * 784][k] distances (Euclidean, ascending) and bank row indices. */
  k: number;
  dist: Float32Array[];
  idx: Int32Array[];
}

/**
 * Greedy k-center coreset (1%) of the bank images' patch rows, selected on a 128-dim sparse projection of
 * them (PatchCore's approximate sampler; the projection keeps memory at 0.5 KB per patch), then k-NN of every
 * item's patches against it.
 */
export async function bankScores(
  store: TapStore,
  cat: CategoryData,
  bankItems: readonly number[],
  f: FeatureConfig,
  key: string,
  cacheRoot: string,
  options: { ratio?: number; k?: number; threads?: number; coresetSeed?: number } = {},
): Promise<BankScores> {
  const a = await native();
  const k = options.k ?? 9;
  const ratio = options.ratio ?? 0.01;
  const cs = options.coresetSeed ?? 0;
  const id = createHash('sha256').update(JSON.stringify({ bankItems, f: featureKey(f), ratio, k, views: store.views, ...(cs ? { cs } : {}) })).digest('hex').slice(0, 16);
  const dir = join(cacheRoot, cat.name.replace(/[\\/]/g, '_'), `bank-${id}`);
  const n = store.n;
  const rowsPer = store.views * P;
  if (existsSync(join(dir, 'done'))) {
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { n: number };
    const bank = new Float32Array(new Uint8Array(readFileSync(join(dir, 'bank.f32'))).buffer);
    const rowImage = new Int32Array(new Uint8Array(readFileSync(join(dir, 'rowimage.i32'))).buffer);
    const distAll = new Float32Array(new Uint8Array(readFileSync(join(dir, 'dist.f32'))).buffer);
    const idxAll = new Int32Array(new Uint8Array(readFileSync(join(dir, 'idx.i32'))).buffer);
    const dist: Float32Array[] = [];
    const idx: Int32Array[] = [];
    for (let i = 0; i < n; i++) {
      dist.push(distAll.subarray(i * rowsPer * k, (i + 1) * rowsPer * k));
      idx.push(idxAll.subarray(i * rowsPer * k, (i + 1) * rowsPer * k));
    }
    return { bank, n: meta.n, rowImage, k, dist, idx };
  }
  const t0 = performance.now();
  const proj = new SparseRandomProjection({ inDim: D, outDim: 128, seed: cs });
  const total = bankItems.length * rowsPer;
  const low = new Float32Array(total * 128);
  for (let j = 0; j < bankItems.length; j++) {
    const rows = embed(store, bankItems[j]!, f);
    proj.apply(rows, rowsPer, low.subarray(j * rowsPer * 128, (j + 1) * rowsPer * 128));
  }
  const m = Math.max(1, Math.ceil(total * ratio));
  const sel = await a.greedyCoreset(low, total, 128, m, { seed: cs, projectionDim: 0, threads: options.threads ?? 2 });
  const t1 = performance.now();
  // Gather full rows of the selected patches, image by image.
  const bank = new Float32Array(m * D);
  const rowImage = new Int32Array(m);
  const byImage = new Map<number, number[]>();
  sel.forEach((r, s) => {
    const j = Math.floor(r / rowsPer);
    const l = byImage.get(j);
    if (l) l.push(s);
    else byImage.set(j, [s]);
  });
  for (const [j, slots] of byImage) {
    const rows = embed(store, bankItems[j]!, f);
    for (const s of slots) {
      const r = sel[s]! - j * rowsPer;
      bank.set(rows.subarray(r * D, (r + 1) * D), s * D);
      rowImage[s] = bankItems[j]!;
    }
  }
  const index = await a.createKnnIndex(bank, m, D, { threads: options.threads ?? 2 });
  const distAll = new Float32Array(n * rowsPer * k);
  const idxAll = new Int32Array(n * rowsPer * k);
  for (let i = 0; i < n; i++) {
    const rows = embed(store, i, f);
    const r = await index.search(rows, rowsPer, k);
    for (let q = 0; q < rowsPer * k; q++) distAll[i * rowsPer * k + q] = Math.sqrt(Math.max(0, r.dist[q]!));
    idxAll.set(r.idx, i * rowsPer * k);
  }
  const t2 = performance.now();
  log(`${cat.name} bank ${key}: ${m} rows of ${total} (coreset ${((t1 - t0) / 1000).toFixed(0)} s, kNN ${((t2 - t1) / 1000).toFixed(0)} s)`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bank.f32'), new Uint8Array(bank.buffer));
  writeFileSync(join(dir, 'rowimage.i32'), new Uint8Array(rowImage.buffer));
  writeFileSync(join(dir, 'dist.f32'), new Uint8Array(distAll.buffer));
  writeFileSync(join(dir, 'idx.i32'), new Uint8Array(idxAll.buffer));
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ n: m, bankItems: bankItems.length, f, ratio, k }));
  writeFileSync(join(dir, 'done'), '');
  const dist: Float32Array[] = [];
  const idx: Int32Array[] = [];
  for (let i = 0; i < n; i++) {
    dist.push(distAll.subarray(i * rowsPer * k, (i + 1) * rowsPer * k));
    idx.push(idxAll.subarray(i * rowsPer * k, (i + 1) * rowsPer * k));
  }
  return { bank, n: m, rowImage, k, dist, idx };
}

export function rel(repo: string, p: string): string {
  return relative(repo, p);
}
export { createRng };
