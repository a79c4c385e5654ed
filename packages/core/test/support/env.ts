// Test helpers: where the shared reference data is, temp dirs, and whether the native addon is built.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const coreRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repoRoot = resolve(coreRoot, '..', '..');

/** $LOUPE_SHARED_DIR, else <repo>/../shared (the layout of the workplace and CI). */
export function sharedDir(): string {
  return process.env['LOUPE_SHARED_DIR'] ? resolve(process.env['LOUPE_SHARED_DIR']) : resolve(repoRoot, '..', 'shared');
}

export const referenceDir = join(sharedDir(), 'reference', 'resnet50');
export const hasReference = existsSync(join(referenceDir, 'chelsea_224.png'));

export const addonPath = join(repoRoot, 'native', 'build', 'Release', 'loupe_native.node');
export const hasAddon = existsSync(addonPath) || !!process.env['LOUPE_NATIVE_ADDON'];

export function tempDir(prefix = 'loupe-core-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Logs why a block is skipped, so a skip is never silent. */
export function skipNote(what: string, why: string): void {
  console.warn(`[skip] ${what}: ${why}`);
}
