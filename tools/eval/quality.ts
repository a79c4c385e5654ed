// Detection quality of one-class and hybrid (few-shot) models on the dev categories, measured honestly:
//
//   npx vite-node tools/eval/quality.ts -- explore EXPERIMENT[,EXPERIMENT...] [options]
//   npx vite-node tools/eval/quality.ts -- table [options]
//
// explore: one change at a time on cached CNN taps (cache.ts; $LOUPE_HOME/quality-cache or --cache), under
//   the held-out protocol of hybrid models; prints and records (docs/benchmarks/quality-explore.json) mean +-
//   sd over split seeds per category.
// table: the committed figures (docs/benchmarks/quality.md): core's trainHybrid + evaluation (what
//   `loupe train DIR --mode hybrid --split F --shots N --seed S --json` runs) for every category and seed.
//
// Options: --datasets DIR --categories a,b --seeds 0,1,2,3,4 --split 0.5 --shots 10 --cache DIR --threads 2
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Engine, loupeHome } from '../../packages/core/src/internal.js';
import { loadCategory, log, TapStore, type CategoryData, type ViewName } from './quality/cache.js';
import { EXPERIMENTS } from './quality/experiments.js';
import { findCategories, findDatasets } from './datasets.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');

const { values: args, positionals } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  allowPositionals: true,
  options: {
    datasets: { type: 'string' },
    categories: { type: 'string' },
    seeds: { type: 'string', default: '0,1,2,3,4' },
    split: { type: 'string', default: '0.5' },
    shots: { type: 'string', default: '10' },
    cache: { type: 'string' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});

export interface Env {
  engine: Engine;
  cats: CategoryData[];
  seeds: number[];
  split: number;
  shots: number;
  cacheRoot: string;
  store(cat: CategoryData, view?: ViewName): Promise<TapStore>;
  record(experiment: string, category: string, variant: string, values: Record<string, number[]>): void;
}

async function main(): Promise<void> {
  const [command, what] = positionals;
  const datasetsRoot = findDatasets(repo, args.datasets);
  let roots = findCategories(datasetsRoot);
  if (args.categories) {
    const want = new Set(args.categories.split(','));
    roots = roots.filter((c) => want.has(basename(c)) || want.has(relative(datasetsRoot, c)));
  }
  const cacheRoot = resolve(args.cache ?? join(loupeHome(), 'quality-cache'));
  const engine = await Engine.open({ threads: Number(args.threads), maxBatch: 8 });
  const cats: CategoryData[] = [];
  for (const r of roots) cats.push(await loadCategory(r, relative(datasetsRoot, r)));
  const stores = new Map<string, Promise<TapStore>>();
  const outFile = resolve(args.out ?? join(repo, 'docs', 'benchmarks', 'quality-explore.json'));
  const results: Record<string, Record<string, Record<string, Record<string, number[]>>>> = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')) : {};
  const env: Env = {
    engine,
    cats,
    seeds: args.seeds!.split(',').map(Number),
    split: Number(args.split),
    shots: Number(args.shots),
    cacheRoot,
    store(cat, view = 'base') {
      const key = `${cat.name}:${view}`;
      let s = stores.get(key);
      if (!s) stores.set(key, (s = TapStore.open(engine, cat, view, cacheRoot)));
      return s;
    },
    record(experiment, category, variant, values) {
      ((results[experiment] ??= {})[category] ??= {})[variant] = values;
      mkdirSync(dirname(outFile), { recursive: true });
      writeFileSync(outFile, JSON.stringify(results, null, 1) + '\n');
    },
  };
  if (command === 'explore') {
    for (const name of (what ?? '').split(',').filter(Boolean)) {
      const run = EXPERIMENTS[name];
      if (!run) throw new Error(`unknown experiment ${name} (${Object.keys(EXPERIMENTS).join(', ')})`);
      log(`experiment ${name}`);
      await run(env);
    }
    return;
  }
  throw new Error('usage: quality.ts explore NAME[,NAME] | table');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
