// End-to-end: the built `loupe` (bin/loupe.cjs -> dist/) run as a user runs it.
// The tests that need the real weights run when the weights cache exists (npm test fetches it first).
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { bin, cliRoot, haveWeights, jsonLines, repoRoot, runLoupe, sample, sharedDir, type CliResult } from './support/cli.js';

// The reference outputs for the sample (it IS coffee_224.png), when shared/ is beside the repo.
const referenceFile = join(sharedDir, 'reference', 'resnet50', 'coffee.json');
interface Reference {
  top5: { index: number; label: string; prob: number }[];
  logits: number[];
  avg_pool: number[];
  softmax: number[];
}
const reference: Reference | undefined = existsSync(referenceFile) ? (JSON.parse(readFileSync(referenceFile, 'utf8')) as Reference) : undefined;
// Expected top-5 of the sample (shared/reference/resnet50/README.md), so the check runs without shared/ too.
const EXPECTED_TOP5 = [967, 968, 925, 504, 868];

type Result = CliResult;
const loupe = runLoupe;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('loupe: usage', () => {
  it('prints help with every command, exit 0', async () => {
    const r = await loupe(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['classify-imagenet', 'features', 'info', 'weights', '--threads', '--backend']) expect(r.stdout).toContain(c);
  });

  it('has --help on every command', async () => {
    for (const c of ['classify-imagenet', 'features', 'info', 'weights']) {
      const r = await loupe([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.stdout).toContain(`Usage: loupe ${c}`);
      expect(r.stdout).toContain('--threads'); // global options are shown too
    }
  });

  it('without a command prints usage and exits 2', async () => {
    const r = await loupe([]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toContain('Usage: loupe');
  });

  it('rejects an unknown layer, naming it and the known ones', async () => {
    const r = await loupe(['features', sample, '--layers', 'fc1000,res9']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown layer 'res9'; layers are conv1, res2c, res3d, res4f, res5c, avg_pool, fc1000, probabilities/);
  });

  it('rejects bad option values', async () => {
    expect((await loupe(['--threads', '0', 'info'])).code).toBe(2);
    expect((await loupe(['--backend', 'tpu', 'info'])).stderr).toMatch(/choices/);
    expect((await loupe(['classify-imagenet', sample, '--top', 'x'])).stderr).toMatch(/--top must be an integer/);
  });

  it('names a missing image before loading anything: a usage error, exit 2', async () => {
    const missing = join(tmpdir(), 'loupe-no-such-image.png');
    const r = await loupe(['classify-imagenet', sample, missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot read image ${missing}: no such file`);
    expect(r.stdout).toBe('');
  });

  it('names a directory given as an image (a usage error, exit 2)', async () => {
    const r = await loupe(['features', cliRoot]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${cliRoot}: it is a directory`);
  });
});

describe.runIf(haveWeights)('loupe with the real weights', () => {
  it('classify-imagenet --json: the sample is an espresso, as in the reference', async () => {
    const r = await loupe(['classify-imagenet', sample, '--json', '--threads', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines).toHaveLength(1);
    const line = lines[0] as { file: string; top5: { index: number; label: string; prob: number }[] };
    expect(line.file).toBe(sample);
    expect(line.top5.map((p) => p.index)).toEqual(EXPECTED_TOP5);
    expect(line.top5[0]!.label).toBe('espresso');
    expect(line.top5[0]!.prob).toBeCloseTo(0.9981, 3);
    if (reference) {
      line.top5.forEach((p, i) => {
        expect(p.label).toBe(reference.top5[i]!.label);
        expect(Math.abs(p.prob - reference.top5[i]!.prob)).toBeLessThan(1e-5);
      });
    }
  });

  it('classify-imagenet (human): top-5 with labels and timing', async () => {
    const r = await loupe(['classify-imagenet', sample, sample, '--top', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1\. espresso\s+99\.81%\s+\(class 967\)/);
    expect(r.stdout).toMatch(/2 images in [\d.]+ s \([\d.]+ img\/s\) on \S+/);
    expect(r.stdout.match(/^\s+3\. /gm)).toHaveLength(2);
    expect(r.stdout).not.toMatch(/^\s+4\. /m);
  });

  it('features --json: one line per image, the requested taps, matching the reference', async () => {
    const r = await loupe(['features', sample, sample, '--layers', 'fc1000,avg_pool', '--json', '--batch-size', '1']);
    expect(r.code).toBe(0);
    const lines = jsonLines(r.stdout) as { file: string; fc1000: number[]; avg_pool: number[] }[];
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(['file', 'fc1000', 'avg_pool']);
      expect(line.file).toBe(sample);
      expect(line.fc1000).toHaveLength(1000);
      expect(line.avg_pool).toHaveLength(2048);
      if (reference) {
        expect(maxAbsDiff(line.fc1000, reference.logits)).toBeLessThan(1e-4);
        expect(maxAbsDiff(line.avg_pool, reference.avg_pool)).toBeLessThan(1e-4);
      }
    }
    // Same image twice, batch size 1 vs. the same session: identical output.
    expect(lines[1]).toEqual(lines[0]);
  });

  it('features (human): a summary per layer with its shape', async () => {
    const r = await loupe(['features', sample, '--layers', 'res3d,probabilities']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/res3d\s+\[28x28x512\]\s+min/);
    expect(r.stdout).toMatch(/probabilities\s+\[1000\]\s+min/);
  });

  it('an image that cannot be decoded gets its error line, the others their classes (exit 2); a folder is searched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-cli-'));
    const bad = join(dir, 'not-an-image.png');
    writeFileSync(bad, 'this is not a PNG');
    const r = await loupe(['classify-imagenet', sample, bad, '--json']);
    expect(r.code).toBe(2);
    const [ok, err] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(ok!['file']).toBe(sample);
    expect(ok!['top5']).toHaveLength(5);
    expect(err).toEqual({ file: bad, error: { code: 'IMAGE_DECODE', message: expect.stringContaining(bad) } });
    copyFileSync(sample, join(dir, 'copy.png'));
    const folder = await loupe(['classify-imagenet', dir]);
    expect(folder.code).toBe(2);
    expect(folder.stdout).toContain(`${join(dir, 'copy.png')}\n  1. `);
    expect(folder.stdout).toContain(`${bad}\n  ERROR  cannot decode image ${bad}`);
    // a path that does not exist is a typo: the command fails before any work (a usage error)
    const missing = await loupe(['classify-imagenet', join(dir, 'nope.png')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^loupe: error: .*nope\.png: no such file/m);
  });

  it('info --json: build, thread budget from --threads, weights and session', async () => {
    const r = await loupe(['info', '--json', '--threads', '1']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as {
      build: { onednn: boolean; cuda: boolean; cudaUsable: boolean; cudaDetail: string };
      threads: { total: number; engine: number; sharpPerDecode: number; uvThreadpool: number | null };
      weights: { model: string; labels: string; verified: boolean; contentHash: string };
      session: { backend: string; device: string; threads: number };
    };
    expect(typeof info.build.onednn).toBe('boolean');
    expect(info.threads).toMatchObject({ total: 1, engine: 1, sharpPerDecode: 1 });
    // Set by bin/loupe.cjs before the pool starts when @loupe/core can plan the budget without loading
    // sharp; otherwise libuv's default (reported as null).
    if (info.threads.uvThreadpool !== null) expect(info.threads.uvThreadpool).toBeGreaterThanOrEqual(4);
    expect(info.weights.model).toMatch(/ResNet50[/\\]model\.json$/);
    expect(info.weights.contentHash).toMatch(/^[0-9a-f]{64}$/);
    expect(info.session.backend).toMatch(/^(cpu-|cuda-)/);
    expect(info.session.threads).toBe(1);
  });

  it('info reports a UV_THREADPOOL_SIZE given in the environment', async () => {
    const r = await loupe(['info', '--json'], { UV_THREADPOOL_SIZE: '7' });
    expect((JSON.parse(r.stdout) as { threads: { uvThreadpool: number } }).threads.uvThreadpool).toBe(7);
  });

  it('info (human) and weights (already cached: no download)', async () => {
    const info = await loupe(['info']);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/^engine: {3}oneDNN (yes|no)/m);
    expect(info.stdout).toMatch(/^weights: {2}\S+model\.json/m);
    const w = await loupe(['weights', '--json']);
    expect(w.code).toBe(0);
    expect(JSON.parse(w.stdout)).toMatchObject({ action: expect.stringMatching(/^(present|adopted)$/) });
    expect(w.stderr).not.toContain('npm pack');
  });
});

describe.skipIf(!haveWeights)('loupe in a pipeline', () => {
  it('stops quietly with exit 0 when the reader closes the pipe early (| head)', async () => {
    const r = await new Promise<Result>((resolvePromise, reject) => {
      const child = spawn(process.execPath, [bin, 'features', sample, sample, sample, '--layers', 'res3d', '--json', '--batch-size', '1'], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stdout.once('data', () => child.stdout.destroy()); // like `head -c 1`
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolvePromise({ code, stdout: '', stderr }));
    });
    expect(r.stderr).not.toContain('EPIPE');
    expect(r.code).toBe(0);
  });
});
