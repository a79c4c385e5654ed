// The CUDA backend: ResNet-50 forward with cuDNN 9 (loaded at run time) + our own kernels.
//
// Layout: NHWC activations, KRSC filters (transposed from Keras HWIO at load). Precisions:
//   fp32: fp32 storage, CUDNN_FMA_MATH (no TF32: TF32 would cost ~1e-3 relative error on the logits);
//   bf16 / fp16: 16-bit storage, fp32 accumulate (conv compute type FLOAT), CUDNN_TENSOR_OP_MATH.
// Per conv: y = relu(conv(x) + bias (+ z)) through cudnnConvolutionBiasActivationForward where cuDNN
// accepts it (probed once per conv and batch size), else cudnnConvolutionForward + our epilogue kernel.
// The projection shortcut is a plain convolution: its folded bias is added to branch2c's bias.
// Algorithms: found once per (conv shape, batch) (cudnnFind..., or the v7 heuristic), cached in the
// process (and in $LOUPE_CUDNN_ALGO_CACHE across processes when set); one workspace for all convs.
// Run(): the caller's input goes through a pinned staging buffer (chunked, overlapped with the H2D
// copy) on a per-slot copy stream; two slots let a second caller's upload overlap the first one's
// compute; the forward (one CUDA graph per batch size and slot when LOUPE_CUDA_GRAPHS != 0) runs on
// the compute stream; requested taps are converted to fp32 and copied back through pinned memory.
//
// Environment switches (all optional):
//   LOUPE_CUDA_GRAPHS=0        run the forward eagerly (default: capture a CUDA graph per batch size)
//   LOUPE_CUDNN_FUSED=0        never use cudnnConvolutionBiasActivationForward
//   LOUPE_CUDNN_ALGO=heuristic use cudnnGetConvolutionForwardAlgorithm_v7 instead of timing (find)
//   LOUPE_CUDNN_WS_MB=N        largest workspace an algorithm may ask for (default 1024)
//   LOUPE_CUDNN_ALGO_CACHE=F   text file caching the chosen algorithms across processes
//   LOUPE_CUDA_STATS=F|-       at session end, append per-batch timing JSON lines to F ('-': stderr)
//   LOUPE_CUDA_VERBOSE=1       log plans (algorithms, fused or not, workspace, graph) to stderr
#include <cuda_runtime.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "backends.h"
#include "cuda/cuda_check.h"
#include "cuda/cudnn_api.h"
#include "cuda/resnet_kernels.h"
#include "loupe/session.h"

namespace loupe {
namespace internal {
namespace {

using namespace loupe::cudnn;  // NOLINT: our own declarations, named like cuDNN's
using cuda::DType;

std::string EnvStr(const char* k) {
  const char* v = std::getenv(k);
  return v ? std::string(v) : std::string();
}
bool EnvFlag(const char* k, bool dflt) {
  std::string v = EnvStr(k);
  if (v.empty()) return dflt;
  return !(v == "0" || v == "false" || v == "off" || v == "no");
}
bool Verbose() {
  static const bool v = EnvFlag("LOUPE_CUDA_VERBOSE", false);
  return v;
}

Status CudaErr(const std::string& what, cudaError_t e) {
  return Status(StatusCode::kInternal, what + " failed: " + cudaGetErrorString(e));
}

#define LOUPE_CUDNN_CHECK(api, call)                                                         \
  do {                                                                                       \
    ::loupe::cudnn::cudnnStatus_t _s = (call);                                               \
    if (_s != ::loupe::cudnn::CUDNN_STATUS_SUCCESS)                                          \
      return ::loupe::Status(::loupe::StatusCode::kInternal,                                 \
                             ::loupe::cudnn::CudnnErrorText((api), #call, _s));              \
  } while (0)

#define LOUPE_KERNEL_CHECK(expr, name)                                                       \
  do {                                                                                       \
    cudaError_t _e = (expr);                                                                 \
    if (_e != cudaSuccess)                                                                   \
      return ::loupe::Status(::loupe::StatusCode::kInternal,                                 \
                             std::string("launch of ") + (name) + " failed: " +              \
                                 cudaGetErrorString(_e));                                    \
  } while (0)

const char* AlgoName(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}

// ---------------- usability (cached per device) ----------------

struct Usability {
  bool ok = false;
  std::string detail;
};

Usability CheckUsable(int device_id) {
  Usability u;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear
    u.detail = std::string("no usable CUDA driver or device (cudaGetDeviceCount: ") +
               cudaGetErrorString(e) + ")";
    return u;
  }
  if (n <= 0) {
    u.detail = "no CUDA device";
    return u;
  }
  if (device_id < 0 || device_id >= n) {
    u.detail = "CUDA device " + std::to_string(device_id) + " does not exist (" + std::to_string(n) +
               " device(s))";
    return u;
  }
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, device_id);
  if (e != cudaSuccess) {
    cudaGetLastError();
    u.detail = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e);
    return u;
  }
  std::string why;
  const Api* api = LoadCudnn(&why);
  if (!api) {
    u.detail = std::string(prop.name) + " found, but " + why;
    return u;
  }
  int prev = 0;
  cudaGetDevice(&prev);
  e = cudaSetDevice(device_id);
  if (e == cudaSuccess) e = cuda::KernelsRunnableOnCurrentDevice();
  cudaSetDevice(prev);
  if (e != cudaSuccess) {
    cudaGetLastError();
    u.detail = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
               std::to_string(prop.minor) + "): this build's kernels cannot run on it (" +
               cudaGetErrorString(e) + "); rebuild with -DLOUPE_CUDA_ARCHITECTURES=" +
               std::to_string(prop.major) + std::to_string(prop.minor);
    return u;
  }
  size_t v = api->version;
  u.ok = true;
  u.detail = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
             std::to_string(prop.minor) + ", " + std::to_string(prop.totalGlobalMem >> 20) +
             " MiB), cuDNN " + std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) +
             "." + std::to_string(v % 100) + " (" + api->path + ")";
  return u;
}

// ---------------- process-wide algorithm cache ----------------

struct AlgoChoice {
  std::vector<cudnnConvolutionFwdAlgoPerf_t> candidates;  // best first, all status == SUCCESS
};

class AlgoCache {
 public:
  static AlgoCache& Get() {
    static AlgoCache* c = new AlgoCache();
    return *c;
  }
  bool Lookup(const std::string& key, AlgoChoice* out) {
    std::lock_guard<std::mutex> l(mu_);
    LoadFileOnce();
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    *out = it->second;
    return true;
  }
  void Store(const std::string& key, const AlgoChoice& c) {
    std::lock_guard<std::mutex> l(mu_);
    LoadFileOnce();
    map_[key] = c;
    std::string path = EnvStr("LOUPE_CUDNN_ALGO_CACHE");
    if (path.empty()) return;
    std::ofstream f(path, std::ios::app);
    if (!f) return;  // the cache is an optimisation only
    f << key;
    for (const auto& p : c.candidates)
      f << ' ' << static_cast<int>(p.algo) << ':' << static_cast<int>(p.mathType) << ':' << p.memory
        << ':' << p.time;
    f << '\n';
  }

 private:
  void LoadFileOnce() {
    if (loaded_) return;
    loaded_ = true;
    std::string path = EnvStr("LOUPE_CUDNN_ALGO_CACHE");
    if (path.empty()) return;
    std::ifstream f(path);
    std::string line;
    while (std::getline(f, line)) {
      std::istringstream ss(line);
      std::string key, tok;
      if (!(ss >> key)) continue;
      AlgoChoice c;
      bool bad = false;
      while (ss >> tok) {
        int a = 0, m = 0;
        unsigned long long mem = 0;
        float t = 0;
        if (std::sscanf(tok.c_str(), "%d:%d:%llu:%f", &a, &m, &mem, &t) != 4 || a < 0 ||
            a >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT || m < 0 || m > 3) {
          bad = true;
          break;
        }
        cudnnConvolutionFwdAlgoPerf_t p;
        std::memset(&p, 0, sizeof(p));
        p.algo = static_cast<cudnnConvolutionFwdAlgo_t>(a);
        p.status = CUDNN_STATUS_SUCCESS;
        p.time = t;
        p.memory = static_cast<size_t>(mem);
        p.mathType = static_cast<cudnnMathType_t>(m);
        c.candidates.push_back(p);
      }
      if (!bad && !c.candidates.empty()) map_[key] = c;
    }
  }
  std::mutex mu_;
  bool loaded_ = false;
  std::map<std::string, AlgoChoice> map_;
};

// ---------------- the session ----------------

constexpr int kSlots = 2;
constexpr int kConv1PadChannels = 8;  // 16-bit storage: conv1's 3 input channels padded to 8 (zeros)

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// One convolution of the network (weights resident on the device).
struct ConvLayer {
  std::string name;
  int kh = 1, kw = 1, cin = 0, cin_pad = 0, cout = 0, stride = 1, pad = 0;
  int in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  bool relu = true;
  bool has_bias = true;
  void* w = nullptr;             // KRSC, storage type
  void* bias_st = nullptr;       // [cout], storage type (fused path)
  float* bias_f32 = nullptr;     // [cout], fp32 (epilogue path)
  cudnnFilterDescriptor_t wdesc = nullptr;
  cudnnTensorDescriptor_t bdesc = nullptr;  // 1 x cout x 1 x 1
};

// Buffers of the forward; kIn means "the network input" (slot input or its 16-bit copy).
enum BufId : int {
  kIn = -1,
  kInLowp = 0,  // 16-bit copy of the input, channels padded
  kConv1,       // tap conv1
  kB0,
  kB1,
  kS1,  // branch2a output
  kS2,  // branch2b output
  kS3,  // branch1 (projection) output
  kTapRes2c,
  kTapRes3d,
  kTapRes4f,
  kTapRes5c,
  kBufCount
};

struct ConvOp {
  int conv;       // index into convs_
  int in, out;    // BufId
  int z = -2;     // residual BufId, -2 = none
};

// Per (conv, batch size): descriptors and the chosen way to run it.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t ws = 0;
  bool fused = false;
};

struct BatchPlan {
  int batch = 0;
  std::vector<ConvPlan> convs;
  cudaGraphExec_t exec[kSlots] = {nullptr, nullptr};
  uint64_t exec_gen[kSlots] = {0, 0};  // shared generation * 2^32 + slot generation at capture
  int eager_runs[kSlots] = {0, 0};
  bool graph_failed = false;
  // stats
  std::vector<float> gpu_ms, h2d_ms, d2h_ms, wall_ms;
  bool used_graph = false;
};

struct Slot {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  float* pinned_in = nullptr;
  size_t pinned_in_bytes = 0;
  float* d_in = nullptr;
  size_t d_in_bytes = 0;
  float* pinned_out = nullptr;
  size_t pinned_out_bytes = 0;
  uint32_t generation = 0;  // bumped when d_in moves (graphs captured it)
  cudaEvent_t h2d_start = nullptr, h2d_done = nullptr, compute_start = nullptr,
              compute_done = nullptr, d2h_done = nullptr;
};

size_t RoundUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

class CudaSession final : public Session {
 public:
  CudaSession(std::shared_ptr<const ResNet50Model> m, const SessionOptions& opts, const Api* api)
      : Session(std::move(m)), opts_(opts), api_(api) {}
  ~CudaSession() override;

  Status Init();
  Status Run(const RunRequest& req, RunResult* out) override;
  std::string backend_name() const override { return "cuda-cudnn"; }
  std::string device_name() const override { return device_name_; }

 private:
  Status UploadWeights();
  Status AddConv(const FoldedConv& fc, int in_h, int in_w, bool relu, bool has_bias,
                 const std::vector<float>* bias_override, int cin_pad);
  Status UploadConv(ConvLayer* L, const FoldedConv& fc, const std::vector<float>& bias);
  Status ToDevice(const std::vector<float>& host, DType t, void* dst);
  void* ArenaAlloc(size_t bytes);

  Status EnsurePlan(int batch, BatchPlan** out);
  Status ChooseAlgo(int batch, int conv_index, ConvPlan* cp, AlgoChoice* choice);
  Status ProbeConv(int batch, const ConvOp& op, ConvPlan* cp, const AlgoChoice& choice);
  Status EnsureCapacity(int batch);
  Status EnsureWorkspace(size_t bytes);
  Status GrowDevice(DeviceBuffer* b, size_t bytes);

  const void* BufPtr(int id, const float* slot_in) const;
  void* MutBuf(int id) const { return bufs_[id].ptr; }
  Status RunConv(const BatchPlan& plan, const ConvOp& op, const float* slot_in, cudaStream_t s);
  Status EnqueueForward(const BatchPlan& plan, const float* slot_in, cudaStream_t s,
                        const std::atomic<bool>* cancel);
  Status Capture(BatchPlan* plan, int slot_index);
  void DropGraphs(BatchPlan* plan, int slot_index /* -1: all */);
  bool Cancelled(const std::atomic<bool>* c) const { return c && c->load(); }

  // Where a tap lives after the forward: a storage-type buffer (needs conversion unless fp32) or fp32.
  struct TapSource {
    const void* ptr = nullptr;
    bool is_f32 = false;
    int64_t elems = 0;  // per image
  };
  TapSource TapSrc(Tap t) const;
  Status EnsureTapF32(Tap t, int64_t elems_total, float** out);

  void WriteStats();

  SessionOptions opts_;
  const Api* api_;
  std::string device_name_;
  DType dt_ = DType::kF32;
  cudnnDataType_t cudnn_dt_ = CUDNN_DATA_FLOAT;
  cudnnMathType_t math_ = CUDNN_FMA_MATH;
  bool use_graphs_ = true, use_fused_ = true, use_find_ = true;
  size_t ws_limit_ = size_t(1024) << 20;
  int conv1_cpad_ = 3;

  cudnnHandle_t handle_ = nullptr;
  cudnnActivationDescriptor_t relu_ = nullptr;
  cudaStream_t compute_ = nullptr;
  cudaEvent_t last_d2h_ = nullptr;  // the latest run's D2H completion (tap buffers are free after it)
  bool have_last_d2h_ = false;

  // weights
  DeviceBuffer arena_;
  size_t arena_used_ = 0;
  std::vector<ConvLayer> convs_;
  std::vector<ConvOp> ops_;  // in forward order, after conv1 + maxpool
  ConvOp conv1_op_;
  float* fc_w_ = nullptr;
  float* fc_b_ = nullptr;
  int fc_in_ = 0, fc_out_ = 0;
  int final_buf_ = kTapRes5c;
  int final_hw_ = 0, final_c_ = 0;
  int pool_h_ = 0, pool_w_ = 0, pool_c_ = 0;  // maxpool output

  // activations (capacity_ images)
  int capacity_ = 0;
  int64_t buf_elems_[kBufCount] = {0};  // per image
  DeviceBuffer bufs_[kBufCount];
  DeviceBuffer avg_, logits_, probs_;  // fp32
  DeviceBuffer workspace_;
  DeviceBuffer tap_f32_[static_cast<int>(Tap::kCount)];
  uint32_t shared_gen_ = 1;

  std::mutex compute_mu_;
  std::map<int, std::unique_ptr<BatchPlan>> plans_;
  std::atomic<unsigned> next_slot_{0};
  Slot slots_[kSlots];
  int copy_threads_ = 1;
};

// ---------------- init / weights ----------------

void* CudaSession::ArenaAlloc(size_t bytes) {
  size_t off = RoundUp(arena_used_, 256);
  if (off + bytes > arena_.bytes) return nullptr;
  arena_used_ = off + bytes;
  return static_cast<char*>(arena_.ptr) + off;
}

Status CudaSession::ToDevice(const std::vector<float>& host, DType t, void* dst) {
  if (host.empty()) return Status::Ok();
  // Everything on compute_ (a non-blocking stream: no implicit ordering with the legacy stream), then
  // a sync: `host` must outlive the copy.
  if (t == DType::kF32) {
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(dst, host.data(), host.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, compute_));
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(compute_));
    return Status::Ok();
  }
  float* tmp = nullptr;
  LOUPE_CUDA_CHECK(cudaMalloc(&tmp, host.size() * sizeof(float)));
  cudaError_t e = cudaMemcpyAsync(tmp, host.data(), host.size() * sizeof(float),
                                  cudaMemcpyHostToDevice, compute_);
  if (e == cudaSuccess)
    e = cuda::LaunchConvertInput(tmp, dst, t, static_cast<int64_t>(host.size()), 1, 1, compute_);
  if (e == cudaSuccess) e = cudaStreamSynchronize(compute_);
  cudaFree(tmp);
  if (e != cudaSuccess) return CudaErr("uploading weights (fp32 -> storage type)", e);
  return Status::Ok();
}

Status CudaSession::UploadConv(ConvLayer* L, const FoldedConv& fc, const std::vector<float>& bias) {
  const size_t wcount = static_cast<size_t>(L->cout) * L->kh * L->kw * L->cin_pad;
  std::vector<float> krsc(wcount, 0.0f);
  for (int r = 0; r < L->kh; ++r)
    for (int s = 0; s < L->kw; ++s)
      for (int c = 0; c < L->cin; ++c)
        for (int k = 0; k < L->cout; ++k)
          krsc[((static_cast<size_t>(k) * L->kh + r) * L->kw + s) * L->cin_pad + c] =
              fc.w_hwio[((static_cast<size_t>(r) * L->kw + s) * L->cin + c) * L->cout + k];
  const size_t es = static_cast<size_t>(cuda::DTypeSize(dt_));
  L->w = ArenaAlloc(wcount * es);
  L->bias_st = ArenaAlloc(static_cast<size_t>(L->cout) * es);
  L->bias_f32 = static_cast<float*>(ArenaAlloc(static_cast<size_t>(L->cout) * sizeof(float)));
  if (!L->w || !L->bias_st || !L->bias_f32)
    return Status(StatusCode::kInternal, "weight arena too small (internal sizing error)");
  LOUPE_RETURN_IF_ERROR(ToDevice(krsc, dt_, L->w));
  LOUPE_RETURN_IF_ERROR(ToDevice(bias, dt_, L->bias_st));
  LOUPE_RETURN_IF_ERROR(ToDevice(bias, DType::kF32, L->bias_f32));

  LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateFilterDescriptor(&L->wdesc));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetFilter4dDescriptor(L->wdesc, cudnn_dt_, CUDNN_TENSOR_NHWC,
                                                            L->cout, L->cin_pad, L->kh, L->kw));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateTensorDescriptor(&L->bdesc));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetTensor4dDescriptor(L->bdesc, CUDNN_TENSOR_NCHW, cudnn_dt_, 1,
                                                            L->cout, 1, 1));
  return Status::Ok();
}

Status CudaSession::AddConv(const FoldedConv& fc, int in_h, int in_w, bool relu, bool has_bias,
                            const std::vector<float>* bias_override, int cin_pad) {
  if (fc.kh <= 0 || fc.kw <= 0 || fc.cin <= 0 || fc.cout <= 0 || fc.stride <= 0 || fc.pad < 0)
    return Status(StatusCode::kInvalidArgument, "conv " + fc.name + ": bad geometry");
  if (fc.w_hwio.size() != static_cast<size_t>(fc.kh) * fc.kw * fc.cin * fc.cout ||
      fc.bias.size() != static_cast<size_t>(fc.cout))
    return Status(StatusCode::kInvalidArgument, "conv " + fc.name + ": weight/bias sizes do not match");
  ConvLayer L;
  L.name = fc.name;
  L.kh = fc.kh;
  L.kw = fc.kw;
  L.cin = fc.cin;
  L.cin_pad = std::max(cin_pad, fc.cin);
  L.cout = fc.cout;
  L.stride = fc.stride;
  L.pad = fc.pad;
  L.in_h = in_h;
  L.in_w = in_w;
  L.out_h = (in_h + 2 * fc.pad - fc.kh) / fc.stride + 1;
  L.out_w = (in_w + 2 * fc.pad - fc.kw) / fc.stride + 1;
  L.relu = relu;
  L.has_bias = has_bias;
  std::vector<float> bias = bias_override ? *bias_override : fc.bias;
  if (!has_bias) std::fill(bias.begin(), bias.end(), 0.0f);
  const Status up = UploadConv(&L, fc, bias);
  if (!up.ok()) {  // the layer is dropped: release the descriptors it may have made
    if (L.wdesc) api_->cudnnDestroyFilterDescriptor(L.wdesc);
    if (L.bdesc) api_->cudnnDestroyTensorDescriptor(L.bdesc);
    return up;
  }
  convs_.push_back(std::move(L));
  return Status::Ok();
}

Status CudaSession::UploadWeights() {
  const ResNet50Model& m = *model_;
  if (m.blocks.size() != 16)
    return Status(StatusCode::kInvalidArgument, "model has " + std::to_string(m.blocks.size()) +
                                                    " bottleneck blocks, expected 16");
  // Arena size: every conv's weights (+ padding) and biases in the storage type, biases in fp32.
  const size_t es = static_cast<size_t>(cuda::DTypeSize(dt_));
  size_t total = 0;
  auto count = [&](const FoldedConv& c, int cpad) {
    total += RoundUp(static_cast<size_t>(c.cout) * c.kh * c.kw * std::max(cpad, c.cin) * es, 256) +
             RoundUp(static_cast<size_t>(c.cout) * es, 256) +
             RoundUp(static_cast<size_t>(c.cout) * sizeof(float), 256);
  };
  count(m.conv1, conv1_cpad_);
  for (const auto& b : m.blocks) {
    count(b.a, 0);
    count(b.b, 0);
    count(b.c, 0);
    if (b.has_projection) count(b.projection, 0);
  }
  total += RoundUp(m.fc_w.size() * sizeof(float), 256) + RoundUp(m.fc_b.size() * sizeof(float), 256);
  total += 4096;
  LOUPE_CUDA_CHECK(cudaMalloc(&arena_.ptr, total));
  arena_.bytes = total;
  convs_.reserve(1 + 4 * m.blocks.size());  // no reallocation while we index into it below

  // conv1 (+ maxpool geometry)
  LOUPE_RETURN_IF_ERROR(AddConv(m.conv1, kInputSize, kInputSize, true, true, nullptr, conv1_cpad_));
  conv1_op_ = ConvOp{0, kIn, kConv1};
  const ConvLayer& c1 = convs_[0];
  if (c1.cin != kInputChannels)
    return Status(StatusCode::kInvalidArgument, "conv1 expects " + std::to_string(c1.cin) +
                                                    " input channels, the input has 3");
  buf_elems_[kInLowp] = static_cast<int64_t>(kInputSize) * kInputSize * c1.cin_pad;
  buf_elems_[kConv1] = static_cast<int64_t>(c1.out_h) * c1.out_w * c1.cout;
  pool_h_ = (c1.out_h + 2 - 3) / 2 + 1;
  pool_w_ = (c1.out_w + 2 - 3) / 2 + 1;
  pool_c_ = c1.cout;
  int64_t big = static_cast<int64_t>(pool_h_) * pool_w_ * pool_c_;

  // blocks
  int h = pool_h_, w = pool_w_, c = pool_c_;
  int x = kB0;
  const int tap_block[4] = {ResNet50Model::BlockIndexOfTap(Tap::kRes2c),
                            ResNet50Model::BlockIndexOfTap(Tap::kRes3d),
                            ResNet50Model::BlockIndexOfTap(Tap::kRes4f),
                            ResNet50Model::BlockIndexOfTap(Tap::kRes5c)};
  const int tap_buf[4] = {kTapRes2c, kTapRes3d, kTapRes4f, kTapRes5c};
  for (int bi = 0; bi < 16; ++bi) {
    const Bottleneck& b = m.blocks[bi];
    if (b.a.cin != c)
      return Status(StatusCode::kInvalidArgument,
                    "block " + b.name + ": branch2a expects " + std::to_string(b.a.cin) +
                        " channels, previous output has " + std::to_string(c));
    if (!b.has_projection && (b.c.cout != c || b.a.stride != 1))
      return Status(StatusCode::kInvalidArgument,
                    "block " + b.name + ": identity shortcut with a shape change");
    const int ia = static_cast<int>(convs_.size());
    LOUPE_RETURN_IF_ERROR(AddConv(b.a, h, w, true, true, nullptr, 0));
    const int a_h = convs_[ia].out_h, a_w = convs_[ia].out_w, a_c = convs_[ia].cout;
    LOUPE_RETURN_IF_ERROR(AddConv(b.b, a_h, a_w, true, true, nullptr, 0));
    const int b_h = convs_[ia + 1].out_h, b_w = convs_[ia + 1].out_w, b_c = convs_[ia + 1].cout;
    std::vector<float> cbias = b.c.bias;
    int ip = -1;
    if (b.has_projection) {
      if (b.projection.bias.size() != cbias.size())
        return Status(StatusCode::kInvalidArgument, "block " + b.name + ": projection bias size");
      for (size_t i = 0; i < cbias.size(); ++i) cbias[i] += b.projection.bias[i];
    }
    LOUPE_RETURN_IF_ERROR(AddConv(b.c, b_h, b_w, true, true, &cbias, 0));
    const int ic = ia + 2;
    if (b.has_projection) {
      ip = static_cast<int>(convs_.size());
      LOUPE_RETURN_IF_ERROR(AddConv(b.projection, h, w, false, false, nullptr, 0));
      const ConvLayer& P = convs_[ip];
      if (P.out_h != convs_[ic].out_h || P.out_w != convs_[ic].out_w || P.cout != convs_[ic].cout)
        return Status(StatusCode::kInvalidArgument, "block " + b.name + ": projection shape mismatch");
    }
    const int c_h = convs_[ic].out_h, c_w = convs_[ic].out_w, c_c = convs_[ic].cout;
    int out = -1;
    for (int t = 0; t < 4; ++t)
      if (tap_block[t] == bi) out = tap_buf[t];
    if (out < 0) out = (x == kB0) ? kB1 : kB0;
    const int64_t out_elems = static_cast<int64_t>(c_h) * c_w * c_c;
    buf_elems_[kS1] = std::max<int64_t>(buf_elems_[kS1], static_cast<int64_t>(a_h) * a_w * a_c);
    buf_elems_[kS2] = std::max<int64_t>(buf_elems_[kS2], static_cast<int64_t>(b_h) * b_w * b_c);
    if (ip >= 0) buf_elems_[kS3] = std::max<int64_t>(buf_elems_[kS3], out_elems);
    if (out == kB0 || out == kB1) big = std::max(big, out_elems);
    else buf_elems_[out] = out_elems;
    ops_.push_back(ConvOp{ia, x, kS1});
    ops_.push_back(ConvOp{ia + 1, kS1, kS2});
    if (ip >= 0) ops_.push_back(ConvOp{ip, x, kS3});
    ops_.push_back(ConvOp{ic, kS2, out, ip >= 0 ? kS3 : x});
    x = out;
    h = c_h;
    w = c_w;
    c = c_c;
  }
  buf_elems_[kB0] = buf_elems_[kB1] = big;
  final_buf_ = x;
  final_hw_ = h * w;
  final_c_ = c;
  if (x != kTapRes5c) return Status(StatusCode::kInternal, "last block is not the res5c tap");

  // dense
  fc_in_ = c;
  fc_out_ = static_cast<int>(m.fc_b.size());
  if (m.fc_w.size() != static_cast<size_t>(fc_in_) * fc_out_ || fc_out_ <= 0)
    return Status(StatusCode::kInvalidArgument, "fc1000 weights do not match " +
                                                    std::to_string(fc_in_) + " inputs");
  fc_w_ = static_cast<float*>(ArenaAlloc(m.fc_w.size() * sizeof(float)));
  fc_b_ = static_cast<float*>(ArenaAlloc(m.fc_b.size() * sizeof(float)));
  if (!fc_w_ || !fc_b_) return Status(StatusCode::kInternal, "weight arena too small (fc)");
  LOUPE_RETURN_IF_ERROR(ToDevice(m.fc_w, DType::kF32, fc_w_));
  LOUPE_RETURN_IF_ERROR(ToDevice(m.fc_b, DType::kF32, fc_b_));

  // The tap geometry must match the public contract.
  const struct { Tap t; int64_t e; } checks[] = {
      {Tap::kConv1, buf_elems_[kConv1]},       {Tap::kRes2c, buf_elems_[kTapRes2c]},
      {Tap::kRes3d, buf_elems_[kTapRes3d]},    {Tap::kRes4f, buf_elems_[kTapRes4f]},
      {Tap::kRes5c, buf_elems_[kTapRes5c]},    {Tap::kAvgPool, fc_in_},
      {Tap::kFc1000, fc_out_},                 {Tap::kProbabilities, fc_out_}};
  for (const auto& ck : checks)
    if (ck.e != TapElements(ck.t))
      return Status(StatusCode::kInternal, std::string("tap ") + TapName(ck.t) + " has " +
                                               std::to_string(ck.e) + " elements per image, expected " +
                                               std::to_string(TapElements(ck.t)));
  if (dt_ == DType::kF32) buf_elems_[kInLowp] = 0;  // fp32: conv1 reads the input directly
  return Status::Ok();
}

Status CudaSession::Init() {
  LOUPE_CUDA_CHECK(cudaSetDevice(opts_.device_id));
  cudaDeviceProp prop;
  LOUPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, opts_.device_id));
  device_name_ = prop.name;
  switch (opts_.precision) {
    case Precision::kFp32:
      dt_ = DType::kF32;
      cudnn_dt_ = CUDNN_DATA_FLOAT;
      math_ = CUDNN_FMA_MATH;  // no TF32
      conv1_cpad_ = 3;
      break;
    case Precision::kBf16:
      if (prop.major < 8)
        return Status(StatusCode::kUnavailable, std::string(prop.name) + " has no bf16 tensor cores");
      dt_ = DType::kBF16;
      cudnn_dt_ = CUDNN_DATA_BFLOAT16;
      math_ = CUDNN_TENSOR_OP_MATH;
      conv1_cpad_ = kConv1PadChannels;
      break;
    case Precision::kFp16:
      dt_ = DType::kF16;
      cudnn_dt_ = CUDNN_DATA_HALF;
      math_ = CUDNN_TENSOR_OP_MATH;
      conv1_cpad_ = kConv1PadChannels;
      break;
    case Precision::kInt8:  // CreateSession refuses it before getting here
      return Status(StatusCode::kInvalidArgument, "precision int8 runs on the CPU backend only (oneDNN)");
  }
  use_graphs_ = EnvFlag("LOUPE_CUDA_GRAPHS", true);
  use_fused_ = EnvFlag("LOUPE_CUDNN_FUSED", true);
  use_find_ = EnvStr("LOUPE_CUDNN_ALGO") != "heuristic";
  std::string wsmb = EnvStr("LOUPE_CUDNN_WS_MB");
  if (!wsmb.empty()) ws_limit_ = static_cast<size_t>(std::max(0L, std::atol(wsmb.c_str()))) << 20;
  int procs = omp_get_num_procs();
  copy_threads_ = opts_.num_threads > 0 ? opts_.num_threads : std::min(8, std::max(1, procs));

  LOUPE_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
  LOUPE_CUDA_CHECK(cudaEventCreateWithFlags(&last_d2h_, cudaEventDisableTiming));
  for (Slot& s : slots_) {
    LOUPE_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    LOUPE_CUDA_CHECK(cudaEventCreate(&s.h2d_start));
    LOUPE_CUDA_CHECK(cudaEventCreate(&s.h2d_done));
    LOUPE_CUDA_CHECK(cudaEventCreate(&s.compute_start));
    LOUPE_CUDA_CHECK(cudaEventCreate(&s.compute_done));
    LOUPE_CUDA_CHECK(cudaEventCreate(&s.d2h_done));
  }
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreate(&handle_));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetStream(handle_, compute_));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateActivationDescriptor(&relu_));
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetActivationDescriptor(relu_, CUDNN_ACTIVATION_RELU,
                                                              CUDNN_NOT_PROPAGATE_NAN, 0.0));
  LOUPE_RETURN_IF_ERROR(UploadWeights());
  LOUPE_CUDA_CHECK(cudaDeviceSynchronize());
  if (Verbose())
    std::fprintf(stderr,
                 "[loupe cuda] %s: %s, %zu convs, weights %.1f MiB, graphs %s, fused %s, algo %s\n",
                 device_name_.c_str(), PrecisionName(opts_.precision), convs_.size(),
                 arena_used_ / 1048576.0, use_graphs_ ? "on" : "off", use_fused_ ? "on" : "off",
                 use_find_ ? "find" : "heuristic");
  return Status::Ok();
}

CudaSession::~CudaSession() {
  cudaSetDevice(opts_.device_id);
  if (compute_) cudaStreamSynchronize(compute_);
  for (Slot& s : slots_)
    if (s.stream) cudaStreamSynchronize(s.stream);
  WriteStats();
  for (auto& kv : plans_) {
    BatchPlan& p = *kv.second;
    DropGraphs(&p, -1);
    for (ConvPlan& cp : p.convs) {
      if (cp.x) api_->cudnnDestroyTensorDescriptor(cp.x);
      if (cp.y) api_->cudnnDestroyTensorDescriptor(cp.y);
      if (cp.conv) api_->cudnnDestroyConvolutionDescriptor(cp.conv);
    }
  }
  for (ConvLayer& L : convs_) {
    if (L.wdesc) api_->cudnnDestroyFilterDescriptor(L.wdesc);
    if (L.bdesc) api_->cudnnDestroyTensorDescriptor(L.bdesc);
  }
  if (relu_) api_->cudnnDestroyActivationDescriptor(relu_);
  if (handle_) api_->cudnnDestroy(handle_);
  for (DeviceBuffer& b : bufs_) cudaFree(b.ptr);
  for (DeviceBuffer& b : tap_f32_) cudaFree(b.ptr);
  cudaFree(avg_.ptr);
  cudaFree(logits_.ptr);
  cudaFree(probs_.ptr);
  cudaFree(workspace_.ptr);
  cudaFree(arena_.ptr);
  for (Slot& s : slots_) {
    cudaFreeHost(s.pinned_in);
    cudaFreeHost(s.pinned_out);
    cudaFree(s.d_in);
    for (cudaEvent_t e : {s.h2d_start, s.h2d_done, s.compute_start, s.compute_done, s.d2h_done})
      if (e) cudaEventDestroy(e);
    if (s.stream) cudaStreamDestroy(s.stream);
  }
  if (last_d2h_) cudaEventDestroy(last_d2h_);
  if (compute_) cudaStreamDestroy(compute_);
  cudaGetLastError();
}

// ---------------- plans ----------------

Status CudaSession::GrowDevice(DeviceBuffer* b, size_t bytes) {
  if (b->bytes >= bytes) return Status::Ok();
  // Work already queued may still use the old buffer: wait for the device before freeing it.
  LOUPE_CUDA_CHECK(cudaDeviceSynchronize());
  if (b->ptr) {
    LOUPE_CUDA_CHECK(cudaFree(b->ptr));
    b->ptr = nullptr;
    b->bytes = 0;
  }
  LOUPE_CUDA_CHECK(cudaMalloc(&b->ptr, bytes));
  // On compute_, which every later use of the buffer is ordered after (directly or through events).
  LOUPE_CUDA_CHECK(cudaMemsetAsync(b->ptr, 0, bytes, compute_));
  b->bytes = bytes;
  ++shared_gen_;  // captured graphs hold the old pointers
  return Status::Ok();
}

Status CudaSession::EnsureWorkspace(size_t bytes) {
  return GrowDevice(&workspace_, RoundUp(std::max<size_t>(bytes, 256), 1 << 20));
}

Status CudaSession::EnsureCapacity(int batch) {
  if (batch <= capacity_) return Status::Ok();
  const int cap = std::max(batch, opts_.max_batch);
  const size_t es = static_cast<size_t>(cuda::DTypeSize(dt_));
  for (int i = 0; i < kBufCount; ++i)
    if (buf_elems_[i] > 0)
      LOUPE_RETURN_IF_ERROR(GrowDevice(&bufs_[i], static_cast<size_t>(buf_elems_[i]) * cap * es));
  LOUPE_RETURN_IF_ERROR(GrowDevice(&avg_, static_cast<size_t>(fc_in_) * cap * sizeof(float)));
  LOUPE_RETURN_IF_ERROR(GrowDevice(&logits_, static_cast<size_t>(fc_out_) * cap * sizeof(float)));
  LOUPE_RETURN_IF_ERROR(GrowDevice(&probs_, static_cast<size_t>(fc_out_) * cap * sizeof(float)));
  capacity_ = cap;
  return Status::Ok();
}

Status CudaSession::ChooseAlgo(int batch, int ci, ConvPlan* cp, AlgoChoice* choice) {
  const ConvLayer& L = convs_[ci];
  std::ostringstream key;
  key << "v" << api_->version << "|" << device_name_ << "|dt" << static_cast<int>(cudnn_dt_) << "|m"
      << static_cast<int>(math_) << "|n" << batch << "|c" << L.cin_pad << "|" << L.in_h << "x"
      << L.in_w << "|k" << L.cout << "|" << L.kh << "x" << L.kw << "|s" << L.stride << "|p" << L.pad
      << "|ws" << (ws_limit_ >> 20);
  std::string shape = key.str();
  for (char& ch : shape)
    if (ch == ' ') ch = '_';
  // The suffix says where a list came from: a lookup asks for the kind this session would make.
  const auto keyed = [&](bool timed) { return shape + (timed ? "|find" : "|heur"); };
  if (AlgoCache::Get().Lookup(keyed(use_find_), choice)) return Status::Ok();

  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  std::memset(perf, 0, sizeof(perf));
  int returned = 0;
  cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
  bool found = false;  // the list comes from timing runs (Find), not from the heuristic
  if (use_find_) {
    st = api_->cudnnFindConvolutionForwardAlgorithm(handle_, cp->x, L.wdesc, cp->conv, cp->y,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf);
    if (st != CUDNN_STATUS_SUCCESS && Verbose())
      std::fprintf(stderr, "[loupe cuda] %s\n",
                   CudnnErrorText(*api_, "cudnnFindConvolutionForwardAlgorithm", st).c_str());
    // A failed find can leave a (non-sticky) CUDA error behind: clear it before the heuristic.
    if (st != CUDNN_STATUS_SUCCESS) cudaGetLastError();
    found = st == CUDNN_STATUS_SUCCESS;
  }
  if (st != CUDNN_STATUS_SUCCESS) {
    returned = 0;
    std::memset(perf, 0, sizeof(perf));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnGetConvolutionForwardAlgorithm_v7(
                                 handle_, cp->x, L.wdesc, cp->conv, cp->y,
                                 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
  }
  choice->candidates.clear();
  for (int i = 0; i < returned && i < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (p.algo < 0 || p.algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT) continue;
    if (p.memory > ws_limit_) continue;
    // fp32 promises FMA accuracy: never a tensor-op (TF32) result.
    if (dt_ == DType::kF32 &&
        (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    choice->candidates.push_back(p);
  }
  // fp32: Find also times CUDNN_DEFAULT_MATH, which is TF32 on Ampere and later; the probe runs every
  // fp32 candidate with FMA math, so rank by the FMA timings when Find gave any.
  if (dt_ == DType::kF32) {
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fma;
    for (const auto& p : choice->candidates)
      if (p.mathType == CUDNN_FMA_MATH) fma.push_back(p);
    if (!fma.empty()) choice->candidates.swap(fma);
  }
  if (choice->candidates.size() > 4) choice->candidates.resize(4);
  // Always end with the most general algorithms (they work for every layout and type cuDNN supports),
  // so a list of fast candidates that all fail at the probe still leaves one that runs.
  for (cudnnConvolutionFwdAlgo_t a :
       {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM}) {
    bool listed = false;
    for (const auto& p : choice->candidates) listed = listed || p.algo == a;
    if (listed) continue;
    cudnnConvolutionFwdAlgoPerf_t p;
    std::memset(&p, 0, sizeof(p));
    p.algo = a;
    p.status = CUDNN_STATUS_SUCCESS;
    p.mathType = math_;
    p.memory = 0;
    choice->candidates.push_back(p);
  }
  // A heuristic list (Find failed) is cached under its own key, so a later process tries Find again.
  AlgoCache::Get().Store(keyed(found), *choice);
  return Status::Ok();
}

const void* CudaSession::BufPtr(int id, const float* slot_in) const {
  if (id == kIn) return dt_ == DType::kF32 ? static_cast<const void*>(slot_in) : bufs_[kInLowp].ptr;
  return bufs_[id].ptr;
}

// Tries the candidates (fused first when enabled) on the real buffers and keeps the first that runs.
Status CudaSession::ProbeConv(int batch, const ConvOp& op, ConvPlan* cp, const AlgoChoice& choice) {
  const ConvLayer& L = convs_[op.conv];
  const float one = 1.0f, zero = 0.0f;
  // The probe's input: the real buffer (conv1: the 16-bit input copy; fp32: a zeroed scratch).
  const void* x = op.in == kIn ? bufs_[kInLowp].ptr : bufs_[op.in].ptr;
  DeviceBuffer probe_in;
  if (op.in == kIn && dt_ == DType::kF32) {
    // fp32 conv1 reads the slot input, which is not allocated here: use a zeroed scratch buffer.
    size_t bytes = static_cast<size_t>(batch) * kInputSize * kInputSize * kInputChannels * 4;
    LOUPE_CUDA_CHECK(cudaMalloc(&probe_in.ptr, bytes));
    LOUPE_CUDA_CHECK(cudaMemsetAsync(probe_in.ptr, 0, bytes, compute_));
    x = probe_in.ptr;
  }
  void* y = bufs_[op.out].ptr;
  const void* z = op.z >= 0 ? bufs_[op.z].ptr : nullptr;  // residuals are never the network input
  std::string last_error;
  Status result(StatusCode::kInternal, "no algorithm");
  for (int pass = 0; pass < 2 && !result.ok(); ++pass) {
    const bool fused = pass == 0;
    if (fused && (!use_fused_ || !L.relu)) continue;  // projection: plain conv, no activation
    for (const cudnnConvolutionFwdAlgoPerf_t& cand : choice.candidates) {
      cudnnMathType_t math = dt_ == DType::kF32 ? CUDNN_FMA_MATH : cand.mathType;
      cudnnStatus_t st = api_->cudnnSetConvolutionMathType(cp->conv, math);
      if (st != CUDNN_STATUS_SUCCESS) {
        last_error = CudnnErrorText(*api_, "cudnnSetConvolutionMathType", st);
        continue;
      }
      size_t ws = 0;
      st = api_->cudnnGetConvolutionForwardWorkspaceSize(handle_, cp->x, L.wdesc, cp->conv, cp->y,
                                                         cand.algo, &ws);
      if (st != CUDNN_STATUS_SUCCESS) {
        last_error = CudnnErrorText(*api_, "cudnnGetConvolutionForwardWorkspaceSize", st);
        continue;
      }
      ws = std::max(ws, cand.memory);
      if (ws > ws_limit_) {
        last_error = std::string(AlgoName(cand.algo)) + " needs a workspace of " +
                     std::to_string(ws >> 20) + " MiB, over the limit of " +
                     std::to_string(ws_limit_ >> 20) + " MiB (LOUPE_CUDNN_WS_MB)";
        continue;
      }
      Status g = EnsureWorkspace(ws);
      if (!g.ok()) {
        cudaFree(probe_in.ptr);
        return g;
      }
      if (fused) {
        st = api_->cudnnConvolutionBiasActivationForward(
            handle_, &one, cp->x, x, L.wdesc, L.w, cp->conv, cand.algo, workspace_.ptr, ws,
            z ? &one : &zero, cp->y, z ? z : y, L.bdesc, L.bias_st, relu_, cp->y, y);
      } else {
        st = api_->cudnnConvolutionForward(handle_, &one, cp->x, x, L.wdesc, L.w, cp->conv,
                                           cand.algo, workspace_.ptr, ws, &zero, cp->y, y);
      }
      cudaError_t ce = cudaSuccess;
      if (st == CUDNN_STATUS_SUCCESS) ce = cudaStreamSynchronize(compute_);
      if (st == CUDNN_STATUS_SUCCESS && ce == cudaSuccess) {
        cp->algo = cand.algo;
        cp->math = math;
        cp->ws = ws;
        cp->fused = fused;
        result = Status::Ok();
        break;
      }
      if (ce != cudaSuccess) {
        // A kernel fault is not "unsupported": the context may be unusable. Report it.
        cudaFree(probe_in.ptr);
        return CudaErr(std::string("probing ") + L.name + (fused ? " (fused)" : "") + " with " +
                           AlgoName(cand.algo),
                       ce);
      }
      last_error = CudnnErrorText(*api_,
                                  fused ? "cudnnConvolutionBiasActivationForward"
                                        : "cudnnConvolutionForward",
                                  st);
      cudaGetLastError();
    }
  }
  if (probe_in.ptr) cudaFree(probe_in.ptr);
  if (!result.ok())
    return Status(StatusCode::kInternal, "conv " + L.name + " (batch " + std::to_string(batch) +
                                             "): no cuDNN algorithm ran: " + last_error);
  // Leave the descriptor with the math type of the chosen way.
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetConvolutionMathType(cp->conv, cp->math));
  return Status::Ok();
}

Status CudaSession::EnsurePlan(int batch, BatchPlan** out) {
  auto it = plans_.find(batch);
  if (it != plans_.end()) {
    *out = it->second.get();
    return Status::Ok();
  }
  // Building a plan runs every conv once (the probe) on the shared activation buffers: let the previous
  // run's output copies (another slot's stream) finish reading them first. Plans are built rarely.
  LOUPE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto plan_t0 = std::chrono::steady_clock::now();
  LOUPE_RETURN_IF_ERROR(EnsureCapacity(batch));
  auto plan = std::make_unique<BatchPlan>();
  plan->batch = batch;
  plan->convs.resize(convs_.size());
  // Descriptors first: if anything fails, the plan (and its descriptors) is released below.
  struct Guard {
    CudaSession* s;
    BatchPlan* p;
    bool armed = true;
    ~Guard() {
      if (!armed) return;
      for (ConvPlan& cp : p->convs) {
        if (cp.x) s->api_->cudnnDestroyTensorDescriptor(cp.x);
        if (cp.y) s->api_->cudnnDestroyTensorDescriptor(cp.y);
        if (cp.conv) s->api_->cudnnDestroyConvolutionDescriptor(cp.conv);
      }
    }
  } guard{this, plan.get()};
  for (size_t i = 0; i < convs_.size(); ++i) {
    const ConvLayer& L = convs_[i];
    ConvPlan& cp = plan->convs[i];
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateTensorDescriptor(&cp.x));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetTensor4dDescriptor(cp.x, CUDNN_TENSOR_NHWC, cudnn_dt_, batch,
                                                              L.cin_pad, L.in_h, L.in_w));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateTensorDescriptor(&cp.y));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetTensor4dDescriptor(cp.y, CUDNN_TENSOR_NHWC, cudnn_dt_, batch,
                                                              L.cout, L.out_h, L.out_w));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnCreateConvolutionDescriptor(&cp.conv));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetConvolution2dDescriptor(cp.conv, L.pad, L.pad, L.stride,
                                                                   L.stride, 1, 1,
                                                                   CUDNN_CROSS_CORRELATION,
                                                                   CUDNN_DATA_FLOAT));
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnSetConvolutionMathType(cp.conv, math_));
    int n = 0, c = 0, h = 0, w = 0;
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnGetConvolution2dForwardOutputDim(cp.conv, cp.x, L.wdesc, &n,
                                                                         &c, &h, &w));
    if (n != batch || c != L.cout || h != L.out_h || w != L.out_w)
      return Status(StatusCode::kInternal,
                    "conv " + L.name + ": cuDNN output " + std::to_string(n) + "x" + std::to_string(h) +
                        "x" + std::to_string(w) + "x" + std::to_string(c) + " != expected " +
                        std::to_string(L.out_h) + "x" + std::to_string(L.out_w) + "x" +
                        std::to_string(L.cout));
  }
  // Algorithms, then a probe of each conv on the real buffers.
  std::vector<const ConvOp*> op_of(convs_.size(), nullptr);
  op_of[0] = &conv1_op_;
  for (const ConvOp& op : ops_) op_of[op.conv] = &op;
  std::map<int, int> algo_hist;
  int fused_count = 0;
  size_t ws_max = 0;
  for (size_t i = 0; i < convs_.size(); ++i) {
    if (!op_of[i]) return Status(StatusCode::kInternal, "conv " + convs_[i].name + " is never run");
    AlgoChoice choice;
    LOUPE_RETURN_IF_ERROR(ChooseAlgo(batch, static_cast<int>(i), &plan->convs[i], &choice));
    LOUPE_RETURN_IF_ERROR(ProbeConv(batch, *op_of[i], &plan->convs[i], choice));
    algo_hist[plan->convs[i].algo]++;
    fused_count += plan->convs[i].fused ? 1 : 0;
    ws_max = std::max(ws_max, plan->convs[i].ws);
  }
  LOUPE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  if (Verbose()) {
    std::string h;
    for (const auto& kv : algo_hist)
      h += std::string(h.empty() ? "" : ", ") +
           AlgoName(static_cast<cudnnConvolutionFwdAlgo_t>(kv.first)) + " x" +
           std::to_string(kv.second);
    std::fprintf(stderr,
                 "[loupe cuda] plan batch %d (%s) in %.0f ms: %zu convs, %d fused, algos {%s}, "
                 "workspace %.1f MiB (max needed %.1f MiB), activations %.1f MiB\n",
                 batch, PrecisionName(opts_.precision),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - plan_t0)
                     .count(),
                 convs_.size(), fused_count, h.c_str(),
                 workspace_.bytes / 1048576.0, ws_max / 1048576.0,
                 [&] {
                   size_t t = 0;
                   for (const auto& b : bufs_) t += b.bytes;
                   return t / 1048576.0;
                 }());
  }
  guard.armed = false;
  BatchPlan* raw = plan.get();
  plans_[batch] = std::move(plan);
  *out = raw;
  return Status::Ok();
}

// ---------------- forward ----------------

Status CudaSession::RunConv(const BatchPlan& plan, const ConvOp& op, const float* slot_in,
                            cudaStream_t s) {
  (void)s;  // cuDNN runs on the handle's stream (compute_)
  const ConvLayer& L = convs_[op.conv];
  const ConvPlan& cp = plan.convs[op.conv];
  const float one = 1.0f, zero = 0.0f;
  const void* x = BufPtr(op.in, slot_in);
  void* y = bufs_[op.out].ptr;
  const void* z = op.z >= -1 ? BufPtr(op.z, slot_in) : nullptr;
  if (cp.fused) {
    LOUPE_CUDNN_CHECK(*api_, api_->cudnnConvolutionBiasActivationForward(
                                 handle_, &one, cp.x, x, L.wdesc, L.w, cp.conv, cp.algo,
                                 workspace_.ptr, cp.ws, z ? &one : &zero, cp.y, z ? z : y, L.bdesc,
                                 L.bias_st, relu_, cp.y, y));
    return Status::Ok();
  }
  LOUPE_CUDNN_CHECK(*api_, api_->cudnnConvolutionForward(handle_, &one, cp.x, x, L.wdesc, L.w, cp.conv,
                                                         cp.algo, workspace_.ptr, cp.ws, &zero, cp.y,
                                                         y));
  if (L.has_bias || z || L.relu) {
    const int64_t elems = static_cast<int64_t>(plan.batch) * L.out_h * L.out_w * L.cout;
    LOUPE_KERNEL_CHECK(cuda::LaunchBiasResidualAct(y, L.bias_f32, z, dt_, elems, L.cout, L.relu,
                                                   compute_),
                       "BiasResidualAct (" + L.name + ")");
  }
  return Status::Ok();
}

Status CudaSession::EnqueueForward(const BatchPlan& plan, const float* slot_in, cudaStream_t s,
                                   const std::atomic<bool>* cancel) {
  const int n = plan.batch;
  if (dt_ != DType::kF32)
    LOUPE_KERNEL_CHECK(cuda::LaunchConvertInput(slot_in, bufs_[kInLowp].ptr, dt_,
                                                static_cast<int64_t>(n) * kInputSize * kInputSize,
                                                kInputChannels, convs_[0].cin_pad, s),
                       "ConvertInput");
  LOUPE_RETURN_IF_ERROR(RunConv(plan, conv1_op_, slot_in, s));
  const ConvLayer& c1 = convs_[0];
  LOUPE_KERNEL_CHECK(cuda::LaunchMaxPool3x3s2p1(bufs_[kConv1].ptr, bufs_[kB0].ptr, dt_, n, c1.out_h,
                                                c1.out_w, c1.cout, pool_h_, pool_w_, s),
                     "MaxPool3x3s2p1");
  for (size_t i = 0; i < ops_.size(); ++i) {
    if (Cancelled(cancel)) return Status(StatusCode::kCancelled, "cancelled");
    LOUPE_RETURN_IF_ERROR(RunConv(plan, ops_[i], slot_in, s));
  }
  LOUPE_KERNEL_CHECK(cuda::LaunchGlobalAvgPool(bufs_[final_buf_].ptr, static_cast<float*>(avg_.ptr),
                                               dt_, n, final_hw_, final_c_, s),
                     "GlobalAvgPool");
  LOUPE_KERNEL_CHECK(cuda::LaunchDense(static_cast<const float*>(avg_.ptr), fc_w_, fc_b_,
                                       static_cast<float*>(logits_.ptr), n, fc_in_, fc_out_, s),
                     "Dense (fc1000)");
  LOUPE_KERNEL_CHECK(cuda::LaunchSoftmax(static_cast<const float*>(logits_.ptr),
                                         static_cast<float*>(probs_.ptr), n, fc_out_, s),
                     "Softmax");
  return Status::Ok();
}

void CudaSession::DropGraphs(BatchPlan* plan, int slot_index) {
  for (int i = 0; i < kSlots; ++i) {
    if (slot_index >= 0 && i != slot_index) continue;
    if (plan->exec[i]) cudaGraphExecDestroy(plan->exec[i]);
    plan->exec[i] = nullptr;
    plan->exec_gen[i] = 0;
  }
}

Status CudaSession::Capture(BatchPlan* plan, int si) {
  Slot& slot = slots_[si];
  DropGraphs(plan, si);
  // Capture on an idle stream; thread-local mode so other threads' allocations do not break it.
  LOUPE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  cudaError_t e = cudaStreamBeginCapture(compute_, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return CudaErr("cudaStreamBeginCapture", e);
  }
  Status st = EnqueueForward(*plan, slot.d_in, compute_, nullptr);
  cudaGraph_t graph = nullptr;
  e = cudaStreamEndCapture(compute_, &graph);
  if (!st.ok() || e != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return st.ok() ? CudaErr("cudaStreamEndCapture", e) : st;
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0ULL);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return CudaErr("cudaGraphInstantiate", e);
  }
  plan->exec[si] = exec;
  plan->exec_gen[si] = (static_cast<uint64_t>(shared_gen_) << 32) | slot.generation;
  return Status::Ok();
}

CudaSession::TapSource CudaSession::TapSrc(Tap t) const {
  TapSource s;
  s.elems = TapElements(t);
  switch (t) {
    case Tap::kConv1: s.ptr = bufs_[kConv1].ptr; break;
    case Tap::kRes2c: s.ptr = bufs_[kTapRes2c].ptr; break;
    case Tap::kRes3d: s.ptr = bufs_[kTapRes3d].ptr; break;
    case Tap::kRes4f: s.ptr = bufs_[kTapRes4f].ptr; break;
    case Tap::kRes5c: s.ptr = bufs_[kTapRes5c].ptr; break;
    case Tap::kAvgPool: s.ptr = avg_.ptr; s.is_f32 = true; break;
    case Tap::kFc1000: s.ptr = logits_.ptr; s.is_f32 = true; break;
    case Tap::kProbabilities: s.ptr = probs_.ptr; s.is_f32 = true; break;
    default: break;
  }
  if (dt_ == DType::kF32) s.is_f32 = true;
  return s;
}

Status CudaSession::EnsureTapF32(Tap t, int64_t elems_total, float** out) {
  DeviceBuffer& b = tap_f32_[static_cast<int>(t)];
  size_t need = static_cast<size_t>(elems_total) * sizeof(float);
  if (b.bytes < need) {
    // Not captured in any graph: no generation bump needed, but queued D2H copies may still read it.
    LOUPE_CUDA_CHECK(cudaDeviceSynchronize());
    if (b.ptr) LOUPE_CUDA_CHECK(cudaFree(b.ptr));
    b.ptr = nullptr;
    b.bytes = 0;
    LOUPE_CUDA_CHECK(cudaMalloc(&b.ptr, need));
    b.bytes = need;
  }
  *out = static_cast<float*>(b.ptr);
  return Status::Ok();
}

// Host -> pinned copy, parallel for big inputs.
void ParallelCopy(void* dst, const void* src, size_t bytes, int threads) {
  constexpr size_t kMinPerThread = size_t(2) << 20;
  int t = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, threads)),
                                            std::max<size_t>(1, bytes / kMinPerThread)));
  if (t <= 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t per = (bytes + t - 1) / t;
#pragma omp parallel for num_threads(t) schedule(static)
  for (int i = 0; i < t; ++i) {
    size_t off = per * static_cast<size_t>(i);
    if (off < bytes)
      std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                  std::min(per, bytes - off));
  }
}

Status CudaSession::Run(const RunRequest& req, RunResult* out) {
  if (!out) return Status(StatusCode::kInvalidArgument, "Run: no result object");
  if (!req.input) return Status(StatusCode::kInvalidArgument, "Run: input is null");
  if (req.batch < 1) return Status(StatusCode::kInvalidArgument, "Run: batch must be >= 1");
  for (Tap t : req.taps)
    if (static_cast<int>(t) < 0 || static_cast<int>(t) >= static_cast<int>(Tap::kCount))
      return Status(StatusCode::kInvalidArgument,
                    "Run: unknown tap " + std::to_string(static_cast<int>(t)));
  if (Cancelled(req.cancel)) return Status(StatusCode::kCancelled, "cancelled before start");
  const auto wall0 = std::chrono::steady_clock::now();
  const int n = req.batch;
  LOUPE_CUDA_CHECK(cudaSetDevice(opts_.device_id));

  const int si = static_cast<int>(next_slot_.fetch_add(1) % kSlots);
  Slot& slot = slots_[si];
  std::lock_guard<std::mutex> slot_lock(slot.mu);

  // ---- upload (overlaps another slot's compute) ----
  const size_t in_bytes = static_cast<size_t>(n) * kInputSize * kInputSize * kInputChannels * 4;
  if (slot.pinned_in_bytes < in_bytes || slot.d_in_bytes < in_bytes) {
    const size_t cap_bytes =
        static_cast<size_t>(std::max(n, opts_.max_batch)) * kInputSize * kInputSize * kInputChannels * 4;
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(slot.stream));
    if (slot.pinned_in_bytes < in_bytes) {
      if (slot.pinned_in) LOUPE_CUDA_CHECK(cudaFreeHost(slot.pinned_in));
      slot.pinned_in = nullptr;
      slot.pinned_in_bytes = 0;
      LOUPE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&slot.pinned_in), cap_bytes));
      slot.pinned_in_bytes = cap_bytes;
    }
    if (slot.d_in_bytes < in_bytes) {
      if (slot.d_in) LOUPE_CUDA_CHECK(cudaFree(slot.d_in));
      slot.d_in = nullptr;
      slot.d_in_bytes = 0;
      LOUPE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&slot.d_in), cap_bytes));
      slot.d_in_bytes = cap_bytes;
      ++slot.generation;
    }
  }
  LOUPE_CUDA_CHECK(cudaEventRecord(slot.h2d_start, slot.stream));
  {
    constexpr size_t kChunk = size_t(16) << 20;  // copy chunk i+1 to pinned while chunk i is in flight
    for (size_t off = 0; off < in_bytes; off += kChunk) {
      size_t len = std::min(kChunk, in_bytes - off);
      ParallelCopy(reinterpret_cast<char*>(slot.pinned_in) + off,
                   reinterpret_cast<const char*>(req.input) + off, len, copy_threads_);
      LOUPE_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<char*>(slot.d_in) + off,
                                       reinterpret_cast<const char*>(slot.pinned_in) + off, len,
                                       cudaMemcpyHostToDevice, slot.stream));
    }
  }
  LOUPE_CUDA_CHECK(cudaEventRecord(slot.h2d_done, slot.stream));

  // Output layout in the pinned buffer.
  std::vector<size_t> out_off(req.taps.size());
  size_t out_bytes = 0;
  for (size_t i = 0; i < req.taps.size(); ++i) {
    out_off[i] = out_bytes;
    out_bytes += RoundUp(static_cast<size_t>(n) * TapElements(req.taps[i]) * sizeof(float), 256);
  }
  if (slot.pinned_out_bytes < out_bytes) {
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(slot.stream));
    if (slot.pinned_out) LOUPE_CUDA_CHECK(cudaFreeHost(slot.pinned_out));
    slot.pinned_out = nullptr;
    slot.pinned_out_bytes = 0;
    LOUPE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&slot.pinned_out), out_bytes));
    slot.pinned_out_bytes = out_bytes;
  }

  // ---- compute (serialised) ----
  BatchPlan* plan = nullptr;
  bool graph_used = false;
  {
    std::lock_guard<std::mutex> compute_lock(compute_mu_);
    Status st = EnsurePlan(n, &plan);
    if (!st.ok()) {
      cudaStreamSynchronize(slot.stream);
      return st;
    }
    auto fail = [&](Status s) {
      // Leave no queued work that still reads the slot or the shared buffers.
      cudaStreamSynchronize(compute_);
      cudaStreamSynchronize(slot.stream);
      return s;
    };
    if (Cancelled(req.cancel)) return fail(Status(StatusCode::kCancelled, "cancelled"));

    // Graph: captured once the eager path ran for this (batch, slot); recaptured when buffers moved.
    const uint64_t gen = (static_cast<uint64_t>(shared_gen_) << 32) | slot.generation;
    if (plan->exec[si] && plan->exec_gen[si] != gen) DropGraphs(plan, si);
    if (use_graphs_ && !plan->graph_failed && !plan->exec[si] && plan->eager_runs[si] > 0) {
      Status cs = Capture(plan, si);
      if (!cs.ok()) {
        plan->graph_failed = true;
        std::fprintf(stderr, "[loupe cuda] CUDA graph capture failed for batch %d, running eagerly: %s\n",
                     n, cs.ToString().c_str());
        cudaGetLastError();
      } else if (Verbose()) {
        std::fprintf(stderr, "[loupe cuda] captured CUDA graph: batch %d, slot %d\n", n, si);
      }
    }

    cudaError_t e = cudaStreamWaitEvent(compute_, slot.h2d_done, 0);
    if (e == cudaSuccess && have_last_d2h_) e = cudaStreamWaitEvent(compute_, last_d2h_, 0);
    if (e == cudaSuccess) e = cudaEventRecord(slot.compute_start, compute_);
    if (e != cudaSuccess) return fail(CudaErr("cudaStreamWaitEvent/cudaEventRecord (compute)", e));
    if (plan->exec[si]) {
      e = cudaGraphLaunch(plan->exec[si], compute_);
      if (e != cudaSuccess) return fail(CudaErr("cudaGraphLaunch", e));
      graph_used = true;
    } else {
      st = EnqueueForward(*plan, slot.d_in, compute_, req.cancel);
      if (!st.ok()) return fail(st);
      plan->eager_runs[si]++;
    }
    // Requested taps in fp32 (16-bit storage: convert; fp32: read in place).
    std::vector<const float*> src(req.taps.size(), nullptr);
    for (size_t i = 0; i < req.taps.size(); ++i) {
      TapSource ts = TapSrc(req.taps[i]);
      if (!ts.ptr) return fail(Status(StatusCode::kInternal, "tap buffer missing"));
      if (ts.is_f32) {
        src[i] = static_cast<const float*>(ts.ptr);
        continue;
      }
      float* dst = nullptr;
      st = EnsureTapF32(req.taps[i], ts.elems * n, &dst);
      if (!st.ok()) return fail(st);
      e = cuda::LaunchToFloat(ts.ptr, dst, dt_, ts.elems * n, compute_);
      if (e != cudaSuccess)
        return fail(CudaErr(std::string("launch of ToFloat (") + TapName(req.taps[i]) + ")", e));
      src[i] = dst;
    }
    e = cudaEventRecord(slot.compute_done, compute_);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(slot.stream, slot.compute_done, 0);
    for (size_t i = 0; i < req.taps.size() && e == cudaSuccess; ++i)
      e = cudaMemcpyAsync(reinterpret_cast<char*>(slot.pinned_out) + out_off[i], src[i],
                          static_cast<size_t>(n) * TapElements(req.taps[i]) * sizeof(float),
                          cudaMemcpyDeviceToHost, slot.stream);
    if (e == cudaSuccess) e = cudaEventRecord(slot.d2h_done, slot.stream);
    if (e == cudaSuccess) e = cudaEventRecord(last_d2h_, slot.stream);
    if (e != cudaSuccess) return fail(CudaErr("queueing the output copies", e));
    have_last_d2h_ = true;
  }

  // ---- wait, then hand the outputs over ----
  cudaError_t e = cudaEventSynchronize(slot.d2h_done);
  if (e != cudaSuccess) return CudaErr("ResNet-50 forward on the GPU", e);
  out->outputs.resize(req.taps.size());
  for (size_t i = 0; i < req.taps.size(); ++i) {
    const size_t count = static_cast<size_t>(n) * TapElements(req.taps[i]);
    out->outputs[i].resize(count);
    ParallelCopy(out->outputs[i].data(), reinterpret_cast<const char*>(slot.pinned_out) + out_off[i],
                 count * sizeof(float), copy_threads_);
  }

  // ---- timing ----
  float gpu_ms = 0, h2d_ms = 0, d2h_ms = 0;
  cudaEventElapsedTime(&h2d_ms, slot.h2d_start, slot.h2d_done);
  cudaEventElapsedTime(&gpu_ms, slot.compute_start, slot.compute_done);
  cudaEventElapsedTime(&d2h_ms, slot.compute_done, slot.d2h_done);
  cudaGetLastError();
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count();
  {
    std::lock_guard<std::mutex> l(compute_mu_);
    plan->gpu_ms.push_back(gpu_ms);
    plan->h2d_ms.push_back(h2d_ms);
    plan->d2h_ms.push_back(d2h_ms);
    plan->wall_ms.push_back(static_cast<float>(wall_ms));
    plan->used_graph = plan->used_graph || graph_used;
  }
  if (Cancelled(req.cancel)) return Status(StatusCode::kCancelled, "cancelled");
  return Status::Ok();
}

float Median(std::vector<float> v) {
  if (v.empty()) return 0.0f;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void CudaSession::WriteStats() {
  std::string path = EnvStr("LOUPE_CUDA_STATS");
  if (path.empty()) return;
  std::string lines;
  for (const auto& kv : plans_) {
    const BatchPlan& p = *kv.second;
    if (p.gpu_ms.empty()) continue;
    int fused = 0;
    for (const ConvPlan& cp : p.convs) fused += cp.fused ? 1 : 0;
    // Steady state: drop the first run (plan probe / capture) when there are more.
    std::vector<float> g(p.gpu_ms.begin() + (p.gpu_ms.size() > 1 ? 1 : 0), p.gpu_ms.end());
    std::vector<float> h(p.h2d_ms.begin() + (p.h2d_ms.size() > 1 ? 1 : 0), p.h2d_ms.end());
    std::vector<float> d(p.d2h_ms.begin() + (p.d2h_ms.size() > 1 ? 1 : 0), p.d2h_ms.end());
    std::vector<float> w(p.wall_ms.begin() + (p.wall_ms.size() > 1 ? 1 : 0), p.wall_ms.end());
    float gm = Median(g);
    char buf[768];
    std::snprintf(buf, sizeof(buf),
                  "{\"backend\":\"cuda-cudnn\",\"device\":\"%s\",\"precision\":\"%s\",\"batch\":%d,"
                  "\"runs\":%zu,\"graphs\":%s,\"fused_convs\":%d,\"convs\":%zu,\"gpu_ms_median\":%.4f,"
                  "\"h2d_ms_median\":%.4f,\"d2h_ms_median\":%.4f,\"wall_ms_median\":%.4f,"
                  "\"gpu_img_per_s\":%.1f,\"workspace_mib\":%.1f}\n",
                  device_name_.c_str(), PrecisionName(opts_.precision), p.batch, p.gpu_ms.size(),
                  p.used_graph ? "true" : "false", fused, p.convs.size(), gm, Median(h), Median(d),
                  Median(w), gm > 0 ? p.batch * 1000.0 / gm : 0.0, workspace_.bytes / 1048576.0);
    lines += buf;
  }
  if (lines.empty()) return;
  if (path == "-") {
    std::fputs(lines.c_str(), stderr);
    return;
  }
  std::ofstream f(path, std::ios::app);
  if (f) f << lines;
}

}  // namespace

bool CudaUsable(int device_id, std::string* detail) {
  static std::mutex mu;
  static std::map<int, Usability> cache;
  std::lock_guard<std::mutex> l(mu);
  auto it = cache.find(device_id);
  if (it == cache.end()) it = cache.emplace(device_id, CheckUsable(device_id)).first;
  if (detail) *detail = it->second.detail;
  return it->second.ok;
}

Status CreateCudaSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                         std::unique_ptr<Session>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateCudaSession: no model");
  if (!out) return Status(StatusCode::kInvalidArgument, "CreateCudaSession: no output");
  std::string detail;
  if (!CudaUsable(opts.device_id, &detail))
    return Status(StatusCode::kUnavailable, "CUDA backend unavailable: " + detail);
  std::string why;
  const Api* api = LoadCudnn(&why);
  if (!api) return Status(StatusCode::kUnavailable, "CUDA backend unavailable: " + why);
  auto s = std::make_unique<CudaSession>(std::move(model), opts, api);
  Status st = s->Init();
  if (!st.ok()) return st;  // the destructor releases whatever Init created
  *out = std::move(s);
  return Status::Ok();
}

}  // namespace internal
}  // namespace loupe
