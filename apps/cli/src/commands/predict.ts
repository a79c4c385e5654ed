// loupe predict MODEL IMG|DIR...: the class of each image under a trained classifier, with per-class scores.
import { promises as fs } from 'node:fs';

import { DECODABLE_IMAGE_EXTENSIONS, findImageFiles, ImageReadError, predictSvm, readModelHeader } from '@loupe/core';

import { checkWeights, featureCacheSetting, featuresOf, loadClassifier } from '../classification.js';
import { checkReadable, openEngine, write, type RunContext } from '../context.js';
import { EXIT_OK, EXIT_SOME_FAILED } from '../errors.js';
import { float32ToString, printable } from '../format.js';
import { predictOneClassCommand } from './oneclass.js';

export interface PredictCommandOptions {
  json?: boolean;
  cache: boolean;
  heatmaps?: string;
  classifier?: string;
}

/** Files as given; folders expanded to the images under them. A folder without images is an error. */
export async function expandInputs(inputs: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    const st = await fs.stat(input).catch(() => undefined);
    if (st?.isDirectory()) {
      const found = await findImageFiles(input);
      if (found.length === 0) throw new ImageReadError(input, `the folder holds no image files (${DECODABLE_IMAGE_EXTENSIONS.join(' ')})`);
      files.push(...found);
    } else files.push(input);
  }
  await checkReadable(files);
  return files;
}

export async function predictCommand(modelFile: string, inputs: string[], o: PredictCommandOptions, ctx: RunContext): Promise<number> {
  const header = await readModelHeader(modelFile);
  if (header.kind === 'one-class') {
    return predictOneClassCommand(modelFile, inputs, {
      json: Boolean(o.json),
      ...(o.heatmaps !== undefined ? { heatmaps: o.heatmaps } : {}),
      ...(o.classifier !== undefined ? { classifier: o.classifier } : {}),
    }, ctx);
  }
  if (o.heatmaps !== undefined || o.classifier !== undefined) {
    throw new Error(`${modelFile}: --heatmaps and --classifier apply to one-class models; this is an SVM classifier`);
  }
  const c = await loadClassifier(modelFile);
  const files = await expandInputs(inputs);
  const engine = await openEngine(ctx);
  checkWeights(c, engine);
  // One image that cannot be read or decoded is reported in its place; the others are still classified.
  const feats = await featuresOf(files, engine, c.layer, c.fit, ctx, { label: 'predict', cacheDir: featureCacheSetting(!o.cache), skipInvalid: true });
  const invalid = new Map(feats.invalid.map((x) => [x.index, x.error]));
  const ok = files.map((_, i) => i).filter((i) => !invalid.has(i));
  const pred = ok.length > 0 ? predictSvm(c.model, ok.map((i) => feats.features[i] as Float32Array)) : { scores: new Float32Array(0), labels: [] as string[] };
  const k = c.model.classes.length;
  const width = Math.max(...c.model.classes.map((l) => l.length), 'ERROR'.length);
  let row = 0;
  for (let i = 0; i < files.length; i++) {
    const error = invalid.get(i);
    if (error) {
      if (o.json) await write(ctx.stdout, `${JSON.stringify({ file: files[i], error: { code: error.code, message: error.message } })}\n`);
      else await write(ctx.stdout, `${'ERROR'.padEnd(width)}  ${printable(files[i]!)}: ${printable(error.message)}\n`);
      continue;
    }
    const r = row++;
    const scores = c.model.classes.map((label, j) => ({ label, score: pred.scores[r * k + j] as number }));
    if (o.json) {
      const s = scores.map((x) => `${JSON.stringify(x.label)}:${float32ToString(x.score + 0)}`).join(','); // + 0: no "-0"
      await write(ctx.stdout, `{"file":${JSON.stringify(files[i])},"label":${JSON.stringify(pred.labels[r])},"scores":{${s}}}\n`);
    } else {
      const ranked = [...scores].sort((a, b) => b.score - a.score);
      const rest = ranked.slice(1, 3).map((x) => `${x.label} ${x.score.toFixed(3)}`).join(', ');
      await write(ctx.stdout, `${(pred.labels[r] as string).padEnd(width)}  ${(ranked[0] as { score: number }).score.toFixed(3)}  ${printable(files[i]!)}${rest ? `  (next: ${rest})` : ''}\n`);
    }
  }
  if (!o.json) {
    const meaning = c.model.decoding === 'vote' ? 'votes + a loss tie-break in (0, 0.5]' : 'negated ECOC hinge losses (0 = best)';
    const failed = invalid.size > 0 ? `, ${invalid.size} could not be read or decoded` : '';
    await write(ctx.stdout, `${files.length} image${files.length === 1 ? '' : 's'}${failed}; scores are ${meaning}, higher = more likely\n`);
  }
  return invalid.size > 0 ? EXIT_SOME_FAILED : EXIT_OK;
}
