// Seeded, deterministic sampling and splitting: undersampling to the smallest class, stratified train/test
// splits, group-aware splits (no group on both sides), stratified (group-aware) k-fold, and a leak check.
// Results depend only on the items' relPaths, labels, groups and the seed, never on input order.

import { DatasetError } from './errors.js';
import { createRng, type Rng } from './random.js';
import { compareStrings } from './util.js';

/** What splitting needs from an item. */
export interface SplitItem {
  readonly relPath: string;
  readonly label: string;
}

export interface SplitResult<T> {
  readonly train: T[];
  readonly test: T[];
}

/** relPath -> group id (see loadGroups). */
export type GroupMap = ReadonlyMap<string, string>;

function sortedCopy<T extends SplitItem>(items: readonly T[]): T[] {
  const out = [...items].sort((a, b) => compareStrings(a.relPath, b.relPath));
  for (let i = 1; i < out.length; i++) {
    if ((out[i] as T).relPath === (out[i - 1] as T).relPath) {
      throw new DatasetError('SPLIT_INVALID', `item listed twice: ${(out[i] as T).relPath}`);
    }
  }
  return out;
}

function byLabel<T extends SplitItem>(items: readonly T[]): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const l = m.get(it.label);
    if (l) l.push(it);
    else m.set(it.label, [it]);
  }
  return new Map([...m].sort((a, b) => compareStrings(a[0], b[0])));
}

/**
 * Random undersampling: every label keeps as many items as the smallest label has (or `perLabel` when
 * given and smaller). Seeded; result sorted by relPath.
 */
export function undersample<T extends SplitItem>(items: readonly T[], opts: { seed: number | string; perLabel?: number }): T[] {
  const groups = byLabel(sortedCopy(items));
  if (groups.size === 0) return [];
  let m = Math.min(...[...groups.values()].map((g) => g.length));
  if (opts.perLabel !== undefined) m = Math.min(m, opts.perLabel);
  const rng = createRng(opts.seed);
  const out: T[] = [];
  for (const [label, list] of groups) out.push(...rng.fork(label).shuffle([...list]).slice(0, m));
  return out.sort((a, b) => compareStrings(a.relPath, b.relPath));
}

function checkRatio(testRatio: number): void {
  if (!(testRatio > 0 && testRatio < 1)) throw new DatasetError('SPLIT_INVALID', `testRatio must be in (0, 1), got ${testRatio}`);
}

function requireGroups<T extends SplitItem>(items: readonly T[], groups: GroupMap): void {
  const missing = items.filter((i) => !groups.has(i.relPath)).map((i) => i.relPath);
  if (missing.length > 0) {
    throw new DatasetError('GROUPS_MISSING_FILES', `no group for ${missing.length} item(s): ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`, { entries: missing });
  }
}

interface Unit<T> {
  key: string;
  members: T[];
  counts: Map<string, number>;
}

function unitsByGroup<T extends SplitItem>(items: readonly T[], groups: GroupMap): Unit<T>[] {
  const m = new Map<string, Unit<T>>();
  for (const it of items) {
    const g = groups.get(it.relPath) as string;
    let u = m.get(g);
    if (!u) {
      u = { key: g, members: [], counts: new Map() };
      m.set(g, u);
    }
    u.members.push(it);
    u.counts.set(it.label, (u.counts.get(it.label) ?? 0) + 1);
  }
  return [...m.values()].sort((a, b) => compareStrings(a.key, b.key));
}

/**
 * Assigns whole groups to bins with target fractions, greedily, largest groups first (ties in random
 * order), each to the bin where it brings the per-label and total counts closest to their targets.
 */
function assignUnits<T extends SplitItem>(units: Unit<T>[], fractions: readonly number[], rng: Rng): number[][] {
  const labels = new Map<string, number>();
  let total = 0;
  for (const u of units) {
    for (const [l, c] of u.counts) labels.set(l, (labels.get(l) ?? 0) + c);
    total += u.members.length;
  }
  const nb = fractions.length;
  const binCounts = fractions.map(() => new Map<string, number>());
  const binSize = fractions.map(() => 0);
  const assigned: number[][] = fractions.map(() => []);
  const order = rng.shuffle(units.map((_, i) => i));
  // Stable sort by size, descending (the shuffle decides ties).
  const rank = new Map(order.map((u, r) => [u, r]));
  order.sort((a, b) => (units[b] as Unit<T>).members.length - (units[a] as Unit<T>).members.length || (rank.get(a) as number) - (rank.get(b) as number));
  for (const ui of order) {
    const u = units[ui] as Unit<T>;
    let best = -1;
    let bestCost = Infinity;
    let bestFill = Infinity;
    for (let b = 0; b < nb; b++) {
      const f = fractions[b] as number;
      let cost = 0;
      for (const [l, g] of u.counts) {
        const T = labels.get(l) as number;
        const c = (binCounts[b] as Map<string, number>).get(l) ?? 0;
        const target = f * T;
        cost += ((c + g - target) ** 2 - (c - target) ** 2) / (T * T);
      }
      const s = binSize[b] as number;
      const g = u.members.length;
      cost += (0.5 * ((s + g - f * total) ** 2 - (s - f * total) ** 2)) / (total * total);
      const fill = s / Math.max(f * total, 1e-12);
      if (cost < bestCost - 1e-12 || (Math.abs(cost - bestCost) <= 1e-12 && fill < bestFill)) {
        best = b;
        bestCost = cost;
        bestFill = fill;
      }
    }
    (assigned[best] as number[]).push(ui);
    binSize[best] = (binSize[best] as number) + u.members.length;
    const bc = binCounts[best] as Map<string, number>;
    for (const [l, c] of u.counts) bc.set(l, (bc.get(l) ?? 0) + c);
  }
  return assigned;
}

function flatten<T extends SplitItem>(units: Unit<T>[], idx: number[]): T[] {
  return idx.flatMap((i) => (units[i] as Unit<T>).members).sort((a, b) => compareStrings(a.relPath, b.relPath));
}

/** Per-label test count: round(ratio * n), keeping at least one item on each side when n >= 2. */
function testCount(n: number, ratio: number): number {
  let t = Math.round(ratio * n);
  if (n >= 2) t = Math.min(Math.max(t, 1), n - 1);
  else t = 0;
  return t;
}

export interface SplitOptions {
  /** Fraction of items (per label) in the test side, in (0, 1). */
  testRatio: number;
  seed: number | string;
  /** When given, whole groups go to one side (group-aware, stratified as well as the groups allow). */
  groups?: GroupMap;
}

/**
 * Stratified train/test split. Without groups: per label, round(testRatio * n) random items go to test
 * (at least one on each side when the label has 2+ items). With groups: group-aware (see assignUnits).
 */
export function stratifiedSplit<T extends SplitItem>(items: readonly T[], opts: SplitOptions): SplitResult<T> {
  checkRatio(opts.testRatio);
  const sorted = sortedCopy(items);
  const rng = createRng(opts.seed);
  if (opts.groups) {
    requireGroups(sorted, opts.groups);
    const units = unitsByGroup(sorted, opts.groups);
    if (units.length < 2) throw new DatasetError('SPLIT_INVALID', `a group-aware split needs at least 2 groups, got ${units.length}`);
    const [train, test] = assignUnits(units, [1 - opts.testRatio, opts.testRatio], rng) as [number[], number[]];
    return { train: flatten(units, train), test: flatten(units, test) };
  }
  const train: T[] = [];
  const test: T[] = [];
  for (const [label, list] of byLabel(sorted)) {
    const shuffled = rng.fork(label).shuffle([...list]);
    const t = testCount(list.length, opts.testRatio);
    test.push(...shuffled.slice(0, t));
    train.push(...shuffled.slice(t));
  }
  const cmp = (a: T, b: T): number => compareStrings(a.relPath, b.relPath);
  return { train: train.sort(cmp), test: test.sort(cmp) };
}

/** Plain random split (not stratified, not group-aware). For comparison with the honest splits. */
export function randomSplit<T extends SplitItem>(items: readonly T[], opts: { testRatio: number; seed: number | string }): SplitResult<T> {
  checkRatio(opts.testRatio);
  const shuffled = createRng(opts.seed).shuffle(sortedCopy(items));
  const t = Math.round(opts.testRatio * shuffled.length);
  const cmp = (a: T, b: T): number => compareStrings(a.relPath, b.relPath);
  return { test: shuffled.slice(0, t).sort(cmp), train: shuffled.slice(t).sort(cmp) };
}

export interface KFoldOptions {
  k: number;
  seed: number | string;
  groups?: GroupMap;
}

/**
 * Stratified k-fold: fold i's test side is bin i, its train side the other bins. Without groups, items of
 * each label are dealt round-robin into the folds after a seeded shuffle; with groups, whole groups are
 * assigned (group-aware, stratified as well as the groups allow).
 */
export function kFold<T extends SplitItem>(items: readonly T[], opts: KFoldOptions): SplitResult<T>[] {
  const k = opts.k;
  if (!Number.isInteger(k) || k < 2) throw new DatasetError('SPLIT_INVALID', `k must be an integer >= 2, got ${k}`);
  const sorted = sortedCopy(items);
  if (sorted.length < k) throw new DatasetError('SPLIT_INVALID', `k-fold with k=${k} needs at least ${k} items, got ${sorted.length}`);
  const rng = createRng(opts.seed);
  let bins: T[][];
  if (opts.groups) {
    requireGroups(sorted, opts.groups);
    const units = unitsByGroup(sorted, opts.groups);
    if (units.length < k) throw new DatasetError('SPLIT_INVALID', `group-aware k-fold with k=${k} needs at least ${k} groups, got ${units.length}`);
    bins = assignUnits(units, Array.from({ length: k }, () => 1 / k), rng).map((idx) => flatten(units, idx));
  } else {
    bins = Array.from({ length: k }, () => []);
    let next = 0; // continue the deal across labels so fold sizes stay within one of each other
    for (const [label, list] of byLabel(sorted)) {
      for (const it of rng.fork(label).shuffle([...list])) {
        (bins[next] as T[]).push(it);
        next = (next + 1) % k;
      }
    }
  }
  const cmp = (a: T, b: T): number => compareStrings(a.relPath, b.relPath);
  return bins.map((test, i) => ({
    test: [...test].sort(cmp),
    train: bins.filter((_, j) => j !== i).flat().sort(cmp),
  }));
}

export interface GroupLeakage {
  /** Test items whose group also has an item in train. */
  readonly leakedTestItems: number;
  readonly testItems: number;
  /** leakedTestItems / testItems (0 when test is empty). */
  readonly fraction: number;
  /** Groups with items on both sides, sorted. */
  readonly sharedGroups: string[];
}

/** How much a split leaks: test items with a sibling (same group) in train. */
export function groupLeakage(split: SplitResult<SplitItem>, groups: GroupMap): GroupLeakage {
  const trainGroups = new Set<string>();
  for (const it of split.train) {
    const g = groups.get(it.relPath);
    if (g !== undefined) trainGroups.add(g);
  }
  let leaked = 0;
  const shared = new Set<string>();
  for (const it of split.test) {
    const g = groups.get(it.relPath);
    if (g !== undefined && trainGroups.has(g)) {
      leaked++;
      shared.add(g);
    }
  }
  return {
    leakedTestItems: leaked,
    testItems: split.test.length,
    fraction: split.test.length === 0 ? 0 : leaked / split.test.length,
    sharedGroups: [...shared].sort(compareStrings),
  };
}
