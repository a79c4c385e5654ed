// Output formatting of the CLI: numbers, JSON lines, human summaries. No I/O here.

/**
 * The shortest decimal that reads back as the same float32 (as the reference JSONs are written).
 * Non-finite values become null, since JSON has no NaN/Infinity.
 */
export function float32ToString(v: number): string {
  if (!Number.isFinite(v)) return 'null';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const f = Math.fround(v);
  // Round-tripping at p significant digits implies it at p + 1, so a binary search finds the least p.
  let lo = 1;
  let hi = 9; // 9 digits always round-trip a float32
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Math.fround(Number(f.toPrecision(mid))) === f) hi = mid;
    else lo = mid + 1;
  }
  return String(Number(f.toPrecision(lo)));
}

/** A JSON array of float32 values, each written shortest. */
export function float32ArrayJson(values: ArrayLike<number>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) parts[i] = float32ToString(values[i]!);
  return `[${parts.join(',')}]`;
}

export interface Stats {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly std: number;
}

/** min/max/mean/population std, accumulated in float64. */
export function stats(values: ArrayLike<number>): Stats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sumSq += v * v;
  }
  const n = values.length || 1;
  const mean = sum / n;
  return { min, max, mean, std: Math.sqrt(Math.max(0, sumSq / n - mean * mean)) };
}

/** JSON figures (thresholds, metrics, timings) to `digits` significant digits; non-finite values as they are. */
export function roundSignificant(x: number, digits = 6): number {
  return Number.isFinite(x) ? Number(x.toPrecision(digits)) : x;
}

export function formatSeconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

export function formatRate(count: number, ms: number): string {
  return ms > 0 ? `${(count / (ms / 1000)).toFixed(1)} img/s` : '- img/s';
}

/** 0.99812 -> "99.81%", 2.1e-4 -> "0.021%": enough digits to tell small probabilities apart. */
export function formatProbability(p: number): string {
  const pct = p * 100;
  if (pct >= 1) return `${pct.toFixed(2)}%`;
  if (pct >= 0.01) return `${pct.toFixed(3)}%`;
  return `${pct.toExponential(1)}%`;
}

export function shapeText(shape: readonly [number, number, number]): string {
  const [h, w, c] = shape;
  return h === 1 && w === 1 ? `[${c}]` : `[${h}x${w}x${c}]`;
}

/** "a, b and 3 more" */
export function listShort(items: readonly string[], max = 3): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

/** A file name for a human line: control characters (a newline in a name would split the line) as \xNN. */
export function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
