// loupe info : what this build and machine offer, the thread budget, and which weights are used.
import { nativeBuildInfo, readMarker, resolveWeights, type BuildInfo } from '@loupe/core';

import { openEngine, write, type RunContext } from '../context.js';
import { cliVersion, errorText } from '../errors.js';

export interface InfoCommandOptions {
  json?: boolean;
}

interface InfoReport {
  version: string;
  node: string;
  napi: string | undefined;
  build: BuildInfo | null;
  buildError?: string;
  threads: { total: number; engine: number; sharpPerDecode: number; decodeConcurrency: number; uvThreadpool: number | null };
  weights: {
    model: string;
    labels: string | null;
    verified: boolean;
    package: string | null;
    integrity: string | null;
    contentHash: string | null;
  } | null;
  weightsError?: string;
  session: { backend: string; device: string; precision: string; threads: number } | null;
  sessionError?: string;
}

export async function infoCommand(o: InfoCommandOptions, ctx: RunContext): Promise<number> {
  const uv = Number(process.env['UV_THREADPOOL_SIZE']);
  const report: InfoReport = {
    version: cliVersion(),
    node: process.version,
    napi: process.versions.napi,
    build: null,
    threads: {
      total: ctx.budget.total,
      engine: ctx.budget.engineThreads,
      sharpPerDecode: ctx.budget.sharpThreads,
      decodeConcurrency: ctx.budget.decodeConcurrency,
      uvThreadpool: Number.isInteger(uv) && uv > 0 ? uv : null,
    },
    weights: null,
    session: null,
  };
  try {
    report.build = await nativeBuildInfo();
  } catch (err) {
    report.buildError = errorText(err);
  }
  try {
    const w = resolveWeights(ctx.opts.weights !== undefined ? { path: ctx.opts.weights } : {});
    const marker = await readMarker(w.dir);
    report.weights = {
      model: w.model,
      labels: w.labels ?? null,
      verified: w.verified,
      package: marker ? `${marker.package}@${marker.version}` : null,
      integrity: marker?.integrity ?? null,
      contentHash: null,
    };
  } catch (err) {
    report.weightsError = errorText(err);
  }
  if (report.build && report.weights) {
    try {
      const engine = await openEngine(ctx);
      report.weights.contentHash = engine.weightsHash;
      const s = engine.session;
      report.session = { backend: s.backend, device: s.device, precision: s.precision, threads: s.threads };
    } catch (err) {
      report.sessionError = errorText(err);
    }
  }

  if (o.json) await write(ctx.stdout, `${JSON.stringify(report)}\n`);
  else await write(ctx.stdout, humanInfo(report));
  return report.build && report.weights && report.session ? 0 : 1;
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function humanInfo(r: InfoReport): string {
  const lines: string[] = [];
  lines.push(`loupe ${r.version} (node ${r.node}, N-API ${r.napi ?? '?'})`);
  if (r.build) {
    lines.push(`engine:   oneDNN ${yesNo(r.build.onednn)}, CUDA compiled in ${yesNo(r.build.cuda)}, CUDA usable ${yesNo(r.build.cudaUsable)}` +
      (r.build.cudaDetail ? ` (${r.build.cudaDetail})` : ''));
    // Which oneDNN kernels an int8 / fp32 session runs on here (VNNI where the CPU has it).
    if (r.build.onednn) {
      lines.push(`oneDNN:   ${r.build.onednnVersion}, ISA ${r.build.onednnIsa}; int8 convolutions on ${r.build.onednnInt8Kernel || '?'}, fp32 on ${r.build.onednnFp32Kernel || '?'}`);
    }
  } else {
    lines.push(`engine:   not available: ${r.buildError ?? 'unknown error'}`);
  }
  const t = r.threads;
  lines.push(`threads:  ${t.total} in the budget: engine ${t.engine}, sharp ${t.sharpPerDecode} per decode x ${t.decodeConcurrency} decode(s) at a time, ` +
    `UV_THREADPOOL_SIZE ${t.uvThreadpool ?? 'default (4)'}`);
  if (r.weights) {
    lines.push(`weights:  ${r.weights.model}`);
    lines.push(`          labels ${r.weights.labels ?? 'none'}`);
    lines.push(`          ${r.weights.verified ? 'verified' : 'NOT verified (no marker from a checked fetch)'}` +
      (r.weights.package ? `: ${r.weights.package} ${r.weights.integrity}` : ''));
    if (r.weights.contentHash) lines.push(`          content sha256 ${r.weights.contentHash}`);
  } else {
    lines.push(`weights:  not available: ${r.weightsError ?? 'unknown error'}`);
  }
  if (r.session) lines.push(`session:  ${r.session.backend} on ${r.session.device}, ${r.session.precision}, ${r.session.threads} thread(s)`);
  else if (r.sessionError) lines.push(`session:  cannot open: ${r.sessionError}`);
  return `${lines.join('\n')}\n`;
}
