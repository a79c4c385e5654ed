// Where training images come from: a folder (a plain folder of images, or an MVTec category) or a list of
// files. Folders are scanned with a full decode, so an unreadable or truncated file is reported and left
// out before minutes of feature extraction, not in the middle of them.
import { basename, resolve } from 'node:path';

import { isMvtecCategory, scanImageFolder, scanMvtecOneClass } from '../datasets/scan.js';
import type { SkippedFile } from '../datasets/types.js';
import { DatasetError } from '../datasets/errors.js';
import { LoupeError } from '../errors.js';

/** A folder, or image files. */
export type ImageSet = string | readonly string[];

export interface ResolvedImages {
  /** Image files, sorted for folders, as given for lists. */
  readonly files: string[];
  /** Ground-truth masks of `files` (MVTec defects), where there are any. */
  readonly masks: readonly (string | undefined)[];
  /** The folder, for folders. */
  readonly root: string | undefined;
  /** The folder's name (an MVTec category's name), for folders. */
  readonly category: string | undefined;
  readonly layout: 'mvtec' | 'folder' | 'files';
  /** Files of a folder that were left out, and why. */
  readonly skipped: readonly SkippedFile[];
}

export interface ResolveImagesOptions {
  /** 'good': an MVTec category gives its train/good; 'defects': its defective test images (with masks). */
  role: 'good' | 'defects';
  onProgress?: (done: number, total: number) => void;
}

/** The images of an ImageSet (see the file header). */
export async function resolveImageSet(set: ImageSet, options: ResolveImagesOptions): Promise<ResolvedImages> {
  if (typeof set !== 'string') {
    if (set.length === 0) throw new LoupeError('INVALID_ARGUMENT', `no ${options.role === 'good' ? 'good' : 'defective'} images given`);
    return { files: [...set], masks: [], root: undefined, category: undefined, layout: 'files', skipped: [] };
  }
  const root = resolve(set);
  const scan = { verify: 'decode' as const, dedupe: false, ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
  if (await isMvtecCategory(root)) {
    const ds = await scanMvtecOneClass(root, scan);
    if (options.role === 'good') return { files: ds.train.map((i) => i.path), masks: [], root: ds.root, category: ds.category, layout: 'mvtec', skipped: ds.skipped };
    const defects = ds.test.filter((i) => i.label !== 'good');
    if (defects.length === 0) throw new DatasetError('DATASET_EMPTY', `no defective test images under ${root}/test`, { input: root });
    return { files: defects.map((i) => i.path), masks: defects.map((i) => i.maskPath), root: ds.root, category: ds.category, layout: 'mvtec', skipped: ds.skipped };
  }
  const scanned = await scanImageFolder(root, { ...scan, label: options.role === 'good' ? 'good' : 'defect' });
  return { files: scanned.items.map((i) => i.path), masks: [], root: scanned.root, category: basename(scanned.root), layout: 'folder', skipped: scanned.skipped };
}
