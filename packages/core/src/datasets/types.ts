// Shared dataset types.

import type { ImageFormat } from './image-files.js';

export type DatasetLayout = 'folder-per-label' | 'mvtec';

/** Where an MVTec image came from. */
export type MvtecSplit = 'train' | 'test';

/** One labelled image of a dataset. */
export interface DatasetItem {
  /** Absolute path. */
  readonly path: string;
  /** Path relative to the dataset root, forward slashes. The item's identity in splits and group files. */
  readonly relPath: string;
  /** Class label (folder name; for MVTec: 'good' or the defect type). */
  readonly label: string;
  /** Detected format (magic bytes, or the extension when content checks are off). */
  readonly format: ImageFormat;
  /** Size in bytes. */
  readonly bytes: number;
  /** sha256 of the file content (hex), when content hashing is on. */
  readonly sha256?: string;
  /** MVTec only: the official split folder the image is in. */
  readonly mvtecSplit?: MvtecSplit;
  /** MVTec only: absolute path of the ground-truth mask for defective test images, when present. */
  readonly maskPath?: string;
  /** Pixel dimensions, when the header was read (`verify: 'header'`). */
  readonly width?: number;
  readonly height?: number;
}

export type SkipReason =
  | 'not-an-image-extension' // extension not in IMAGE_EXTENSIONS
  | 'not-an-image-content' // image extension but the bytes are not a known image format
  | 'unsupported-format' // a real image, but in a format the decoder (sharp/libvips) cannot read (BMP)
  | 'unreadable' // could not be read, or the decoder rejected the header
  | 'empty-file'
  | 'duplicate' // same content (sha256) as an earlier file of the same label (see `duplicateOf`)
  | 'conflicting-labels' // same content as a file of another label: every copy is left out
  | 'outside-layout'; // e.g. files at the root of a folder-per-label tree, or an MVTec folder we don't use

export interface SkippedFile {
  readonly path: string;
  readonly relPath: string;
  readonly reason: SkipReason;
  /** Human-readable detail (e.g. the decoder's message). */
  readonly detail?: string;
  /** For duplicates: relPath of the file that was kept. */
  readonly duplicateOf?: string;
}

export interface Dataset {
  /** Absolute dataset root. */
  readonly root: string;
  readonly layout: DatasetLayout;
  /** Items sorted by relPath. */
  readonly items: readonly DatasetItem[];
  /** Distinct labels, sorted; for MVTec 'good' first, then the defect types sorted. */
  readonly labels: readonly string[];
  readonly skipped: readonly SkippedFile[];
}

/** MVTec one-class view: train on good only, test on everything under test/ with masks. */
export interface OneClassDataset {
  readonly root: string;
  readonly category: string;
  /** train/good images. */
  readonly train: readonly DatasetItem[];
  /** test/* images; `label` is 'good' or the defect type, `maskPath` set for defects with a mask. */
  readonly test: readonly DatasetItem[];
  /** Defect types found under test/, sorted. */
  readonly defectTypes: readonly string[];
  readonly skipped: readonly SkippedFile[];
  /** Defective test images without a mask file (relPaths). */
  readonly missingMasks: readonly string[];
}
