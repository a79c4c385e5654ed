// Which files count as images: by extension first, then by their leading bytes (magic numbers).

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { fileKind } from '../files.js';
import { compareStrings } from './util.js';

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'tiff' | 'gif' | 'bmp';

/** Lower-case extensions (with the dot) that the scanners consider, and the format each implies. */
export const IMAGE_EXTENSIONS: Readonly<Record<string, ImageFormat>> = Object.freeze({
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.png': 'png',
  '.webp': 'webp',
  '.tif': 'tiff',
  '.tiff': 'tiff',
  '.gif': 'gif',
  '.bmp': 'bmp',
});

/** The format an extension implies, or undefined when the extension is not an image one. */
export function formatFromExtension(file: string): ImageFormat | undefined {
  return IMAGE_EXTENSIONS[path.extname(file).toLowerCase()];
}

/** Formats the decoder cannot read even though they are images (listed so scans can say so). */
export const UNSUPPORTED_IMAGE_FORMATS: ReadonlySet<ImageFormat> = new Set<ImageFormat>(['bmp']);

/** The extensions (with the dot) of the formats the decoder reads: what folder walks pick up. */
export const DECODABLE_IMAGE_EXTENSIONS: readonly string[] = Object.freeze(
  Object.entries(IMAGE_EXTENSIONS)
    .filter(([, f]) => !UNSUPPORTED_IMAGE_FORMATS.has(f))
    .map(([e]) => e),
);

/**
 * A file found by `listFilesUnder`; `dangling`: a symbolic link to nothing; `special`: what it is when it is
 * neither a regular file nor a folder (a FIFO, a device, a socket). Both are listed for "unreadable" reports.
 */
export interface ListedFile {
  readonly path: string;
  readonly dangling: boolean;
  readonly special?: string;
}

/**
 * Every file under `dir`, recursively, sorted, hidden folders skipped (hidden files kept: scans report
 * them). Symbolic links are followed (datasets are often linked together), each real folder once: a
 * link back up the tree is not walked again (it would never end), nor a second link to a seen folder.
 */
export async function listFilesUnder(dir: string): Promise<ListedFile[]> {
  const out: ListedFile[] = [];
  const seen = new Set<string>();
  const walk = async (d: string): Promise<void> => {
    const real = await fs.realpath(d);
    if (seen.has(real)) return;
    seen.add(real);
    const entries = await fs.readdir(d, { withFileTypes: true });
    entries.sort((a, b) => compareStrings(a.name, b.name));
    for (const e of entries) {
      const p = path.join(d, e.name);
      const st = e.isSymbolicLink() ? await fs.stat(p).catch(() => undefined) : e;
      if (!st) out.push({ path: p, dangling: true });
      else if (st.isDirectory()) {
        if (!e.name.startsWith('.')) await walk(p);
      } else if (st.isFile()) out.push({ path: p, dangling: false });
      else out.push({ path: p, dangling: false, special: fileKind(st) });
    }
  };
  await walk(dir);
  return out;
}

/**
 * The decodable image files under `dir` (by extension; hidden ones skipped), as `listFilesUnder`. With
 * `unreadable: true`, image-named entries that cannot be read as files (links to nothing, FIFOs, devices)
 * are listed too, so that the caller reports each one (reading it gives the reason) instead of skipping it.
 */
export async function findImageFiles(dir: string, options: { unreadable?: boolean } = {}): Promise<string[]> {
  return (await listFilesUnder(dir))
    .filter((f) => (options.unreadable || (!f.dangling && !f.special)) && !path.basename(f.path).startsWith('.') && DECODABLE_IMAGE_EXTENSIONS.includes(path.extname(f.path).toLowerCase()))
    .map((f) => f.path);
}

/** Number of leading bytes `sniffImageFormat` needs. */
export const MAGIC_BYTES_NEEDED = 12;

/** Detects the image format from the first bytes of a file; undefined when none matches. */
export function sniffImageFormat(head: Uint8Array): ImageFormat | undefined {
  const b = head;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (
    b.length >= 8 &&
    b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 &&
    b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a
  ) return 'png';
  if (
    b.length >= 12 &&
    b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 &&
    b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50
  ) return 'webp';
  if (b.length >= 4 && b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) return 'tiff';
  if (b.length >= 4 && b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a) return 'tiff';
  if (b.length >= 4 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38) return 'gif';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  return undefined;
}

/** Path of `file` relative to `root`, always with forward slashes (stable across platforms). */
export function toPosixRelative(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}
