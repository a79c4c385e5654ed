// Detection quality of one-class and hybrid (few-shot) models on the dev categories, measured honestly:
//
//   npx vite-node tools/eval/quality.ts -- explore EXPERIMENT[,EXPERIMENT...] [options]
//   npx vite-node tools/eval/quality.ts -- table [options]      (then renders)
//   npx vite-node tools/eval/quality.ts -- render                (quality.md from the two JSON files)
//
// explore: one change at a time on cached CNN taps (cache.ts; $LOUPE_HOME/quality-cache or --cache), under
//   the held-out protocol of hybrid models; prints and records (docs/benchmarks/quality-explore.json) mean +-
//   sd over split seeds per category.
// table: the committed figures (docs/benchmarks/quality.md): core's trainHybrid + evaluation (what
//   `loupe train DIR --mode hybrid --split F --shots N --seed S --json` runs) for every category and seed.
//
// Options: --datasets DIR --categories a,b --seeds 0,1,2,3,4 --split 0.5 --shots 10 --cache DIR --threads 2
//   --out FILE (explore results; default docs/benchmarks/quality-explore.json) --keep (table: keep the other
//   categories' rows of quality.json)
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Engine, loupeHome } from '../../packages/core/src/internal.js';
import { loadCategory, log, TapStore, type CategoryData, type ViewName } from './quality/cache.js';
import { EXPERIMENTS } from './quality/experiments.js';
import { renderQuality, type TableMeta } from './quality/render.js';
import { runTable, type CategoryRows } from './quality/table.js';
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
    keep: { type: 'boolean', default: false },
    variants: { type: 'string' },
  },
});

/** The command that produced quality-explore.json (every experiment, every category). */
const EXPLORE_COMMAND = 'npx vite-node tools/eval/quality.ts -- explore gap,aggregation,baseline,head,fusion,head2';

/** What the experiments showed (written from quality-explore.json; kept here so the page regenerates). */
const FINDINGS: string[] = [];

export interface Env {
  engine: Engine;
  cats: CategoryData[];
  seeds: number[];
  split: number;
  shots: number;
  cacheRoot: string;
  store(cat: CategoryData, view?: ViewName, only?: readonly number[]): Promise<TapStore>;
  record(experiment: string, category: string, variant: string, values: Record<string, number[]>): void;
  /** --variants: only these variants of an experiment (all when undefined). */
  variants: string[] | undefined;
}

async function main(): Promise<void> {
  let [command, what] = positionals;
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
    variants: args.variants ? args.variants.split(',') : undefined,
    store(cat, view = 'base', only) {
      const key = `${cat.name}:${view}:${only ? 'some' : 'all'}`;
      let s = stores.get(key);
      if (!s) stores.set(key, (s = TapStore.open(engine, cat, view, cacheRoot, only)));
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
  const tableFile = join(repo, 'docs', 'benchmarks', 'quality.json');
  if (command === 'table') {
    const loadStart = (loadavg()[0] ?? 0).toFixed(1);
    const saved: { meta: TableMeta; table: CategoryRows[] } = existsSync(tableFile) && args.keep ? JSON.parse(readFileSync(tableFile, 'utf8')) : { meta: {} as TableMeta, table: [] };
    const meta: TableMeta = {
      date: new Date().toISOString().slice(0, 10),
      command: `npx vite-node tools/eval/quality.ts -- ${process.argv.slice(2).filter((a) => a !== '--').join(' ')}`.trim(),
      exploreCommand: EXPLORE_COMMAND,
      cpu: cpus()[0]?.model ?? 'unknown CPU',
      cores: cpus().length,
      memGb: Math.round(totalmem() / 2 ** 30),
      backend: engine.backend,
      device: engine.device,
      threads: Number(args.threads),
      split: env.split,
      shots: env.shots,
      seeds: env.seeds,
      loadStart,
      loadEnd: loadStart,
      weightsHash: engine.weightsHash,
    };
    // A table built in parts (--categories ... --keep) lists every command that made it.
    meta.commands = [...(args.keep ? (saved.meta.commands ?? (saved.meta.command ? [saved.meta.command] : [])) : []), meta.command];
    if (args.keep && saved.meta.loadStart) meta.loadStart = saved.meta.loadStart;
    const table = saved.table.filter((c) => !cats.some((x) => x.name === c.category));
    await runTable(engine, cats, { seeds: env.seeds, split: env.split, shots: env.shots, threads: Number(args.threads) }, (c) => {
      table.push(c);
      table.sort((a, b) => a.category.localeCompare(b.category));
      meta.loadEnd = (loadavg()[0] ?? 0).toFixed(1);
      writeFileSync(tableFile, JSON.stringify({ meta, table }, null, 1) + '\n');
    });
    command = 'render';
  }
  if (command === 'render') {
    const { meta, table } = JSON.parse(readFileSync(tableFile, 'utf8')) as { meta: TableMeta; table: CategoryRows[] };
    const md = renderQuality(meta, table, results, FINDINGS);
    writeFileSync(join(repo, 'docs', 'benchmarks', 'quality.md'), md);
    log('wrote docs/benchmarks/quality.md');
    return;
  }
  throw new Error('usage: quality.ts explore NAME[,NAME] | table | render');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
