// The experiments of `quality.ts explore`, by name. Each records mean +- sd over the split seeds per
// category and variant (quality-explore.json), and logs them.
import type { Env } from '../quality.js';
import { embed } from './cache.js';
import {
  DEFAULT_HEAD,
  headPatchLogits,
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
}

export async function hybridVariant(ctx: SeedContext, head: HeadConfig, agg: AggConfig = { topK: 1, sigma: 0 }): Promise<HybridMetrics> {
  const out: HybridMetrics = {};
  const pc = await pcScores(ctx, [...ctx.test, ...ctx.valItems]);
  out['oneClass'] = imageAuroc(ctx, (i) => pc.get(i)!);
  const h = await trainHead(ctx, head);
  if (!h) return out;
  const logits = new Map<number, Float32Array>();
  for (const i of [...ctx.test, ...ctx.valItems]) logits.set(i, headPatchLogits(h, i));
  const hs = new Map<number, number>();
  for (const [i, l] of logits) hs.set(i, topMean(smoothGrid(l, agg.sigma), agg.topK));
  out['head'] = imageAuroc(ctx, (i) => hs.get(i)!);
  const val = ctx.valItems;
  const fuse = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!));
  out['fused'] = imageAuroc(ctx, (i) => fuse(pc.get(i)!, hs.get(i)!));
  const fuse2 = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 2);
  out['fusedW2'] = imageAuroc(ctx, (i) => fuse2(pc.get(i)!, hs.get(i)!));
  const fuseH = zFuse(val.map((i) => pc.get(i)!), val.map((i) => hs.get(i)!), 0.5);
  out['fusedW05'] = imageAuroc(ctx, (i) => fuseH(pc.get(i)!, hs.get(i)!));
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

async function runHybridVariants(env: Env, exp: string, variants: Record<string, { head: HeadConfig; agg?: AggConfig }>, only?: string[]): Promise<void> {
  for (const cat of env.cats) {
    const store = await env.store(cat);
    const vals: Record<string, Values> = {};
    for (const seed of env.seeds) {
      const ctx = await seedContext(cat, store, seed, proto(env), {}, env.cacheRoot);
      for (const [name, v] of Object.entries(variants)) {
        if (only && !only.includes(name)) continue;
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
