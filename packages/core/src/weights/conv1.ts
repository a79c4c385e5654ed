// Reads one weight tensor (e.g. ResNet-50's conv1 kernel, for the report's filter montage) straight
// from TF.js layers weights: model.json's weightsManifest lists float32 tensors laid end to end over
// the group's shard files. Only the bytes of the requested tensor are read.
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';

import { WeightsError } from '../errors.js';

interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: unknown;
}
interface ManifestGroup {
  paths: string[];
  weights: ManifestWeight[];
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4 };

/** A float32 tensor from a TF.js model.json (+ shards); WeightsError naming the file on any problem. */
export async function readTfjsTensor(modelJson: string, name: string): Promise<{ shape: number[]; data: Float32Array }> {
  let manifest: ManifestGroup[];
  try {
    const json = JSON.parse(await fs.readFile(modelJson, 'utf8')) as { weightsManifest?: ManifestGroup[] };
    if (!Array.isArray(json.weightsManifest)) throw new Error('no weightsManifest');
    manifest = json.weightsManifest;
  } catch (err) {
    throw new WeightsError('WEIGHTS_CORRUPT', `cannot read the weights manifest ${modelJson}: ${err instanceof Error ? err.message : String(err)}`, { input: modelJson, cause: err });
  }
  for (const group of manifest) {
    let offset = 0;
    for (const w of group.weights) {
      const count = w.shape.reduce((a, b) => a * b, 1);
      const size = DTYPE_BYTES[w.dtype];
      if (size === undefined || w.quantization !== undefined) {
        if (w.name === name) throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: tensor '${name}' is ${w.dtype}${w.quantization ? ' (quantized)' : ''}, not float32`, { input: modelJson });
        throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: cannot locate '${name}' past tensor '${w.name}' (${w.dtype}${w.quantization ? ', quantized' : ''})`, { input: modelJson });
      }
      if (w.name === name) {
        if (w.dtype !== 'float32') throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: tensor '${name}' is ${w.dtype}, not float32`, { input: modelJson });
        return { shape: [...w.shape], data: await readSpan(modelJson, group.paths, offset, count * 4) };
      }
      offset += count * size;
    }
  }
  throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: no tensor named '${name}'`, { input: modelJson });
}

/** Reads [offset, offset + length) of the concatenation of the shard files. */
async function readSpan(modelJson: string, paths: readonly string[], offset: number, length: number): Promise<Float32Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  let base = 0;
  for (const p of paths) {
    if (filled === length) break;
    const file = join(dirname(modelJson), p);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, 'r');
    } catch (err) {
      throw new WeightsError('WEIGHTS_MISSING', `cannot open weights shard ${file}: ${err instanceof Error ? err.message : String(err)}`, { input: file, cause: err });
    }
    try {
      const size = (await fh.stat()).size;
      const want = offset + filled;
      if (want < base + size) {
        const n = Math.min(length - filled, base + size - want);
        const { bytesRead } = await fh.read(out, filled, n, want - base);
        if (bytesRead !== n) throw new WeightsError('WEIGHTS_CORRUPT', `weights shard ${file} is shorter than expected`, { input: file });
        filled += n;
      }
      base += size;
    } finally {
      await fh.close();
    }
  }
  if (filled !== length) throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: the shards end before the tensor does`, { input: modelJson });
  return new Float32Array(out.buffer);
}

/** ResNet-50's first convolution, HWIO [7][7][3][64] (BGR input channels), as conv1FiltersPng takes it. */
export async function readConv1Kernel(modelJson: string): Promise<Float32Array> {
  const t = await readTfjsTensor(modelJson, 'conv1/kernel');
  if (t.shape.join('x') !== '7x7x3x64') throw new WeightsError('WEIGHTS_CORRUPT', `${modelJson}: conv1/kernel has shape [${t.shape.join(', ')}], expected [7, 7, 3, 64]`, { input: modelJson });
  return t.data;
}
