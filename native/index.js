// Loads the native addon built by cmake-js (native/build/Release/loupe_native.node).
// The JS contract is index.d.ts; the binding sources are binding/*.cc.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function locate() {
  const override = process.env.LOUPE_NATIVE_ADDON;  // an explicit .node path (e.g. a Debug build)
  if (override) return override;
  for (const config of ['Release', 'Debug']) {
    const candidate = join(here, 'build', config, 'loupe_native.node');
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

function load() {
  const path = locate();
  if (!path) {
    const err = new Error(
      `@loupe/native: the native addon is not built (looked for ${join(here, 'build', 'Release', 'loupe_native.node')}). ` +
        'Build it with `npx nx run native:build` (or `bash tools/bootstrap.sh`, which also installs the ' +
        'system packages it needs: cmake, g++, libdnnl-dev).');
    err.code = 'ERR_LOUPE_NATIVE_NOT_BUILT';
    throw err;
  }
  try {
    return require(path);
  } catch (cause) {
    const err = new Error(`@loupe/native: failed to load ${path}: ${cause && cause.message}`, { cause });
    err.code = 'ERR_LOUPE_NATIVE_LOAD';
    throw err;
  }
}

const addon = load();
export default addon;
