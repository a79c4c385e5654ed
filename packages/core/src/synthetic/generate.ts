// Procedural stand-in for the paper's photo sets: bottles, cartons and spoons with the Table 1 classes,
// deterministic from a seed, written as folder-per-label trees `<out>/<object>/<label>/*.png`.
// Each image depends only on (seed, object, label, index), so the output does not depend on
// concurrency, and generating more images per label keeps the earlier ones identical.

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { mapLimit } from '../datasets/util.js';
import { createRng } from '../datasets/random.js';
import { LoupeError } from '../errors.js';
import { writeFileAtomic } from '../modelfile/atomic.js';
import { bottleSvg, cartonSvg, spoonSvg, type BottleLabel, type CartonLabel, type ObjectSvg, type SpoonLabel } from './objects.js';
import { randomStyle, renderScene, sceneSvg } from './scene.js';

export type SyntheticObject = 'bottle' | 'carton' | 'spoon';

/** Folder names of the classes of each object (paper Table 1), 'good' first. */
export const SYNTHETIC_LABELS: { readonly bottle: readonly BottleLabel[]; readonly carton: readonly CartonLabel[]; readonly spoon: readonly SpoonLabel[] } = {
  bottle: ['good', 'a-little-dulled', 'braided', 'crooked-more'],
  carton: ['good', 'irregular', 'another-shape', 'spoiled'],
  spoon: ['good', 'scratched', 'crooked', 'more-crooked', 'broken'],
};

export const SYNTHETIC_OBJECTS: readonly SyntheticObject[] = ['bottle', 'carton', 'spoon'];

/** Bumped whenever the drawing changes (recorded in the manifest). */
export const SYNTHETIC_GENERATOR_VERSION = 1;

function objectSvg(object: SyntheticObject, label: string, rng: ReturnType<typeof createRng>): ObjectSvg {
  if (object === 'bottle') return bottleSvg(rng, label as BottleLabel);
  if (object === 'carton') return cartonSvg(rng, label as CartonLabel);
  return spoonSvg(rng, label as SpoonLabel);
}

/** Pose variation per object: spoons lie at any angle; bottles and cartons stand roughly upright. */
function poseRange(object: SyntheticObject): { maxRotation: number; maxShift: number; scale: [number, number] } {
  if (object === 'spoon') return { maxRotation: 50, maxShift: 14, scale: [0.85, 1.08] };
  if (object === 'bottle') return { maxRotation: 20, maxShift: 12, scale: [0.95, 1.15] };
  return { maxRotation: 22, maxShift: 12, scale: [0.85, 1.08] };
}

function checkLabel(object: SyntheticObject, label: string): void {
  const labels = SYNTHETIC_LABELS[object] as readonly string[] | undefined;
  if (!labels) throw new LoupeError('INVALID_ARGUMENT', `unknown synthetic object '${object}' (${SYNTHETIC_OBJECTS.join(', ')})`);
  if (!labels.includes(label)) throw new LoupeError('INVALID_ARGUMENT', `unknown ${object} label '${label}' (${labels.join(', ')})`);
}

/** The SVG of one sample (before noise), for inspection. */
export function syntheticSampleSvg(object: SyntheticObject, label: string, index: number, opts: { seed?: number | string; size?: number } = {}): string {
  checkLabel(object, label);
  const rng = createRng(`${opts.seed ?? 0}|${object}|${label}|${index}`);
  const style = randomStyle(rng.fork('style'), poseRange(object));
  return sceneSvg(rng.fork('scene'), style, opts.size ?? 256, objectSvg(object, label, rng.fork('object')));
}

/** Renders one sample to PNG bytes. Deterministic in (seed, object, label, index, size). */
export async function renderSyntheticSample(object: SyntheticObject, label: string, index: number, opts: { seed?: number | string; size?: number } = {}): Promise<Buffer> {
  checkLabel(object, label);
  const size = opts.size ?? 256;
  if (!Number.isInteger(size) || size < 32 || size > 2048) throw new LoupeError('INVALID_ARGUMENT', `size must be an integer in [32, 2048], got ${size}`);
  const rng = createRng(`${opts.seed ?? 0}|${object}|${label}|${index}`);
  const style = randomStyle(rng.fork('style'), poseRange(object));
  const svg = sceneSvg(rng.fork('scene'), style, size, objectSvg(object, label, rng.fork('object')));
  return renderScene(svg, style, rng.fork('noise'), size);
}

export interface GenerateSyntheticOptions {
  /** Output root; images go to `<outDir>/<object>/<label>/<object>-<label>-<index>.png`. */
  outDir: string;
  objects?: readonly SyntheticObject[];
  /** Images per label. Default 40. */
  perLabel?: number;
  /** Image edge in px. Default 256. */
  size?: number;
  seed?: number | string;
  /** Images rendered at once. Default 2. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SyntheticManifest {
  readonly generator: 'loupe-synthetic';
  readonly version: number;
  readonly seed: number | string;
  readonly size: number;
  readonly perLabel: number;
  readonly objects: { readonly object: SyntheticObject; readonly labels: readonly string[]; readonly files: readonly { relPath: string; label: string; index: number }[] }[];
}

/** Writes the dataset (and `<outDir>/manifest.json`); returns the manifest. */
export async function generateSyntheticDataset(opts: GenerateSyntheticOptions): Promise<SyntheticManifest> {
  const objects = opts.objects ?? SYNTHETIC_OBJECTS;
  const perLabel = opts.perLabel ?? 40;
  const size = opts.size ?? 256;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(perLabel) || perLabel < 1) throw new LoupeError('INVALID_ARGUMENT', `perLabel must be a positive integer, got ${perLabel}`);
  const jobs: { object: SyntheticObject; label: string; index: number; file: string; relPath: string }[] = [];
  for (const object of objects) {
    for (const label of SYNTHETIC_LABELS[object]) {
      checkLabel(object, label);
      const dir = path.join(opts.outDir, object, label);
      await fs.mkdir(dir, { recursive: true });
      for (let index = 0; index < perLabel; index++) {
        const name = `${object}-${label}-${String(index).padStart(4, '0')}.png`;
        jobs.push({ object, label, index, file: path.join(dir, name), relPath: `${object}/${label}/${name}` });
      }
    }
  }
  let done = 0;
  await mapLimit(jobs, opts.concurrency ?? 2, async (j) => {
    const png = await renderSyntheticSample(j.object, j.label, j.index, { seed, size });
    await fs.writeFile(j.file, png);
    done++;
    opts.onProgress?.(done, jobs.length);
  });
  const manifest: SyntheticManifest = {
    generator: 'loupe-synthetic',
    version: SYNTHETIC_GENERATOR_VERSION,
    seed,
    size,
    perLabel,
    objects: objects.map((object) => ({
      object,
      labels: SYNTHETIC_LABELS[object],
      files: jobs.filter((j) => j.object === object).map((j) => ({ relPath: j.relPath, label: j.label, index: j.index })),
    })),
  };
  await writeFileAtomic(path.join(opts.outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
