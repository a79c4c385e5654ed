// What the evaluation scripts share: finding the datasets folder and the MVTec-layout categories in it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** --datasets DIR, else $LOUPE_DATASETS, else ../shared/datasets beside the repository (or shared/ in it). */
export function findDatasets(repo: string, given?: string): string {
  const candidates = [given, process.env['LOUPE_DATASETS'], join(repo, '..', 'shared', 'datasets'), join(repo, 'shared', 'datasets')].filter(
    (p): p is string => typeof p === 'string',
  );
  for (const c of candidates) if (existsSync(c)) return resolve(c);
  throw new Error(`no datasets folder found (tried ${candidates.join(', ')}); pass --datasets DIR`);
}

/** Category folders: any folder (up to two levels down) with train/good and test. */
export function findCategories(root: string): string[] {
  const out: string[] = [];
  const visit = (dir: string, depth: number): void => {
    if (existsSync(join(dir, 'train', 'good')) && existsSync(join(dir, 'test'))) {
      out.push(dir);
      return;
    }
    if (depth === 0) return;
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) visit(p, depth - 1);
    }
  };
  visit(root, 2);
  return out;
}
