// Where the CLI may write: checked before the work (minutes of CNN), so a bad path fails at once, and so
// that no output destroys or pollutes what it was computed from.
import { promises as fs } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';

import { startsAsModelFile } from '@loupe/core';

/**
 * A model file may be written at `out`: its folder exists and is writable, and `out` is not a folder and
 * not an existing file of another kind (a training image given by mistake, a document): only an older
 * Loupe model file is replaced.
 */
export async function checkWritableOutput(out: string, what = '--out'): Promise<void> {
  const abs = resolve(out);
  const st = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (st?.isDirectory()) throw new Error(`${what} ${abs} is a directory; give a file name (e.g. model.loupe)`);
  if (st && !(await startsAsModelFile(abs))) {
    throw new Error(`${what} ${abs} exists and is not a Loupe model file; not overwriting it (remove it, or choose another name)`);
  }
  const dir = dirname(abs);
  try {
    if (!(await fs.stat(dir)).isDirectory()) throw new Error('not a directory');
    await fs.access(dir, fs.constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not writable' : err instanceof Error ? err.message : String(err);
    throw new Error(`${what} ${abs}: the folder ${dir} ${why}`);
  }
}

/**
 * An output folder (reports, heatmaps) must be a folder or not exist yet, and must not lie inside any
 * input folder: the PNGs written there would be read as images of the dataset next time.
 */
export async function checkOutputDir(dir: string, what: string, inputs: readonly string[] = []): Promise<void> {
  const abs = resolve(dir);
  const st = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new Error(`${what} ${abs}: ${err.message}`);
  });
  if (st && !st.isDirectory()) throw new Error(`${what} ${abs} exists and is not a directory`);
  const target = await realpathOfNearest(abs);
  for (const input of inputs) {
    // An image given by itself stands for its folder (`predict imgs/*.png --heatmaps imgs/heat`).
    const ist = await fs.stat(input).catch(() => null);
    if (!ist) continue;
    const folder = ist.isDirectory() ? input : dirname(resolve(input));
    const rel = relative(await fs.realpath(folder), target);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
      throw new Error(`${what} ${abs} is inside the input folder ${resolve(folder)}: its images would be read as data next time (write it elsewhere)`);
    }
  }
}

/** The real path of `p`, resolving links through its longest existing ancestor. */
async function realpathOfNearest(p: string): Promise<string> {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return join(await fs.realpath(cur), ...rest.reverse());
    } catch {
      const up = dirname(cur);
      if (up === cur) return p;
      rest.push(cur.slice(up.length).replace(/^[/\\]/, ''));
      cur = up;
    }
  }
}
