// An independent, textbook linear SVM: the bar Loupe's SGD-SVM is measured against in
// tools/eval/classification-benchmark.ts. Nothing here comes from packages/core/src/classifier (nor the
// native kernel): its own standardisation, its own PRNG, its own solver and its own multiclass decoding.
//
// Solver: dual coordinate descent for the L2-regularised hinge-loss (L1-loss) SVM, Hsieh, Chang, Lin,
// Keerthi & Sundararajan, "A Dual Coordinate Descent Method for Large-scale Linear SVM", ICML 2008,
// Algorithm 1 with the shrinking of Section 3 - what liblinear runs for `-s 3`:
//   primal  min_w  1/2 |w|^2 + C sum_i max(0, 1 - y_i w.x_i)
//   dual    min_a  1/2 a'Qa - e'a,  0 <= a_i <= C,  Q_ij = y_i y_j x_i.x_j,  w = sum_i a_i y_i x_i
// The bias is liblinear's `-B 1`: a constant feature 1 appended to every row (so it is regularised).
// Stopping: max projected gradient - min projected gradient < eps (liblinear's default eps = 0.1) or
// maxIter outer passes (liblinear's 1000).
//
// Multiclass: one-vs-rest with argmax of the decision values (liblinear's default), or one-vs-one with
// majority voting, ties broken by the summed decision values (libsvm's scheme).

export interface DcdOptions {
  /** Box constraint C (liblinear -c). Default 1. */
  C?: number;
  /** Stopping tolerance on the projected-gradient gap. Default 0.1 (liblinear). */
  eps?: number;
  /** Outer passes cap. Default 1000 (liblinear). */
  maxIter?: number;
  /** Bias feature value (liblinear -B). Default 1; 0 = no bias. */
  bias?: number;
  /** Seed of the coordinate order. Default 1. */
  seed?: number;
}

export interface BinaryModel {
  /** Weights [d] (double). */
  w: Float64Array;
  /** Bias term = weight of the constant feature x bias value. */
  b: number;
  iterations: number;
}

/** mulberry32: a small, well-known 32-bit PRNG (independent of Loupe's). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Trains one binary SVM on rows `rows` of X (row-major [n][d], float32) with labels y (+1/-1, one per
 * entry of `rows`).
 */
export function trainBinaryDcd(X: Float32Array, d: number, rows: Int32Array, y: Int8Array, opts: DcdOptions = {}): BinaryModel {
  const C = opts.C ?? 1;
  const eps = opts.eps ?? 0.1;
  const maxIter = opts.maxIter ?? 1000;
  const B = opts.bias ?? 1;
  const rand = mulberry32(opts.seed ?? 1);
  const l = rows.length;
  const w = new Float64Array(d);
  let wb = 0; // weight of the bias feature
  const alpha = new Float64Array(l);
  const qd = new Float64Array(l);
  for (let s = 0; s < l; s++) {
    const o = rows[s]! * d;
    let q = B * B;
    for (let c = 0; c < d; c++) q += X[o + c]! * X[o + c]!;
    qd[s] = q;
  }
  const index = new Int32Array(l);
  for (let s = 0; s < l; s++) index[s] = s;
  let activeSize = l;
  let pgMaxOld = Infinity;
  let pgMinOld = -Infinity;
  let iter = 0;
  while (iter < maxIter) {
    let pgMaxNew = -Infinity;
    let pgMinNew = Infinity;
    for (let s = 0; s < activeSize; s++) {
      const j = s + Math.floor(rand() * (activeSize - s));
      const t = index[s]!;
      index[s] = index[j]!;
      index[j] = t;
    }
    for (let s = 0; s < activeSize; s++) {
      const i = index[s]!;
      const yi = y[i]!;
      const o = rows[i]! * d;
      let dot = wb * B;
      for (let c = 0; c < d; c++) dot += w[c]! * X[o + c]!;
      const G = yi * dot - 1;
      let PG = 0;
      const a = alpha[i]!;
      if (a === 0) {
        if (G > pgMaxOld) {
          activeSize--;
          index[s] = index[activeSize]!;
          index[activeSize] = i;
          s--;
          continue;
        } else if (G < 0) PG = G;
      } else if (a === C) {
        if (G < pgMinOld) {
          activeSize--;
          index[s] = index[activeSize]!;
          index[activeSize] = i;
          s--;
          continue;
        } else if (G > 0) PG = G;
      } else PG = G;
      if (PG > pgMaxNew) pgMaxNew = PG;
      if (PG < pgMinNew) pgMinNew = PG;
      if (Math.abs(PG) > 1e-12) {
        const na = Math.min(Math.max(a - G / qd[i]!, 0), C);
        const step = (na - a) * yi;
        alpha[i] = na;
        for (let c = 0; c < d; c++) w[c] = w[c]! + step * X[o + c]!;
        wb += step * B;
      }
    }
    iter++;
    if (pgMaxNew - pgMinNew <= eps) {
      if (activeSize === l) break;
      activeSize = l; // re-check everything without shrinking before stopping
      pgMaxOld = Infinity;
      pgMinOld = -Infinity;
      continue;
    }
    pgMaxOld = pgMaxNew <= 0 ? Infinity : pgMaxNew;
    pgMinOld = pgMinNew >= 0 ? -Infinity : pgMinNew;
  }
  return { w, b: wb * B, iterations: iter };
}

/** z-score with the population std of the training rows; constant features get std 1. */
export interface Scaler {
  mean: Float64Array;
  std: Float64Array;
}

export function fitScaler(X: Float32Array, n: number, d: number): Scaler {
  const mean = new Float64Array(d);
  const std = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) mean[c] = mean[c]! + X[i * d + c]!;
  for (let c = 0; c < d; c++) mean[c] = mean[c]! / n;
  for (let i = 0; i < n; i++)
    for (let c = 0; c < d; c++) {
      const v = X[i * d + c]! - mean[c]!;
      std[c] = std[c]! + v * v;
    }
  for (let c = 0; c < d; c++) {
    const s = Math.sqrt(std[c]! / n);
    std[c] = s > 1e-12 ? s : 1;
  }
  return { mean, std };
}

export function applyScaler(X: Float32Array, n: number, d: number, s: Scaler): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) out[i * d + c] = (X[i * d + c]! - s.mean[c]!) / s.std[c]!;
  return out;
}

export type Multiclass = 'ovr' | 'ovo';

export interface MulticlassModel {
  scheme: Multiclass;
  classes: number;
  d: number;
  scaler: Scaler;
  /** ovr: learner k = class k vs rest; ovo: learners (i, j), i < j, in order (class i = +1). */
  learners: { pos: number; neg: number; model: BinaryModel }[];
  C: number;
  iterations: number;
}

/** Standardises X (fitted here), then trains the binary learners of the scheme. y: class index per row. */
export function trainMulticlass(X: Float32Array, n: number, d: number, y: Int32Array, k: number, scheme: Multiclass, opts: DcdOptions = {}): MulticlassModel {
  const scaler = fitScaler(X, n, d);
  const Z = applyScaler(X, n, d, scaler);
  return trainMulticlassScaled(Z, n, d, y, k, scheme, opts, scaler);
}

function trainMulticlassScaled(Z: Float32Array, n: number, d: number, y: Int32Array, k: number, scheme: Multiclass, opts: DcdOptions, scaler: Scaler): MulticlassModel {
  const learners: MulticlassModel['learners'] = [];
  let iterations = 0;
  if (scheme === 'ovr') {
    const rows = new Int32Array(n);
    for (let i = 0; i < n; i++) rows[i] = i;
    for (let c = 0; c < k; c++) {
      const yy = new Int8Array(n);
      for (let i = 0; i < n; i++) yy[i] = y[i] === c ? 1 : -1;
      const model = trainBinaryDcd(Z, d, rows, yy, opts);
      iterations += model.iterations;
      learners.push({ pos: c, neg: -1, model });
    }
  } else {
    for (let a = 0; a < k; a++)
      for (let b = a + 1; b < k; b++) {
        const idx: number[] = [];
        for (let i = 0; i < n; i++) if (y[i] === a || y[i] === b) idx.push(i);
        const rows = Int32Array.from(idx);
        const yy = Int8Array.from(idx, (i) => (y[i] === a ? 1 : -1));
        const model = trainBinaryDcd(Z, d, rows, yy, opts);
        iterations += model.iterations;
        learners.push({ pos: a, neg: b, model });
      }
  }
  return { scheme, classes: k, d, scaler, learners, C: opts.C ?? 1, iterations };
}

/** Predicted class index per row of raw (unstandardised) X. */
export function predictMulticlass(m: MulticlassModel, X: Float32Array, n: number): Int32Array {
  const d = m.d;
  const Z = applyScaler(X, n, d, m.scaler);
  const out = new Int32Array(n);
  const dec = new Float64Array(m.learners.length);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    m.learners.forEach((L, j) => {
      let s = L.model.b;
      for (let c = 0; c < d; c++) s += L.model.w[c]! * Z[o + c]!;
      dec[j] = s;
    });
    if (m.scheme === 'ovr') {
      let best = 0;
      for (let j = 1; j < m.classes; j++) if (dec[j]! > dec[best]!) best = j;
      out[i] = best;
    } else {
      const votes = new Float64Array(m.classes);
      const margin = new Float64Array(m.classes);
      m.learners.forEach((L, j) => {
        const s = dec[j]!;
        votes[s > 0 ? L.pos : L.neg] = votes[s > 0 ? L.pos : L.neg]! + 1;
        margin[L.pos] = margin[L.pos]! + s;
        margin[L.neg] = margin[L.neg]! - s;
      });
      let best = 0;
      for (let c = 1; c < m.classes; c++) if (votes[c]! > votes[best]! || (votes[c] === votes[best] && margin[c]! > margin[best]!)) best = c;
      out[i] = best;
    }
  }
  return out;
}

/**
 * Chooses C by stratified k-fold cross-validation on the given (training) rows only: the C with the
 * best mean accuracy, ties to the smaller C. Folds: per class, rows dealt round-robin after a seeded
 * shuffle, or `foldOf` (row -> fold in [0, folds), e.g. group-aware) when given. Standardisation is
 * refitted inside each fold.
 */
export function selectC(
  X: Float32Array,
  n: number,
  d: number,
  y: Int32Array,
  k: number,
  scheme: Multiclass,
  grid: readonly number[],
  folds = 5,
  opts: Omit<DcdOptions, 'C'> = {},
  foldOf?: Int32Array,
): { C: number; cvAccuracy: Map<number, number> } {
  const rand = mulberry32(12345);
  const fold = foldOf ? Int32Array.from(foldOf) : new Int32Array(n);
  let next = 0;
  for (let c = 0; c < k && !foldOf; c++) {
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (y[i] === c) idx.push(i);
    for (let s = idx.length - 1; s > 0; s--) {
      const j = Math.floor(rand() * (s + 1));
      [idx[s], idx[j]] = [idx[j]!, idx[s]!];
    }
    for (const i of idx) {
      fold[i] = next;
      next = (next + 1) % folds;
    }
  }
  const cvAccuracy = new Map<number, number>();
  const subsets = Array.from({ length: folds }, (_, f) => {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < n; i++) (fold[i] === f ? te : tr).push(i);
    const take = (ids: number[]): Float32Array => {
      const out = new Float32Array(ids.length * d);
      ids.forEach((i, r) => out.set(X.subarray(i * d, (i + 1) * d), r * d));
      return out;
    };
    const Xtr = take(tr);
    const scaler = fitScaler(Xtr, tr.length, d);
    return { tr, te, Ztr: applyScaler(Xtr, tr.length, d, scaler), Xte: take(te), scaler, ytr: Int32Array.from(tr, (i) => y[i]!) };
  });
  for (const C of grid) {
    let correct = 0;
    for (const s of subsets) {
      // A class with fewer rows than folds may be missing from a fold's training side: its learners
      // then see one side only and simply never predict it.
      const m = trainMulticlassScaled(s.Ztr, s.tr.length, d, s.ytr, k, scheme, { ...opts, C }, s.scaler);
      const p = predictMulticlass(m, s.Xte, s.te.length);
      s.te.forEach((i, r) => (p[r] === y[i] ? correct++ : 0));
    }
    cvAccuracy.set(C, correct / n);
  }
  const sorted = [...grid].sort((a, b) => a - b);
  let bestC = sorted[0]!;
  for (const C of sorted) if (cvAccuracy.get(C)! > cvAccuracy.get(bestC)! + 1e-12) bestC = C;
  return { C: bestC, cvAccuracy };
}
