// Where the CLI may write: checked before the work (minutes of CNN), so a bad path fails at once, and so
// that no output destroys or pollutes what it was computed from.
import { promises as fs, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from 'node:path';

import { MODEL_FILE_EXTENSION, startsAsModelFile, withModelExtension } from '@loupe/core';

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false; // missing, or below a file: checkWritableOutput says which
  }
}

/**
 * The model file `--out` names: `.loupe` is added when the name has no extension (`models/bottle` ->
 * `models/bottle.loupe`), so `loupe serve --models models` finds it. Another extension is kept as given.
 */
export function modelOutputPath(out: string): string {
  // A folder (existing, or written with a trailing separator) is refused by checkWritableOutput, by its own name.
  if (/[\\/]$/.test(out) || isDirectory(out)) return out;
  return extname(basename(out)) === '' ? withModelExtension(out) : out;
}

/** A note for a model file name `loupe serve` would not load (it reads `*.loupe` only); undefined when fine. */
export function modelExtensionNote(out: string): string | undefined {
  return out.endsWith(MODEL_FILE_EXTENSION) ? undefined : `loupe serve loads only *${MODEL_FILE_EXTENSION} files; ${out} will not be served under that name`;
}

/**
 * A model file may be written at `out`: `out` is not a folder and not an existing file of another kind (a
 * training image given by mistake, a document): only an older Loupe model file is replaced. Its folder
 * may be missing (createOutputFolder makes it when the model is written); the nearest folder that exists
 * must be writable, and nothing on the way may be a file.
 */
export async function checkWritableOutput(out: string, what = '--out'): Promise<void> {
  const abs = resolve(out);
  const st = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    if (err.code === 'ENOTDIR') throw new Error(`${what} ${abs}: a part of the path is a file, not a folder`);
    throw err;
  });
  if (st?.isDirectory()) throw new Error(`${what} ${abs} is a directory; give a file name (e.g. model.loupe)`);
  if (/[\\/]$/.test(out)) throw new Error(`${what} ${out} names a folder; give a file name (e.g. ${out}model.loupe)`);
  if (st && !(await startsAsModelFile(abs))) {
    throw new Error(`${what} ${abs} exists and is not a Loupe model file; not overwriting it (remove it, or choose another name)`);
  }
  // The nearest existing ancestor must be a writable folder.
  let dir = dirname(abs);
  for (;;) {
    const d = await fs.stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
    if (d) {
      if (!d.isDirectory()) throw new Error(`${what} ${abs}: ${dir} is a file, not a folder`);
      try {
        await fs.access(dir, fs.constants.W_OK);
      } catch {
        throw new Error(`${what} ${abs}: the folder ${dir} is not writable`);
      }
      return;
    }
    const up = dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

/** Creates the folder of an output file when it is missing (after checkWritableOutput, before the write). */
export async function createOutputFolder(out: string): Promise<void> {
  await fs.mkdir(dirname(resolve(out)), { recursive: true });
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
