// The built app (bin/line-monitor.cjs -> dist/) run as a user would, on a model trained here with @loupe/core
// and real MVTec bottle images (shared/datasets). Without the engine, the weights or the images the
// tests skip with a note, except under CI, where that is a failure.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, Inspector, resolveWeights, saveModel, trainOneClass, type InspectionResult } from '@loupe/core';

const appRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = resolve(appRoot, '../../..');
const bin = join(appRoot, 'bin', 'line-monitor.cjs');
const sharedDir = process.env['LOUPE_SHARED_DIR'] ? resolve(process.env['LOUPE_SHARED_DIR']) : resolve(repoRoot, '..', 'shared');
const BOTTLE = join(sharedDir, 'datasets', 'mvtec_ad', 'bottle');

function skipReason(): string | undefined {
  const problems: string[] = [];
  if (!existsSync(join(appRoot, 'dist', 'main.js'))) problems.push('the app is not built (npx nx run @loupe/example-line-monitor:build)');
  if (!existsSync(join(repoRoot, 'native', 'build', 'Release', 'loupe_native.node')) && !process.env['LOUPE_NATIVE_ADDON']) problems.push('the native addon is not built');
  try {
    resolveWeights();
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (!existsSync(join(BOTTLE, 'train', 'good'))) problems.push(`the MVTec bottle images are not in ${BOTTLE}`);
  if (problems.length === 0) return undefined;
  if (process.env['CI']) throw new Error(`CI: ${problems.join('; ')}`);
  return problems.join('; ');
}

const skip = skipReason();
if (skip) console.warn(`[skip] line-monitor: ${skip}`);

function images(folder: string, n: number, from = 0): string[] {
  const dir = join(BOTTLE, folder);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .slice(from, from + n)
    .map((f) => join(dir, f));
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function lineMonitor(args: readonly string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: appRoot, env: { ...process.env, LOUPE_THREADS: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

describe('line-monitor MODEL DIR', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'line-monitor-test-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('prints its usage and exits 2 on bad arguments, 0 for --help', async () => {
    if (!existsSync(join(appRoot, 'dist', 'main.js'))) {
      if (process.env['CI']) throw new Error('CI: the app is not built');
      return console.warn('[skip] usage: the app is not built');
    }
    const none = await lineMonitor([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/expected MODEL and DIR, got 0 arguments/);
    expect(none.stderr).toMatch(/^usage: line-monitor MODEL DIR/m);
    const bad = await lineMonitor(['m.loupe', '.', '--batch-size', 'zero']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--batch-size needs a positive integer, got 'zero'/);
    const help = await lineMonitor(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit status: 0 every image good, 1 some anomalous, 2 some unreadable/);
  });

  describe.skipIf(!!skip)('on real images', () => {
    const model = join(tmp, 'bottle.loupe');
    const folder = (name: string, files: Record<string, string>): string => {
      const dir = join(tmp, name);
      for (const [to, from] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, to)), { recursive: true });
        copyFileSync(from, join(dir, to));
      }
      return dir;
    };
    const bank = images('train/good', 12);
    let engine: Engine;

    beforeAll(async () => {
      engine = await Engine.open();
      const { model: m } = await trainOneClass({ engine, good: bank, coresetRatio: 0.05, category: 'bottle' });
      await saveModel(model, m);
    });

    it('exit 0 when every image is good', async () => {
      // Images of the memory bank itself: certainly good for the model.
      const dir = folder('all-good', { 'cam1/a.png': bank[0]!, 'cam1/b.png': bank[1]!, 'cam2/c.png': bank[2]! });
      const r = await lineMonitor([model, dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines[0]).toMatch(new RegExp(`^model ${model}: PatchCore: bank \\d+ x 1536`));
      expect(lines[1]).toBe(`3 images under ${dir}, engine ${engine.backend}`);
      expect(lines.slice(2, 5)).toEqual(['cam1/a.png', 'cam1/b.png', 'cam2/c.png'].map((f) => expect.stringMatching(new RegExp(`^good {7}0\\.\\d{3}  ${join(dir, f)}$`))));
      expect(lines[5]).toMatch(/^3 images: 3 good, 0 anomalous, 0 unreadable \(\d+\.\d s\)$/);
      expect(lines.length).toBe(6);
    });

    it('exit 1 when some are anomalous; the verdicts and scores are those of @loupe/core', async () => {
      const broken = images('test/broken_large', 2);
      const dir = folder('some-broken', { 'a-good.png': bank[3]!, 'b-broken.png': broken[0]!, 'c-broken.png': broken[1]! });
      const r = await lineMonitor([model, dir, '--batch-size', '2']);
      expect(r.code).toBe(1);
      const inspector = await Inspector.open(model, { engine });
      const expected: InspectionResult[] = [];
      for (const f of ['a-good.png', 'b-broken.png', 'c-broken.png']) expected.push(await inspector.inspect(join(dir, f)));
      expect(expected.map((e) => e.verdict)).toEqual(['good', 'anomalous', 'anomalous']);
      const lines = r.stdout.trim().split('\n').slice(2);
      expect(lines.slice(0, 3)).toEqual(expected.map((e) => `${e.verdict === 'good' ? 'good     ' : 'ANOMALOUS'}  ${e.score.toFixed(3)}  ${e.name}`));
      expect(lines[3]).toMatch(/^3 images: 1 good, 2 anomalous, 0 unreadable/);

      // --json: the same verdicts, one object per line, then the counts.
      const j = await lineMonitor([model, dir, '--json']);
      expect(j.code).toBe(1);
      const objects = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(objects.slice(0, 3).map((o) => [o['file'], o['verdict'], o['defectType']])).toEqual(expected.map((e) => [e.name, e.verdict, null]));
      for (const [i, o] of objects.slice(0, 3).entries()) expect(o['score'] as number).toBeCloseTo(expected[i]!.score, 4);
      expect(objects[3]).toEqual({ total: 3, good: 1, anomalous: 2, unreadable: 0 });
    });

    it('exit 2 when an image is unreadable; the others are still inspected', async () => {
      const dir = folder('with-bad-frame', { '1.png': bank[4]!, '3.png': images('test/broken_large', 1, 5)[0]! });
      writeFileSync(join(dir, '2.png'), readFileSync(bank[5]!).subarray(0, 500)); // a frame cut off mid-write
      writeFileSync(join(dir, 'notes.txt'), 'not an image, not looked at\n');
      const r = await lineMonitor([model, dir]);
      expect(r.code).toBe(2);
      const lines = r.stdout.trim().split('\n').slice(2);
      expect(lines[0]).toMatch(new RegExp(`^good {7}0\\.\\d{3}  ${join(dir, '1.png')}$`));
      expect(lines[1]).toMatch(new RegExp(`^ERROR {6}${join(dir, '2.png')}: IMAGE_DECODE cannot decode image`));
      expect(lines[2]).toMatch(new RegExp(`^ANOMALOUS  0\\.\\d{3}  ${join(dir, '3.png')}$`));
      expect(lines[3]).toMatch(/^3 images: 1 good, 1 anomalous, 1 unreadable/);
    });

    it('exit 2 with one line naming the problem when the model or the folder is unusable', async () => {
      const dir = folder('one', { 'a.png': bank[6]! });
      const noModel = await lineMonitor([join(tmp, 'nope.loupe'), dir]);
      expect(noModel.code).toBe(2);
      expect(noModel.stderr).toMatch(/^line-monitor: MODEL_READ: .*nope\.loupe: cannot read/);
      const notAModel = await lineMonitor([join(dir, 'a.png'), dir]);
      expect(notAModel.code).toBe(2);
      expect(notAModel.stderr).toMatch(/^line-monitor: MODEL_NOT_A_MODEL: /);
      const noDir = await lineMonitor([model, join(tmp, 'no-such-folder')]);
      expect(noDir.code).toBe(2);
      expect(noDir.stderr).toBe(`line-monitor: ${join(tmp, 'no-such-folder')}: no such folder\n`);
      mkdirSync(join(tmp, 'empty'));
      const empty = await lineMonitor([model, join(tmp, 'empty')]);
      expect(empty.code).toBe(2);
      expect(empty.stderr).toMatch(/no images under/);
    });
  });
});
