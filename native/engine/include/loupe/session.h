// Inference sessions: one backend instance over a shared, immutable model (onnxruntime-style).
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "loupe/resnet50.h"
#include "loupe/status.h"

namespace loupe {

enum class BackendKind { kAuto = 0, kCpu, kCuda };
// bf16/fp16: CUDA only (fp32 accumulate). int8: the oneDNN CPU backend only, from an Int8Calibration
// (loupe/quantization.h: the scheme, calibration, what stays fp32).
enum class Precision { kFp32 = 0, kBf16, kFp16, kInt8 };

struct Int8Calibration;

const char* BackendKindName(BackendKind k);  // "auto" | "cpu" | "cuda"
bool BackendKindFromName(const std::string& name, BackendKind* out);
const char* PrecisionName(Precision p);      // "fp32" | "bf16" | "fp16" | "int8"
bool PrecisionFromName(const std::string& name, Precision* out);

struct SessionOptions {
  BackendKind backend = BackendKind::kAuto;  // auto: CUDA when a GPU + cuDNN are usable, else CPU
  Precision precision = Precision::kFp32;
  int num_threads = 0;   // CPU compute threads; 0 = all cores. The caller owns the process thread budget.
  int device_id = 0;     // CUDA device
  int max_batch = 32;    // largest batch Run() will see; buffers are sized for it lazily
  // Required for kInt8 (ignored otherwise): the activation ranges (CreateInt8Calibrator, or stored ones).
  // The same calibration and weights give the same session, bit for bit.
  std::shared_ptr<const Int8Calibration> int8_calibration;
};

// Which taps to compute and copy out; outputs[i] holds batch * TapElements(taps[i]) floats.
struct RunRequest {
  const float* input = nullptr;  // NHWC [batch][224][224][3], 'caffe'-normalised BGR (see core)
  int batch = 0;
  std::vector<Tap> taps;
  const std::atomic<bool>* cancel = nullptr;  // checked between layers; set -> kCancelled
};
struct RunResult {
  std::vector<std::vector<float>> outputs;  // same order as RunRequest::taps
};

class Session {
 public:
  virtual ~Session() = default;
  // Thread-safe: concurrent calls are serialised inside the session (weights are shared, not copied).
  virtual Status Run(const RunRequest& req, RunResult* out) = 0;
  virtual std::string backend_name() const = 0;  // e.g. "cpu-onednn", "cpu-reference", "cuda-cudnn"
  virtual std::string device_name() const = 0;   // e.g. "x86_64 (2 threads)", "NVIDIA H200"
  virtual Precision precision() const { return Precision::kFp32; }
  // The kernels the backend's convolutions run on, e.g. "int8 brgconv_1x1:avx512_core_vnni x36,
  // brgconv:avx512_core_vnni x16; fp32 brgconv:avx512_core x1" (oneDNN's implementation names); empty
  // when the backend does not say. May build the batch-1 plan on first use.
  virtual std::string kernel_info() { return std::string(); }
  const ResNet50Model& model() const { return *model_; }

 protected:
  explicit Session(std::shared_ptr<const ResNet50Model> m) : model_(std::move(m)) {}
  std::shared_ptr<const ResNet50Model> model_;
};

// Picks and creates a backend. kAuto: CUDA if compiled in and usable, else the best CPU backend.
Status CreateSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                     std::unique_ptr<Session>* out);

// Always-available, simple CPU implementation (im2col + blocked GEMM, OpenMP): the test oracle for the
// fast backends and the fallback when oneDNN is not compiled in.
Status CreateReferenceSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                              std::unique_ptr<Session>* out);

// What this build and machine offer, for `loupe info` and the auto choice.
struct BuildInfo {
  bool has_onednn = false;
  bool has_cuda = false;     // CUDA compiled in
  bool cuda_usable = false;  // a device and libcudnn were found at run time
  std::string cuda_detail;   // why not usable, or the device name
  // oneDNN (empty without it): version "2.6.3", the best ISA it uses on this CPU ("avx512_core_bf16",
  // "avx2_vnni", ...), and the kernels it picks here for a representative int8 (u8 x s8) and fp32 3x3 conv
  // ("brgconv:avx512_core_vnni", "jit_int8:avx2", ...), i.e. what an int8 / fp32 session will run on.
  std::string onednn_version, onednn_isa, onednn_int8_kernel, onednn_fp32_kernel;
};
BuildInfo GetBuildInfo();

}  // namespace loupe
