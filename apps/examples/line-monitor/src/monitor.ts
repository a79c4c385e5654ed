// The whole app in one function: open the engine and the model, inspect every image of a folder with an
// Inspector, and report each verdict as it comes. Everything here is @loupe/core's public API.
import { Engine, findImageFiles, Inspector, type InspectionOutcome } from '@loupe/core';

export interface MonitorOptions {
  /** Images per engine batch (default 8). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Called once the model is open, before the first image. */
  onReady?: (info: { model: string; description: string; images: number; backend: string }) => void;
  /** Called for every image, in folder order. */
  onImage: (outcome: InspectionOutcome) => void;
}

export interface MonitorSummary {
  readonly total: number;
  readonly good: number;
  readonly anomalous: number;
  readonly unreadable: number;
  readonly seconds: number;
}

/** 0: every image good; 1: some anomalous; 2: some could not be read or decoded (whatever else). */
export function exitCodeOf(summary: MonitorSummary): 0 | 1 | 2 {
  return summary.unreadable > 0 ? 2 : summary.anomalous > 0 ? 1 : 0;
}

/** Inspects every image under `dir` (recursively) with the model file `model`. */
export async function monitorFolder(model: string, dir: string, options: MonitorOptions): Promise<MonitorSummary> {
  const t0 = performance.now();
  const images = await findImageFiles(dir);
  const engine = await Engine.open();
  const inspector = await Inspector.open(model, { engine });
  options.onReady?.({ model, description: inspector.description, images: images.length, backend: engine.backend });
  const counts = { good: 0, anomalous: 0, unreadable: 0 };
  for await (const outcome of inspector.inspectMany(images, { batchSize: options.batchSize ?? 8, ...(options.signal ? { signal: options.signal } : {}) })) {
    if (outcome.error) counts.unreadable++;
    else counts[outcome.result.verdict]++;
    options.onImage(outcome);
  }
  return { total: images.length, ...counts, seconds: (performance.now() - t0) / 1000 };
}
