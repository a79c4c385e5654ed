// INT8 inference: the quantization scheme, calibration of the activation ranges, and what an int8 session
// (SessionOptions::precision = kInt8, oneDNN CPU backend) and the ONNX QDQ export are made from.
//
// The scheme (one definition, used by the oneDNN int8 session and by ExportOnnx's QDQ graph):
//  - weights: int8, symmetric, per output channel: scale[oc] = max|w[oc]| / 127, q = round(w / scale)
//    (round half to even); a channel of zeros gets scale 1;
//  - activations: per tensor, zero point 0, from a calibrated clipping range R (Int8Calibration::ranges):
//    u8 with scale R / 255 where the tensor is a ReLU output, s8 with scale R / 127 where it is signed
//    (a projection shortcut, and the last conv of a block before the residual add);
//  - bias: int32 in the accumulator's scale, round(bias / (src_scale * weight_scale[oc]));
//  - each conv: u8 x s8 -> s32 accumulation, + bias, x (src_scale * weight_scale[oc] / dst_scale), ReLU where
//    the network has one, rounded and saturated to the destination type. The residual add of a block:
//    relu(dq(c) + dq(shortcut)) requantized, where c is the last conv's output rounded to its own s8 grid
//    (fused in one oneDNN primitive: round/clip/scale and a `sum` post-op; onnxruntime's QLinearConv +
//    QLinearAdd compute the same);
//  - conv1 (the stem, 3 input channels) runs in fp32 and its max-pooled output is quantized ("pool1");
//    avg_pool and fc1000 run in fp32 on the dequantized res5c. Figures: docs/benchmarks/int8.md.
//  - taps come out dequantized, float32 NHWC, exactly as from an fp32 session.
//
// Tensor names (Int8TensorNames()): "input" (the caffe input), "conv1" (conv1+ReLU), "pool1" (after the max
// pool), then per bottleneck block B ("res2a" .. "res5c"): "B_branch2a", "B_branch2b" (u8, ReLU outputs),
// "B_branch2c" (s8: the last conv, before the add), "B_branch1" (s8: the projection shortcut, blocks with
// one), "B" (u8: the block output). A calibration carries every name; a session uses those it needs.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loupe/resnet50.h"
#include "loupe/status.h"

namespace loupe {

// Per-tensor clipping ranges of the activations (what calibration produces, what an int8 session and the
// QDQ export consume). Plain data, so a caller can store it (e.g. in a model file) and re-create exactly
// the same int8 session later.
struct Int8Calibration {
  std::string weights_hash;              // ResNet50Model::weights_hash of the calibrated model; an int8
                                         // session refuses a calibration of other weights (empty: no check)
  std::string method;                    // how the ranges were chosen ("percentile", "mse", "max"): informational
  std::map<std::string, float> ranges;   // tensor name -> clipping range R > 0 (float32 units, |x| <= R)
};

// Every tensor name a calibration carries, in network order, and whether it is quantized signed (s8).
const std::vector<std::string>& Int8TensorNames();
bool Int8TensorIsSigned(const std::string& name);
// The quantization step of a tensor with range R: R / 127 (signed) or R / 255.
float Int8TensorScale(const std::string& name, float range);

// InvalidArgument unless `c` carries a finite range > 0 for every tensor of Int8TensorNames() and no other
// name, and (when both are set) its weights hash is the model's.
Status ValidateInt8Calibration(const Int8Calibration& c, const ResNet50Model& model);

enum class CalibrationMethod {
  kPercentile = 0,  // R = the given percentile of |x| over all calibration elements (zeros included)
  kMse,             // R minimising the expected squared quantization error (rounding + clipping) of x
  kMax,             // R = max |x| (no clipping)
};
const char* CalibrationMethodName(CalibrationMethod m);  // "percentile" | "mse" | "max"
bool CalibrationMethodFromName(const std::string& name, CalibrationMethod* out);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::kMse;  // measured best (docs/benchmarks/int8.md)
  double percentile = 99.99;  // kPercentile only, in (0, 100]
};

// Accumulates per-tensor histograms of |x| of the fp32 network's activations over calibration batches.
// Deterministic: the histograms are integer counts on power-of-two ranges, so the result does not depend
// on how the images are split into batches, in which order they come, or on the thread count.
class Int8Calibrator {
 public:
  virtual ~Int8Calibrator() = default;
  // input: NHWC float32 [batch][224][224][3], caffe-preprocessed, as RunRequest::input. Thread-safe
  // (calls are serialised). `cancel` is checked between layers (kCancelled; the batch is not counted).
  virtual Status Add(const float* input, int batch, const std::atomic<bool>* cancel = nullptr) = 0;
  // The ranges from the images added so far (InvalidArgument before the first image). Can be called
  // repeatedly, e.g. once per method.
  virtual Status Compute(const CalibrationOptions& options, Int8Calibration* out) const = 0;
  virtual int64_t images() const = 0;
};

// num_threads: compute threads (0 = all cores). Unavailable when the build has no oneDNN.
Status CreateInt8Calibrator(std::shared_ptr<const ResNet50Model> model, int num_threads,
                            std::unique_ptr<Int8Calibrator>* out);

namespace internal {

// The int8 weights of one conv: q in the FoldedConv's HWIO order, per-output-channel scales, and the
// int32 bias for a source of scale `src_scale`.
struct QuantizedConv {
  std::vector<int8_t> w_hwio;
  std::vector<float> w_scale;   // [cout]
  std::vector<int32_t> bias;    // [cout]
};
void QuantizeConv(const FoldedConv& cv, float src_scale, QuantizedConv* out);

// Range selection from a histogram of |x| over [0, top) with counts.size() equal bins; `zeros` of the
// elements of bin 0 are exact zeros. Exposed for tests.
float RangeFromHistogram(const std::vector<uint64_t>& counts, double top, uint64_t zeros, bool is_signed,
                         const CalibrationOptions& options);

}  // namespace internal
}  // namespace loupe
