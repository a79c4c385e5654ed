// What the few-shot heads (logistic, MLP) and the defect-type softmax share: Adam (Kingma & Ba 2015) over a
// model's parameter arrays (L2 per array; biases are not decayed), and the set-up of the training rows.
export type Params = Float64Array | Float32Array;

export class Adam {
  private readonly m: Float64Array[];
  private readonly v: Float64Array[];
  private t = 0;

  constructor(
    private readonly params: readonly Params[],
    private readonly lr: number,
    /** L2 coefficient of each parameter array (0: none). */
    private readonly l2: readonly number[],
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = params.map((p) => new Float64Array(p.length));
    this.v = params.map((p) => new Float64Array(p.length));
  }

  /** One step on summed gradients grads[q] (same shapes as the params), each divided by `divisor` first. */
  step(grads: readonly Params[], divisor: number): void {
    this.t++;
    const { beta1, beta2, eps, lr } = this;
    const c1 = 1 - beta1 ** this.t, c2 = 1 - beta2 ** this.t;
    this.params.forEach((p, q) => {
      const g = grads[q]!, m = this.m[q]!, v = this.v[q]!, l2 = this.l2[q] ?? 0;
      for (let j = 0; j < p.length; j++) {
        const gj = g[j]! / divisor + l2 * p[j]!;
        m[j] = beta1 * m[j]! + (1 - beta1) * gj;
        v[j] = beta2 * v[j]! + (1 - beta2) * gj * gj;
        p[j] = p[j]! - (lr * (m[j]! / c1)) / (Math.sqrt(v[j]! / c2) + eps);
      }
    });
  }
}

/** Rows standardised with per-feature mean/std: Z = (X - mean) / std. */
export function standardise(X: Float32Array, n: number, d: number, mean: Float32Array, std: Float32Array): Float32Array {
  const Z = new Float32Array(n * d);
  const inv = new Float32Array(d);
  for (let j = 0; j < d; j++) inv[j] = 1 / std[j]!;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) Z[i * d + j] = (X[i * d + j]! - mean[j]!) * inv[j]!;
  return Z;
}

/** Per-feature mean and std (std floored at 1e-6). */
export function featureStats(X: Float32Array, n: number, d: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float64Array(d);
  const sq = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let j = 0; j < d; j++) {
      const v = X[o + j]!;
      mean[j] = mean[j]! + v;
      sq[j] = sq[j]! + v * v;
    }
  }
  const m = new Float32Array(d);
  const s = new Float32Array(d);
  for (let j = 0; j < d; j++) {
    const mu = mean[j]! / n;
    m[j] = mu;
    s[j] = Math.max(1e-6, Math.sqrt(Math.max(0, sq[j]! / n - mu * mu)));
  }
  return { mean: m, std: s };
}

export interface TrainingOptions {
  l2?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
}

/** The options with the trainer's defaults (L2 1e-2, batch 256) and the standardised rows. */
export function trainingSetup(X: Float32Array, n: number, d: number, o: TrainingOptions, defaults: { epochs: number; learningRate: number }) {
  const { mean, std } = featureStats(X, n, d);
  return {
    l2: o.l2 ?? 1e-2,
    epochs: o.epochs ?? defaults.epochs,
    bs: Math.max(1, o.batchSize ?? 256),
    lr: o.learningRate ?? defaults.learningRate,
    mean,
    std,
    Z: standardise(X, n, d, mean, std),
  };
}
