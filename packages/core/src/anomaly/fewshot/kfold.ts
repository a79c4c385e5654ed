// Group-aware k-fold over labelled defective images for the few-shot evaluation: images of one group
// (e.g. one magnetic tile under six lights) always land in the same fold, so a model is never tested on
// a sibling of an image it was trained on.
import { createRng } from '../../datasets/random.js';
import { LoupeError } from '../../errors.js';

/**
 * Splits item indices into k folds. Groups are shuffled (seeded) and then placed largest first into the
 * currently smallest fold, so folds are balanced in images. Items without a group are their own group.
 */
export function groupKFold(n: number, k: number, seed: number | string = 0, groupOf?: (i: number) => string | undefined): number[][] {
  if (!Number.isInteger(k) || k < 2) throw new LoupeError('INVALID_ARGUMENT', `k-fold needs k >= 2, got ${k}`);
  const groups = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const g = groupOf?.(i) ?? `#${i}`;
    const list = groups.get(g);
    if (list) list.push(i);
    else groups.set(g, [i]);
  }
  if (groups.size < k) throw new LoupeError('INVALID_ARGUMENT', `k-fold: ${groups.size} groups cannot fill ${k} folds`);
  const rng = createRng(`groupkfold:${seed}`);
  const list = rng.shuffle([...groups.values()]);
  // Stable sort by size (desc) keeps the shuffled order among equal sizes.
  list.sort((a, b) => b.length - a.length);
  const folds: number[][] = Array.from({ length: k }, () => []);
  for (const g of list) {
    let best = 0;
    for (let f = 1; f < k; f++) if (folds[f]!.length < folds[best]!.length) best = f;
    folds[best]!.push(...g);
  }
  for (const f of folds) f.sort((a, b) => a - b);
  return folds;
}
