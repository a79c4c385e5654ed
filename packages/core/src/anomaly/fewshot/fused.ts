// Product API of the few-shot lift: train a supervised head next to a PatchCore model from a handful of
// labelled defective images, then score with the fused score.
//
// Fused score: f = z_pc + weight * z_head (head.ts). Its threshold is the good-validation quantile, or
// F1-optimal over validation goods + the training defects when asked. The normalised fused score is
// sigmoid(f - threshold): 0.5 at the threshold, ~0.73 one good-image standard deviation above it.
import { LoupeError } from '../../errors.js';
import type { ImageSource } from '../../image/decode.js';
import { loadMask } from '../../image/mask.js';
import type { AnomalyResult, LabelledDefect, PatchCoreEngine, PatchCoreModel, RunOptions } from '../patchcore/model.js';
import { fitFusion, FewShotHead, fuseScores, type FewShotHeadOptions, type FewShotHeadState, type FusionState, type HeadTrainingImage } from './head.js';
import { LABEL_NEGATIVE, patchLabelsFromMask, patchLabelsFromScores, type MaskLabelOptions } from './patch-labels.js';

export interface FewShotTrainInput {
  /** Good images for negative patches (e.g. a subset of the bank's training images). */
  negatives: readonly ImageSource[];
  /** The handful of labelled defective images (masks optional). */
  defects: readonly LabelledDefect[];
  /** Good images seen by neither the bank nor the head: standardise both scores (fusion). */
  validation: readonly ImageSource[];
}

export interface FewShotTrainOptions extends RunOptions, FewShotHeadOptions {
  /** 'auto' (default): masks where given, else the PatchCore top-k patches of the image. */
  labelMode?: 'auto' | 'mask' | 'image';
  maskLabels?: MaskLabelOptions;
  /** Patches taken as positive per defective image without a mask. Default 4. */
  imageLabelTopK?: number;
  /** Weight of the head in the fusion. Default 1. */
  weight?: number;
  /** Quantile of good validation fused scores used as threshold. Default 0.99. */
  quantile?: number;
}

export interface FusedResult extends AnomalyResult {
  /** Max patch logit of the head. */
  headScore: number;
  /** z_pc + weight * z_head. */
  fusedScore: number;
  /** sigmoid(fused - threshold). */
  fusedNormalized: number;
  fusedAnomalous: boolean;
}

export class FewShotModel {
  constructor(
    readonly head: FewShotHead,
    readonly fusion: FusionState,
  ) {}

  static async train(engine: PatchCoreEngine, model: PatchCoreModel, input: FewShotTrainInput, options: FewShotTrainOptions = {}): Promise<FewShotModel> {
    if (input.defects.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'few-shot training needs at least one labelled defective image');
    if (input.validation.length === 0) throw new LoupeError('INVALID_ARGUMENT', 'few-shot fusion needs good validation images that neither the bank nor the head saw');
    const run: RunOptions = {};
    if (options.batchSize !== undefined) run.batchSize = options.batchSize;
    if (options.knn !== undefined) run.knn = options.knn;
    if (options.threads !== undefined) run.threads = options.threads;
    if (options.signal !== undefined) run.signal = options.signal;
    const keep = { ...run, keepEmbeddings: true };
    const d = model.bank.d;
    const mode = options.labelMode ?? 'auto';
    const images: HeadTrainingImage[] = [];
    for (const r of await model.score(engine, input.negatives, keep)) {
      images.push({ rows: r.embeddings!, labels: new Int8Array(r.embeddings!.length / d).fill(LABEL_NEGATIVE) });
    }
    const defRes = await model.score(engine, input.defects.map((x) => x.source), keep);
    for (const [i, r] of defRes.entries()) {
      const mask = input.defects[i]!.mask;
      if (r.embeddings!.length !== 784 * d) throw new LoupeError('INVALID_ARGUMENT', 'few-shot training supports whole-image mode only (not tiles)');
      const useMask = mode === 'mask' || (mode === 'auto' && mask);
      const labels = useMask
        ? patchLabelsFromMask(await loadMask(mask ?? null, r.width, r.height), r.width, r.height, options.maskLabels)
        : patchLabelsFromScores(r.patchScores!, options.imageLabelTopK ?? 4);
      images.push({ rows: r.embeddings!, labels });
    }
    const head = FewShotHead.train(images, d, options);
    const val = await model.score(engine, input.validation, keep);
    const fusion = fitFusion(
      val.map((r) => r.rawScore),
      val.map((r) => head.imageScore(r.embeddings!, r.embeddings!.length / d)),
      options.weight ?? 1,
      options.quantile ?? 0.99,
    );
    return new FewShotModel(head, fusion);
  }

  /** PatchCore results plus the head and fused scores. */
  async score(engine: PatchCoreEngine, model: PatchCoreModel, sources: readonly ImageSource[], options: RunOptions = {}): Promise<FusedResult[]> {
    const out: FusedResult[] = [];
    for await (const r of model.scoreIter(engine, sources, { ...options, keepEmbeddings: true })) {
      const rows = r.embeddings!;
      const headScore = this.head.imageScore(rows, rows.length / model.bank.d);
      const fusedScore = fuseScores(r.rawScore, headScore, this.fusion.pcStats, this.fusion.headStats, this.fusion.weight);
      const z = fusedScore - this.fusion.threshold;
      const { embeddings: _e, patchScores: _p, ...rest } = r;
      out.push({ ...rest, headScore, fusedScore, fusedNormalized: 1 / (1 + Math.exp(-z)), fusedAnomalous: fusedScore >= this.fusion.threshold });
    }
    return out;
  }

  toState(): { head: FewShotHeadState; fusion: FusionState } {
    return { head: this.head.toState(), fusion: this.fusion };
  }

  static fromState(s: { head: FewShotHeadState; fusion: FusionState }): FewShotModel {
    return new FewShotModel(FewShotHead.fromState(s.head), s.fusion);
  }
}
