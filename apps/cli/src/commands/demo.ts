// loupe demo: the paper's method end to end on the embedded synthetic dataset. Generates the seeded
// bottles/cartons/spoons (cached under $LOUPE_HOME/synthetic), trains one fc1000 one-vs-one linear SVM
// per object on half the images, evaluates on the other half, prints the accuracies beside the
// paper's, and writes an HTML report per object plus an overview.
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';

import {
  classificationFigures,
  confusionMatrixPng,
  countsTable,
  generateSyntheticDataset,
  loupeHome,
  samplesByLabel,
  scanDataset,
  SYNTHETIC_GENERATOR_VERSION,
  SYNTHETIC_LABELS,
  SYNTHETIC_OBJECTS,
  trainClassifier,
  writeClassifierReport,
  writeHtmlReport,
  type SyntheticObject,
} from '@loupe/core';

import { cacheOption, stageProgress } from '../classification.js';
import { openEngine, runOptions, write, type RunContext } from '../context.js';
import { formatSeconds } from '../format.js';
import { ProgressBar } from '../progress.js';

export interface DemoCommandOptions {
  out?: string;
  perLabel: number;
  seed: number;
  json?: boolean;
}

/** Omer & Abbas 2022, Table 2: mean (per-class) accuracy of ResNet-50 fc1000 + SVM per object. */
export const PAPER_ACCURACY: Readonly<Record<SyntheticObject, number>> = { bottle: 0.99, carton: 0.95, spoon: 0.9 };

const SIZE = 256;

/** The synthetic set for (seed, perLabel), generated once into the cache; a complete manifest marks it done. */
async function syntheticDataset(seed: number, perLabel: number, ctx: RunContext): Promise<{ dir: string; generated: boolean }> {
  const dir = join(loupeHome(), 'synthetic', `v${SYNTHETIC_GENERATOR_VERSION}-seed${seed}-n${perLabel}-${SIZE}px`);
  try {
    const m = JSON.parse(await fs.readFile(join(dir, 'manifest.json'), 'utf8')) as { version?: number; seed?: unknown; perLabel?: number; size?: number };
    if (m.version === SYNTHETIC_GENERATOR_VERSION && m.seed === seed && m.perLabel === perLabel && m.size === SIZE) return { dir, generated: false };
  } catch {
    // missing or damaged: (re)generate
  }
  // Generate beside the target and rename, so an interrupted run never leaves a half set that looks complete.
  const tmp = `${dir}.tmp-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  let bar: ProgressBar | undefined;
  try {
    await generateSyntheticDataset({
      outDir: tmp,
      perLabel,
      seed,
      size: SIZE,
      concurrency: Math.max(1, Math.min(4, ctx.budget.total)),
      onProgress: (done, total) => {
        bar ??= new ProgressBar('generating', total, ctx.stderr, ctx.opts.progress && Boolean(ctx.stderr.isTTY));
        bar.update(done);
      },
    });
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(tmp, dir);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  } finally {
    bar?.clear();
  }
  return { dir, generated: true };
}

export async function demoCommand(o: DemoCommandOptions, ctx: RunContext): Promise<number> {
  const t0 = performance.now();
  const out = resolve(o.out ?? join(loupeHome(), 'demo'));
  const log = (line: string): void => {
    if (!o.json) ctx.stderr.write(`${line}\n`);
  };
  const data = await syntheticDataset(o.seed, o.perLabel, ctx);
  log(`${data.generated ? 'generated' : 'reusing'} the synthetic dataset (seed ${o.seed}, ${o.perLabel} images per label): ${data.dir}`);
  const engine = await openEngine(ctx);

  const rows: { object: SyntheticObject; classes: number; train: number; test: number; accuracy: number; balanced: number; report: string; json: Record<string, unknown> }[] = [];
  const figures: { title: string; png: Buffer; fileName: string }[] = [];
  for (const object of SYNTHETIC_OBJECTS) {
    // The generator wrote these files: checking their magic bytes is enough.
    const ds = await scanDataset(join(data.dir, object), { verify: 'magic' });
    const classes = [...SYNTHETIC_LABELS[object]];
    const progress = stageProgress(ctx, { features: object });
    let t;
    try {
      // The paper's setting: fc1000, one-vs-one, half of each class held back; the classes in the generator's order.
      t = await trainClassifier({
        engine,
        data: ds,
        classes,
        layer: 'fc1000',
        coding: 'onevsone',
        seed: o.seed,
        holdOut: { split: 0.5 },
        ...cacheOption(true),
        ...runOptions(ctx),
        onProgress: progress.onProgress,
      });
    } finally {
      progress.clear();
    }
    const h = t.heldOut!;
    const m = h.metrics;
    const report = await writeClassifierReport(join(out, object), {
      title: `Loupe demo: synthetic ${object}s`,
      subtitle: `ResNet-50 fc1000 features, one-vs-one linear SVM, 50% held back (seed ${o.seed}); paper: ${(100 * PAPER_ACCURACY[object]).toFixed(0)}%`,
      metrics: m,
      items: h.items,
      predicted: h.predicted,
      samples: samplesByLabel(t.train, classes),
      engine,
      tables: [countsTable('Images per label', { train: t.train, 'held back': h.items }, classes)],
      notes: ['Procedurally rendered stand-ins for the paper\'s photographs (generateSyntheticDataset in @loupe/core): the numbers show the method works, not that they match real photos.'],
    });
    figures.push({ title: `${object}: confusion matrix (accuracy ${(100 * m.accuracy).toFixed(1)}%)`, png: await confusionMatrixPng(m.confusion), fileName: `${object}-confusion.png` });
    rows.push({ object, classes: classes.length, train: t.train.length, test: h.items.length, accuracy: m.accuracy, balanced: m.balancedAccuracy, report: report.html, json: classificationFigures(m) });
    log(`${object}: ${(100 * m.accuracy).toFixed(1)}% on ${h.items.length} held-back images (${t.features.cached} of ${t.items.length} features from the cache)`);
  }

  const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
  const overview = await writeHtmlReport(out, {
    title: 'Loupe demo: the paper\'s method on synthetic bottles, cartons and spoons',
    subtitle: `ResNet-50 (ImageNet) fc1000 features + one-vs-one linear SVM per object; ${o.perLabel} images per class, half held back (seed ${o.seed})`,
    summary: rows.map((r) => ({ label: `${r.object} (paper ${(100 * PAPER_ACCURACY[r.object]).toFixed(0)}%)`, value: pct(r.accuracy) })),
    tables: [
      {
        title: 'Held-out accuracy per object',
        columns: ['object', 'classes', 'train', 'held back', 'accuracy', 'balanced accuracy', 'paper (Omer & Abbas 2022)', 'report'],
        rows: rows.map((r) => [r.object, r.classes, r.train, r.test, pct(r.accuracy), pct(r.balanced), `${(100 * PAPER_ACCURACY[r.object]).toFixed(0)}%`, `${r.object}/report.html`]),
      },
    ],
    figures,
    notes: [
      `Dataset: ${data.dir} (procedurally rendered, seeded). Each object's full report (training samples, conv1 filters, misclassified images) is in its folder.`,
      'The paper photographed real objects; these synthetic images only stand in for them, so the comparison shows the pipeline working, not a reproduction of its numbers.',
    ],
  });

  if (o.json) {
    for (const r of rows) await write(ctx.stdout, `${JSON.stringify({ object: r.object, paper: PAPER_ACCURACY[r.object], train: r.train, test: r.test, ...r.json, report: r.report })}\n`);
    return 0;
  }
  const head = ['object', 'classes', 'train', 'test', 'accuracy', 'balanced acc.', 'paper'];
  const body = rows.map((r) => [r.object, String(r.classes), String(r.train), String(r.test), pct(r.accuracy), pct(r.balanced), `${(100 * PAPER_ACCURACY[r.object]).toFixed(0)}%`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  await write(
    ctx.stdout,
    [
      'Held-out accuracy, ResNet-50 fc1000 + one-vs-one linear SVM (synthetic stand-ins for the paper\'s photos):',
      '',
      fmt(head),
      widths.map((w) => '-'.repeat(w)).join('  '),
      ...body.map(fmt),
      '',
      `report: ${overview.html}`,
      `        (per object: ${rows.map((r) => r.report).join(', ')})`,
      `time:   ${formatSeconds(performance.now() - t0)} on ${engine.backend}`,
      '',
    ].join('\n'),
  );
  return 0;
}
