// The experiments of `quality.ts explore`, by name. Each records mean +- sd over the split seeds per
// category and variant (quality-explore.json), and logs them.
import type { Env } from '../quality.js';
import { D, P, embed, native } from './cache.js';
import {
  DEFAULT_HEAD,
  headLogitsOf,
  headPatchLogits,
  tilesTo28,
  imageAuroc,
  log,
  maxOf,
  patchScores,
  pixelAuroc,
  reweighted,
  seedContext,
  stats,
  toMap,
  topMean,
  trainHead,
  type HeadConfig,
  type Protocol,
  type SeedContext,
} from './explore.js';

type Values = Record<string, number[]>;

function push(v: Values, key: string, x: number | null): void {
  if (x === null || !Number.isFinite(x)) return;
  (v[key] ??= []).push(x);
}

function report(env: Env, exp: string, cat: string, variant: string, v: Values): void {
  env.record(exp, cat, variant, v);
  log(`${exp} ${cat} [${variant}] ${Object.entries(v).map(([k, xs]) => `${k} ${stats(xs)}`).join(' | ')}`);
}

function proto(env: Env, over: Partial<Protocol> = {}): Protocol {
  return { split: env.split, shots: env.shots, valFraction: 0.1, ...over };
}

/** z-scores of two scores standardised on good images, summed with weight w on the second. */
function zFuse(goodA: number[], goodB: number[], w = 1): (a: number, b: number) => number {
  const st = (xs: number[]): [number, number] => {
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, xs.length - 1));
    return [m, Math.max(sd, 1e-6, 1e-3 * Math.abs(m))];
  };
  const [ma, sa] = st(goodA);
  const [mb, sb] = st(goodB);
  return (a, b) => (a - ma) / sa + (w * (b - mb)) / sb;
}

async function pcScores(ctx: SeedContext, items: readonly number[]): Promise<Map<number, number>> {
  const m = new Map<number, number>();
  for (const i of items) m.set(i, await reweighted(ctx, i, embed(ctx.store, i, ctx.f)));
  return m;
}

export const EXPERIMENTS: Record<string, (env: Env) => Promise<void>> = {
  /** Item 3: the one-class gap on the official protocol, bank = 90% of train/good (5 hold-out seeds) vs all of it. */
  async gap(env) {
    for (const cat of env.cats) {
      const store = await env.store(cat);
      for (const [vf, ratio] of [[0.1, 0.01], [0, 0.01], [0, 0.1]] as const) {
        if (ratio > 0.01 && cat.items.length > 500) continue;
        const v: Values = {};
        for (const seed of env.seeds) {
          // 90%: the hold-out and the coreset vary with the seed; all: the coreset does.
          const ctx = await seedContext(cat, store, seed, proto(env, { valFraction: vf }), {}, env.cacheRoot, { official: true, coresetSeed: seed, ratio });
          const pc = await pcScores(ctx, ctx.test);
          push(v, 'imageAuroc', imageAuroc(ctx, (i) => pc.get(i)!));
          push(v, 'imageAurocMax', imageAuroc(ctx, (i) => maxOf(patchScores(ctx, i))));
          push(v, 'pixelAuroc', await pixelAuroc(ctx, (i) => toMap(ctx, patchScores(ctx, i))));
        }
        report(env, 'gap', cat.name, `${vf === 0 ? 'bank all train/good' : 'bank 90% train/good'}, coreset ${ratio}`, v);
      }
    }
  },

  /** The starting point: one-class PatchCore, the few-shot head of anomaly/fewshot and their z-sum fusion. */
  async baseline(env) {
    for (const cat of env.cats) {
      const store = await env.store(cat);
      const v: Values = {};
      for (const seed of env.seeds) {
        const ctx = await seedContext(cat, store, seed, proto(env), {}, env.cacheRoot);
        const pc = await pcScores(ctx, [...ctx.test, ...ctx.valItems]);
        push(v, 'oneClass', imageAuroc(ctx, (i) => pc.get(i)!));
        push(v, 'oneClassPixel', await pixelAuroc(ctx, (i) => toMap(ctx, patchScores(ctx, i))));
        const head = await trainHead(ctx, DEFAULT_HEAD);
        if (!head) continue;
        const hs = new Map<number, number>();
        for (const i of [...ctx.test, ...ctx.valItems]) hs.set(i, maxOf(headPatchLogits(head, i)));
        push(v, 'head', imageAuroc(ctx, (i) => hs.get(i)!));
        const fuse = zFuse(ctx.valItems.map((i) => pc.get(i)!), ctx.valItems.map((i) => hs.get(i)!));
        push(v, 'fused', imageAuroc(ctx, (i) => fuse(pc.get(i)!, hs.get(i)!)));
      }
      report(env, 'baseline', cat.name, 'default', v);
    }
  },
};

export type { HeadConfig };
export { topMean };

// ------------------------------------------------------------------------------------------------
// Hybrid variants: one head configuration, several fusions, on every seed.

export interface HybridMetrics {
  [k: string]: number | null;
}

/** Gaussian smoothing of a 28x28 logit grid (per view) before the max. */
function smoothGrid(x: Float32Array, sigma: number): Float32Array {
  if (sigma <= 0) return x;
  const r = Math.ceil(3 * sigma);
  const w = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const views = x.length / 784;
  const out = new Float32Array(x.length);
  const tmp = new Float32Array(784);
  for (let v = 0; v < views; v++) {
    const o = v * 784;
    for (let y = 0; y < 28; y++)
      for (let xx = 0; xx < 28; xx++) {
        let s = 0, ws = 0;
        for (let d = -r; d <= r; d++) {
          const q = xx + d;
          if (q < 0 || q >= 28) continue;
          s += w[d + r]! * x[o + y * 28 + q]!;
          ws += w[d + r]!;
        }
        tmp[y * 28 + xx] = s / ws;
      }
    for (let y = 0; y < 28; y++)
      for (let xx = 0; xx < 28; xx++) {
        let s = 0, ws = 0;
        for (let d = -r; d <= r; d++) {
          const q = y + d;
          if (q < 0 || q >= 28) continue;
          s += w[d + r]! * tmp[q * 28 + xx]!;
          ws += w[d + r]!;
        }
        out[o + y * 28 + xx] = s / ws;
      }
  }
  return out;
}

export interface AggConfig {
  /** Image head score: top-k mean of the (smoothed) patch logits. */
  topK: number;
  sigma: number;
  /** Test-time flips: the head's patch logits averaged over the image and these flips of it (flipped back); ctx.tta holds their taps. */
  tta?: ('hflip' | 'vflip' | 'hvflip')[];
  /** The memory bank reads the flips too (their views are computed for the head anyway): see bankFlips. */
  bankTta?: boolean;
}

/** ctx with the bank's k-NN of a flipped view of the test and validation images (patch grids in the view's frame). */
async function flipBank(ctx: SeedContext, a: 'hflip' | 'vflip' | 'hvflip'): Promise<SeedContext> {
  const store = ctx.tta![a]!;
  const index = await (await native()).createKnnIndex(ctx.bs.bank, ctx.bs.n, D, { threads: 2 });
  const dist: Float32Array[] = [];
  const idx: Int32Array[] = [];
  for (const i of [...ctx.test, ...ctx.valItems]) {
    const r = await index.search(embed(store, i, ctx.f), P, ctx.bs.k);
    dist[i] = Float32Array.from(r.dist, (d) => Math.sqrt(Math.max(0, d)));
    idx[i] = r.idx;
  }
  return { ...ctx, store, bs: { ...ctx.bs, dist, idx } };
}

/**
 * The bank's image score with test-time flips, two ways: the mean of the image's and its flips' reweighted
 * scores ('mean'), and the max of their patch distance maps averaged after flipping back ('map'); with the map.
 */
async function bankFlips(ctx: SeedContext, flips: readonly ('hflip' | 'vflip' | 'hvflip')[], items: readonly number[], pc: Map<number, number>) {
  const fc = await Promise.all(flips.map((a) => flipBank(ctx, a)));
  const mean = new Map<number, number>();
  const map = new Map<number, number>();
  const maps = new Map<number, Float32Array>();
  for (const i of items) {
    let s = pc.get(i)!;
    const m = Float32Array.from(patchScores(ctx, i));
    for (let f = 0; f < flips.length; f++) {
      s += await reweighted(fc[f]!, i);
      const u = unflip(patchScores(fc[f]!, i), flips[f]!);
      for (let p = 0; p < P; p++) m[p] = m[p]! + u[p]!;
    }
    for (let p = 0; p < P; p++) m[p] = m[p]! / (1 + flips.length);
    mean.set(i, s / (1 + flips.length));
    map.set(i, maxOf(m));
    maps.set(i, m);
  }
  return { mean, map, maps };
}

/** A 28 x 28 logit grid of a flipped view, flipped back onto the image (core's flipGrid; the half turn is both flips). */
function unflip(l: Float32Array, how: 'hflip' | 'vflip' | 'hvflip'): Float32Array {
  return how === 'hvflip' ? flipGrid(flipGrid(l, 28, 28, 1, 'hflip'), 28, 28, 1, 'vflip') : flipGrid(l, 28, 28, 1, how);
}

export async function hybridVariant(ctx: SeedContext, head: HeadConfig, agg: AggConfig = { topK: 1, sigma: 0 }): Promise<HybridMetrics> {
  const out: HybridMetrics = {};
  const pc = await pcScores(ctx, [...ctx.test, ...ctx.valItems]);
  out['oneClass'] = imageAuroc(ctx, (i) => pc.get(i)!);
  const members = head.ensemble ?? 1;
  const logits = new Map<number, Float32Array>();
  for (let e = 0; e < members; e++) {
    const mf = head.memberFeat ? { feat: head.memberFeat[e % head.memberFeat.length]! } : {};
    const h = await trainHead(ctx, members > 1 ? { ...head, ...mf, projSeed: (head.projSeed ?? 1) + e } : head, e);
    if (!h) return out;
    for (const i of [...ctx.test, ...ctx.valItems]) {
      // A tiled head's image score is its max over all 3136 patches, which the 2 x 2 max keeps.
      let l = tilesTo28(headPatchLogits(h, i));
      if (agg.tta?.length) {
        const sum = Float32Array.from(l);
        for (const a of agg.tta) {
          const rows = h.feats.flippedRows(i, ctx.tta![a]!);
          const fl = unflip(headLogitsOf(h, rows), a);
          for (let p = 0; p < 784; p++) sum[p] = sum[p]! + fl[p]!;
        }
        l = sum.map((v) => v / (1 + agg.tta!.length));
      }
      const acc = logits.get(i);
      if (!acc) logits.set(i, Float32Array.from(l, (v) => v / members));
      else for (let p = 0; p < l.length; p++) acc[p] = acc[p]! + l[p]! / members;
    }
  }
  const hs = new Map<number, number>();
  for (const [i, l] of logits) hs.set(i, topMean(smoothGrid(l, agg.sigma), agg.topK));
  out['head'] = imageAuroc(ctx, (i) => hs.get(i)!);
  const val = ctx.valItems;
  const fuse = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!));
  out['fused'] = imageAuroc(ctx, (i) => fuse(pc.get(i)!, hs.get(i)!));
  const fuse2 = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 2);
  out['fusedW2'] = imageAuroc(ctx, (i) => fuse2(pc.get(i)!, hs.get(i)!));
  const fuse4 = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 4);
  out['fusedW4'] = imageAuroc(ctx, (i) => fuse4(pc.get(i)!, hs.get(i)!));
  const fuse8 = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 8);
  out['fusedW8'] = imageAuroc(ctx, (i) => fuse8(pc.get(i)!, hs.get(i)!));
  const fuseH = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 0.5);
  out['fusedW05'] = imageAuroc(ctx, (i) => fuseH(pc.get(i)!, hs.get(i)!));
  if (agg.bankTta && agg.tta?.length) {
    const bf = await bankFlips(ctx, agg.tta, [...ctx.test, ...val], pc);
    out['oneClassMax'] = imageAuroc(ctx, (i) => maxOf(patchScores(ctx, i)));
    for (const [name, sc] of [['Mean', bf.mean], ['Map', bf.map]] as const) {
      out[`oneClass${name}`] = imageAuroc(ctx, (i) => sc.get(i)!);
      for (const w of [1, 2, 4, 8]) {
        const fz = zFuse(val.map((i) => sc.get(i)!), val.map((i) => hs.get(i)!), w);
        out[`fused${name}W${w}`] = imageAuroc(ctx, (i) => fz(sc.get(i)!, hs.get(i)!));
      }
    }
    out['oneClassPixelMap'] = await pixelAuroc(ctx, (i) => toMap(ctx, bf.maps.get(i)!));
  }
  // Patch-level fusion: z of patch distances and patch logits on the validation images' patches, map max.
  const pst = (xs: number[]): [number, number] => {
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    return [m, Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, xs.length - 1)) || 1];
  };
  const vp: number[] = [], vl: number[] = [];
  for (const i of val) {
    const ps = patchScores(ctx, i);
    const l = logits.get(i)!;
    for (let p = 0; p < ps.length; p++) (vp.push(ps[p]!), vl.push(l[p]!));
  }
  const [mp, sp] = pst(vp);
  const [ml, sl] = pst(vl);
  const fusedPatch = (i: number): Float32Array => {
    const ps = patchScores(ctx, i);
    const l = logits.get(i)!;
    const f = new Float32Array(ps.length);
    for (let p = 0; p < ps.length; p++) f[p] = (ps[p]! - mp) / sp + (l[p]! - ml) / sl;
    return f;
  };
  out['patchFusedMax'] = imageAuroc(ctx, (i) => maxOf(fusedPatch(i)));
  out['fusedPixel'] = await pixelAuroc(ctx, (i) => toMap(ctx, fusedPatch(i)));
  out['oneClassPixel'] = await pixelAuroc(ctx, (i) => toMap(ctx, patchScores(ctx, i)));
  return out;
}

/** The flipped views' taps of every defect of the category (flip augmentation), into ctx.augment. */
async function loadFlips(env: Env, ctx: SeedContext, views: readonly ('hflip' | 'vflip')[]): Promise<void> {
  const defects = ctx.cat.items.map((it, i) => (it.label !== 'good' ? i : -1)).filter((i) => i >= 0);
  ctx.augment = {};
  for (const a of views) ctx.augment[a] = await env.store(ctx.cat, a, defects);
}

async function runHybridVariants(env: Env, exp: string, variants: Record<string, { head: HeadConfig; agg?: AggConfig }>, only?: string[]): Promise<void> {
  for (const cat of env.cats) {
    const store = await env.store(cat);
    const vals: Record<string, Values> = {};
    for (const seed of env.seeds) {
      const ctx = await seedContext(cat, store, seed, proto(env), {}, env.cacheRoot);
      for (const [name, v] of Object.entries(variants)) {
        if (only && !only.includes(name)) continue;
        if (env.variants && !env.variants.includes(name)) continue;
        if (v.head.augment && !ctx.augment) await loadFlips(env, ctx, v.head.augment);
        if (v.head.tiles) ctx.tiles = await env.store(cat, 'up448');
        if (v.agg?.tta) {
          ctx.tta = {};
          for (const a of v.agg.tta) ctx.tta[a] = await env.store(cat, a);
        }
        const t0 = performance.now();
        const m = await hybridVariant(ctx, v.head, v.agg);
        for (const [k, x] of Object.entries(m)) push((vals[name] ??= {}), k, x);
        log(`${exp} ${cat.name} seed ${seed} ${name}: ${Object.entries(m).map(([k, x]) => `${k} ${x?.toFixed(4)}`).join(' ')} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
    }
    for (const [name, v] of Object.entries(vals)) report(env, exp, cat.name, name, v);
  }
}

EXPERIMENTS['head'] = (env) =>
  runHybridVariants(env, 'head', {
    default: { head: DEFAULT_HEAD },
    full1536: { head: { ...DEFAULT_HEAD, proj: 0 } },
    residual: { head: { ...DEFAULT_HEAD, input: 'r' } },
    xr: { head: { ...DEFAULT_HEAD, input: 'xr' } },
    xd: { head: { ...DEFAULT_HEAD, input: 'xd' } },
    neg200: { head: { ...DEFAULT_HEAD, negImages: 200, maxNegatives: 60000 } },
    top5: { head: DEFAULT_HEAD, agg: { topK: 5, sigma: 0 } },
    smooth1: { head: DEFAULT_HEAD, agg: { topK: 1, sigma: 1 } },
    imageLabels: { head: { ...DEFAULT_HEAD, labels: 'image' } },
  });

/** One-class image-score aggregation on the same banks: reweighted max (PatchCore), plain max, top-k mean, k-NN mean. */
EXPERIMENTS['aggregation'] = async (env) => {
  for (const cat of env.cats) {
    const store = await env.store(cat);
    const v: Values = {};
    for (const seed of env.seeds) {
      const ctx = await seedContext(cat, store, seed, proto(env), {}, env.cacheRoot);
      const pc = await pcScores(ctx, ctx.test);
      push(v, 'reweighted', imageAuroc(ctx, (i) => pc.get(i)!));
      push(v, 'max', imageAuroc(ctx, (i) => maxOf(patchScores(ctx, i))));
      for (const t of [3, 10]) push(v, `top${t}mean`, imageAuroc(ctx, (i) => topMean(patchScores(ctx, i), t)));
      for (const kk of [3, 9]) push(v, `knn${kk}max`, imageAuroc(ctx, (i) => maxOf(patchScores(ctx, i, kk))));
      push(v, 'mapMax', imageAuroc(ctx, (i) => maxOf(toMap(ctx, patchScores(ctx, i)))));
      for (const kk of [3]) push(v, `pixel-knn${kk}`, await pixelAuroc(ctx, (i) => toMap(ctx, patchScores(ctx, i, kk))));
      push(v, 'pixel', await pixelAuroc(ctx, (i) => toMap(ctx, patchScores(ctx, i))));
    }
    report(env, 'aggregation', cat.name, 'bank 90% of the good training images, coreset 1%', v);
  }
};

// ------------------------------------------------------------------------------------------------
// Fusion: out-of-fold (k-fold over the labelled defects) choice of the head's weight and of the threshold.

import { auroc, balancedThreshold, f1OptimalThreshold, flipGrid, groupKFold } from '../../../packages/core/src/internal.js';
import { HeadFeatures } from './explore.js';

const WEIGHTS = [0.5, 1, 2, 4];

export interface FusionMetrics {
  [k: string]: number | null;
}

export async function fusionVariant(ctx: SeedContext, head: HeadConfig, agg: AggConfig = { topK: 1, sigma: 0 }): Promise<FusionMetrics> {
  const out: FusionMetrics = {};
  const pc = await pcScores(ctx, [...ctx.test, ...ctx.valItems, ...ctx.trainDefects]);
  out['oneClass'] = imageAuroc(ctx, (i) => pc.get(i)!);
  const feats = new HeadFeatures(ctx, head);
  const hScore = (h: NonNullable<Awaited<ReturnType<typeof trainHead>>>, i: number): number => topMean(smoothGrid(headPatchLogits(h, i), agg.sigma), agg.topK);
  const defects = ctx.trainDefects;
  const k = Math.min(5, defects.length);
  const pooledGood: number[][] = WEIGHTS.map(() => []);
  const pooledDef: number[][] = WEIGHTS.map(() => []);
  // Out-of-fold z-scores of the labelled defects: each part's (z_pc, z_head).
  const oofZ: [number, number][] = [];
  if (k >= 2) {
    const folds = groupKFold(defects.length, k, `explore-folds:${ctx.seed}`, (j) => ctx.cat.groups?.get(ctx.cat.items[defects[j]!]!.relPath));
    for (const [f, fold] of folds.entries()) {
      const inFold = new Set(fold);
      const h = await trainHead(ctx, head, f + 1, { defects: defects.filter((_, j) => !inFold.has(j)), feats });
      if (!h) continue;
      const vh = ctx.valItems.map((i) => hScore(h, i));
      WEIGHTS.forEach((w, wi) => {
        const fu = zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, w);
        ctx.valItems.forEach((i, j) => pooledGood[wi]!.push(fu(pc.get(i)!, vh[j]!)));
        for (const j of fold) pooledDef[wi]!.push(fu(pc.get(defects[j]!)!, hScore(h, defects[j]!)));
      });
      const zp = zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, 0);
      const z1 = zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, 1);
      for (const j of fold) {
        const a = pc.get(defects[j]!)!, b = hScore(h, defects[j]!);
        oofZ.push([zp(a, 0), z1(a, b) - zp(a, 0)]);
      }
    }
  }
  const h = await trainHead(ctx, head, 0, { feats });
  if (!h) return out;
  const hs = new Map<number, number>();
  for (const i of [...ctx.test, ...ctx.valItems]) hs.set(i, hScore(h, i));
  out['head'] = imageAuroc(ctx, (i) => hs.get(i)!);
  const vh = ctx.valItems.map((i) => hs.get(i)!);
  const fusers = WEIGHTS.map((w) => zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, w));
  WEIGHTS.forEach((w, wi) => (out[`fusedW${w}`] = imageAuroc(ctx, (i) => fusers[wi]!(pc.get(i)!, hs.get(i)!))));
  // max(z_pc, z_head): whichever part is more surprised (z-scores from the weight-1 fuser's statistics).
  {
    const zPc = zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, 0);
    const zH = (i: number): number => fusers[WEIGHTS.indexOf(1)]!(pc.get(i)!, hs.get(i)!) - zPc(pc.get(i)!, 0);
    out['fusedMax'] = imageAuroc(ctx, (i) => Math.max(zPc(pc.get(i)!, 0), zH(i)));
  }
  // The weight with the best out-of-fold AUROC (ties: the first, i.e. the smallest).
  let best = WEIGHTS.indexOf(1);
  if (pooledDef[0]!.length > 0) {
    let bestA = -1;
    WEIGHTS.forEach((_, wi) => {
      const a = auroc([...pooledGood[wi]!, ...pooledDef[wi]!], [...pooledGood[wi]!.map(() => 0), ...pooledDef[wi]!.map(() => 1)]);
      if (a > bestA + 1e-9) ((bestA = a), (best = wi));
    });
  }
  // Per defect type (against all held-out good images), weight 1.
  const types = [...new Set(ctx.test.map((i) => ctx.cat.items[i]!.label).filter((l) => l !== 'good'))].sort();
  if (types.length > 1) {
    for (const type of types) {
      const sub = ctx.test.filter((i) => ['good', type].includes(ctx.cat.items[i]!.label));
      const y = sub.map((i) => (ctx.cat.items[i]!.label === 'good' ? 0 : 1));
      const f1w = fusers[WEIGHTS.indexOf(1)]!;
      out[`${type}:oneClass`] = auroc(sub.map((i) => pc.get(i)!), y);
      out[`${type}:head`] = auroc(sub.map((i) => hs.get(i)!), y);
      out[`${type}:fusedW1`] = auroc(sub.map((i) => f1w(pc.get(i)!, hs.get(i)!)), y);
    }
  }
  // The weight from the out-of-fold defects' median z-scores: w = median z_head / median z_pc (the direction
  // that separates them from the good images, whose z-scores are standardised), clamped to [0.25, 8].
  if (oofZ.length > 0) {
    const med = (xs: number[]): number => {
      const t = [...xs].sort((a, b) => a - b);
      return (t[(t.length - 1) >> 1]! + t[t.length >> 1]!) / 2;
    };
    const mp = Math.max(med(oofZ.map((z) => z[0])), 1e-3);
    const mh = Math.max(med(oofZ.map((z) => z[1])), 1e-3);
    const w = Math.min(8, Math.max(0.25, mh / mp));
    out['ratioW'] = w;
    const fr = zFuse(ctx.valItems.map((i) => pc.get(i)!), vh, w);
    out['fusedRatio'] = imageAuroc(ctx, (i) => fr(pc.get(i)!, hs.get(i)!));
  }
  out['autoW'] = WEIGHTS[best]!;
  const fu = fusers[best]!;
  out['fusedAuto'] = imageAuroc(ctx, (i) => fu(pc.get(i)!, hs.get(i)!));
  // Balanced accuracy on the test images at thresholds set without them.
  const test = ctx.test.map((i) => fu(pc.get(i)!, hs.get(i)!));
  const bal = (t: number): number => {
    let tp = 0, tn = 0, p = 0, n = 0;
    test.forEach((s, j) => (ctx.y[j] ? (p++, s >= t && tp++) : (n++, s < t && tn++)));
    return (tp / Math.max(1, p) + tn / Math.max(1, n)) / 2;
  };
  const g = pooledGood[best]!, dd = pooledDef[best]!;
  if (dd.length > 0) {
    out['balAccF1'] = bal(f1OptimalThreshold([...g, ...dd], [...g.map(() => 0), ...dd.map(() => 1)]).threshold);
    // Youden: the threshold maximising TPR - FPR on the out-of-fold scores (core's rule).
    out['balAccYouden'] = bal(balancedThreshold(g, dd));
  }
  const q = [...ctx.valItems.map((i) => fu(pc.get(i)!, hs.get(i)!))].sort((a, b) => a - b);
  out['balAccQ99'] = bal(q[Math.min(q.length - 1, Math.floor(0.99 * (q.length - 1) + 0.5))]!);
  return out;
}

async function runFusionVariants(env: Env, exp: string, variants: Record<string, { head: HeadConfig; agg?: AggConfig; augment?: ('hflip' | 'vflip')[] }>): Promise<void> {
  for (const cat of env.cats) {
    const store = await env.store(cat);
    const vals: Record<string, Values> = {};
    for (const seed of env.seeds) {
      const ctx = await seedContext(cat, store, seed, proto(env), {}, env.cacheRoot);
      for (const [name, v] of Object.entries(variants)) {
        if (env.variants && !env.variants.includes(name)) continue;
        if (v.augment) await loadFlips(env, ctx, v.augment);
        const t0 = performance.now();
        const m = await fusionVariant(ctx, v.augment ? { ...v.head, augment: v.augment } : v.head, v.agg);
        for (const [k, x] of Object.entries(m)) push((vals[name] ??= {}), k, x);
        log(`${exp} ${cat.name} seed ${seed} ${name}: ${Object.entries(m).map(([k, x]) => `${k} ${x?.toFixed(4)}`).join(' ')} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
    }
    for (const [name, v] of Object.entries(vals)) report(env, exp, cat.name, name, v);
  }
}

const NEG200: HeadConfig = { ...DEFAULT_HEAD, negImages: 200, maxNegatives: 60000 };

EXPERIMENTS['fusion'] = (env) => runFusionVariants(env, 'fusion', { neg200: { head: NEG200 } });
EXPERIMENTS['head2'] = (env) =>
  runFusionVariants(env, 'head2', {
    neg200: { head: NEG200 },
    hard16: { head: { ...NEG200, hardPerImage: 16 } },
    l2x10: { head: { ...NEG200, l2: 1e-1 } },
    l2div10: { head: { ...NEG200, l2: 1e-3 } },
    flips: { head: NEG200, augment: ['hflip', 'vflip'] },
  });

/** Negatives from every bank image (random patches of each), the full 1536 dims, and flips, on the fusion protocol. */
const NEG_ALL: HeadConfig = { ...DEFAULT_HEAD, patchesPerImage: 64, maxNegatives: 60000 };
EXPERIMENTS['head3'] = (env) =>
  runFusionVariants(env, 'head3', {
    default: { head: DEFAULT_HEAD },
    negAll: { head: NEG_ALL },
    negAllFull: { head: { ...NEG_ALL, proj: 0 } },
    negAllXd: { head: { ...NEG_ALL, input: 'xd' } },
    negAllFlips: { head: NEG_ALL, augment: ['hflip', 'vflip'] },
  });

/** A non-linear head: one hidden ReLU layer on the same 256-dim patch features and negatives. */
EXPERIMENTS['mlp'] = (env) =>
  runHybridVariants(env, 'mlp', {
    negAll: { head: NEG_ALL },
    mlp64: { head: { ...NEG_ALL, mlp: { hidden: 64, epochs: 10, l2: 1e-3 } } },
    mlp64l2: { head: { ...NEG_ALL, mlp: { hidden: 64, epochs: 10, l2: 1e-2 } } },
  });

/** Variance of the head: other projection seeds, and the mean logits of several heads (bagging over projections). */
const MLP64: HeadConfig = { ...NEG_ALL, mlp: { hidden: 64, epochs: 10, l2: 1e-2 } };
EXPERIMENTS['ensemble'] = (env) =>
  runHybridVariants(env, 'ensemble', {
    negAllP2: { head: { ...NEG_ALL, projSeed: 2 } },
    negAllP3: { head: { ...NEG_ALL, projSeed: 3 } },
    negAllX3: { head: { ...NEG_ALL, ensemble: 3 } },
    mlpP2: { head: { ...MLP64, projSeed: 2 } },
    mlpX3: { head: { ...MLP64, ensemble: 3 } },
  });

/** Cheaper MLP ensembles (training time of about one 10-epoch MLP): fewer epochs, fewer hidden units. */
EXPERIMENTS['ensemble2'] = (env) =>
  runHybridVariants(env, 'ensemble2', {
    mlpX3e4: { head: { ...MLP64, mlp: { hidden: 64, epochs: 4, l2: 1e-2 }, ensemble: 3 } },
    mlpX3h32e5: { head: { ...MLP64, mlp: { hidden: 32, epochs: 5, l2: 1e-2 }, ensemble: 3 } },
    mlpX5h16e5: { head: { ...MLP64, mlp: { hidden: 16, epochs: 5, l2: 1e-2 }, ensemble: 5 } },
  });

/** Flipped copies of the labelled defects as more positives, with core's head (magnetic tile's defects have no orientation). */
const CORE_HEAD: HeadConfig = { ...MLP64, mlp: { hidden: 32, epochs: 5, l2: 1e-2 }, ensemble: 3 };
EXPERIMENTS['flips'] = (env) =>
  runHybridVariants(env, 'flips', {
    core: { head: CORE_HEAD },
    coreFlips: { head: { ...CORE_HEAD, augment: ['hflip', 'vflip'] } },
  });

/** The head's patch neighbourhood (the bank keeps PatchCore's 3x3): 5x5 adds context (no pooling, 1x1, was stopped after two seeds, worse). */
EXPERIMENTS['neighbourhood'] = (env) =>
  runHybridVariants(env, 'neighbourhood', {
    core: { head: CORE_HEAD },
    headPool5: { head: { ...CORE_HEAD, feat: { pool: 5 } } },
  });

/** A finer grid for the head only: the 2x input as four 224 tiles (56 x 56 patches of 4.6 source px), bank at 1x. */
EXPERIMENTS['tiles'] = (env) => runHybridVariants(env, 'tiles', { tiles64: { head: { ...CORE_HEAD, tiles: true } } });

/** Both neighbourhoods in one ensemble: three heads on 3 x 3 and three on 5 x 5, logits averaged; and six on 3 x 3. */
EXPERIMENTS['neighbourhood2'] = (env) =>
  runHybridVariants(env, 'neighbourhood2', {
    mix6: { head: { ...CORE_HEAD, ensemble: 6, memberFeat: [{ pool: 3 }, { pool: 3 }, { pool: 3 }, { pool: 5 }, { pool: 5 }, { pool: 5 }] } },
    // The control: six heads, all on 3 x 3 (is it the second neighbourhood or just more members?).
    x6pool3: { head: { ...CORE_HEAD, ensemble: 6 } },
  });

/** The image as the head's context: each patch minus its image's mean patch (xm), or beside it (xg). */
EXPERIMENTS['context'] = (env) =>
  runHybridVariants(env, 'context', {
    xm: { head: { ...CORE_HEAD, input: 'xm' } },
    xg: { head: { ...CORE_HEAD, input: 'xg' } },
  });

/** Test-time flips: the head's logits averaged over the image and its flips (3x the head's CNN work at inspection). */
EXPERIMENTS['tta'] = (env) =>
  runHybridVariants(env, 'tta', {
    ttaHV: { head: CORE_HEAD, agg: { topK: 1, sigma: 0, tta: ['hflip', 'vflip'] } },
    // One flip only (2x the head's CNN work).
    ttaH: { head: CORE_HEAD, agg: { topK: 1, sigma: 0, tta: ['hflip'] } },
  });

/** More test-time views: the half-turn (both flips) as a fourth view (4x the head's CNN work); the image score as a top-3 mean. */
EXPERIMENTS['tta2'] = (env) =>
  runHybridVariants(env, 'tta2', {
    ttaHVR: { head: CORE_HEAD, agg: { topK: 1, sigma: 0, tta: ['hflip', 'vflip', 'hvflip'] } },
    ttaHVtop3: { head: CORE_HEAD, agg: { topK: 3, sigma: 0, tta: ['hflip', 'vflip'] } },
  });

/** The bank with test-time flips too (the head's flips are computed anyway, so only k-NN is added); and five heads. */
EXPERIMENTS['bankflips'] = (env) =>
  runHybridVariants(env, 'bankflips', {
    ttaHVbank: { head: CORE_HEAD, agg: { topK: 1, sigma: 0, tta: ['hflip', 'vflip'], bankTta: true } },
    ttaHVx5: { head: { ...CORE_HEAD, ensemble: 5 }, agg: { topK: 1, sigma: 0, tta: ['hflip', 'vflip'] } },
    ttaHVx5bank: { head: { ...CORE_HEAD, ensemble: 5 }, agg: { topK: 1, sigma: 0, tta: ['hflip', 'vflip'], bankTta: true } },
  });
