// CUDA training of many binary linear SVMs: the CPU algorithm (ml_internal.h: SvmScalarStep) with the
// same per-epoch sample order, one thread block per learner, sequential over that learner's samples.
// Per sample the block computes v.x in parallel over d (each thread owns NV float4 chunks of v and of
// the averaging sum A, in registers), reduces with warp shuffles + one shared-memory pass, then every
// thread runs the identical scalar step and updates its chunks. Rows of X stream through a STAGES-deep
// cp.async ring in shared memory (each thread copies and reads only its own chunks); the learner's
// sample list for the epoch ((row + 1) * y codes and ||x||^2) is staged in chunks of 256 entries.
// One launch per epoch (progress + cancel between epochs); learner state lives in device memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/ml_device_util.h"
#include "ml/ml_cuda.h"
#include "ml/ml_internal.h"

namespace loupe {
namespace ml {
namespace {

constexpr int kSvmThreads = 256;
constexpr int kSvmWarps = kSvmThreads / 32;
constexpr int kSvmChunk = kSvmThreads;  // sequence entries staged per refill (one per thread)

__device__ __forceinline__ void CpAsync16(void* smem_dst, const void* gmem_src) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;  // butterfly: every lane holds the same value
}

__device__ __forceinline__ float Dot4(const float4& a, const float4& b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  acc = fmaf(a.w, b.w, acc);
  return acc;
}

// X: [n][dp] (dp % 4 == 0, zero padded); seq/seq_xn: this epoch's sample lists, learner j at
// seq_off[j], seq_len[j] entries; V, A: [k][dp]; states/params: [k].
template <int NV, int STAGES>
__global__ void __launch_bounds__(kSvmThreads, 1)
    SvmEpochKernel(const float* __restrict__ X, int64_t dp, const int32_t* __restrict__ seq,
                   const double* __restrict__ seq_xn, const int64_t* __restrict__ seq_off,
                   const int64_t* __restrict__ seq_len, SvmLearnerState* __restrict__ states,
                   const SvmStepParams* __restrict__ params, float* __restrict__ V,
                   float* __restrict__ A, int averaged) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* xs = reinterpret_cast<float*>(smem_raw);                       // [STAGES][dp]
  double* xns = reinterpret_cast<double*>(xs + (size_t)STAGES * dp);   // [2 * chunk]
  int32_t* codes = reinterpret_cast<int32_t*>(xns + 2 * kSvmChunk);    // [2 * chunk]
  __shared__ float red[2][kSvmWarps];

  const int j = blockIdx.x;
  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int64_t dp4 = dp >> 2;
  const int64_t len = seq_len[j];
  const int32_t* L = seq + seq_off[j];
  const double* LX = seq_xn + seq_off[j];

  float4 v[NV], a[NV];
  const float4* V4 = reinterpret_cast<const float4*>(V + (size_t)j * dp);
  const float4* A4 = reinterpret_cast<const float4*>(A + (size_t)j * dp);
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = tid + (int64_t)u * kSvmThreads;
    const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
    v[u] = c < dp4 ? V4[c] : z;
    a[u] = (averaged && c < dp4) ? A4[c] : z;
  }
  SvmLearnerState st = states[j];
  const SvmStepParams p = params[j];

  // Sequence chunk 0 directly, chunk 1 into registers.
  if (tid < len) {
    codes[tid] = L[tid];
    xns[tid] = LX[tid];
  }
  int32_t pf_code = 0;
  double pf_xn = 0.0;
  if (kSvmChunk + tid < len) {
    pf_code = L[kSvmChunk + tid];
    pf_xn = LX[kSvmChunk + tid];
  }
  __syncthreads();

  auto issue = [&](int64_t pos) {
    const int32_t code = codes[pos % (2 * kSvmChunk)];
    const int64_t row = (int64_t)(code > 0 ? code : -code) - 1;
    const float* src = X + row * dp;
    float* dst = xs + (pos % STAGES) * dp;
#pragma unroll
    for (int u = 0; u < NV; ++u) {
      const int64_t c = tid + (int64_t)u * kSvmThreads;
      if (c < dp4) CpAsync16(dst + 4 * c, src + 4 * c);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < len) issue(s);
    CpAsyncCommit();
  }

  for (int64_t q = 0; q < len; ++q) {
    const int64_t r = q + STAGES - 1;  // position whose row is fetched now
    if (r < len && r % kSvmChunk == 0) {
      // Chunk r / chunk enters its slot (the slot's previous chunk is fully consumed), then the
      // next chunk is requested into registers (used one chunk later).
      const int64_t slot = (r / kSvmChunk) & 1;
      codes[slot * kSvmChunk + tid] = pf_code;
      xns[slot * kSvmChunk + tid] = pf_xn;
      __syncthreads();
      const int64_t nxt = r + kSvmChunk + tid;
      if (nxt < len) {
        pf_code = L[nxt];
        pf_xn = LX[nxt];
      }
    }
    if (r < len) issue(r);
    CpAsyncCommit();
    CpAsyncWait<STAGES - 1>();  // this thread's copies for position q have landed

    const int32_t code = codes[q % (2 * kSvmChunk)];
    const double xn = xns[q % (2 * kSvmChunk)];
    const int y = code > 0 ? 1 : -1;
    const float4* xrow = reinterpret_cast<const float4*>(xs + (q % STAGES) * dp);
    float4 xv[NV];
    float part = 0.0f;
#pragma unroll
    for (int u = 0; u < NV; ++u) {
      const int64_t c = tid + (int64_t)u * kSvmThreads;
      xv[u] = c < dp4 ? xrow[c] : make_float4(0.f, 0.f, 0.f, 0.f);
      part = Dot4(v[u], xv[u], part);
    }
    part = WarpSum(part);
    if (lane == 0) red[q & 1][warp] = part;
    __syncthreads();  // also orders this iteration's smem reads before later overwrites
    float dot = 0.0f;
#pragma unroll
    for (int w = 0; w < kSvmWarps; ++w) dot += red[q & 1][w];

    const SvmVecOps ops = SvmScalarStep(&st, p, y, dot, xn);
    if (ops.flush != 0.0f) {
      const float f = ops.flush;
#pragma unroll
      for (int u = 0; u < NV; ++u) {
        a[u].x = fmaf(f, v[u].x, a[u].x);
        a[u].y = fmaf(f, v[u].y, a[u].y);
        a[u].z = fmaf(f, v[u].z, a[u].z);
        a[u].w = fmaf(f, v[u].w, a[u].w);
      }
    }
    if (ops.delta != 0.0f) {
      const float dl = ops.delta;
#pragma unroll
      for (int u = 0; u < NV; ++u) {
        v[u].x = fmaf(dl, xv[u].x, v[u].x);
        v[u].y = fmaf(dl, xv[u].y, v[u].y);
        v[u].z = fmaf(dl, xv[u].z, v[u].z);
        v[u].w = fmaf(dl, xv[u].w, v[u].w);
      }
    }
    if (ops.vscale != 1.0f) {
      const float sc = ops.vscale;
#pragma unroll
      for (int u = 0; u < NV; ++u) {
        v[u].x *= sc;
        v[u].y *= sc;
        v[u].z *= sc;
        v[u].w *= sc;
      }
    }
  }
  CpAsyncWait<0>();

  float4* Vo = reinterpret_cast<float4*>(V + (size_t)j * dp);
  float4* Ao = reinterpret_cast<float4*>(A + (size_t)j * dp);
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = tid + (int64_t)u * kSvmThreads;
    if (c < dp4) {
      Vo[c] = v[u];
      if (averaged) Ao[c] = a[u];
    }
  }
  if (tid == 0) states[j] = st;
}

// Any d (used above 8192 features): v and A stay in global memory, each thread owning the float4
// chunks tid, tid + 256, ...; no prefetch. Same arithmetic per chunk as the register kernel.
__global__ void __launch_bounds__(kSvmThreads)
    SvmEpochKernelWide(const float* __restrict__ X, int64_t dp, const int32_t* __restrict__ seq,
                       const double* __restrict__ seq_xn, const int64_t* __restrict__ seq_off,
                       const int64_t* __restrict__ seq_len, SvmLearnerState* __restrict__ states,
                       const SvmStepParams* __restrict__ params, float* __restrict__ V,
                       float* __restrict__ A, int averaged) {
  __shared__ float red[2][kSvmWarps];
  const int j = blockIdx.x;
  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int64_t dp4 = dp >> 2;
  const int64_t len = seq_len[j];
  const int32_t* L = seq + seq_off[j];
  const double* LX = seq_xn + seq_off[j];
  float4* V4 = reinterpret_cast<float4*>(V + (size_t)j * dp);
  float4* A4 = reinterpret_cast<float4*>(A + (size_t)j * dp);
  SvmLearnerState st = states[j];
  const SvmStepParams p = params[j];
  for (int64_t q = 0; q < len; ++q) {
    const int32_t code = L[q];
    const double xn = LX[q];
    const int y = code > 0 ? 1 : -1;
    const int64_t row = (int64_t)(code > 0 ? code : -code) - 1;
    const float4* x4 = reinterpret_cast<const float4*>(X + row * dp);
    float part = 0.0f;
    for (int64_t c = tid; c < dp4; c += kSvmThreads) part = Dot4(V4[c], x4[c], part);
    part = WarpSum(part);
    if (lane == 0) red[q & 1][warp] = part;
    __syncthreads();
    float dot = 0.0f;
#pragma unroll
    for (int w = 0; w < kSvmWarps; ++w) dot += red[q & 1][w];
    const SvmVecOps ops = SvmScalarStep(&st, p, y, dot, xn);
    if (ops.flush != 0.0f || ops.delta != 0.0f || ops.vscale != 1.0f) {
      for (int64_t c = tid; c < dp4; c += kSvmThreads) {
        float4 vv = V4[c];
        if (ops.flush != 0.0f && averaged) {
          float4 aa = A4[c];
          aa.x = fmaf(ops.flush, vv.x, aa.x);
          aa.y = fmaf(ops.flush, vv.y, aa.y);
          aa.z = fmaf(ops.flush, vv.z, aa.z);
          aa.w = fmaf(ops.flush, vv.w, aa.w);
          A4[c] = aa;
        }
        if (ops.delta != 0.0f) {
          const float4 xv = x4[c];
          vv.x = fmaf(ops.delta, xv.x, vv.x);
          vv.y = fmaf(ops.delta, xv.y, vv.y);
          vv.z = fmaf(ops.delta, xv.z, vv.z);
          vv.w = fmaf(ops.delta, xv.w, vv.w);
        }
        if (ops.vscale != 1.0f) {
          vv.x *= ops.vscale;
          vv.y *= ops.vscale;
          vv.z *= ops.vscale;
          vv.w *= ops.vscale;
        }
        V4[c] = vv;
      }
    }
  }
  if (tid == 0) states[j] = st;
}

using SvmKernelFn = void (*)(const float*, int64_t, const int32_t*, const double*, const int64_t*,
                             const int64_t*, SvmLearnerState*, const SvmStepParams*, float*, float*,
                             int);

template <int STAGES>
SvmKernelFn PickNV(int nv) {
  switch (nv) {
    case 1: return SvmEpochKernel<1, STAGES>;
    case 2: return SvmEpochKernel<2, STAGES>;
    case 4: return SvmEpochKernel<4, STAGES>;
    default: return SvmEpochKernel<8, STAGES>;
  }
}

}  // namespace

bool CudaDeviceAvailable(int device_id, std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error
    if (why) *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
    return false;
  }
  if (count <= 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  if (device_id < 0 || device_id >= count) {
    if (why)
      *why = "device " + std::to_string(device_id) + " requested, " + std::to_string(count) +
             " present";
    return false;
  }
  return true;
}

Status TrainLinearSvmsCuda(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                           const SgdSvmOptions& opts, const std::vector<int64_t>& counts,
                           std::vector<float>* w, std::vector<float>* b) {
  if (n >= (int64_t)INT32_MAX)
    return Status(StatusCode::kInvalidArgument,
                  "TrainLinearSvms (CUDA): n must be < 2^31 (got " + std::to_string(n) + ")");
  CudaDeviceScope scope;
  LOUPE_RETURN_IF_ERROR(scope.Enter(opts.device_id));
  CudaStream stream;
  LOUPE_RETURN_IF_ERROR(stream.Create());
  cudaStream_t s = stream.get();

  const bool averaged = opts.schedule == SgdSchedule::kAveraged;
  const int64_t dp = RoundUp(d, 4);
  const int64_t dp4 = dp / 4;
  const int nt = ResolveThreads(opts.num_threads);

  // Kernel choice: NV float4 chunks per thread in registers, STAGES rows in flight.
  int nv = 0;
  for (int c : {1, 2, 4, 8})
    if (nv == 0 && (int64_t)c * kSvmThreads >= dp4) nv = c;
  int stages = 0;
  SvmKernelFn kernel = SvmEpochKernelWide;
  size_t smem = 0;
  // The row ring must fit the device's opt-in shared memory (227 KB on Hopper, 99 KB on some other
  // parts): fewer rows in flight, else the wide kernel (no ring).
  int smem_optin = 0;
  LOUPE_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, opts.device_id));
  const auto ring_bytes = [&](int st) {
    return (size_t)st * dp * sizeof(float) + 2 * kSvmChunk * (sizeof(double) + sizeof(int32_t));
  };
  if (nv != 0) {
    stages = dp * 4 * 8 <= 96 * 1024 ? 8 : 4;
    if (ring_bytes(stages) > (size_t)smem_optin) stages = 4;
    if (ring_bytes(stages) > (size_t)smem_optin) nv = 0;
  }
  if (nv != 0) {
    kernel = stages == 8 ? PickNV<8>(nv) : PickNV<4>(nv);
    smem = ring_bytes(stages);
    LOUPE_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  }

  // Data.
  DeviceBuffer<float> dX, dV, dA;
  LOUPE_RETURN_IF_ERROR(dX.Alloc((size_t)(n * dp), "svm X"));
  if (dp != d) LOUPE_CUDA_CHECK(cudaMemsetAsync(dX.get(), 0, (size_t)(n * dp) * sizeof(float), s));
  LOUPE_CUDA_CHECK(cudaMemcpy2DAsync(dX.get(), (size_t)dp * sizeof(float), X, (size_t)d * sizeof(float),
                                     (size_t)d * sizeof(float), (size_t)n, cudaMemcpyHostToDevice, s));
  LOUPE_RETURN_IF_ERROR(dV.Alloc((size_t)k * dp, "svm V"));
  LOUPE_RETURN_IF_ERROR(dA.Alloc(averaged ? (size_t)k * dp : 4, "svm A"));
  LOUPE_CUDA_CHECK(cudaMemsetAsync(dV.get(), 0, (size_t)k * dp * sizeof(float), s));
  LOUPE_CUDA_CHECK(cudaMemsetAsync(dA.get(), 0, dA.count() * sizeof(float), s));

  std::vector<SvmLearnerState> states((size_t)k);
  std::vector<SvmStepParams> params((size_t)k);
  std::vector<int64_t> off((size_t)k), lens((size_t)k);
  int64_t total = 0;
  for (int j = 0; j < k; ++j) {
    SvmInitState(&states[(size_t)j]);
    params[(size_t)j] = MakeSvmStepParams(opts, counts[(size_t)j], n);
    off[(size_t)j] = total;
    lens[(size_t)j] = counts[(size_t)j];
    total += counts[(size_t)j];
  }
  DeviceBuffer<SvmLearnerState> dStates;
  DeviceBuffer<SvmStepParams> dParams;
  DeviceBuffer<int64_t> dOff, dLen;
  DeviceBuffer<int32_t> dSeq;
  DeviceBuffer<double> dSeqXn;
  LOUPE_RETURN_IF_ERROR(dStates.Alloc((size_t)k, "svm states"));
  LOUPE_RETURN_IF_ERROR(dParams.Alloc((size_t)k, "svm params"));
  LOUPE_RETURN_IF_ERROR(dOff.Alloc((size_t)k, "svm offsets"));
  LOUPE_RETURN_IF_ERROR(dLen.Alloc((size_t)k, "svm lengths"));
  LOUPE_RETURN_IF_ERROR(dSeq.Alloc((size_t)total, "svm sequence"));
  LOUPE_RETURN_IF_ERROR(dSeqXn.Alloc((size_t)total, "svm sequence norms"));
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(dStates.get(), states.data(), k * sizeof(SvmLearnerState),
                                   cudaMemcpyHostToDevice, s));
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(dParams.get(), params.data(), k * sizeof(SvmStepParams),
                                   cudaMemcpyHostToDevice, s));
  LOUPE_CUDA_CHECK(
      cudaMemcpyAsync(dOff.get(), off.data(), k * sizeof(int64_t), cudaMemcpyHostToDevice, s));
  LOUPE_CUDA_CHECK(
      cudaMemcpyAsync(dLen.get(), lens.data(), k * sizeof(int64_t), cudaMemcpyHostToDevice, s));

  std::vector<double> xn;
  RowNorms2(X, n, d, nt, &xn);

  // Host side of one epoch: every learner's samples in the shared order.
  std::vector<int32_t> seq((size_t)total);
  std::vector<double> seq_xn((size_t)total);
  std::vector<int64_t> order;
  auto build = [&](int epoch) {
    SgdSampleOrder(opts.seed, epoch, n, &order);
    BuildSvmEpochSequences(targets, n, k, order, xn, off, nt, seq.data(), seq_xn.data());
  };

  if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
    return Status(StatusCode::kCancelled, "TrainLinearSvms cancelled");
  build(0);
  for (int e = 0; e < opts.epochs; ++e) {
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(dSeq.get(), seq.data(), (size_t)total * sizeof(int32_t),
                                     cudaMemcpyHostToDevice, s));
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(dSeqXn.get(), seq_xn.data(), (size_t)total * sizeof(double),
                                     cudaMemcpyHostToDevice, s));
    // Pageable copies: the host buffers are free again once the calls return, but make sure of it
    // before rebuilding them while the kernel runs.
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));
    kernel<<<k, kSvmThreads, smem, s>>>(dX.get(), dp, dSeq.get(), dSeqXn.get(), dOff.get(),
                                        dLen.get(), dStates.get(), dParams.get(), dV.get(),
                                        dA.get(), averaged ? 1 : 0);
    LOUPE_CUDA_CHECK_LAUNCH("SvmEpochKernel");
    if (e + 1 < opts.epochs) build(e + 1);  // overlaps the kernel
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));
    if (opts.progress) opts.progress(e + 1, opts.epochs);
    if (e + 1 < opts.epochs && opts.cancel && opts.cancel->load(std::memory_order_relaxed))
      return Status(StatusCode::kCancelled, "TrainLinearSvms cancelled");
  }

  std::vector<float> V((size_t)k * dp), Acc(averaged ? (size_t)k * dp : 0);
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(V.data(), dV.get(), V.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, s));
  if (averaged)
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(Acc.data(), dA.get(), Acc.size() * sizeof(float),
                                     cudaMemcpyDeviceToHost, s));
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(states.data(), dStates.get(), k * sizeof(SvmLearnerState),
                                   cudaMemcpyDeviceToHost, s));
  LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));

  w->assign((size_t)k * (size_t)d, 0.0f);
  b->assign((size_t)k, 0.0f);
  for (int j = 0; j < k; ++j)
    SvmFinalize(opts, states[(size_t)j], V.data() + (size_t)j * dp,
                averaged ? Acc.data() + (size_t)j * dp : nullptr, d, w->data() + (size_t)j * d,
                b->data() + j);
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
