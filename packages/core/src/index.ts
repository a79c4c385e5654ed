// @loupe/core: the one public entry point. Apps import from '@loupe/core' only; nothing else is API.

export {
  AbortError,
  EmptyImageError,
  EngineError,
  engineCodeOf,
  ImageDecodeError,
  ImageReadError,
  ImageTooLargeError,
  isLoupeError,
  LoupeError,
  WeightsError,
  WeightsIntegrityError,
  type EngineStatusCode,
  type LoupeErrorCode,
} from './errors.js';

export { INPUT_CHANNELS, INPUT_ELEMENTS, INPUT_SIZE, isTapName, TAP_NAMES, TAP_SHAPES, tapElements, type TapName } from './model.js';

export {
  decodeImage,
  DEFAULT_LIMIT_INPUT_PIXELS,
  sourceName,
  type DecodedImage,
  type DecodeOptions,
  type FitMode,
  type ImageSource,
} from './image/decode.js';

export { CAFFE_MEAN_BGR, caffeToRgb, packBatch, rgbToCaffe, type TensorBatch } from './preprocess.js';

export {
  defaultEngineInstance,
  Engine,
  EngineSession,
  loadAddon,
  nativeBuildInfo,
  type BackendName,
  type BuildInfo,
  type EngineOptions,
  type PrecisionName,
  type SessionConfig,
  type TapOutputs,
} from './engine.js';

export { configureThreads, MAX_THREADS, recommendedUvThreadpoolSize, threadBudget, type ThreadBudget, type ThreadBudgetOptions } from './threads.js';

export { extractFeatures, streamFeatures, type ExtractOptions, type FeatureProgress, type ImageFeatures } from './features.js';

export {
  contentHash,
  fileContentHashes,
  extractFeaturesCached,
  FeatureCache,
  featureCacheDir,
  type CachedExtractOptions,
  type CachedExtractResult,
  type CachedFeatureProgress,
  type FeatureCacheKey,
  type FeatureCacheOptions,
} from './features-cache.js';

export {
  classifyImageNet,
  IMAGENET_CLASSES,
  loadImageNetLabels,
  softmax,
  topK,
  type ClassifyOptions,
  type ImageNetPrediction,
  type ImageNetResult,
  type Scored,
} from './imagenet.js';

export {
  labelsPath,
  loupeHome,
  modelJsonPath,
  tarballCacheDir,
  tarballFileName,
  WEIGHTS_FILES,
  WEIGHTS_MARKER,
  WEIGHTS_PACKAGE,
  weightsDir,
  type WeightsFileEntry,
} from './weights/paths.js';
export {
  readMarker,
  resolveWeights,
  setWeightsFetchHint,
  sha256File,
  verifyWeights,
  type ResolvedWeights,
  type ResolveWeightsOptions,
  type WeightsMarker,
  type WeightsProblem,
} from './weights/resolve.js';
export { readConv1Kernel, readTfjsTensor } from './weights/conv1.js';
export {
  checkIntegrity,
  ensureWeights,
  parseIntegrity,
  type EnsureWeightsOptions,
  type EnsureWeightsResult,
  type WeightsPhase,
  type WeightsProgress,
} from './weights/fetch.js';

// Feature consumers, written alongside (each folder's index.ts lists its API).
export * from './anomaly/index.js';
export * from './classifier/index.js';
export * from './datasets/index.js';
export * from './metrics/index.js';
export * from './modelfile/index.js';
export * from './report/index.js';
export * from './synthetic/index.js';
