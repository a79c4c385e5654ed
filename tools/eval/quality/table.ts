// `quality.ts table`: the committed figures. For every category and split seed, core's trainHybrid (what
// `loupe train DIR --mode hybrid --split F --shots N --seed S [--groups CSV] --json` runs) trains a hybrid
// model and evaluates it and its memory bank alone (the one-class model) on the same held-out images.
// Results go to docs/benchmarks/quality.json; render.ts writes quality.md from it and quality-explore.json.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { trainHybrid, type Engine, type OneClassEvaluation } from '../../../packages/core/src/internal.js';
import { log } from './cache.js';

export interface Figures {
  imageAuroc: number | null;
  pixelAuroc: number | null;
  pro: number | null;
  f1Max: number | null;
  balancedAccuracy: number | null;
  defectTypeAccuracy: number | null;
}

export interface SeedRow {
  seed: number;
  hybrid: Figures;
  oneClass: Figures;
  counts: Record<string, number>;
  perDefectType: Record<string, { images: number; hybrid: number | null; oneClass: number | null }>;
  groupAware: boolean;
  warnings: string[];
  seconds: number;
}

export interface CategoryRows {
  category: string;
  rows: SeedRow[];
}

function figures(e: OneClassEvaluation | null): Figures {
  return {
    imageAuroc: e?.imageAuroc ?? null,
    pixelAuroc: e?.pixelAuroc ?? null,
    pro: e?.pro ?? null,
    f1Max: e?.f1Max ?? null,
    balancedAccuracy: e?.balancedAccuracy ?? null,
    defectTypeAccuracy: e?.defectTypeAccuracy?.accuracy ?? null,
  };
}

export async function runTable(
  engine: Engine,
  categories: { name: string; root: string }[],
  o: { seeds: number[]; split: number; shots: number; threads: number },
  onCategory: (c: CategoryRows) => void,
): Promise<CategoryRows[]> {
  const out: CategoryRows[] = [];
  for (const cat of categories) {
    const groups = existsSync(join(cat.root, 'groups.csv')) ? join(cat.root, 'groups.csv') : undefined;
    const rows: SeedRow[] = [];
    for (const seed of o.seeds) {
      const t0 = performance.now();
      let last = 0;
      const t = await trainHybrid({
        engine,
        data: cat.root,
        split: o.split,
        shots: o.shots,
        seed,
        ...(groups ? { groups } : {}),
        threads: o.threads,
        batchSize: 8,
        onProgress: (p) => {
          const now = performance.now();
          if (now - last > 30_000 || p.done === p.total) {
            last = now;
            log(`${cat.name} seed ${seed}: ${p.stage} ${p.done}/${p.total}`);
          }
        },
      });
      const e = t.heldOut!;
      const oc = t.heldOutOneClass!;
      const row: SeedRow = {
        seed,
        hybrid: figures(e),
        oneClass: figures(oc),
        counts: { ...t.counts },
        perDefectType: Object.fromEntries(
          e.perDefectType.map((p) => [p.type, { images: p.images, hybrid: p.imageAuroc, oneClass: oc.perDefectType.find((q) => q.type === p.type)?.imageAuroc ?? null }]),
        ),
        groupAware: t.split.groupAware,
        warnings: [...t.warnings],
        seconds: (performance.now() - t0) / 1000,
      };
      rows.push(row);
      log(
        `${cat.name} seed ${seed}: hybrid image ${row.hybrid.imageAuroc?.toFixed(4)} pixel ${row.hybrid.pixelAuroc?.toFixed(4)} bal.acc ${row.hybrid.balancedAccuracy?.toFixed(4)}; ` +
          `one-class image ${row.oneClass.imageAuroc?.toFixed(4)} pixel ${row.oneClass.pixelAuroc?.toFixed(4)} (${row.seconds.toFixed(0)} s)`,
      );
    }
    const c = { category: cat.name, rows };
    out.push(c);
    onCategory(c);
  }
  return out;
}
