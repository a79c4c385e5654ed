// @loupe/core/internal: the building blocks under the public API (PatchCore, the SVM and its coding, the
// few-shot head, kernels, the raw addon loader), for Loupe's own tests and tools. Not a stable API: apps
// import '@loupe/core'.
export * from './index.js';
export { loadAddon, defaultEngineInstance } from './engine.js';
export { messageOf, engineCodeOf, type EngineStatusCode } from './errors.js';
export * from './model.js';
export * from './image/decode.js';
export * from './image/views.js';
export * from './image/tiles.js';
export * from './preprocess.js';
export * from './features-cache.js';
export * from './imagenet.js';
export * from './weights/paths.js';
export * from './weights/resolve.js';
export * from './weights/conv1.js';
export * from './weights/fetch.js';
export * from './native-kernels.js';
export * from './anomaly/index.js';
export * from './classifier/index.js';
export * from './datasets/index.js';
export * from './metrics/index.js';
export * from './modelfile/index.js';
export * from './modelfile/models.js';
export * from './report/index.js';
export * from './synthetic/index.js';
export * from './inspection/kinds.js';
export * from './training/images.js';
export { balancedThreshold } from './training/hybrid.js';
