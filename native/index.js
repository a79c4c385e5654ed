// Loads the native addon: the prebuilt one of the platform package (@loupe/native-<platform>-<arch>, with
// oneDNN and its runtime libraries beside it), else a local source build (native/build/Release, what
// `nx run native:build` makes in the repository). The JS contract is index.d.ts; the binding sources are
// binding/*.cc. A failure says what is missing and how to fix it.
import { createRequire } from 'node:module';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const platform = `${process.platform}-${process.arch}`;
const platformPackage = `@loupe/native-${platform}`;
// The platform packages published (each one an optionalDependency in package.json, one npm/<dir> here).
const PREBUILT = ['linux-x64'];

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
  return report ? !report.header?.glibcVersionRuntime : false;
}

/** The addon's path and where it came from, or null. */
function locate() {
  const override = process.env.LOUPE_NATIVE_ADDON; // an explicit .node path (e.g. a Debug build)
  if (override) return { path: override, from: 'LOUPE_NATIVE_ADDON' };
  try {
    return { path: require.resolve(`${platformPackage}/loupe_native.node`), from: platformPackage };
  } catch {
    // not installed (another platform, or --omit=optional): a local build may still exist
  }
  for (const config of ['Release', 'Debug']) {
    const candidate = join(here, 'build', config, 'loupe_native.node');
    if (existsSync(candidate)) return { path: candidate, from: 'a source build' };
  }
  return null;
}

function notFound() {
  const supported = PREBUILT.includes(platform) && !isMusl();
  const why = supported
    ? `the platform package ${platformPackage} is not installed (npm skips optional dependencies with --omit=optional or --no-optional, ` +
      `and when the lock file was made on another platform). Install it: npm install ${platformPackage}`
    : `there is no prebuilt addon for ${platform}${isMusl() ? ' with musl libc' : ''} (prebuilt: ${PREBUILT.join(', ')} with glibc). ` +
      'Build it from source in the Loupe repository: apt install cmake g++ libdnnl-dev, then `npx nx run native:build`, ' +
      'and point LOUPE_NATIVE_ADDON at native/build/Release/loupe_native.node';
  const err = new Error(`@loupe/native: no native addon for ${platform}: ${why}`);
  err.code = 'ERR_LOUPE_NATIVE_NOT_BUILT';
  return err;
}

function loadFailed(found, cause) {
  const message = String(cause?.message ?? cause);
  const dir = dirname(found.path);
  // "libdnnl.so.2: cannot open shared object file" (absent), "/usr/lib/.../libdnnl.so.2: file too short"
  // (a damaged or emptied copy): name the library and where it was expected.
  const lib = /(?:^|[\s/])([\w.+-]+\.so(?:\.\d+)*): (?:cannot open shared object file|file too short)/.exec(message)?.[1];
  let hint;
  if (lib && found.from === platformPackage) {
    const present = readdirSync(dir).filter((f) => /\.so(\.|$)/.test(f));
    hint = `${lib} should be in ${dir} beside the addon (there: ${present.join(', ') || 'none'}): the package is incomplete; reinstall it: npm install --force ${platformPackage}`;
  } else if (lib) {
    hint = `${lib} is not on this system: a source build links the system's oneDNN (apt install libdnnl2), or use the prebuilt ${platformPackage}`;
  } else if (/GLIBC_[\d.]+' not found|GLIBCXX_[\d.]+' not found/.test(message)) {
    hint = 'this system\'s C or C++ runtime is older than the one the addon was built against (the prebuilt linux-x64 addon needs glibc 2.34+, libstdc++ from GCC 12+): update the OS or build from source';
  } else if (/invalid ELF header|wrong ELF class/.test(message)) {
    hint = `the addon at ${found.path} was built for another platform than ${platform}: reinstall on this machine (npm ci)`;
  } else {
    hint = `from ${found.from}`;
  }
  const err = new Error(`@loupe/native: failed to load ${found.path}: ${message}\n  ${hint}`, { cause });
  err.code = 'ERR_LOUPE_NATIVE_LOAD';
  return err;
}

function load() {
  const found = locate();
  if (!found) throw notFound();
  try {
    return require(found.path);
  } catch (cause) {
    throw loadFailed(found, cause);
  }
}

const addon = load();
export default addon;
