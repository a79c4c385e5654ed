// @loupe/core: the one public entry point, grouped by concern. Apps import from '@loupe/core' only; the
// building blocks underneath (PatchCore, the SVM, kernels, the raw addon) are '@loupe/core/internal', for
// Loupe's own tests and tools. Every error thrown is a LoupeError with a stable `code` (and `input`, the
// file it is about).

// --- Errors -----------------------------------------------------------------------------------------
export {
  AbortError,
  EmptyImageError,
  EngineError,
  ImageDecodeError,
  ImageReadError,
  ImageTooLargeError,
  isLoupeError,
  LoupeError,
  WeightsError,
  WeightsIntegrityError,
  type LoupeErrorCode,
} from './errors.js';
export { ModelFileError } from './modelfile/errors.js';
export { DatasetError } from './datasets/errors.js';

// --- The engine (ResNet-50 on oneDNN / cuDNN), its taps and the thread budget ----------------------------
export { DEFAULT_PRECISION, Engine, EngineSession, int8CalibrationId, nativeBuildInfo, type BackendName, type BuildInfo, type EngineOptions, type Int8Calibration, type PrecisionName, type SessionConfig, type TapOutputs } from './engine.js';
export { INPUT_ELEMENTS, INPUT_SIZE, isTapName, TAP_NAMES, TAP_SHAPES, tapElements, type TapName } from './model.js';
export { configureThreads, MAX_THREADS, recommendedUvThreadpoolSize, threadBudget, type ThreadBudget, type ThreadBudgetOptions } from './threads.js';

// --- Weights ------------------------------------------------------------------------------------------
export { loupeHome, WEIGHTS_PACKAGE, weightsDir } from './weights/paths.js';
export { readMarker, resolveWeights, setWeightsFetchHint, verifyWeights, type ResolvedWeights, type ResolveWeightsOptions, type WeightsProblem } from './weights/resolve.js';
export { ensureWeights, type EnsureWeightsOptions, type EnsureWeightsResult, type WeightsProgress } from './weights/fetch.js';

// --- Images: one decoder for every view of an image ------------------------------------------------------
export {
  decodeFullImage,
  decodeImage,
  DEFAULT_LIMIT_INPUT_PIXELS,
  type DecodedImage,
  type DecodeOptions,
  type FitMode,
  type FullDecodeOptions,
  type FullImage,
  type ImageSource,
} from './image/decode.js';
export { loadMask } from './image/mask.js';
export { FLIP_NAMES, type Flip } from './image/views.js';
export { DECODABLE_IMAGE_EXTENSIONS, findImageFiles } from './datasets/image-files.js';

// --- Features (the CNN's taps per image) and ImageNet ---------------------------------------------------
export { CAFFE_MEAN_BGR, packBatch, rgbToCaffe, type TensorBatch } from './preprocess.js';
export { extractFeatures, streamFeatures, type ExtractOptions, type FeatureProgress, type ImageFeatures } from './features.js';
export { extractFeaturesCached, featureCacheDir, fileContentHashes, type CachedExtractOptions, type CachedExtractResult } from './features-cache.js';
export { classifyImageNet, type ClassifyOptions, type ImageNetPrediction, type ImageNetResult } from './imagenet.js';

// --- Model files: every kind behind one load and one save ------------------------------------------------
export {
  checkModelWeights,
  findGoodClass,
  GOOD_LABEL,
  loadModel,
  preprocessingRecord,
  readModelSummary,
  saveModel,
  summarizeModelHeader,
  SVM_LAYERS,
  withModelExtension,
  HYBRID_METHOD,
  type HybridModel,
  type LoupeModel,
  type ModelMetadata,
  type ModelSummary,
  type OneClassModel,
  type SvmLayer,
  type SvmModel,
} from './modelfile/models.js';
export { MODEL_FILE_EXTENSION, readModelHeader, startsAsModelFile, type ModelHeaderBase, type ModelKind } from './modelfile/format.js';
export { writeFileAtomic, type WriteFileAtomicOptions } from './modelfile/atomic.js';

// --- Inspection: image -> verdict, for every model kind ---------------------------------------------------
export { Inspector, isImageError, type OpenInspectorOptions } from './inspection/inspector.js';
export type {
  AnomalyMap,
  ClassScore,
  InspectionOutcome,
  InspectionResult,
  InspectionTimings,
  InspectManyOptions,
  InspectOptions,
  MapPeak,
  TapRunner,
  Verdict,
} from './inspection/types.js';
export { renderHeatmapPng, renderMaskPng, type HeatmapRenderOptions } from './anomaly/patchcore/visualize.js';

// --- Training and calibration ----------------------------------------------------------------------------
export { checkOneClassOptions, DEFAULT_TILE, MIN_CALIBRATION_IMAGES, trainOneClass, type OneClassTraining, type TrainingProgress, type TrainingStage, type TrainOneClassOptions } from './training/one-class.js';
export { checkClassifierOptions, samplesByLabel, trainClassifier, type ClassifierTraining, type HeldOutFigures, type HoldOut, type TrainClassifierOptions } from './training/classifier.js';
export { checkHybridHeadOptions, DEFAULT_HYBRID_HEAD, trainHybrid, type HybridHeadOptions, type ResolvedHybridHead, type HybridImage, type HybridTraining, type TrainHybridOptions } from './training/hybrid.js';
export { calibrate, type CalibrateOptions, type Calibration, type CalibrationReport } from './training/calibrate.js';
export type { ImageSet } from './training/images.js';
export {
  calibrateInt8,
  checkModelPrecision,
  DEFAULT_CALIBRATION_METHOD,
  defaultInt8Calibration,
  engineForModel,
  MAX_CALIBRATION_IMAGES,
  MODEL_PRECISIONS,
  modelPrecision,
  type Int8CalibrateOptions,
  type Int8CalibrationMethod,
  type ModelPrecision,
} from './int8.js';
export { SVM_DEFAULTS } from './classifier/svm.js';
export type { CodingName, DecodingName } from './classifier/coding.js';

// --- Evaluation ----------------------------------------------------------------------------------------
export {
  classificationFigures,
  evaluateClassifier,
  type ClassifierDatasetEvaluation,
  type ClassifierEvaluation,
  type EvaluateClassifierOptions,
  type LabelledImage,
} from './evaluation/classifier.js';
export { hybridHoldOut, type HoldOutItem, type HybridHoldOut, type HybridHoldOutOptions } from './evaluation/hybrid-split.js';
export { evaluateOneClass, PIXEL_METRIC_SIDE, type DefectTypeFigures, type EvaluateOneClassOptions, type OneClassEvaluation, type OneClassRecord } from './evaluation/one-class.js';
export { classificationMetrics, formatConfusionMatrix, type ClassificationMetrics, type ConfusionMatrix } from './metrics/classification.js';
export { auroc, f1Max, rocCurve } from './metrics/roc.js';

// --- Datasets ------------------------------------------------------------------------------------------
export { formatSkipReport, scanDataset, scanImageFolder, scanMvtecOneClass, type VerifyLevel } from './datasets/scan.js';
export { kFold, stratifiedSplit, undersample, type GroupMap } from './datasets/split.js';
export { loadGroups } from './datasets/groups.js';
export { formatCountsTable, labelCounts } from './datasets/counts.js';
export type { Dataset, DatasetItem, DatasetLayout, OneClassDataset, SkippedFile } from './datasets/types.js';

// --- Reports (HTML + PNG) -------------------------------------------------------------------------------
export { countsTable, writeClassifierReport, writeOneClassReport, type ClassifierReportInput } from './report/evaluation-reports.js';
export { confusionMatrixPng, writeHtmlReport, type ReportFigure, type ReportTable, type WrittenReport } from './report/index.js';
export { escapeXml } from './report/svg.js';

// --- The embedded synthetic dataset (the demo) --------------------------------------------------------
export { generateSyntheticDataset, SYNTHETIC_GENERATOR_VERSION, SYNTHETIC_LABELS, SYNTHETIC_OBJECTS, type SyntheticObject } from './synthetic/index.js';
