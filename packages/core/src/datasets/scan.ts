// Dataset scanners: folder-per-label trees and the MVTec AD layout, with auto-detection and a report of
// every file that was skipped and why.

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';

import { fileKind, NotRegularFileError, readRegularFile } from '../files.js';
import { ImageDecodeError } from '../errors.js';
import { decodeImage } from '../image/decode.js';
import { DatasetError } from './errors.js';
import { DECODABLE_IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_FORMATS, formatFromExtension, listFilesUnder, sniffImageFormat, toPosixRelative, type ImageFormat } from './image-files.js';
import { compareStrings, mapLimit } from './util.js';
import type { Dataset, DatasetItem, DatasetLayout, MvtecSplit, OneClassDataset, SkippedFile } from './types.js';

/**
 * How much each candidate file is checked:
 * - 'extension': the extension only (no file reads except size);
 * - 'magic': the leading bytes must match an image format the decoder supports;
 * - 'header': 'magic' + the decoder parses the header (width/height known). Default.
 * - 'decode': 'header' + a full decode by the model's own decoder (catches truncated files and images
 *   over the pixel limit, exactly what training would trip on; slower).
 */
export type VerifyLevel = 'extension' | 'magic' | 'header' | 'decode';

export interface ScanOptions {
  verify?: VerifyLevel;
  /** Skip files whose content (sha256) equals an earlier file's. Default true. Needs a full read. */
  dedupe?: boolean;
  /** Files inspected at once. Default 8. */
  concurrency?: number;
  /** Called after each inspected file. */
  onProgress?: (done: number, total: number) => void;
}

export interface ScanMvtecOptions extends ScanOptions {
  /** Name of the defect-free label. Default 'good'. */
  goodLabel?: string;
}


interface Candidate {
  path: string;
  relPath: string;
  label: string;
  mvtecSplit?: MvtecSplit;
  maskPath?: string;
}

interface WalkedFile {
  path: string;
  relPath: string;
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function requireDirectory(root: string): Promise<string> {
  const abs = path.resolve(root);
  if (!(await isDirectory(abs))) {
    throw new DatasetError('DATASET_NOT_FOUND', `dataset folder not found or not a directory: ${abs}`, { input: abs });
  }
  return abs;
}

/** Sorted subdirectory names (hidden ones excluded). */
async function listSubdirs(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(path.join(dir, e.name))))) out.push(e.name);
  }
  return out.sort(compareStrings);
}

/** Every file under `dir` (listFilesUnder: sorted, hidden folders skipped, linked folders once). */
async function walkFiles(root: string, dir: string, out: WalkedFile[]): Promise<void> {
  for (const f of await listFilesUnder(dir)) out.push({ path: f.path, relPath: toPosixRelative(root, f.path) }); // dangling links, FIFOs, devices: reported as unreadable
}

type Inspected =
  | { ok: true; format: ImageFormat; bytes: number; sha256?: string; width?: number; height?: number }
  | { ok: false; skip: SkippedFile };

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function inspectFile(c: Candidate, verify: VerifyLevel, hash: boolean): Promise<Inspected> {
  const extFormat = formatFromExtension(c.path);
  const base = { path: c.path, relPath: c.relPath };
  if (extFormat === undefined) return { ok: false, skip: { ...base, reason: 'not-an-image-extension' } };
  if (verify === 'extension' && !hash) {
    try {
      const st = await fs.stat(c.path);
      if (!st.isFile()) return { ok: false, skip: { ...base, reason: 'unreadable', detail: new NotRegularFileError(c.path, fileKind(st)).message } };
      if (st.size === 0) return { ok: false, skip: { ...base, reason: 'empty-file' } };
      if (UNSUPPORTED_IMAGE_FORMATS.has(extFormat)) {
        return { ok: false, skip: { ...base, reason: 'unsupported-format', detail: `${extFormat} images cannot be decoded` } };
      }
      return { ok: true, format: extFormat, bytes: st.size };
    } catch (err) {
      return { ok: false, skip: { ...base, reason: 'unreadable', detail: errorMessage(err) } };
    }
  }
  let data: Buffer;
  try {
    data = await readRegularFile(c.path); // a FIFO or device among the files is reported, never read
  } catch (err) {
    return { ok: false, skip: { ...base, reason: 'unreadable', detail: errorMessage(err) } };
  }
  if (data.length === 0) return { ok: false, skip: { ...base, reason: 'empty-file' } };
  let format: ImageFormat = extFormat;
  if (verify !== 'extension') {
    const sniffed = sniffImageFormat(data.subarray(0, 16));
    if (sniffed === undefined) {
      return { ok: false, skip: { ...base, reason: 'not-an-image-content', detail: `extension says ${extFormat}, content matches no image format` } };
    }
    format = sniffed;
  }
  if (UNSUPPORTED_IMAGE_FORMATS.has(format)) {
    return { ok: false, skip: { ...base, reason: 'unsupported-format', detail: `${format} images cannot be decoded` } };
  }
  let width: number | undefined;
  let height: number | undefined;
  if (verify === 'header' || verify === 'decode') {
    try {
      const meta = await sharp(data).metadata();
      width = meta.width;
      height = meta.height;
      if (!width || !height) throw new Error('image has no dimensions');
      if (verify === 'decode') await decodeImage({ name: c.path, data });
    } catch (err) {
      // The decoder's own detail: its message repeats the path that the skip report already names.
      const detail = err instanceof ImageDecodeError ? err.detail : errorMessage(err);
      return { ok: false, skip: { ...base, reason: 'unreadable', detail } };
    }
  }
  const out: Inspected = { ok: true, format, bytes: data.length };
  if (hash) out.sha256 = createHash('sha256').update(data).digest('hex');
  if (width !== undefined) out.width = width;
  if (height !== undefined) out.height = height;
  return out;
}

/** Inspects candidates (in parallel), then drops duplicates in candidate order (the first is kept). */
async function inspectCandidates(candidates: readonly Candidate[], opts: ScanOptions): Promise<{ items: DatasetItem[]; skipped: SkippedFile[] }> {
  const verify = opts.verify ?? 'header';
  const dedupe = opts.dedupe ?? true;
  let done = 0;
  const results = await mapLimit(candidates, opts.concurrency ?? 8, async (c) => {
    const r = await inspectFile(c, verify, dedupe);
    done++;
    opts.onProgress?.(done, candidates.length);
    return r;
  });
  const items: DatasetItem[] = [];
  const skipped: SkippedFile[] = [];
  const firstByHash = new Map<string, Candidate>();
  // The same image under two labels: neither label can be trusted, so no copy is used.
  const copiesByHash = new Map<string, Candidate[]>();
  if (dedupe) {
    results.forEach((r, i) => {
      if (r.ok && r.sha256 !== undefined) copiesByHash.set(r.sha256, [...(copiesByHash.get(r.sha256) ?? []), candidates[i] as Candidate]);
    });
  }
  results.forEach((r, i) => {
    const c = candidates[i] as Candidate;
    if (!r.ok) {
      skipped.push(r.skip);
      return;
    }
    if (dedupe && r.sha256 !== undefined) {
      const copies = copiesByHash.get(r.sha256) ?? [];
      if (new Set(copies.map((x) => x.label)).size > 1) {
        const others = copies.filter((x) => x !== c).map((x) => `${x.relPath} ('${x.label}')`);
        skipped.push({ path: c.path, relPath: c.relPath, reason: 'conflicting-labels', detail: `same content as ${others.join(', ')}, labelled '${c.label}' here; fix the labels` });
        return;
      }
      const first = firstByHash.get(r.sha256);
      if (first !== undefined) {
        skipped.push({ path: c.path, relPath: c.relPath, reason: 'duplicate', detail: `same content as ${first.relPath}`, duplicateOf: first.relPath });
        return;
      }
      firstByHash.set(r.sha256, c);
    }
    const item: { -readonly [K in keyof DatasetItem]: DatasetItem[K] } = {
      path: c.path,
      relPath: c.relPath,
      label: c.label,
      format: r.format,
      bytes: r.bytes,
    };
    if (r.sha256 !== undefined) item.sha256 = r.sha256;
    if (c.mvtecSplit !== undefined) item.mvtecSplit = c.mvtecSplit;
    if (c.maskPath !== undefined) item.maskPath = c.maskPath;
    if (r.width !== undefined) item.width = r.width;
    if (r.height !== undefined) item.height = r.height;
    items.push(item);
  });
  return { items, skipped };
}

/** True when `root` looks like one MVTec category (has train/good and test/). */
export async function isMvtecCategory(root: string): Promise<boolean> {
  return (await isDirectory(path.join(root, 'train', 'good'))) && (await isDirectory(path.join(root, 'test')));
}

/** 'mvtec' when the folder is an MVTec category, else 'folder-per-label'. */
export async function detectLayout(root: string): Promise<DatasetLayout> {
  const abs = await requireDirectory(root);
  return (await isMvtecCategory(abs)) ? 'mvtec' : 'folder-per-label';
}

/**
 * Folder-per-label: `root/<label>/**` (recursive). Files directly under root are reported as
 * 'outside-layout'. Labels are the first-level folder names.
 */
export async function scanFolderPerLabel(root: string, opts: ScanOptions = {}): Promise<Dataset> {
  const abs = await requireDirectory(root);
  const all: WalkedFile[] = [];
  await walkFiles(abs, abs, all);
  const candidates: Candidate[] = [];
  const outside: SkippedFile[] = [];
  for (const f of all) {
    const slash = f.relPath.indexOf('/');
    if (slash < 0) {
      outside.push({ path: f.path, relPath: f.relPath, reason: 'outside-layout', detail: 'file at the dataset root: images must be inside a <label>/ folder' });
      continue;
    }
    candidates.push({ path: f.path, relPath: f.relPath, label: f.relPath.slice(0, slash) });
  }
  const { items, skipped } = await inspectCandidates(candidates, opts);
  if (items.length === 0) {
    throw new DatasetError('DATASET_EMPTY', `no usable images under ${abs} (expected <label>/ folders of ${DECODABLE_IMAGE_EXTENSIONS.join(' ')} files; ${outside.length + skipped.length} files skipped)`, { input: abs });
  }
  const labels = [...new Set(items.map((i) => i.label))].sort(compareStrings);
  return { root: abs, layout: 'folder-per-label', items, labels, skipped: [...outside, ...skipped] };
}

/**
 * A plain folder of images, all of one label (e.g. a folder of good parts): every image under it,
 * recursively, checked as `verify` says; the rest reported as skipped.
 */
export async function scanImageFolder(root: string, opts: ScanOptions & { label?: string } = {}): Promise<{ root: string; items: DatasetItem[]; skipped: SkippedFile[] }> {
  const abs = await requireDirectory(root);
  const all: WalkedFile[] = [];
  await walkFiles(abs, abs, all);
  const label = opts.label ?? 'good';
  const { items, skipped } = await inspectCandidates(all.map((f) => ({ path: f.path, relPath: f.relPath, label })), opts);
  if (items.length === 0) {
    throw new DatasetError('DATASET_EMPTY', `no usable images under ${abs} (looked for ${DECODABLE_IMAGE_EXTENSIONS.join(' ')} files; ${skipped.length} files skipped)`, { input: abs });
  }
  return { root: abs, items, skipped };
}

/** Indexes `ground_truth/<defect>/` mask files by image stem: `<stem>_mask.<ext>` or `<stem>.<ext>`. */
async function indexMasks(root: string, defect: string): Promise<Map<string, string>> {
  const dir = path.join(root, 'ground_truth', defect);
  const out = new Map<string, string>();
  if (!(await isDirectory(dir))) return out;
  const files: WalkedFile[] = [];
  await walkFiles(dir, dir, files);
  const plain = new Map<string, string>();
  for (const f of files) {
    if (formatFromExtension(f.path) === undefined) continue;
    const rel = f.relPath.slice(0, f.relPath.length - path.extname(f.relPath).length);
    if (rel.endsWith('_mask')) out.set(rel.slice(0, -'_mask'.length), f.path);
    else plain.set(rel, f.path);
  }
  for (const [stem, p] of plain) if (!out.has(stem)) out.set(stem, p);
  return out;
}

interface MvtecCandidates {
  root: string;
  train: Candidate[];
  test: Candidate[];
  defectTypes: string[];
  outside: SkippedFile[];
  missingMasks: string[];
}

async function collectMvtec(root: string, goodLabel: string): Promise<MvtecCandidates> {
  const abs = await requireDirectory(root);
  if (!(await isMvtecCategory(abs))) {
    throw new DatasetError('DATASET_LAYOUT', `not an MVTec category folder (needs train/${goodLabel}/ and test/): ${abs}`, { input: abs });
  }
  const train: Candidate[] = [];
  const test: Candidate[] = [];
  const outside: SkippedFile[] = [];
  const missingMasks: string[] = [];
  for (const sub of await listSubdirs(path.join(abs, 'train'))) {
    const files: WalkedFile[] = [];
    await walkFiles(abs, path.join(abs, 'train', sub), files);
    for (const f of files) {
      if (sub === goodLabel) train.push({ path: f.path, relPath: f.relPath, label: goodLabel, mvtecSplit: 'train' });
      else outside.push({ path: f.path, relPath: f.relPath, reason: 'outside-layout', detail: `MVTec train/ holds only ${goodLabel}/` });
    }
  }
  const testTypes = await listSubdirs(path.join(abs, 'test'));
  const defectTypes = testTypes.filter((t) => t !== goodLabel);
  for (const t of testTypes) {
    const masks = t === goodLabel ? new Map<string, string>() : await indexMasks(abs, t);
    const files: WalkedFile[] = [];
    const dir = path.join(abs, 'test', t);
    await walkFiles(abs, dir, files);
    for (const f of files) {
      const c: Candidate = { path: f.path, relPath: f.relPath, label: t, mvtecSplit: 'test' };
      if (t !== goodLabel && formatFromExtension(f.path) !== undefined) {
        const inner = toPosixRelative(dir, f.path);
        const stem = inner.slice(0, inner.length - path.extname(inner).length);
        const mask = masks.get(stem);
        if (mask !== undefined) c.maskPath = mask;
        else missingMasks.push(f.relPath);
      }
      test.push(c);
    }
  }
  // Images the layout does not use (at the category root, loose in train/ or test/, in other folders
  // than train/, test/ and ground_truth/) are reported rather than silently ignored; other files
  // (license.txt, readme.txt) are not: every MVTec category ships them.
  const known = new Set([...train, ...test, ...outside].map((c) => c.path));
  const all: WalkedFile[] = [];
  await walkFiles(abs, abs, all);
  for (const f of all) {
    if (known.has(f.path) || formatFromExtension(f.path) === undefined || f.relPath.startsWith('ground_truth/')) continue;
    const where = f.relPath.includes('/') ? `not under train/${goodLabel}/ or test/<type>/` : 'at the category root';
    outside.push({ path: f.path, relPath: f.relPath, reason: 'outside-layout', detail: `${where}: the MVTec layout does not use it` });
  }
  return { root: abs, train, test, defectTypes, outside, missingMasks };
}

/**
 * MVTec category as a classification dataset: labels = good + each defect type, with train/good and
 * test/* pooled (the caller splits). `mvtecSplit` records the official split of each item.
 */
export async function scanMvtec(root: string, opts: ScanMvtecOptions = {}): Promise<Dataset> {
  const goodLabel = opts.goodLabel ?? 'good';
  const m = await collectMvtec(root, goodLabel);
  // Train first, so a train/test duplicate keeps the training copy.
  const { items, skipped } = await inspectCandidates([...m.train, ...m.test], opts);
  if (items.length === 0) throw new DatasetError('DATASET_EMPTY', `no usable images in MVTec category ${m.root}`, { input: m.root });
  items.sort((a, b) => compareStrings(a.relPath, b.relPath));
  const present = new Set(items.map((i) => i.label));
  const labels = [...(present.has(goodLabel) ? [goodLabel] : []), ...[...present].filter((l) => l !== goodLabel).sort(compareStrings)];
  return { root: m.root, layout: 'mvtec', items, labels, skipped: [...m.outside, ...skipped] };
}

/** MVTec category for one-class (anomaly detection) use: train = train/good, test = test/* with masks. */
export async function scanMvtecOneClass(root: string, opts: ScanMvtecOptions = {}): Promise<OneClassDataset> {
  const goodLabel = opts.goodLabel ?? 'good';
  const m = await collectMvtec(root, goodLabel);
  const { items, skipped } = await inspectCandidates([...m.train, ...m.test], opts);
  const train = items.filter((i) => i.mvtecSplit === 'train');
  const test = items.filter((i) => i.mvtecSplit === 'test');
  if (train.length === 0) throw new DatasetError('DATASET_EMPTY', `no usable train/${goodLabel} images in ${m.root}`, { input: m.root });
  const kept = new Set(test.map((i) => i.relPath));
  return {
    root: m.root,
    category: path.basename(m.root),
    train,
    test,
    defectTypes: m.defectTypes,
    skipped: [...m.outside, ...skipped],
    missingMasks: m.missingMasks.filter((r) => kept.has(r)),
  };
}

/** Scans with auto-detected layout (MVTec category, else folder-per-label). */
export async function scanDataset(root: string, opts: ScanMvtecOptions & { layout?: DatasetLayout | 'auto' } = {}): Promise<Dataset> {
  const layout = opts.layout === undefined || opts.layout === 'auto' ? await detectLayout(root) : opts.layout;
  return layout === 'mvtec' ? scanMvtec(root, opts) : scanFolderPerLabel(root, opts);
}

/** One line per skip reason with counts, then each file (up to `maxFiles`). */
export function formatSkipReport(skipped: readonly SkippedFile[], maxFiles = 20): string {
  if (skipped.length === 0) return 'No files skipped.';
  const byReason = new Map<string, number>();
  for (const s of skipped) byReason.set(s.reason, (byReason.get(s.reason) ?? 0) + 1);
  const lines = [`${skipped.length} file(s) skipped:`];
  for (const [reason, n] of [...byReason].sort((a, b) => compareStrings(a[0], b[0]))) lines.push(`  ${reason}: ${n}`);
  for (const s of skipped.slice(0, maxFiles)) lines.push(`  - ${s.relPath} (${s.reason}${s.detail ? `: ${s.detail}` : ''})`);
  if (skipped.length > maxFiles) lines.push(`  ... ${skipped.length - maxFiles} more`);
  return lines.join('\n');
}
