// Portable, seeded pseudo-random numbers. Everything in Loupe that shuffles, samples or splits goes
// through this (never Math.random), so the same seed gives the same result on every platform and
// Node version: only 32-bit integer arithmetic (Math.imul, >>>) is used.

/** A deterministic random source. */
export interface Rng {
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform float in [0, 1) with 32 bits of randomness. */
  next(): number;
  /** Uniform integer in [0, n). `n` must be a positive integer below 2^32. */
  int(n: number): number;
  /** Uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
  /** Fisher-Yates shuffle, in place; returns the same array. */
  shuffle<T>(items: T[]): T[];
  /** A new independent stream derived from this one's current state and a label (does not advance this one). */
  fork(label: string | number): Rng;
}

/** 32-bit FNV-1a of a string, used to turn string seeds and labels into integers. */
export function hashString32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32 finaliser: scrambles a 32-bit integer (good avalanche). */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Normalises a user seed (any finite number or string) to a 32-bit state. */
export function seedToUint32(seed: number | string): number {
  if (typeof seed === 'string') return mix32(hashString32(seed));
  if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
  // Fold the integer part (including values above 2^32) into 32 bits.
  const s = Math.trunc(seed);
  const lo = s >>> 0;
  const hi = Math.floor(Math.abs(s) / 4294967296) >>> 0;
  return mix32(lo ^ mix32(hi ^ (s < 0 ? 0x5bd1e995 : 0)));
}

/** mulberry32 generator (Tommy Ettinger), seeded through splitmix32. */
export function createRng(seed: number | string): Rng {
  let state = seedToUint32(seed);
  let spareNormal: number | null = null;
  const nextUint32 = (): number => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = (): number => nextUint32() / 4294967296;
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) throw new RangeError(`int(n): bad n ${n}`);
    // Rejection sampling: unbiased.
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = nextUint32();
      if (x < limit) return x % n;
    }
  };
  const rng: Rng = {
    nextUint32,
    next,
    int,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    normal: () => {
      if (spareNormal !== null) {
        const v = spareNormal;
        spareNormal = null;
        return v;
      }
      let u = 0;
      while (u === 0) u = next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spareNormal = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    shuffle: <T>(items: T[]): T[] => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = int(i + 1);
        const tmp = items[i] as T;
        items[i] = items[j] as T;
        items[j] = tmp;
      }
      return items;
    },
    fork: (label) => {
      const l = typeof label === 'string' ? hashString32(label) : seedToUint32(label);
      return createRng(mix32(state ^ mix32(l)) ^ 0x2545f491);
    },
  };
  return rng;
}
