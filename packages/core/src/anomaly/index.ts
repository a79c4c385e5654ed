// One-class anomaly detection with defect heatmaps: PatchCore on the engine's ResNet-50 features, plus
// a few-shot supervised head fused with it. (Lead: `export * from './anomaly/index.js'` in core's index.)
export * from './patchcore/feature-extractor.js';
export * from './patchcore/anomaly-map.js';
export * from './patchcore/memory-bank.js';
export * from './patchcore/scorer.js';
export * from './patchcore/threshold.js';
export * from './patchcore/model.js';
export * from './patchcore/model-file.js';
export * from './patchcore/visualize.js';
export * from './fewshot/patch-labels.js';
export * from './fewshot/logistic.js';
export * from './fewshot/mlp.js';
export * from './fewshot/head.js';
export * from './fewshot/kfold.js';
export * from './fewshot/fused.js';
export * from './hybrid/model.js';
export * from './hybrid/softmax.js';
