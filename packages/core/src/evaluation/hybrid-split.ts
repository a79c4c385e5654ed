// The held-out protocol of hybrid (few-shot) models: which labelled images train the model and which
// measure it. `loupe train DIR --mode hybrid --split F --shots N --seed S [--groups CSV]`, the server's
// trainer and tools/eval/quality.ts all split through hybridHoldOut, so a figure means the same wherever it
// was measured.
//
//   - An MVTec category: train/good always trains (it is the memory bank's material); the fraction F of
//     test/good and of every defect type is held out. A folder-per-label dataset: F of every label (good
//     included) is held out.
//   - Stratified and seeded (datasets/split.ts); with groups, whole groups go to one side (one magnetic tile
//     under six lights is never on both).
//   - shots N: at most N defective images per type train the head (a plant's first handful); the rest of
//     the training side's defects are left unused, so the held-out set does not depend on N. Shots are
//     drawn round-robin over the type's groups (seeded), so ten shots are not ten lights of two tiles.
import { createRng } from '../datasets/random.js';
import { stratifiedSplit, type GroupMap } from '../datasets/split.js';
import { compareStrings } from '../datasets/util.js';
import { LoupeError } from '../errors.js';

/** What the split needs of an image. */
export interface HoldOutItem {
  readonly relPath: string;
  readonly label: string;
  /** MVTec: the official split folder ('train' = train/good, always training). */
  readonly mvtecSplit?: 'train' | 'test';
}

export interface HybridHoldOutOptions {
  /** Fraction held out, in (0, 1); 0 or undefined: nothing held out (train on everything). */
  split?: number;
  /** At most this many defective images per type train the model; default all. */
  shots?: number;
  seed?: number;
  /** relPath -> group. */
  groups?: GroupMap;
  /** The good label; default 'good'. */
  goodLabel?: string;
}

export interface HybridHoldOut<T> {
  /** Good images that train the model (memory bank, head negatives, calibration). */
  readonly trainGood: T[];
  /** Labelled defective images that train the head (at most `shots` per type). */
  readonly trainDefects: T[];
  /** Training-side defects left unused because of `shots`. */
  readonly unusedDefects: T[];
  /** The held-out images (good and defective). */
  readonly test: T[];
  /** Whether the split kept groups whole. */
  readonly groupAware: boolean;
}

/** Splits labelled images for a hybrid model (see the file header). */
export function hybridHoldOut<T extends HoldOutItem>(items: readonly T[], options: HybridHoldOutOptions = {}): HybridHoldOut<T> {
  const good = options.goodLabel ?? 'good';
  const split = options.split ?? 0;
  const seed = options.seed ?? 0;
  if (!(split >= 0 && split < 1)) throw new LoupeError('INVALID_ARGUMENT', `split must be in [0, 1), got ${split}`);
  if (options.shots !== undefined && !(Number.isInteger(options.shots) && options.shots >= 0)) {
    throw new LoupeError('INVALID_ARGUMENT', `shots must be an integer >= 0, got ${options.shots}`);
  }
  const fixedTrain = items.filter((i) => i.label === good && i.mvtecSplit === 'train');
  const pool = items.filter((i) => !(i.label === good && i.mvtecSplit === 'train'));
  let trainPool: T[] = pool.slice();
  let test: T[] = [];
  const groups = options.groups;
  if (split > 0 && pool.length > 0) {
    const s = stratifiedSplit(pool, { testRatio: split, seed: `hybrid-holdout:${seed}`, ...(groups ? { groups } : {}) });
    trainPool = s.train;
    test = s.test;
  }
  const trainGood = [...fixedTrain, ...trainPool.filter((i) => i.label === good)].sort((a, b) => compareStrings(a.relPath, b.relPath));
  const defects = trainPool.filter((i) => i.label !== good);
  const types = [...new Set(defects.map((d) => d.label))].sort(compareStrings);
  const trainDefects: T[] = [];
  const unusedDefects: T[] = [];
  for (const type of types) {
    const list = defects.filter((d) => d.label === type);
    const n = options.shots === undefined ? list.length : Math.min(options.shots, list.length);
    const picked = pickShots(list, n, `hybrid-shots:${seed}:${type}`, groups);
    const keep = new Set(picked.map((p) => p.relPath));
    for (const d of list) (keep.has(d.relPath) ? trainDefects : unusedDefects).push(d);
  }
  const cmp = (a: T, b: T): number => compareStrings(a.relPath, b.relPath);
  return { trainGood, trainDefects: trainDefects.sort(cmp), unusedDefects: unusedDefects.sort(cmp), test: test.sort(cmp), groupAware: groups !== undefined };
}

/** n items, seeded, round-robin over shuffled groups (an item without a group is its own). */
function pickShots<T extends HoldOutItem>(list: readonly T[], n: number, seed: string, groups: GroupMap | undefined): T[] {
  if (n >= list.length) return [...list];
  const rng = createRng(seed);
  const byGroup = new Map<string, T[]>();
  for (const it of [...list].sort((a, b) => compareStrings(a.relPath, b.relPath))) {
    const g = groups?.get(it.relPath) ?? `\u0000${it.relPath}`;
    const l = byGroup.get(g);
    if (l) l.push(it);
    else byGroup.set(g, [it]);
  }
  const queues = rng.shuffle([...byGroup.keys()].sort(compareStrings)).map((g) => rng.shuffle([...byGroup.get(g)!]));
  const out: T[] = [];
  for (let round = 0; out.length < n; round++) {
    for (const q of queues) {
      if (out.length >= n) break;
      if (round < q.length) out.push(q[round]!);
    }
  }
  return out;
}
