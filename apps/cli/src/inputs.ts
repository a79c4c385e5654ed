// The image arguments of predict and inspect (local or remote, the same rule): files as given, folders
// searched recursively (sorted; a link back up the tree is walked once). A path that does not exist, or a
// folder without images, is a usage error before any work (exit 2): a typo, not a bad image. A file that
// exists but cannot be read or decoded is that image's answer later, and the others are still inspected;
// so is, in a folder, an image-named link to nothing, FIFO or device.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { DECODABLE_IMAGE_EXTENSIONS, findImageFiles } from '@loupe/core';

import { UsageError } from './errors.js';

export interface InputImage {
  /** The path to read (as given, or found under a folder argument). */
  readonly file: string;
  /** Its name for output files: the path below the folder argument without extension, separators as '_'. */
  readonly name: string;
}

const stemOf = (p: string): string => p.replace(/\.[^./\\]+$/, '');

export async function expandInputs(inputs: readonly string[]): Promise<InputImage[]> {
  const out: InputImage[] = [];
  for (const input of inputs) {
    let st;
    try {
      st = await fs.stat(input);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UsageError(`cannot read image ${input}: ${code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file or folder' : code === 'EACCES' ? 'permission denied' : String(err)}`);
    }
    if (!st.isDirectory()) {
      out.push({ file: input, name: stemOf(path.basename(input)) });
      continue;
    }
    // Image-named entries that cannot be read (links to nothing, FIFOs, devices) are listed too: each gets
    // its error line (and exit 2), not a silent skip.
    const found = await findImageFiles(input, { unreadable: true });
    if (found.length === 0) throw new UsageError(`${input}: the folder holds no image files (${DECODABLE_IMAGE_EXTENSIONS.join(' ')})`);
    // MVTec repeats 000.png in every defect folder: output names keep the sub-folders.
    for (const f of found) out.push({ file: f, name: stemOf(path.relative(input, f)).split(path.sep).join('_') });
  }
  return out;
}
