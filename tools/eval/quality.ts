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
const EXPLORE_COMMAND = 'npx vite-node tools/eval/quality.ts -- explore gap,aggregation,baseline,head,fusion,head2,head3,mlp,ensemble,ensemble2,flips,neighbourhood,neighbourhood2,tiles,context,tta,tta2 (tiles, tta2: --categories magnetic_tile); then explore bankflips --seeds 5,6,7,8,9 (splits apart from the table\'s)';

/** What the experiments showed (written from quality-explore.json; kept here so the page regenerates). */
const FINDINGS: string[] = [
  '- **Targets.** Both hard categories reach the 0.95 target, magnetic tile with no margin: KolektorSDD 0.975 +- 0.019 over the five seeds (0.948-0.998); ' +
    'magnetic tile **0.950** +- 0.014 (0.95005; per split 0.961, 0.928, 0.947, 0.962, 0.953), 0.0001 over the line, far inside the spread of the splits, so read it as at the target, not above it; the bank alone 0.870. ' +
    'Bottle stays at 1.000 (its row is the previous round\'s, three heads: this round\'s run was stopped before bottle for time; five heads scored 1.000 on bottle splits 5-9 in bankflips) and every one-class row is above the reference PatchCore - 0.01. ' +
    'This round\'s change, five heads instead of three, was chosen on splits 5-9 (bankflips), apart from the table\'s, which earlier rounds had used to choose. On the table it moved magnetic tile 0.948 -> 0.950 (per split +0.001, -0.003, +0.005, -0.000, +0.008; pixel AUROC 0.934 -> 0.934, PRO 0.861 -> 0.863, balanced accuracy 0.844 -> 0.862, defect type accuracy 0.721 -> 0.728) ' +
    'and KolektorSDD 0.9745 -> 0.9748 (+0.005, +0.004, +0.001, -0.006, -0.003; pixel 0.958 -> 0.957, PRO 0.826 -> 0.829). ' +
    'The round before (test-time flips for the head, tta) had moved the table from 0.959 +- 0.035 to 0.975 (KolektorSDD) and from 0.943 +- 0.019 to 0.948 (magnetic tile). ' +
    'Before the head became an MLP ensemble (one logistic head on one projection) the table read 0.937 +- 0.052 (KolektorSDD) and 0.910 +- 0.013 (magnetic tile).',
  '- **Kept: five heads instead of three; not kept: the bank reading the flips** (bankflips, on split seeds 5-9, where magnetic tile is harder: 0.920 for the control vs 0.947 on seeds 0-4). ' +
    'Five heads: magnetic tile 0.9196 -> 0.9228 (higher on four splits of five), KolektorSDD 0.9630 -> 0.9678 (four of five), bottle 1.000. They cost inspection time: 1.24x that of three heads on magnetic tile with flips (4.76 -> 3.83 images/s on 2 cores, hybrid-flips.md), each head projecting every patch of the three views; `head.members: 3` keeps the old speed. ' +
    'The bank scoring the two mirror images too (the mean of the three reweighted scores; the network runs them for the head anyway, so only k-NN is added) lifts KolektorSDD to 0.9695 (every split) but lowers magnetic tile to 0.9186 (three splits of five lower), so it is not kept; the max of the averaged distance maps does the same (0.9690 / 0.9194).',
  '- **Kept: an ensemble of three MLP heads, each on its own projection.** The experiments showed the head\'s random projection decides a lot: the same logistic head on projection seeds 1 / 2 / 3 scores 0.957 / 0.938 / 0.943 fused on KolektorSDD (one split: 0.970 / 0.925 / 0.944), and the table\'s 0.937 was one such draw. ' +
    'One hidden ReLU layer instead of the linear head: +0.002-0.009 (KolektorSDD) and +0.000-0.007 (magnetic tile) alone (mlp); averaging the patch logits of three heads on projection seeds 1-3 adds more: logistic x3 0.946 (KolektorSDD), MLP x3 0.960; ' +
    'the cheaper MLP ensembles (ensemble2) 0.964-0.965 on KolektorSDD and 0.935-0.938 on magnetic tile vs 0.957 / 0.920 for the previous head; core took three 32-unit MLPs of 5 epochs (five since bankflips) (0.964 / 0.938, the best on magnetic tile, the least training time). ' +
    'Even so one head\'s random start still moves a magnetic tile split by up to 0.014 (flips: core vs mlpX3h32e5, same head but the MLP\'s initialisation). Cost: training a hybrid model on magnetic tile took 362-467 s per seed (was 217-274 s; the machine was shared in both runs), inspecting an image three small MLPs over 784 patches; `head.classifier: \'logistic\'`, `head.members: 1` give the old head back.',
  '- **One-class KolektorSDD gap (item 3), explained by measurement.** On the official split the CLI\'s model (bank = a seeded 90% of train/good, 1% coreset) scores 0.8206 +- 0.008 image / 0.851 +- 0.012 pixel AUROC over five hold-out/coreset seeds (the published 0.824 / 0.833 is seed 0); ' +
    'the seed alone moves pixel AUROC from 0.837 to 0.869 and image AUROC from 0.809 to 0.830. A 10% coreset (anomalib\'s default; the reference\'s ratio is not recorded here) with all of train/good gives 0.832 +- 0.005 / 0.845: within 0.01 of the reference\'s 0.839 image AUROC, and the reference\'s 0.864 pixel AUROC lies inside our seed range. ' +
    'So the gap is the coreset ratio (+0.012 image) plus seed noise of a 400-image dataset, not a defect; we keep 1% (a 10x smaller bank and faster kNN; anomaly-coreset10.md compares the two) and report the spread. Image-score aggregation does not explain it either (plain max 0.849, top-3 mean 0.847, reweighted 0.845, k-NN-mean 0.838-0.841 on the hybrid hold-out).',
  '- **Kept: negatives from every bank image.** 64 random patches of each bank image instead of all patches of 60 of them: head AUROC 0.944 -> 0.961 (KolektorSDD), 0.880 -> 0.901 (magnetic tile); fused (weight 4) 0.943 -> 0.957 and 0.913 -> 0.920. Core takes them during the bank\'s own CNN pass (no extra forward).',
  '- **Kept: fusion weight 4 (fixed).** Of 0.5, 1, 2, 4 the weights 2 and 4 were best on both hard categories (bottle is 1.000 at any). Choosing the weight from out-of-fold scores (best out-of-fold AUROC, or the ratio of the defects\' median z-scores) was worse: on magnetic tile the out-of-fold heads, each missing whole groups, look weak and the ratio picks 0.34 (fused 0.892 vs 0.920). It stays available as `head.weight: \'auto\'`.',
  '- **Thresholds: no rule wins everywhere.** Balanced accuracy on the held-out images at thresholds set without them: Youden on the out-of-fold scores 0.884 (KolektorSDD) / 0.778 (magnetic tile), F1-optimal 0.815 / 0.817, the 0.99 quantile of the good validation images 0.860 / 0.836. Core uses Youden; `loupe calibrate --target-fpr` moves it on a plant\'s own good parts.',
  '- **Masks matter.** With image labels only (the 4 most unusual patches as positives) the head falls from 0.944 to 0.865 (KolektorSDD) and 0.888 to 0.849 (magnetic tile); the fused model still gains +0.03 over the bank alone. Label defects with masks where possible.',
  '- **Not kept (no gain on every category):** the full 1536-dim embedding instead of the 256-dim projection (+0.005 KolektorSDD, +0.009 magnetic tile with the old negatives; no gain with the new ones on KolektorSDD seed 0, and a 2.5x slower head); residual features (x minus its nearest bank row: -0.015 / -0.03 fused); the NN distance as an extra feature (+-0.005); top-5 mean or smoothed logits as the image score (+-0.003); the max of the fused patch map as image score (+0.014 magnetic tile, -0.02 KolektorSDD); L2 x10 or /10, 16 hard negatives per bank image (+-0.003); flipped copies of the defects as positives (KolektorSDD seed 0: fused -0.02).',
  '- **Not kept: flipped defects as more positives** on magnetic tile with core\'s head (its defects have no orientation): 0.935 vs 0.937 fused (flips), as on KolektorSDD before (-0.02 on seed 0).',
  '- **Not kept: a finer patch grid for the head** (tiles, magnetic tile; crack, its weakest type, is a few pixels wide at 256 px): the image at 2x as four 224 tiles gives the head 56 x 56 patches of 4.6 source pixels for 4x its CNN work, ' +
    'but scores lower: head 0.892 vs 0.917, fused 0.930 vs 0.937 (worse on four of five seeds; +0.009 on seed 1). The 2x image is a bicubic enlargement of 256 px, so it adds no detail; and the finer patches see less of their surroundings. ' +
    'Its tap cache (6.5 GB) made the quality tool read and write past Node\'s 2 GiB file limit (cache.ts, chunked).',
  '- **Not kept: another neighbourhood for the head** (neighbourhood): the head reading the embedding pooled over 5 x 5 patches (the bank keeps 3 x 3) lifts magnetic tile from 0.937 +- 0.021 to 0.944 +- 0.014 fused (+0.020 on seed 1, within 0.003 on seeds 0 and 3; pixel AUROC 0.908 -> 0.920) ' +
    'but lowers KolektorSDD from 0.9625 to 0.9535 (head alone 0.969 -> 0.953); no pooling was worse on magnetic tile (two seeds, 0.946 / 0.908 vs 0.951 / 0.914). So the best neighbourhood depends on the part. Choosing it per category out of fold (as the weight was tried) is the next step, and even the explore figure for 5 x 5 is still under 0.95 on magnetic tile.',
  '- **Not kept: both neighbourhoods in one ensemble, or simply six heads** (neighbourhood2): three heads on 3 x 3 plus three on 5 x 5 score 0.9660 (KolektorSDD) / 0.9402 (magnetic tile), six heads on 3 x 3 0.9640 / 0.9395, core\'s three 0.9625 / 0.9371; bottle 1.000. ' +
    'So the 5 x 5 heads add nothing inside the ensemble (the +0.003 comes from the extra members, inside the seeds\' spread), at twice the head\'s cost.',
  '- **Kept: test-time flips** (tta). The head scores the inspected image and its left-right and top-bottom mirror images and averages the three logit maps (each flipped back); the bank reads the image alone. ' +
    'Fused (weight 4): magnetic tile 0.9371 +- 0.0205 -> 0.9472 +- 0.0174, higher on every split (+0.006, +0.015, +0.010, +0.007, +0.013); KolektorSDD 0.9625 -> 0.9788 +- 0.0146 (+0.003, +0.011, +0.009, +0.053 on its weakest split, +0.006); bottle stays 1.000. ' +
    'The head alone gains most (0.917 -> 0.940, 0.969 -> 0.981), and pixel AUROC too (0.908 -> 0.918, 0.937 -> 0.944): averaging over mirror images steadies the patch logits as the three-member ensemble did, but with inputs that differ. ' +
    'One flip (ttaH, left-right) is not enough: KolektorSDD 0.9667, under both flips on every split. The cost is at inspection: three network runs per image instead of one, 2.7x slower on magnetic tile (12.3 -> 4.6 images/s on 2 cores, docs/benchmarks/hybrid-flips.md); `head.flips: []` (`--flips none`) keeps 1x. Training runs the flips on the validation and labelled defect images only.',
  '- **Not kept: more test-time views or a top-3 score with them** (tta2, magnetic tile, two seeds): the half turn as a fourth view -0.003 / +0.000 against ttaHV, a top-3 mean of the averaged logits +0.001 / +0.001; neither is worth its cost or its noise.',
  '- **Not kept: the image as context for the head** (context): each patch minus its image\'s mean patch (xm) lost on every seed run (KolektorSDD 0.9850 / 0.9613 -> 0.9800 / 0.9438, magnetic tile seed 0 0.9511 -> 0.9281); the mean patch beside the patch (xg) too (KolektorSDD seed 0 0.9563). Stopped early.',
  '- **Not measured, next:** the neighbourhood chosen per category out of fold; more epochs; a bank with a 10% coreset on magnetic tile (its one-class part is the weaker half of the fusion, 0.87); rotations by 90 degrees as more test-time views where the part allows them.',
];

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
    // The experiments' command is this file's (they run apart from the table and after it).
    const md = renderQuality({ ...meta, exploreCommand: EXPLORE_COMMAND }, table, results, FINDINGS);
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
