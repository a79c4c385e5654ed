// Real MVTec AD bottle images (shared/datasets/mvtec_ad/bottle, 256x256 PNG) for the inspection, training
// and evaluation tests, and small datasets made of them in temp folders (symbolic links or copies), so a
// test trains and scores on a handful of real images in seconds.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

import { engineSkipReason } from './engine-env.js';
import { sharedDir } from './env.js';

export const BOTTLE = join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle');

/**
 * Why the bottle images are not usable here; undefined when they are. Absent data is a skip on a developer
 * machine and a failure under CI.
 */
export function bottleDataSkipReason(): string | undefined {
  if (!existsSync(join(BOTTLE, 'train', 'good')) || !existsSync(join(BOTTLE, 'ground_truth', 'broken_large'))) {
    const why = `the MVTec bottle images are not in ${BOTTLE} ($LOUPE_SHARED_DIR/datasets/mvtec_ad/bottle)`;
    if (process.env['CI']) throw new Error(`CI: ${why}`);
    return why;
  }
  return undefined;
}

/** Why the tests that need the engine, the weights and the bottle images cannot run here (as engineSkipReason). */
export function bottleSkipReason(): string | undefined {
  return engineSkipReason() ?? bottleDataSkipReason();
}

export type BottleFolder = 'train/good' | 'test/good' | 'test/broken_large' | 'test/broken_small' | 'test/contamination';

/** `n` images of a bottle folder in name order, from the `from`-th. */
export function bottle(folder: BottleFolder, n: number, from = 0): string[] {
  const dir = join(BOTTLE, folder);
  const all = readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort();
  if (from + n > all.length) throw new Error(`${dir} has ${all.length} images, asked for ${from}..${from + n}`);
  return all.slice(from, from + n).map((f) => join(dir, f));
}

/** The ground-truth mask of a defective bottle test image. */
export function bottleMask(image: string): string {
  const type = basename(join(image, '..'));
  return join(BOTTLE, 'ground_truth', type, basename(image).replace(/\.png$/, '_mask.png'));
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Links (or copies) files into `dir` under their own names (or `names`); returns the new paths. */
export function place(dir: string, files: readonly string[], how: 'link' | 'copy' = 'link', names?: readonly string[]): string[] {
  mkdirSync(dir, { recursive: true });
  return files.map((f, i) => {
    const to = join(dir, names?.[i] ?? basename(f));
    if (how === 'link') symlinkSync(f, to);
    else copyFileSync(f, to);
    return to;
  });
}

export interface SubsetSpec {
  /** train/good images (from the first). */
  train: number;
  /** test/good images. */
  testGood: number;
  /** Defective test images per type, each with its mask. */
  defects: Partial<Record<'broken_large' | 'broken_small' | 'contamination', number>>;
  /** The first `seen` train/good images also put into test/good (as seen_<name>). */
  seen?: number;
}

/** A small MVTec category (symbolic links to the real files) at `root`. */
export function mvtecSubset(root: string, spec: SubsetSpec): { root: string; train: string[]; testGood: string[]; defects: string[]; seen: string[] } {
  const train = place(join(root, 'train', 'good'), bottle('train/good', spec.train));
  const testGood = place(join(root, 'test', 'good'), bottle('test/good', spec.testGood));
  const seenSources = bottle('train/good', spec.seen ?? 0);
  const seen = place(
    join(root, 'test', 'good'),
    seenSources,
    'link',
    seenSources.map((f) => `seen_${basename(f)}`),
  );
  const defects: string[] = [];
  for (const [type, n] of Object.entries(spec.defects)) {
    const images = bottle(`test/${type}` as BottleFolder, n);
    defects.push(...place(join(root, 'test', type), images));
    place(join(root, 'ground_truth', type), images.map(bottleMask));
  }
  return { root, train, testGood, defects, seen };
}

/** A folder-per-label dataset (<label>/ folders of links) at `root`. */
export function labelledFolder(root: string, labels: Record<string, readonly string[]>): string {
  for (const [label, files] of Object.entries(labels)) place(join(root, label), files);
  return root;
}
