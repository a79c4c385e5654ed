// INT8 end to end, real weights and real MVTec bottle images: `loupe train --precision int8` (one-class and
// SVM) calibrates on the training images and stores the calibration in the model file; core's Inspector, local
// `loupe predict`, `loupe evaluate` and a real `loupe serve` on loopback (`loupe --server ... inspect`) then all
// run that int8 session and give the same verdicts and scores; a model trained without --precision stays
// fp32; `loupe info` names the int8 kernels; `classify-imagenet --precision int8` uses the built-in calibration.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { Engine, Inspector, loadModel, readModelSummary } from '@loupe/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bin, bottleDir, haveWeights, jsonLines, lastJson, runLoupe, sample, type CliResult } from './support/cli.js';

const haveBottle = existsSync(join(bottleDir, 'train', 'good'));
const runIt = haveWeights && haveBottle;
if (!runIt) console.warn(`int8.test: skipped (${!haveBottle ? `no MVTec bottle at ${bottleDir}` : 'no weights'})`);
if (!runIt && process.env['CI']) throw new Error('CI: int8.test needs the weights and the shared bottle images');

const loupe = (args: string[]): Promise<CliResult> => runLoupe(['--threads', '2', '--no-progress', ...args]);

async function startServe(args: string[], logs: string[]): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [bin, '--threads', '2', 'serve', '--port', '0', '--host', '127.0.0.1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const address = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (line.trim()) logs.push(line);
        if (line.includes('"msg":"serving"')) resolve(`127.0.0.1:${(JSON.parse(line) as { address: string }).address.split(':').pop()}`);
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    void exited.then((c) => reject(new Error(`loupe serve exited (${c}):\n${logs.join('\n')}`)));
  });
  return { child, address };
}

describe.skipIf(!runIt)('INT8 models: CLI, library and server agree', () => {
  let tmp = '';
  let cat = '';
  let labelled = '';
  let server: ChildProcess | undefined;
  let address = '';
  const logs: string[] = [];
  const models = (): string => join(tmp, 'models');
  const testDir = (): string => join(tmp, 'inputs');

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'loupe-int8-'));
    cat = join(tmp, 'bottle');
    labelled = join(tmp, 'labelled');
    const link = (src: string, dst: string): void => {
      mkdirSync(dirname(dst), { recursive: true });
      symlinkSync(src, dst);
    };
    const first = (dir: string, n: number, from = 0): string[] => readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(from, from + n);
    for (const f of first(join(bottleDir, 'train', 'good'), 20)) link(join(bottleDir, 'train', 'good', f), join(cat, 'train', 'good', f));
    for (const [type, n] of [['good', 3], ['broken_large', 3]] as const) {
      for (const f of first(join(bottleDir, 'test', type), n)) {
        link(join(bottleDir, 'test', type, f), join(cat, 'test', type, f));
        link(join(bottleDir, 'test', type, f), join(testDir(), `${type}-${f}`));
        if (type !== 'good') link(join(bottleDir, 'ground_truth', type, f.replace(/\.png$/, '_mask.png')), join(cat, 'ground_truth', type, f.replace(/\.png$/, '_mask.png')));
      }
    }
    for (const f of first(join(bottleDir, 'train', 'good'), 8, 30)) link(join(bottleDir, 'train', 'good', f), join(labelled, 'good', f));
    for (const f of first(join(bottleDir, 'test', 'broken_large'), 8, 5)) link(join(bottleDir, 'test', 'broken_large', f), join(labelled, 'broken', f));
    mkdirSync(models());
    for (const args of [
      ['train', cat, '--mode', 'one-class', '--precision', 'int8', '--out', join(models(), 'oc-int8'), '--json'],
      ['train', cat, '--mode', 'one-class', '--out', join(models(), 'oc-fp32'), '--json'],
      ['train', labelled, '--precision', 'int8', '--split', '0.25', '--out', join(models(), 'svm-int8'), '--json'],
    ]) {
      const r = await loupe(args);
      if (r.code !== 0) throw new Error(`loupe ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    }
    ({ child: server, address } = await startServe(['--models', models(), '--metrics-port', '0', '--db', join(tmp, 'log.db')], logs));
  }, 600_000);

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('train --precision int8 stores a calibration of the training images; without it the model stays fp32', async () => {
    const engine = await Engine.open({ threads: 2 });
    for (const name of ['oc-int8', 'svm-int8']) {
      const file = join(models(), `${name}.loupe`);
      const m = await loadModel(file);
      expect(m.int8Calibration, name).toBeDefined();
      expect(m.int8Calibration!.weightsHash).toBe(engine.weightsHash);
      expect(m.int8Calibration!.method).toBe('mse');
      expect(Object.keys(m.int8Calibration!.ranges)).toContain('res4f');
      expect((await readModelSummary(file)).precision).toBe('int8');
      // The header line carries it, as the server's listings read it.
      expect(JSON.parse(readFileSync(file, 'utf8').split('\n', 1)[0]!)).toHaveProperty('int8Calibration');
    }
    const fp = await loadModel(join(models(), 'oc-fp32.loupe'));
    expect(fp.int8Calibration).toBeUndefined();
    expect((await readModelSummary(join(models(), 'oc-fp32.loupe'))).precision).toBe('fp32');
    // The Inspector runs each model in its own precision.
    const i8 = await Inspector.open(join(models(), 'oc-int8.loupe'), { engine });
    const f32 = await Inspector.open(join(models(), 'oc-fp32.loupe'), { engine });
    expect((i8.session as { precision?: string }).precision).toBe('int8');
    expect((f32.session as { precision?: string }).precision).toBe('fp32');
    // int8 features are not fp32's: the same image scores differently (but close) under the two models' sessions.
    const img = join(testDir(), readdirSync(testDir()).sort()[0]!);
    const a = await i8.inspect(img);
    const b = await f32.inspect(img);
    expect(a.rawScore).not.toBe(b.rawScore);
  });

  for (const name of ['oc-int8', 'svm-int8']) {
    it(`${name}: library, local predict and the server give the same verdicts and scores`, async () => {
      const file = join(models(), `${name}.loupe`);
      const engine = await Engine.open({ threads: 2 });
      const inspector = await Inspector.open(file, { engine });
      const inputs = readdirSync(testDir()).sort().map((f) => join(testDir(), f));
      const lib: Awaited<ReturnType<Inspector['inspect']>>[] = [];
      for (const f of inputs) lib.push(await inspector.inspect(f));
      const local = await loupe(['predict', file, testDir(), '--json']);
      const remote = await loupe(['--server', address, 'inspect', testDir(), '--model', name, '--json']);
      // One line per image, then the summary line.
      expect(jsonLines(remote.stdout), remote.stderr).toEqual(jsonLines(local.stdout));
      const ll = jsonLines(local.stdout).filter((l) => 'file' in l);
      expect(ll, local.stderr).toHaveLength(inputs.length);
      ll.forEach((l, i) => {
        expect(l['verdict']).toBe(lib[i]!.verdict);
        expect(l['score'] as number).toBeCloseTo(lib[i]!.score, 4);
      });
      // The broken bottles are found in int8 too.
      expect(ll.filter((l) => String(l['file']).includes('broken_large-') && l['verdict'] === 'anomalous').length).toBeGreaterThanOrEqual(2);
    }, 300_000);
  }

  it('evaluate follows the model: the int8 one-class model still separates the broken bottles', async () => {
    const r = await loupe(['evaluate', join(models(), 'oc-int8.loupe'), cat, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const e = lastJson(r.stdout);
    expect(e['imageAuroc'] as number).toBeGreaterThan(0.9);
  }, 300_000);

  it('info names the oneDNN kernels int8 runs on; classify-imagenet --precision int8 uses the built-in calibration', async () => {
    const info = await loupe(['info', '--json']);
    const build = (JSON.parse(info.stdout) as { build: { onednnInt8Kernel: string; onednnIsa: string } }).build;
    expect(build.onednnInt8Kernel).not.toBe('');
    const human = await loupe(['info']);
    expect(human.stdout).toContain(`int8 convolutions on ${build.onednnInt8Kernel}`);
    const c = await loupe(['--precision', 'int8', 'classify-imagenet', sample, '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toContain('espresso');
  }, 300_000);
});
