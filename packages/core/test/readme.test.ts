// The README's ```ts blocks are the library guide: they must compile against the current source and run
// (src/anomaly/README.md's too).
// Each block is written as a module (.mts) into a temporary folder inside this package, so '@loupe/core',
// sharp and @types/node resolve as they do for an app in the workspace; `tsc` typechecks them (strict,
// NodeNext, '@loupe/core' mapped to src/index.ts: the source as it is now, not a possibly stale dist/), and
// vite-node runs them in README order in one process (the same alias), from a working folder holding the
// paths the README names, made of real MVTec bottle images. What they print and write is then checked.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, resolveWeights, weightsDir } from '../src/index.js';
import { bottle, bottleSkipReason, mvtecSubset, place } from './support/bottle.js';
import { coreRoot, skipNote, tempDir } from './support/env.js';

/** The documents whose ```ts blocks are checked, in the order their blocks run. */
const DOCS = [
  { tag: 'readme', label: 'README.md', path: join(coreRoot, 'README.md') },
  { tag: 'anomaly', label: 'src/anomaly/README.md', path: join(coreRoot, 'src', 'anomaly', 'README.md') },
] as const;
const require = createRequire(import.meta.url);
const tscBin = require.resolve('typescript/bin/tsc');
const viteNodeBin = join(dirname(require.resolve('vite-node/package.json')), 'vite-node.mjs');

interface Block {
  /** "README.md:LINE" of the opening fence. */
  readonly where: string;
  readonly code: string;
  readonly file: string;
}

function extractBlocks(doc: (typeof DOCS)[number], dir: string, first: number): Block[] {
  const blocks: Block[] = [];
  const lines = readFileSync(doc.path, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```ts') continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!);
    if (i === lines.length) throw new Error(`${doc.label}:${start + 1}: unterminated code block`);
    const n = String(first + blocks.length).padStart(2, '0');
    blocks.push({ where: `${doc.label}:${start + 1}`, code: `${body.join('\n')}\n`, file: join(dir, `block-${n}-${doc.tag}-line-${start + 1}.mts`) });
  }
  return blocks;
}

function run(cmd: string, args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // No colour: Nx runs tests with FORCE_COLOR set, and escape codes would split the lines the test reads.
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...(opts.env ?? process.env), FORCE_COLOR: '0', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// The blocks' folder lives inside the package (module resolution as in the workspace); it is removed at the end.
const blockDir = mkdtempSync(join(coreRoot, 'test', '.readme-blocks-'));
afterAll(() => rmSync(blockDir, { recursive: true, force: true }));
const blocks: Block[] = [];
for (const doc of DOCS) blocks.push(...extractBlocks(doc, blockDir, blocks.length + 1));
for (const b of blocks) writeFileSync(b.file, b.code);
/** "README.md:LINE" for a block file named in tool output (a line of the block, or the fence's). */
const toReadmeLines = (text: string): string =>
  text.replace(/block-\d+-(\w+)-line-(\d+)\.mts(?:\((\d+),\d+\)|:(\d+))?/g, (_, tag: string, line: string, a?: string, b?: string) => `${DOCS.find((d) => d.tag === tag)!.label}:${Number(line) + Number(a ?? b ?? 0)}`);

describe('README.md code blocks', () => {
  it('are there for every part of the guide, and use the public API only', () => {
    expect(blocks.filter((b) => b.where.startsWith('README.md')).length).toBeGreaterThanOrEqual(9);
    expect(blocks.filter((b) => b.where.startsWith('src/anomaly')).length).toBeGreaterThanOrEqual(1);
    const all = blocks.map((b) => b.code).join('\n');
    for (const api of ['Engine.open', 'ensureWeights', 'trainOneClass', 'saveModel', 'Inspector.open', 'inspect(', 'inspectMany', 'renderHeatmapPng', 'renderMaskPng', 'calibrate(', 'trainClassifier', 'evaluateOneClass', 'evaluateClassifier', 'onProgress', 'isLoupeError']) {
      expect(all, `no README example uses ${api}`).toContain(api);
    }
    for (const b of blocks) {
      const specifiers = [...b.code.matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
      expect(specifiers.length, `${b.where}: a block must import what it uses`).toBeGreaterThan(0);
      for (const s of specifiers) expect(s === '@loupe/core' || s.startsWith('node:'), `${b.where} imports ${s}`).toBe(true);
    }
  });

  it('typecheck (strict) against the current source', async () => {
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2023'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        types: ['node'],
        strict: true,
        noUncheckedIndexedAccess: true,
        isolatedModules: true,
        esModuleInterop: true,
        skipLibCheck: true,
        noEmit: true,
        paths: { '@loupe/core': [join(coreRoot, 'src', 'index.ts')] },
      },
      files: blocks.map((b) => basename(b.file)),
    };
    writeFileSync(join(blockDir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const r = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, [tscBin, '-p', join(blockDir, 'tsconfig.json')], { cwd: blockDir, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      ),
    );
    expect(toReadmeLines(r.out), 'tsc found errors in the README blocks').toBe('');
    expect(r.code).toBe(0);
  });

  const skip = bottleSkipReason();
  if (skip) skipNote('running the README blocks', skip);

  describe.skipIf(!!skip)('run in order', () => {
    const work = tempDir('loupe-readme-work-');
    afterAll(() => work.cleanup());
    let result: { code: number | null; stdout: string; stderr: string };
    const w = (p: string): string => join(work.dir, p);
    const truncated = 'line/frame-0007.png';

    beforeAll(async () => {
      // The paths the README names.
      place(w('parts/good'), bottle('train/good', 12));
      place(work.dir, bottle('test/broken_large', 1), 'copy', ['part.png']);
      place(w('line'), bottle('test/good', 3), 'link', ['good-000.png', 'good-001.png', 'good-002.png']);
      place(w('line'), bottle('test/broken_large', 2, 1), 'link', ['broken_large-001.png', 'broken_large-002.png']);
      place(w('line'), bottle('test/contamination', 1), 'link', ['contamination-000.png']);
      writeFileSync(w(truncated), readFileSync(bottle('test/good', 1, 19)[0]!).subarray(0, 400));
      place(w('calibration/good'), bottle('test/good', 8, 4));
      place(w('labelled/good'), bottle('train/good', 6, 100));
      place(w('labelled/broken_large'), bottle('test/broken_large', 6, 4));
      place(w('labelled/contamination'), bottle('test/contamination', 6, 4));
      mvtecSubset(w('mvtec/bottle'), { train: 12, testGood: 4, defects: { broken_large: 3, contamination: 2 } });

      // A LOUPE_HOME of our own (the feature cache goes there) that holds the real, verified weights.
      const env: NodeJS.ProcessEnv = { ...process.env, LOUPE_THREADS: undefined, UV_THREADPOOL_SIZE: undefined };
      const weights = resolveWeights();
      if (weights.verified) {
        const home = w('.loupe-home');
        mkdirSync(home);
        symlinkSync(weights.dir, weightsDir(home));
        env['LOUPE_HOME'] = home;
        delete env['LOUPE_WEIGHTS'];
      }

      writeFileSync(
        join(blockDir, 'vite.config.mjs'),
        `export default ${JSON.stringify({ resolve: { alias: [{ find: '@loupe/core', replacement: join(coreRoot, 'src', 'index.ts') }] }, cacheDir: join(blockDir, '.vite'), logLevel: 'warn' })};\n`,
      );
      const driver = join(blockDir, 'run-blocks.mts');
      writeFileSync(
        driver,
        [
          `const blocks = ${JSON.stringify(blocks.map((b) => ({ where: b.where, file: b.file })))};`,
          'for (const b of blocks) {',
          "  console.log(`@@ ${b.where} start`);",
          '  const t0 = performance.now();',
          '  try {',
          '    await import(b.file);',
          '  } catch (err) {',
          "    console.log(`@@ ${b.where} FAILED: ${err instanceof Error ? err.stack : String(err)}`);",
          '    process.exit(1);',
          '  }',
          "  console.log(`@@ ${b.where} done in ${Math.round(performance.now() - t0)} ms`);",
          '}',
          '',
        ].join('\n'),
      );
      result = await run(process.execPath, [viteNodeBin, '-c', join(blockDir, 'vite.config.mjs'), driver], { cwd: work.dir, env, timeoutMs: 540_000 });
      if (result.code !== 0) console.error(toReadmeLines(`${result.stdout}\n${result.stderr}`));
    }, 600_000);

    it('every block runs to its end', () => {
      expect(result.stdout).not.toMatch(/FAILED/);
      for (const b of blocks) expect(result.stdout).toContain(`@@ ${b.where} done`);
      expect(result.code).toBe(0);
    });

    it('the engine, the one-class training and the saved model', async () => {
      expect(result.stdout).toMatch(/ResNet-50 on .+ \(backend (cpu|cuda)[\w-]*\), weights [0-9a-f]{12}/);
      expect(result.stdout).toMatch(/\d+ images in the bank, \d+ held out for the thresholds/);
      expect(result.stdout).toMatch(/PatchCore: bank \d+ x 1536/);
      expect(result.stderr).toMatch(/features \d+\/\d+/); // onProgress
      const model = await loadModel(w('bottle.loupe'));
      expect(model.kind).toBe('one-class');
      expect(model.category).toBe('bottle');
      expect(model.trainHashes.length).toBe(12);
    });

    it('inspecting one image and a folder (with its unreadable frame)', () => {
      expect(result.stdout).toMatch(/^part\.png: anomalous \(score 0\.\d{3}, raw \d+\.\d{3}\)/m);
      for (const f of ['broken_large-001.png', 'broken_large-002.png']) expect(result.stdout).toMatch(new RegExp(`^line/${f}: anomalous 0\\.\\d{3}$`, 'm'));
      for (const f of ['good-000.png', 'good-001.png', 'good-002.png', 'contamination-000.png']) expect(result.stdout).toMatch(new RegExp(`^line/${f}: (good|anomalous) 0\\.\\d{3}$`, 'm'));
      expect(result.stdout).toMatch(new RegExp(`^${truncated}: IMAGE_DECODE cannot decode image ${truncated}`, 'm'));
      expect(result.stdout).toMatch(/\{ good: \d, anomalous: \d, unreadable: 1 \}/);
    });

    it('the heatmap and mask PNGs', async () => {
      const heat = await sharp(w('part-heatmap.png')).metadata();
      expect([heat.format, heat.width, heat.height, heat.channels]).toEqual(['png', 256, 256, 3]);
      const mask = await sharp(w('part-mask.png')).metadata();
      expect([mask.format, mask.width, mask.height, mask.channels]).toEqual(['png', 256, 256, 1]);
      const px = await sharp(w('part-mask.png')).extractChannel(0).raw().toBuffer();
      expect(px.some((v) => v === 255)).toBe(true); // the broken bottle has defect pixels
    });

    it('calibration to a target false-alarm rate', async () => {
      const m = /threshold (\d+\.\d+) -> (\d+\.\d+) \(target-fpr\); (\d+) of 8 good images flagged/.exec(result.stdout);
      expect(m, result.stdout).not.toBeNull();
      expect(Math.abs(Number(m![3]) - 2)).toBeLessThanOrEqual(1);
      const calibrated = await loadModel(w('bottle-calibrated.loupe'));
      expect(calibrated.kind === 'one-class' && calibrated.patchcore.thresholds.image.toFixed(3)).toBe(m![2]);
    });

    it('the SVM classifier and both evaluations', async () => {
      expect(result.stdout).toMatch(/classes broken_large, contamination, good; held out 6: accuracy \d\.\d{3}, balanced \d\.\d{3}/);
      expect(result.stdout).toMatch(/^(good null|anomalous (broken_large|contamination)) broken_large 0\.\d\d, contamination 0\.\d\d, good 0\.\d\d$/m);
      expect((await loadModel(w('bottle-svm.loupe'))).kind).toBe('svm');
      expect(result.stdout).toMatch(/bottle: image AUROC \d\.\d{3}, pixel AUROC \d\.\d{3}, PRO \d\.\d{3}/);
      expect(result.stdout).toMatch(/^ {2}broken_large: 3 images, AUROC \d\.\d{3}, \d flagged$/m);
      expect(result.stdout).toMatch(/^ {2}contamination: 2 images, AUROC \d\.\d{3}, \d flagged$/m);
      expect(result.stdout).toMatch(/accuracy \d\.\d{3} on 18 images, 1[2-4] of them seen in training/);
      // The feature cache went to the run's own LOUPE_HOME, not the user's.
      if (existsSync(w('.loupe-home'))) expect(existsSync(w('.loupe-home/features'))).toBe(true);
    });

    it("src/anomaly/README.md's example: a model, a verdict, a heatmap and a mask", async () => {
      expect((await loadModel(w('parts.loupe'))).kind).toBe('one-class');
      expect(result.stdout).toMatch(/^part\.png anomalous 0\.\d{3} \d+\.\d{3} \{ x: \d+, y: \d+, value: [\d.]+ \}$/m);
      expect((await sharp(w('part-heat.png')).metadata()).width).toBe(256);
      expect((await sharp(w('part-defects.png')).metadata()).channels).toBe(1);
    });

    it('errors: a LoupeError with its code and input', () => {
      expect(result.stderr).toMatch(/^MODEL_READ \(models\/line-7\.loupe\): models\/line-7\.loupe: cannot read/m);
    });
  });
});
