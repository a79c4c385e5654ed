// Atomic file writes: a temp file in the destination folder, fsync, rename over the target, fsync the
// folder. Readers see either the old file or the complete new one, never a partial write.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface WriteFileAtomicOptions {
  /**
   * false: never replace an existing file: the complete file is linked into place (link(2) fails with
   * EEXIST when the name is taken), so of two writers racing for one name (two servers publishing the same
   * model version into a shared folder) exactly one wins and the other gets EEXIST.
   */
  replace?: boolean;
}

export async function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644, opts: WriteFileAtomicOptions = {}): Promise<void> {
  // Through a symbolic link to its target (models/current.loupe -> v3.loupe updates v3.loupe): renaming
  // over the link itself would replace it with a plain file.
  const abs = await linkTarget(path.resolve(file));
  const dir = path.dirname(abs);
  const tmp = path.join(dir, `.${path.basename(abs)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.replace === false) await linkNew(tmp, abs);
    else await fs.rename(tmp, abs);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  // Make the rename durable. Not every platform/filesystem allows fsync on a directory.
  try {
    const dh = await fs.open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    /* best effort */
  }
}

/** Moves `tmp` to the new name `abs`, failing with EEXIST when `abs` exists. */
async function linkNew(tmp: string, abs: string): Promise<void> {
  try {
    await fs.link(tmp, abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // File systems without hard links (some network shares): check, then rename (a narrow race remains).
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    if (await fs.lstat(abs).then(() => true, () => false)) throw Object.assign(new Error(`EEXIST: file already exists, ${abs}`), { code: 'EEXIST', path: abs });
    await fs.rename(tmp, abs);
    return;
  }
  await fs.rm(tmp, { force: true });
}

/** Where a symbolic link at `abs` points, following a chain of links (dangling ones too), else `abs`. */
async function linkTarget(abs: string): Promise<string> {
  let cur = abs;
  for (let hops = 0; hops < 40; hops++) {
    const st = await fs.lstat(cur).catch(() => null);
    if (!st?.isSymbolicLink()) return cur;
    cur = path.resolve(path.dirname(cur), await fs.readlink(cur));
  }
  throw new Error(`${abs}: too many levels of symbolic links`);
}
