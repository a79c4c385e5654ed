// End to end: `loupe dataset stats | train | evaluate | predict | demo` as a user runs them, on a small
// real subset of MVTec bottle (MVTec layout, so the pooled good + defect-type labels are exercised)
// with the real engine and weights. The numbers are checked against each other and against the core
// library (same features -> same prediction), never against hard-coded results.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, readModelHeader } from '@loupe/core';
import { svmVerdicts } from '@loupe/core/internal';

import { bottleDir, cliRoot, haveWeights, jsonLines, lastJson, loupeHome, runLoupe, type CliResult } from './support/cli.js';

const bottle = bottleDir;
const haveBottle = existsSync(join(bottle, 'test', 'good'));
if (!haveWeights) console.warn(`[skip] classifier CLI tests with the engine: no weights in ${loupeHome}`);
if (!haveBottle) console.warn(`[skip] classifier CLI tests with real images: ${bottle} not found (shared/ is absent)`);

const tmp = mkdtempSync(join(tmpdir(), 'loupe-cli-classifier-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
// A private feature cache: the first train really runs the CNN, later commands hit the cache.
const env = { LOUPE_FEATURE_CACHE: join(tmp, 'feature-cache') };

/** `loupe --threads 2 ARGS` with this file's feature cache. */
function loupe(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runLoupe(['--threads', '2', ...args], { ...env, ...extraEnv });
}

function miniBottle(root: string): { dir: string; counts: Record<string, number> } {
  const take: [string, string, number][] = [
    ['train/good', 'train/good', 8],
    ['test/good', 'test/good', 4],
    ['test/broken_large', 'test/broken_large', 7],
    ['test/contamination', 'test/contamination', 7],
  ];
  const counts: Record<string, number> = {};
  for (const [from, to, n] of take) {
    const src = join(bottle, from);
    const dst = join(root, to);
    mkdirSync(dst, { recursive: true });
    const files = readdirSync(src).filter((f) => f.endsWith('.png')).sort().slice(0, n);
    for (const f of files) copyFileSync(join(src, f), join(dst, f));
    const label = to.split('/')[1] as string;
    counts[label] = (counts[label] ?? 0) + files.length;
  }
  return { dir: root, counts };
}

interface TrainJson {
  accuracy: number;
  balancedAccuracy: number;
  binaryAccuracy: number | null;
  macroF1: number;
  classes: string[];
  confusion: number[][];
  total: number;
  train: number;
  test: number;
  folds?: { accuracy: number }[];
}

/** The headline numbers recomputed from the confusion matrix itself. */
function fromConfusion(classes: string[], cm: number[][]): { accuracy: number; balanced: number; binary: number } {
  const total = cm.flat().reduce((a, b) => a + b, 0);
  const trace = cm.reduce((s, row, i) => s + (row[i] as number), 0);
  const recalls = cm.map((row, i) => ({ n: row.reduce((a, b) => a + b, 0), tp: row[i] as number })).filter((r) => r.n > 0);
  const g = classes.indexOf('good');
  let binaryCorrect = 0;
  cm.forEach((row, t) => row.forEach((v, p) => {
    if ((t === g) === (p === g)) binaryCorrect += v;
  }));
  return { accuracy: trace / total, balanced: recalls.reduce((s, r) => s + r.tp / r.n, 0) / recalls.length, binary: binaryCorrect / total };
}

describe('classifier commands: usage and bad input (no engine needed)', () => {
  it('has --help on every new verb', async () => {
    for (const c of [['dataset', 'stats'], ['train'], ['evaluate'], ['predict'], ['demo']]) {
      const r = await loupe([...c, '--help']);
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout).toContain(`Usage: loupe ${c.join(' ')}`);
    }
    const train = await loupe(['train', '--help']);
    for (const o of ['--out', '--layer', '--split', '--balance', '--coding', '--seed', '--groups', '--kfold', '--report', '--json', '--mode', '--coreset']) expect(train.stdout).toContain(o);
    expect((await loupe(['predict', '--help'])).stdout).toContain('--heatmaps');
  });

  it('--split must be strictly inside (0, 1): exit 2, naming the option', async () => {
    for (const v of ['0', '1', '1.5', '-0.2', 'half']) {
      const r = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--split', v]);
      expect(r.code, v).toBe(2);
      expect(r.stderr).toContain('--split must be a fraction strictly between 0 and 1');
      expect(r.stderr).toContain(`'${v}'`);
    }
  });

  it('an unknown layer, coding or k is a usage error naming the option', async () => {
    const layer = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--layer', 'res9']);
    expect(layer.code).toBe(2);
    expect(layer.stderr).toMatch(/--layer.*'res9' is invalid.*fc1000, avg_pool/);
    const coding = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--coding', 'ecoc']);
    expect(coding.code).toBe(2);
    expect(coding.stderr).toContain('--coding');
    const k = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--kfold', '1']);
    expect(k.code).toBe(2);
    expect(k.stderr).toContain('--kfold must be an integer in [2, 100]');
    expect((await loupe(['train', tmp])).stderr).toContain("required option '--out <model>'");
  });

  it('options the chosen mode would ignore are a usage error, not silently dropped', async () => {
    const oc = await loupe(['train', tmp, '--mode', 'one-class', '--out', join(tmp, 'x.loupe'), '--split', '0.3', '--no-cache']);
    expect(oc.code).toBe(2);
    expect(oc.stderr).toContain('--split, --no-cache do nothing with --mode one-class');
    const svm = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--max-bank-mb', '10']);
    expect(svm.code).toBe(2);
    expect(svm.stderr).toContain('--max-bank-mb does nothing with --mode svm');
    const both = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--kfold', '3', '--split', '0.2']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--split and --kfold are two ways to hold images back; give one');
    expect(existsSync(join(tmp, 'x.loupe'))).toBe(false);
    // An empty path would be falsy and silently write nothing.
    const empty = await loupe(['train', tmp, '--out', join(tmp, 'x.loupe'), '--report', '']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("--report needs a path, got ''");
  });

  it('a missing dataset folder: exit 1, naming it, no model written', async () => {
    const missing = join(tmp, 'no-such-dataset');
    const out = join(tmp, 'missing.loupe');
    for (const args of [['train', missing, '--out', out], ['dataset', 'stats', missing]]) {
      const r = await loupe(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`dataset folder not found or not a directory: ${missing}`);
    }
    expect(existsSync(out)).toBe(false);
  });

  it('--out below a file or on a directory fails before any work, naming it', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'not a folder');
    const r = await loupe(['train', tmp, '--out', join(file, 'm.loupe')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(file, 'm.loupe')}: a part of the path is a file, not a folder`);
    const d = await loupe(['train', tmp, '--out', tmp]);
    expect(d.code).toBe(1);
    expect(d.stderr).toContain(`--out ${tmp} is a directory`);
  });

  it('a corrupt or missing model file: exit 1, naming the file and the field', async () => {
    const garbage = join(tmp, 'garbage.loupe');
    writeFileSync(garbage, 'this is not a model\n');
    const img = join(cliRoot, 'assets', 'sample.png');
    for (const cmd of [['predict', garbage, img], ['evaluate', garbage, tmp]]) {
      const r = await loupe(cmd);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${garbage}: magic: not a Loupe model file`);
      expect(r.stdout).toBe('');
    }
    const missing = join(tmp, 'absent.loupe');
    const m = await loupe(['predict', missing, img]);
    expect(m.code).toBe(1);
    expect(m.stderr).toContain(`${missing}: cannot read`);
  });
});

describe.runIf(haveWeights && haveBottle)('classifier commands on real MVTec bottle images', () => {
  let data: { dir: string; counts: Record<string, number> };
  let model: string;
  let trained: TrainJson;
  const classes = ['good', 'broken_large', 'contamination'];

  beforeAll(async () => {
    data = miniBottle(join(tmp, 'bottle-mini'));
    model = join(tmp, 'models', 'bottle.loupe');
    mkdirSync(dirname(model), { recursive: true });
    const r = await loupe(['train', data.dir, '--out', model, '--split', '0.5', '--seed', '0', '--json']);
    if (r.code !== 0) throw new Error(`train failed (${r.code}): ${r.stderr}`);
    trained = lastJson(r.stdout) as unknown as TrainJson;
  });

  it('dataset stats: layout, per-label counts, skipped files and why', async () => {
    const junkDir = join(tmp, 'bottle-junk');
    miniBottle(junkDir);
    writeFileSync(join(junkDir, 'test', 'good', 'notes.txt'), 'not an image');
    writeFileSync(join(junkDir, 'test', 'good', 'fake.png'), 'not a png either');
    // A real PNG cut short: its header reads, its pixels do not (what training would fail on).
    const whole = readFileSync(join(bottle, 'test', 'good', '000.png'));
    writeFileSync(join(junkDir, 'test', 'good', 'cut.png'), whole.subarray(0, Math.floor(whole.length / 3)));
    const r = await loupe(['dataset', 'stats', junkDir, '--json']);
    expect(r.code).toBe(0);
    const s = lastJson(r.stdout) as { layout: string; labels: string[]; counts: Record<string, number>; skipped: { file: string; reason: string }[] };
    expect(s.layout).toBe('mvtec');
    expect(s.labels).toEqual(['good', 'broken_large', 'contamination']);
    expect(s.counts).toEqual(data.counts);
    expect(s.skipped).toEqual(expect.arrayContaining([
      expect.objectContaining({ file: 'test/good/notes.txt', reason: 'not-an-image-extension' }),
      expect.objectContaining({ file: 'test/good/fake.png', reason: 'not-an-image-content' }),
      expect.objectContaining({ file: 'test/good/cut.png', reason: 'unreadable', detail: expect.stringMatching(/truncated|corrupt/) }),
    ]));
    expect(s.skipped).toHaveLength(3);
    // --quick reads headers only: the cut PNG passes as an image.
    const quick = lastJson((await loupe(['dataset', 'stats', junkDir, '--json', '--quick'])).stdout) as typeof s;
    expect(quick.skipped.map((k) => k.file).sort()).toEqual(['test/good/fake.png', 'test/good/notes.txt']);
    expect(quick.counts['good']).toBe(s.counts['good']! + 1);
    const human = await loupe(['dataset', 'stats', junkDir]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('layout: MVTec category');
    expect(human.stdout).toMatch(/good\s+8\s+4\s+12/);
    expect(human.stdout).toContain('3 file(s) skipped');
    // train skips what stats reported (it used to fail on the cut PNG after the others' CNN pass)
    const t = await loupe(['train', junkDir, '--out', join(tmp, 'models', 'junk.loupe'), '--json']);
    expect(t.code, t.stderr).toBe(0);
    const tj = lastJson(t.stdout) as unknown as TrainJson & { skipped: number };
    expect(tj.skipped).toBe(3);
    expect(tj.train + tj.test).toBe(Object.values(data.counts).reduce((a, b) => a + b, 0));
  });

  it('train --json: the last line is the interface object, consistent with its own confusion matrix', () => {
    expect(trained.classes).toEqual(classes);
    expect(trained.confusion).toHaveLength(classes.length);
    for (const row of trained.confusion) expect(row).toHaveLength(classes.length);
    const n = Object.values(data.counts).reduce((a, b) => a + b, 0);
    expect(trained.train + trained.test).toBe(n);
    expect(trained.confusion.flat().reduce((a, b) => a + b, 0)).toBe(trained.test);
    // Stratified 50%: each label's held-back row holds half its images (rounded).
    trained.confusion.forEach((row, i) => expect(row.reduce((a, b) => a + b, 0)).toBe(Math.round(data.counts[classes[i]!]! / 2)));
    const f = fromConfusion(trained.classes, trained.confusion);
    expect(trained.accuracy).toBeCloseTo(f.accuracy, 5);
    expect(trained.balancedAccuracy).toBeCloseTo(f.balanced, 5);
    expect(trained.binaryAccuracy).toBeCloseTo(f.binary, 5);
    expect(trained.accuracy).toBeGreaterThan(1 / classes.length); // far above chance on real defects
  });

  it('the model file is self-describing', async () => {
    const h = await readModelHeader(model);
    expect(h.kind).toBe('svm');
    expect(h['classes']).toEqual(classes);
    expect(h['layer']).toBe('fc1000');
    expect(h['dim']).toBe(1000);
    expect(h['weightsHash']).toMatch(/^[0-9a-f]{64}$/);
    expect((h['preprocessing'] as Record<string, unknown>)['fit']).toBe('squash');
    expect((h['coding'] as { name: string }).name).toBe('onevsone');
    expect((h['metrics'] as { heldOut: { accuracy: number } }).heldOut.accuracy).toBe(trained.accuracy);
    expect(h['trainHashes'] as string[]).toHaveLength(trained.train);
    expect(h['goodClass']).toBe('good');
    expect(readdirSync(dirname(model)).filter((f) => f.endsWith('.tmp'))).toEqual([]); // no temp files left
  });

  it('same seed, same result (second run from the feature cache)', async () => {
    const again = join(tmp, 'models', 'again.loupe');
    const r = await loupe(['train', data.dir, '--out', again, '--split', '0.5', '--seed', '0', '--json']);
    expect(r.code).toBe(0);
    const j = lastJson(r.stdout) as unknown as TrainJson;
    expect(j.confusion).toEqual(trained.confusion);
    expect(j.accuracy).toBe(trained.accuracy);
    const a = await loupeModelWeights(model);
    const b = await loupeModelWeights(again);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
  });

  it('predict --json: the one output contract, agreeing with the core library on the same features', async () => {
    const img = join(data.dir, 'test', 'contamination', readdirSync(join(data.dir, 'test', 'contamination')).sort()[0]!);
    const p = await loupe(['predict', model, img, join(data.dir, 'test', 'broken_large'), '--json']);
    const all = jsonLines(p.stdout);
    const lines = all.slice(0, -1) as { file: string; verdict: string; score: number; rawScore: number; defectType: string | null; classScores: Record<string, number> }[];
    expect(lines).toHaveLength(1 + data.counts['broken_large']!);
    const anomalous = lines.filter((l) => l.verdict === 'anomalous').length;
    expect(all[all.length - 1]).toEqual({ total: lines.length, good: lines.length - anomalous, anomalous, errors: 0 });
    expect(p.code, p.stderr).toBe(anomalous > 0 ? 1 : 0); // 0 all good, 1 some anomalous
    expect(lines[0]!.file).toBe(img);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['file', 'verdict', 'score', 'rawScore', 'defectType', 'classScores']);
      expect(Object.keys(l.classScores)).toEqual(classes);
      expect(l.verdict).toBe(l.score >= 0.5 ? 'anomalous' : 'good');
      // The verdict names the defect: the best-scored class that is not good.
      const bestDefect = Object.entries(l.classScores).filter(([c]) => c !== 'good').sort((x, y) => y[1] - x[1])[0]![0];
      expect(l.defectType).toBe(l.verdict === 'anomalous' ? bestDefect : null);
      for (const v of [l.score, l.rawScore, ...Object.values(l.classScores)]) expect(Math.round(v * 1e4) / 1e4).toBe(v); // 4 decimals
    }
    // The same image's fc1000 from `loupe features`, through the loaded model in-process.
    const f = await loupe(['features', img, '--layers', 'fc1000', '--json']);
    expect(f.code).toBe(0);
    const vec = Float32Array.from((lastJson(f.stdout) as { fc1000: number[] }).fc1000);
    const loaded = await loadModel(model);
    if (loaded.kind !== 'svm') throw new Error('not an SVM model');
    const [core] = svmVerdicts(loaded, [vec]);
    expect(core!.verdict).toBe(lines[0]!.verdict);
    expect(core!.defectType).toBe(lines[0]!.defectType);
    expect(lines[0]!.score).toBeCloseTo(core!.score, 3);
    expect(lines[0]!.rawScore).toBeCloseTo(core!.rawScore, 3);
    core!.classScores.forEach((c) => expect(lines[0]!.classScores[c.name]!).toBeCloseTo(c.score, 3));
    // Human: `<verdict>  <score>  <file>[  <defectType>]`, then the summary.
    const h = await loupe(['predict', model, img]);
    expect(h.code).toBe(lines[0]!.verdict === 'anomalous' ? 1 : 0);
    expect(h.stdout).toBe(
      `${lines[0]!.verdict.padEnd(9)}  ${lines[0]!.score.toFixed(4)}  ${img}${lines[0]!.defectType ? `  ${lines[0]!.defectType}` : ''}\n` +
        `1 image: ${lines[0]!.verdict === 'good' ? 1 : 0} good, ${lines[0]!.verdict === 'anomalous' ? 1 : 0} anomalous, 0 errors (score >= 0.5 = anomalous)\n`,
    );
  });

  it('train --out DIR/NAME: adds .loupe and creates the missing folder', async () => {
    const out = join(tmp, 'new-models', 'line 1', 'bottle');
    const r = await loupe(['train', data.dir, '--out', out, '--split', '0.5', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout)['model']).toBe(`${out}.loupe`);
    expect(existsSync(`${out}.loupe`)).toBe(true);
    expect(existsSync(out)).toBe(false);
    // Another extension is kept as given, with a note that `loupe serve` would not load it.
    const other = join(tmp, 'new-models', 'bottle.model');
    const o = await loupe(['train', data.dir, '--out', other, '--split', '0.5', '--epochs', '2']);
    expect(o.code, o.stderr).toBe(0);
    expect(existsSync(other)).toBe(true);
    expect(o.stderr).toContain('loupe serve loads only *.loupe files');
  });

  it('evaluate: numbers, human tables, the report, and a warning about training images', async () => {
    const report = join(tmp, 'eval-report');
    const r = await loupe(['evaluate', model, data.dir, '--json', '--report', report]);
    expect(r.code).toBe(0);
    const e = lastJson(r.stdout) as unknown as TrainJson & { seenInTraining: number; perClass: { label: string; precision: number; recall: number; f1: number }[] };
    expect(e.classes).toEqual(classes);
    expect(e.confusion.flat().reduce((a, b) => a + b, 0)).toBe(trained.train + trained.test);
    const f = fromConfusion(e.classes, e.confusion);
    expect(e.accuracy).toBeCloseTo(f.accuracy, 5);
    expect(e.balancedAccuracy).toBeCloseTo(f.balanced, 5);
    e.perClass.forEach((c, i) => {
      const col = e.confusion.reduce((s, row) => s + row[i]!, 0);
      expect(c.recall).toBeCloseTo(e.confusion[i]![i]! / e.confusion[i]!.reduce((a, b) => a + b, 0), 5);
      expect(c.precision).toBeCloseTo(col === 0 ? 0 : e.confusion[i]![i]! / col, 5);
    });
    expect(e.seenInTraining).toBe(trained.train);
    expect(r.stderr).toContain(`${trained.train} of the ${trained.train + trained.test} images were used to train this model`);
    expect(readdirSync(report).sort()).toEqual(['confusion-matrix.png', 'conv1-filters.png', 'misclassified.png', 'report.html', 'training-samples.png'].filter((x) => x !== 'misclassified.png' || e.accuracy < 1).sort());
    expect(readFileSync(join(report, 'report.html'), 'utf8')).toContain('data:image/png;base64,');

    const human = await loupe(['evaluate', model, data.dir]);
    expect(human.code).toBe(0);
    for (const s of ['Confusion matrix', 'precision', 'recall', 'F1', 'balanced accuracy', 'macro F1', 'good vs defect']) expect(human.stdout).toContain(s);
  });

  it('avg_pool, k-fold and --balance', async () => {
    const out = join(tmp, 'models', 'avg.loupe');
    const a = await loupe(['train', data.dir, '--out', out, '--layer', 'avg_pool', '--split', '0.5', '--seed', '0', '--json']);
    expect(a.code).toBe(0);
    expect((await readModelHeader(out))['dim']).toBe(2048);
    const k = await loupe(['train', data.dir, '--out', join(tmp, 'models', 'k.loupe'), '--kfold', '3', '--json']);
    expect(k.code).toBe(0);
    const kj = lastJson(k.stdout) as unknown as TrainJson;
    expect(kj.folds).toHaveLength(3);
    expect(kj.confusion.flat().reduce((x, y) => x + y, 0)).toBe(Object.values(data.counts).reduce((x, y) => x + y, 0)); // each image tested once
    const b = await loupe(['train', data.dir, '--out', join(tmp, 'models', 'b.loupe'), '--balance', '--json']);
    expect(b.code).toBe(0);
    const bj = lastJson(b.stdout) as unknown as TrainJson;
    expect(bj.train + bj.test).toBe(classes.length * Math.min(...Object.values(data.counts)));
  });

  it('train --groups: the split and the C search keep each group whole', async () => {
    // Pairs of images of one label as one "part".
    const rows = ['file,group'];
    for (const dir of ['train/good', 'test/good', 'test/broken_large', 'test/contamination']) {
      readdirSync(join(data.dir, dir)).sort().forEach((f, i) => rows.push(`${dir}/${f},${dir}-${Math.floor(i / 2)}`));
    }
    const csv = join(tmp, 'pairs.csv');
    writeFileSync(csv, `${rows.join('\n')}\n`);
    const out = join(tmp, 'models', 'grouped.loupe');
    const r = await loupe(['train', data.dir, '--out', out, '--groups', csv]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/held back, group-aware/);
    expect(r.stdout).toMatch(/by \d-fold group-aware CV/);
    const h = await readModelHeader(out);
    const sel = (h['training'] as { lambdaSelection: { groupAware: boolean; folds: number } }).lambdaSelection;
    expect(sel.groupAware).toBe(true);
    expect(sel.folds).toBeGreaterThanOrEqual(2);
  });

  it('bad inputs around a real dataset: groups CSV, tampered model fields, images, one label', async () => {
    const csv = join(tmp, 'groups.csv');
    writeFileSync(csv, 'file,group\nno/such/file.png,a\n');
    const g = await loupe(['train', data.dir, '--out', join(tmp, 'models', 'g.loupe'), '--groups', csv]);
    expect(g.code).toBe(1);
    expect(g.stderr).toContain(csv);
    expect(g.stderr).toContain('no/such/file.png');

    // Outputs never destroy or pollute inputs: --out over a file that is not a model, --report inside the dataset.
    const image = join(data.dir, 'train', 'good', readdirSync(join(data.dir, 'train', 'good')).sort()[0]!);
    const before = readFileSync(image);
    const over = await loupe(['train', data.dir, '--out', image]);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain(`--out ${image} exists and is not a Loupe model file; not overwriting it`);
    expect(readFileSync(image).equals(before)).toBe(true);
    const inside = await loupe(['train', data.dir, '--out', join(tmp, 'models', 'x.loupe'), '--report', join(data.dir, 'test', 'good', 'report')]);
    expect(inside.code).toBe(1);
    expect(inside.stderr).toMatch(/--report .* is inside the input folder/);
    expect(existsSync(join(data.dir, 'test', 'good', 'report'))).toBe(false);
    // an older model file is replaced as before
    copyFileSync(model, join(tmp, 'models', 'old.loupe'));
    const again = await loupe(['train', data.dir, '--out', join(tmp, 'models', 'old.loupe'), '--epochs', '2']);
    expect(again.code, again.stderr).toBe(0);

    const bytes = readFileSync(model);
    const tampered = join(tmp, 'tampered-layer.loupe');
    writeFileSync(tampered, Buffer.from(bytes.toString('latin1').replace('"layer":"fc1000"', '"layer":"res9"'), 'latin1'));
    const t = await loupe(['predict', tampered, join(cliRoot, 'assets', 'sample.png')]);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain(`${tampered}: layer: unknown layer "res9"`);

    const truncated = join(tmp, 'truncated.loupe');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
    const tr = await loupe(['evaluate', truncated, data.dir]);
    expect(tr.code).toBe(1);
    expect(tr.stderr).toContain(`${truncated}: payload.byteLength`);

    // A path that does not exist, or a folder without images, is a usage error before any work (exit 2).
    const noImage = join(tmp, 'no-such.png');
    const p = await loupe(['predict', model, noImage]);
    expect(p.code).toBe(2);
    expect(p.stderr).toContain(`cannot read image ${noImage}: no such file`);
    expect(p.stdout).toBe('');
    const empty = join(tmp, 'empty-folder');
    mkdirSync(empty, { recursive: true });
    const pe = await loupe(['predict', model, empty]);
    expect(pe.code).toBe(2);
    expect(pe.stderr).toContain(`${empty}: the folder holds no image files`);
    // One undecodable image among good ones: reported in its place, the others inspected, exit 2.
    const mixed = join(tmp, 'mixed');
    mkdirSync(mixed, { recursive: true });
    copyFileSync(join(data.dir, 'train', 'good', readdirSync(join(data.dir, 'train', 'good'))[0]!), join(mixed, 'a.png'));
    writeFileSync(join(mixed, 'b.png'), 'not a png at all');
    copyFileSync(join(data.dir, 'train', 'good', readdirSync(join(data.dir, 'train', 'good'))[1]!), join(mixed, 'c.png'));
    const pm = await loupe(['predict', model, mixed, '--json']);
    expect(pm.code, pm.stderr).toBe(2);
    const rows = pm.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    expect(rows.slice(0, 3).map((r) => r['file'])).toEqual(['a.png', 'b.png', 'c.png'].map((f) => join(mixed, f)));
    expect(rows[1]!['error']).toMatchObject({ code: 'IMAGE_DECODE' });
    expect(rows[1]!['error'].message).toContain(join(mixed, 'b.png'));
    for (const r of [rows[0]!, rows[2]!]) expect(['good', 'anomalous']).toContain(r['verdict']);
    expect(rows[3]).toMatchObject({ total: 3, errors: 1 });

    const one = join(tmp, 'one-label');
    mkdirSync(join(one, 'good'), { recursive: true });
    copyFileSync(join(data.dir, 'train', 'good', readdirSync(join(data.dir, 'train', 'good'))[0]!), join(one, 'good', 'a.png'));
    const o = await loupe(['train', one, '--out', join(tmp, 'models', 'one.loupe')]);
    expect(o.code).toBe(1);
    expect(o.stderr).toContain(`${one}: a classifier needs at least 2 labels`);
    expect(existsSync(join(tmp, 'models', 'one.loupe'))).toBe(false);
  });
});

describe.runIf(haveWeights)('loupe demo (tiny)', () => {
  it('trains and evaluates one SVM per synthetic object and writes the reports', async () => {
    const out = join(tmp, 'demo');
    const r = await loupe(['demo', '--per-label', '4', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = jsonLines(r.stdout) as { object: string; accuracy: number; balancedAccuracy: number; paper: number; test: number; confusion: number[][] }[];
    expect(rows.map((x) => x.object)).toEqual(['bottle', 'carton', 'spoon']);
    for (const row of rows) {
      expect(row.confusion.flat().reduce((a, b) => a + b, 0)).toBe(row.test);
      expect(row.accuracy).toBeCloseTo(fromConfusion(['good'], row.confusion).accuracy, 5);
      expect(row.paper).toBeGreaterThan(0.5);
      expect(existsSync(join(out, row.object, 'report.html'))).toBe(true);
    }
    expect(existsSync(join(out, 'report.html'))).toBe(true);
  });
});

/** The SVM weights section of a model file (bit-identical models train to identical weights). */
async function loupeModelWeights(file: string): Promise<Float32Array> {
  const m = await loadModel(file);
  if (m.kind !== 'svm') throw new Error(`${file} is not an SVM model`);
  return m.classifier.weights;
}
