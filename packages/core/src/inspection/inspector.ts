// The Inspector: one object that turns images into verdicts for every model kind, as anomalib's
// TorchInferencer does for its models: pre-process (decode into the model's views) -> forward (the CNN taps
// the model reads) -> post-process (the model: classifier or memory bank, with the threshold stored in the
// model file). The library, the CLI and the gRPC server all inspect through it, so an image gets the same
// answer whichever way it arrives; the server only swaps the forward step for its dynamic batcher
// (`runner`).
import { Engine, EngineSession, loadAddon } from '../engine.js';
import { AbortError, LoupeError } from '../errors.js';
import { sourceName, type ImageSource } from '../image/decode.js';
import { engineForModel } from '../int8.js';
import { checkModelWeights, loadModel, type LoupeModel } from '../modelfile/models.js';
import { threadBudget } from '../threads.js';
import { hybridHandler, oneClassHandler, svmHandler, type KindHandler, type Prepared } from './kinds.js';
import type { InspectionOutcome, InspectionResult, InspectManyOptions, InspectOptions, TapRunner } from './types.js';

export interface OpenInspectorOptions {
  /** The CNN. The model must have been trained on its weights (checked, always). */
  engine: Engine;
  /**
   * The session images run on (another backend of `engine`); default: the model's precision on `engine`
   * (an int8 model's own calibration, else fp32), i.e. what the model was evaluated on.
   */
  session?: EngineSession;
  /** Where the one-class kNN search runs and how wide: default the engine's backend choice and the thread budget. */
  backend?: 'auto' | 'cpu' | 'cuda';
  threads?: number;
  /** Names a model given as bytes in errors. */
  name?: string;
}

const IMAGE_ERROR = /^IMAGE_/;

/** True for errors that belong to one image (unreadable, undecodable, too large), not to the run. */
export function isImageError(err: unknown): err is LoupeError {
  return err instanceof LoupeError && IMAGE_ERROR.test(err.code);
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}

export class Inspector {
  private constructor(
    /** The model, with its metadata (kind, thresholds, classes, training hashes). */
    readonly model: LoupeModel,
    /** Where the model came from (a file path or the given name). */
    readonly source: string,
    private readonly runner: TapRunner,
    private readonly handler: KindHandler,
  ) {}

  /**
   * Opens a model file (or a model's bytes, or a model already loaded) for inspection on `engine`.
   * Refuses a model trained on other CNN weights (ModelFileError MODEL_INCOMPATIBLE naming both hashes).
   */
  static async open(model: string | Uint8Array | LoupeModel, options: OpenInspectorOptions): Promise<Inspector> {
    const source = typeof model === 'string' ? model : options.name ?? '<model>';
    const loaded = typeof model === 'string' || model instanceof Uint8Array ? await loadModel(model, options.name !== undefined ? { name: options.name } : {}) : model;
    const engine = options.engine;
    if (!(engine instanceof Engine)) throw new LoupeError('INVALID_ARGUMENT', 'Inspector.open needs { engine }: an Engine from Engine.open()');
    checkModelWeights(loaded, engine, source);
    let handler: KindHandler;
    if (loaded.kind === 'svm') handler = svmHandler(loaded);
    else {
      const native = await loadAddon();
      const knn = { native, backend: options.backend ?? 'auto', threads: options.threads ?? threadBudget().engineThreads } as const;
      // Build the kNN index now (~0.5 s for a 1% bank), not inside the first inspection.
      await loaded.patchcore.knnIndex(native, knn);
      handler = loaded.kind === 'hybrid' ? hybridHandler(loaded, knn) : oneClassHandler(loaded, knn);
    }
    return new Inspector(loaded, source, options.session ?? engineForModel(engine, loaded).session, handler);
  }

  /** What the model's images run on: its precision's session (see OpenInspectorOptions.session). */
  get session(): TapRunner {
    return this.runner;
  }

  get kind(): LoupeModel['kind'] {
    return this.model.kind;
  }

  /**
   * The classes a classifier names (its good class included); a hybrid model's defect types when it names
   * them (two or more); empty for one-class models.
   */
  get classes(): readonly string[] {
    if (this.model.kind === 'svm') return this.model.classifier.classes;
    if (this.model.kind === 'hybrid') return this.model.hybrid.state.defectTypes?.classes ?? [];
    return [];
  }

  /** The CNN taps the model reads (what the engine computes for it). */
  get taps(): readonly string[] {
    return this.handler.taps;
  }

  /** Raw thresholds: `image` on rawScore (score 0.5), `pixel` on anomaly maps (one-class). */
  get thresholds(): { readonly image: number; readonly pixel?: number } {
    if (this.model.kind === 'svm') return { image: this.model.threshold };
    if (this.model.kind === 'hybrid') return { image: this.model.hybrid.imageThreshold, pixel: this.model.hybrid.pixelThreshold };
    const t = this.model.patchcore.thresholds;
    return { image: t.image, pixel: t.pixel };
  }

  /** One line for logs and listings. */
  get description(): string {
    const m = this.model;
    if (m.kind === 'one-class') return m.patchcore.describe();
    if (m.kind === 'hybrid') return m.hybrid.describe();
    const c = m.classifier;
    return `SVM (${c.coding.name}, ${c.decoding}) on ${m.layer}: ${c.classes.length} classes (${c.classes.join(', ')}), good class '${m.goodClass}', margin threshold ${m.threshold}`;
  }

  /** Inspects one image. Image problems reject with a LoupeError naming it (IMAGE_* codes). */
  async inspect(image: ImageSource, options: InspectOptions = {}): Promise<InspectionResult> {
    checkAbort(options.signal);
    const p = await this.handler.prepare(image, options);
    const [r] = await this.run([p], options);
    return r!;
  }

  /**
   * Inspects many images (an array or any iterable, async included), batched through the engine, the next
   * batch decoded while the engine runs the current one. Yields one outcome per image, in input order.
   */
  async *inspectMany(images: Iterable<ImageSource> | AsyncIterable<ImageSource>, options: InspectManyOptions = {}): AsyncGenerator<InspectionOutcome> {
    const batchSize = options.batchSize ?? 8;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new LoupeError('INVALID_ARGUMENT', `batchSize must be a positive integer, got ${batchSize}`);
    const total = Array.isArray(images) ? images.length : undefined;
    const iterator = (Symbol.asyncIterator in images ? images[Symbol.asyncIterator]() : (images as Iterable<ImageSource>)[Symbol.iterator]()) as AsyncIterator<ImageSource> | Iterator<ImageSource>;
    let index = 0;
    let done = 0;
    let exhausted = false;
    type Slot = { index: number; name: string; prepared?: Prepared; error?: LoupeError };
    // Decodes the next batch (one image at a time: the engine owns the cores).
    const prepareBatch = async (): Promise<Slot[]> => {
      const slots: Slot[] = [];
      while (slots.length < batchSize && !exhausted) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const i = index++;
        const name = sourceName(next.value, `<buffer #${i}>`);
        checkAbort(options.signal);
        try {
          slots.push({ index: i, name, prepared: await this.handler.prepare(typeof next.value === 'object' && next.value instanceof Uint8Array ? { name, data: next.value } : next.value, options) });
        } catch (err) {
          if (options.onInvalidImage === 'throw' || !isImageError(err)) throw err;
          slots.push({ index: i, name, error: err });
        }
      }
      return slots;
    };
    const handled = (p: Promise<Slot[]>): Promise<Slot[]> => {
      p.catch(() => {}); // awaited below; an early rejection must not be "unhandled"
      return p;
    };
    let pending = handled(prepareBatch());
    while (true) {
      const slots = await pending;
      if (slots.length === 0) return;
      pending = handled(prepareBatch());
      const ok = slots.filter((s) => s.prepared);
      const results = ok.length > 0 ? await this.run(ok.map((s) => s.prepared!), options) : [];
      let k = 0;
      for (const s of slots) {
        done++;
        if (s.prepared) yield { index: s.index, name: s.name, result: results[k++]! };
        else yield { index: s.index, name: s.name, error: s.error! };
        options.onProgress?.(done, total);
      }
    }
  }

  /** Engine run + model for prepared images. */
  private async run(items: readonly Prepared[], options: InspectOptions): Promise<InspectionResult[]> {
    const views = items.reduce((a, p) => a + p.views, 0);
    let data: Float32Array;
    if (items.length === 1) data = items[0]!.tensor;
    else {
      data = new Float32Array(items.reduce((a, p) => a + p.tensor.length, 0));
      let off = 0;
      for (const p of items) {
        data.set(p.tensor, off);
        off += p.tensor.length;
      }
    }
    checkAbort(options.signal);
    const t0 = performance.now();
    const outputs = await (options.runner ?? this.runner).run({ data, batch: views }, this.handler.taps);
    const inferenceMs = (performance.now() - t0) / items.length;
    checkAbort(options.signal);
    return this.handler.finish(items, outputs, { heatmap: options.heatmap ?? false, inferenceMs, batchSize: views });
  }
}
