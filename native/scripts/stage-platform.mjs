#!/usr/bin/env node
// Stages the platform package npm/<platform>-<arch>/ (what sharp ships as @img/sharp-<platform>): the
// built addon plus every shared library it needs beyond the C/C++ runtime (oneDNN, the OpenMP runtime,
// oneDNN's OpenCL loader), found with ldd, so the installed addon needs no apt package. The addon's
// DT_RPATH is $ORIGIN (CMakeLists.txt): it finds them beside itself. Run by `nx run native:build`.
// `--check`: also fail when the staged addon, with its libraries, still resolves one from outside.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const platform = `${process.platform}-${process.arch}`;
const dest = join(nativeDir, 'npm', platform);
const addon = join(nativeDir, 'build', 'Release', 'loupe_native.node');

// The libraries every glibc system has (glibc itself, the C++ runtime, the kernel's vDSO): not bundled.
const SYSTEM = /^(linux-vdso|linux-gate|ld-linux[^/]*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libstdc\+\+|libgcc_s)\.so/;

if (process.platform !== 'linux') {
  // Other platforms get their own staging rule (macOS: install_name_tool/@loader_path) when they are built.
  console.log(`stage-platform: nothing to stage on ${platform}`);
  process.exit(0);
}
if (!existsSync(dest)) throw new Error(`stage-platform: no platform package folder ${dest} (add npm/${platform}/package.json)`);
if (!existsSync(addon)) throw new Error(`stage-platform: ${addon} is not built (npx nx run native:build)`);

/** ldd's answer: soname -> resolved path (null when "not found"). */
export function ldd(file) {
  const out = execFileSync('ldd', [file], { encoding: 'utf8' });
  const libs = new Map();
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(not found|(\S+))/.exec(line);
    if (m) libs.set(m[1], m[3] ?? null);
  }
  return libs;
}

/** /usr/share/doc/<package>/copyright of the Debian package owning `file`, if any. */
function debianCopyright(file) {
  try {
    const pkg = execFileSync('dpkg-query', ['-S', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0].trim();
    const p = `/usr/share/doc/${pkg}/copyright`;
    return existsSync(p) ? p : undefined;
  } catch {
    return undefined;
  }
}

for (const f of readdirSync(dest)) if (f.endsWith('.node') || f.endsWith('.copyright') || /\.so(\.|$)/.test(f)) rmSync(join(dest, f));
copyFileSync(addon, join(dest, 'loupe_native.node'));
const bundled = [];
for (const [soname, path] of ldd(addon)) {
  if (SYSTEM.test(soname)) continue;
  if (!path) throw new Error(`stage-platform: ${soname}, needed by ${addon}, is not found: install it (apt install libdnnl-dev) and rebuild`);
  copyFileSync(realpathSync(path), join(dest, soname)); // the file under its soname, as the loader asks for it
  // Its licence travels with it: the Debian copyright file of the package that owns it.
  const copyright = debianCopyright(realpathSync(path)) ?? debianCopyright(path);
  if (copyright) copyFileSync(copyright, join(dest, `${soname}.copyright`));
  bundled.push(`${soname} (${realpathSync(path)})`);
}
console.log(`stage-platform: ${platform}: loupe_native.node + ${bundled.join(', ')}`);

if (process.argv.includes('--check')) {
  const outside = [...ldd(join(dest, 'loupe_native.node'))].filter(([soname, path]) => !SYSTEM.test(soname) && (!path || dirname(path) !== dest));
  if (outside.length > 0) throw new Error(`stage-platform: the staged addon resolves ${outside.map(([s, p]) => `${s} => ${p ?? 'not found'}`).join(', ')} outside ${dest}`);
  console.log(`stage-platform: every non-system library of ${basename(dest)}/loupe_native.node resolves beside it`);
}
