// Elementwise / pooling / dense kernels of the CUDA ResNet-50 forward (the convolutions are cuDNN's).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "cuda/resnet_kernels.h"

namespace loupe {
namespace cuda {
namespace {

// ---- scalar conversions ----
template <typename T> __device__ __forceinline__ float ToF(T v);
template <> __device__ __forceinline__ float ToF<float>(float v) { return v; }
template <> __device__ __forceinline__ float ToF<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <> __device__ __forceinline__ float ToF<__half>(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T FromF(float v);
template <> __device__ __forceinline__ float FromF<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half FromF<__half>(float v) { return __float2half_rn(v); }

// 8 consecutive values: one 16-byte access for 16-bit types, two for fp32.
template <typename T>
struct alignas(16) Pack8 {
  T v[8];
};

inline unsigned Blocks(int64_t work, int threads) {
  int64_t b = (work + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 2147483647LL) b = 2147483647LL;
  return static_cast<unsigned>(b);
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- input conversion (+ channel padding) ----
template <typename T>
__global__ void ConvertInputKernel(const float* __restrict__ in, T* __restrict__ out, int64_t pixels,
                                   int cin, int cpad) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t total = pixels * cpad;
  for (; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t p = i / cpad;
    int c = static_cast<int>(i - p * cpad);
    out[i] = FromF<T>(c < cin ? in[p * cin + c] : 0.0f);
  }
}

// ---- max pool 3x3 / 2, zero padding 1 ----
template <typename T>
__global__ void MaxPoolVec8Kernel(const T* __restrict__ in, T* __restrict__ out, int n, int h, int w,
                                  int c, int oh, int ow) {
  const int cv = c / 8;
  int64_t total = static_cast<int64_t>(n) * oh * ow * cv;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int v = static_cast<int>(i % cv);
    int64_t r = i / cv;
    int x = static_cast<int>(r % ow);
    r /= ow;
    int y = static_cast<int>(r % oh);
    int b = static_cast<int>(r / oh);
    float m[8];
    bool any_pad = false;
#pragma unroll
    for (int j = 0; j < 8; ++j) m[j] = -FLT_MAX;
    for (int dy = 0; dy < 3; ++dy) {
      int iy = y * 2 - 1 + dy;
      for (int dx = 0; dx < 3; ++dx) {
        int ix = x * 2 - 1 + dx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
          any_pad = true;
          continue;
        }
        const Pack8<T> p = *reinterpret_cast<const Pack8<T>*>(
            in + ((static_cast<int64_t>(b) * h + iy) * w + ix) * c + v * 8);
#pragma unroll
        for (int j = 0; j < 8; ++j) m[j] = fmaxf(m[j], ToF<T>(p.v[j]));
      }
    }
    Pack8<T> o;
#pragma unroll
    for (int j = 0; j < 8; ++j) o.v[j] = FromF<T>(any_pad ? fmaxf(m[j], 0.0f) : m[j]);
    *reinterpret_cast<Pack8<T>*>(out + ((static_cast<int64_t>(b) * oh + y) * ow + x) * c + v * 8) = o;
  }
}

template <typename T>
__global__ void MaxPoolScalarKernel(const T* __restrict__ in, T* __restrict__ out, int n, int h, int w,
                                    int c, int oh, int ow) {
  int64_t total = static_cast<int64_t>(n) * oh * ow * c;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int ch = static_cast<int>(i % c);
    int64_t r = i / c;
    int x = static_cast<int>(r % ow);
    r /= ow;
    int y = static_cast<int>(r % oh);
    int b = static_cast<int>(r / oh);
    float m = -FLT_MAX;
    for (int dy = 0; dy < 3; ++dy) {
      int iy = y * 2 - 1 + dy;
      for (int dx = 0; dx < 3; ++dx) {
        int ix = x * 2 - 1 + dx;
        float v = (iy < 0 || iy >= h || ix < 0 || ix >= w)
                      ? 0.0f
                      : ToF<T>(in[((static_cast<int64_t>(b) * h + iy) * w + ix) * c + ch]);
        m = fmaxf(m, v);
      }
    }
    out[i] = FromF<T>(m);
  }
}

// ---- global average pool ----
template <typename T>
__global__ void GlobalAvgPoolKernel(const T* __restrict__ in, float* __restrict__ out, int n, int hw,
                                    int c) {
  int64_t total = static_cast<int64_t>(n) * c;
  const float inv = 1.0f / static_cast<float>(hw);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int ch = static_cast<int>(i % c);
    int64_t b = i / c;
    const T* p = in + b * hw * c + ch;
    float s = 0.0f;
    for (int k = 0; k < hw; ++k) s += ToF<T>(p[static_cast<int64_t>(k) * c]);
    out[i] = s * inv;
  }
}

// ---- dense: C[n][m] = A[n][k] . W[k][m] + bias[m] (fp32 tiled GEMM) ----
constexpr int kDenseBM = 32, kDenseBN = 64, kDenseBK = 16, kDenseThreads = 256;

__global__ void __launch_bounds__(kDenseThreads)
    DenseKernel(const float* __restrict__ A, const float* __restrict__ W,
                const float* __restrict__ bias, float* __restrict__ C, int N, int K, int M) {
  __shared__ float As[kDenseBK][kDenseBM + 4];
  __shared__ float Ws[kDenseBK][kDenseBN + 4];
  const int tx = threadIdx.x % 16;  // column group
  const int ty = threadIdx.x / 16;  // row group (0..15)
  const int row0 = blockIdx.y * kDenseBM;
  const int col0 = blockIdx.x * kDenseBN;
  float acc[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += kDenseBK) {
    for (int e = threadIdx.x; e < kDenseBM * kDenseBK; e += kDenseThreads) {
      int r = e / kDenseBK, kk = e % kDenseBK;
      int gr = row0 + r, gk = k0 + kk;
      As[kk][r] = (gr < N && gk < K) ? A[static_cast<int64_t>(gr) * K + gk] : 0.0f;
    }
    for (int e = threadIdx.x; e < kDenseBK * kDenseBN; e += kDenseThreads) {
      int kk = e / kDenseBN, cc = e % kDenseBN;
      int gk = k0 + kk, gc = col0 + cc;
      Ws[kk][cc] = (gk < K && gc < M) ? W[static_cast<int64_t>(gk) * M + gc] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDenseBK; ++kk) {
      float a0 = As[kk][ty], a1 = As[kk][ty + 16];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float b = Ws[kk][tx + 16 * j];
        acc[0][j] = fmaf(a0, b, acc[0][j]);
        acc[1][j] = fmaf(a1, b, acc[1][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    int r = row0 + ty + 16 * i;
    if (r >= N) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int cidx = col0 + tx + 16 * j;
      if (cidx < M) C[static_cast<int64_t>(r) * M + cidx] = acc[i][j] + bias[cidx];
    }
  }
}

// ---- softmax (one block per row) ----
constexpr int kSoftmaxThreads = 256;

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kSoftmaxThreads)
    SoftmaxKernel(const float* __restrict__ in, float* __restrict__ out, int m) {
  __shared__ float red[kSoftmaxThreads / 32];
  __shared__ float bcast;
  const float* x = in + static_cast<int64_t>(blockIdx.x) * m;
  float* y = out + static_cast<int64_t>(blockIdx.x) * m;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  float mx = -FLT_MAX;
  for (int i = threadIdx.x; i < m; i += blockDim.x) mx = fmaxf(mx, x[i]);
  mx = WarpMax(mx);
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  if (warp == 0) {
    float v = lane < kSoftmaxThreads / 32 ? red[lane] : -FLT_MAX;
    v = WarpMax(v);
    if (lane == 0) bcast = v;
  }
  __syncthreads();
  mx = bcast;
  __syncthreads();  // everyone has read bcast before it is reused

  float s = 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) s += expf(x[i] - mx);
  s = WarpSum(s);
  if (lane == 0) red[warp] = s;
  __syncthreads();
  if (warp == 0) {
    float v = lane < kSoftmaxThreads / 32 ? red[lane] : 0.0f;
    v = WarpSum(v);
    if (lane == 0) bcast = v;
  }
  __syncthreads();
  const float inv = 1.0f / bcast;
  for (int i = threadIdx.x; i < m; i += blockDim.x) y[i] = expf(x[i] - mx) * inv;
}

// ---- conv epilogue: y = act(y + bias + z) ----
template <typename T>
__global__ void BiasResidualActVec8Kernel(T* __restrict__ y, const float* __restrict__ bias,
                                          const T* __restrict__ z, int64_t packs, int c, bool relu) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int c0 = static_cast<int>((i * 8) % c);
    Pack8<T> p = reinterpret_cast<const Pack8<T>*>(y)[i];
    Pack8<T> q;
    if (z) q = reinterpret_cast<const Pack8<T>*>(z)[i];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float v = ToF<T>(p.v[j]) + bias[c0 + j];
      if (z) v += ToF<T>(q.v[j]);
      if (relu) v = fmaxf(v, 0.0f);
      p.v[j] = FromF<T>(v);
    }
    reinterpret_cast<Pack8<T>*>(y)[i] = p;
  }
}

template <typename T>
__global__ void BiasResidualActScalarKernel(T* __restrict__ y, const float* __restrict__ bias,
                                            const T* __restrict__ z, int64_t n, int c, bool relu) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = ToF<T>(y[i]) + bias[i % c];
    if (z) v += ToF<T>(z[i]);
    if (relu) v = fmaxf(v, 0.0f);
    y[i] = FromF<T>(v);
  }
}

// ---- storage type -> fp32 ----
template <typename T>
__global__ void ToFloatKernel(const T* __restrict__ in, float* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = ToF<T>(in[i]);
}

constexpr int kThreads = 256;
// Grid-stride loops: cap the grid (132 SMs x 16 blocks of 256 is plenty to saturate HBM).
inline unsigned GridFor(int64_t work) {
  unsigned b = Blocks(work, kThreads);
  return b > 8192u ? 8192u : b;
}

template <typename T>
cudaError_t MaxPoolT(const void* in, void* out, int n, int h, int w, int c, int oh, int ow,
                     cudaStream_t s) {
  const T* i = static_cast<const T*>(in);
  T* o = static_cast<T*>(out);
  if (c % 8 == 0 && Aligned16(in) && Aligned16(out)) {
    int64_t work = static_cast<int64_t>(n) * oh * ow * (c / 8);
    MaxPoolVec8Kernel<T><<<GridFor(work), kThreads, 0, s>>>(i, o, n, h, w, c, oh, ow);
  } else {
    int64_t work = static_cast<int64_t>(n) * oh * ow * c;
    MaxPoolScalarKernel<T><<<GridFor(work), kThreads, 0, s>>>(i, o, n, h, w, c, oh, ow);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t BiasResidualActT(void* y, const float* bias, const void* z, int64_t elements, int c,
                             bool relu, cudaStream_t s) {
  T* yy = static_cast<T*>(y);
  const T* zz = static_cast<const T*>(z);
  if (c % 8 == 0 && Aligned16(y) && (z == nullptr || Aligned16(z))) {
    int64_t packs = elements / 8;  // c % 8 == 0 -> elements % 8 == 0
    BiasResidualActVec8Kernel<T><<<GridFor(packs), kThreads, 0, s>>>(yy, bias, zz, packs, c, relu);
  } else {
    BiasResidualActScalarKernel<T><<<GridFor(elements), kThreads, 0, s>>>(yy, bias, zz, elements, c,
                                                                         relu);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchConvertInput(const float* in, void* out, DType out_type, int64_t pixels, int cin,
                               int cpad, cudaStream_t stream) {
  if (cpad < cin || cin <= 0) return cudaErrorInvalidValue;
  unsigned g = GridFor(pixels * cpad);
  switch (out_type) {
    case DType::kF32:
      ConvertInputKernel<float><<<g, kThreads, 0, stream>>>(in, static_cast<float*>(out), pixels, cin,
                                                            cpad);
      break;
    case DType::kBF16:
      ConvertInputKernel<__nv_bfloat16><<<g, kThreads, 0, stream>>>(
          in, static_cast<__nv_bfloat16*>(out), pixels, cin, cpad);
      break;
    case DType::kF16:
      ConvertInputKernel<__half><<<g, kThreads, 0, stream>>>(in, static_cast<__half*>(out), pixels,
                                                             cin, cpad);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchMaxPool3x3s2p1(const void* in, void* out, DType t, int n, int h, int w, int c, int oh,
                                 int ow, cudaStream_t stream) {
  switch (t) {
    case DType::kF32: return MaxPoolT<float>(in, out, n, h, w, c, oh, ow, stream);
    case DType::kBF16: return MaxPoolT<__nv_bfloat16>(in, out, n, h, w, c, oh, ow, stream);
    case DType::kF16: return MaxPoolT<__half>(in, out, n, h, w, c, oh, ow, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchGlobalAvgPool(const void* in, float* out, DType t, int n, int hw, int c,
                                cudaStream_t stream) {
  int64_t work = static_cast<int64_t>(n) * c;
  unsigned g = GridFor(work);
  switch (t) {
    case DType::kF32:
      GlobalAvgPoolKernel<float><<<g, kThreads, 0, stream>>>(static_cast<const float*>(in), out, n, hw,
                                                             c);
      break;
    case DType::kBF16:
      GlobalAvgPoolKernel<__nv_bfloat16><<<g, kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(in), out, n, hw, c);
      break;
    case DType::kF16:
      GlobalAvgPoolKernel<__half><<<g, kThreads, 0, stream>>>(static_cast<const __half*>(in), out, n,
                                                              hw, c);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchDense(const float* a, const float* w, const float* bias, float* out, int n, int k,
                        int m, cudaStream_t stream) {
  if (n <= 0 || k <= 0 || m <= 0) return cudaErrorInvalidValue;
  dim3 grid((m + kDenseBN - 1) / kDenseBN, (n + kDenseBM - 1) / kDenseBM);
  DenseKernel<<<grid, kDenseThreads, 0, stream>>>(a, w, bias, out, n, k, m);
  return cudaGetLastError();
}

cudaError_t LaunchSoftmax(const float* in, float* out, int n, int m, cudaStream_t stream) {
  if (n <= 0 || m <= 0) return cudaErrorInvalidValue;
  SoftmaxKernel<<<n, kSoftmaxThreads, 0, stream>>>(in, out, m);
  return cudaGetLastError();
}

cudaError_t LaunchBiasResidualAct(void* y, const float* bias, const void* z, DType t, int64_t elements,
                                  int c, bool relu, cudaStream_t stream) {
  if (c <= 0 || elements % c != 0) return cudaErrorInvalidValue;
  switch (t) {
    case DType::kF32: return BiasResidualActT<float>(y, bias, z, elements, c, relu, stream);
    case DType::kBF16: return BiasResidualActT<__nv_bfloat16>(y, bias, z, elements, c, relu, stream);
    case DType::kF16: return BiasResidualActT<__half>(y, bias, z, elements, c, relu, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchToFloat(const void* in, float* out, DType t, int64_t elements, cudaStream_t stream) {
  unsigned g = GridFor(elements);
  switch (t) {
    case DType::kF32:
      ToFloatKernel<float><<<g, kThreads, 0, stream>>>(static_cast<const float*>(in), out, elements);
      break;
    case DType::kBF16:
      ToFloatKernel<__nv_bfloat16><<<g, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(in),
                                                               out, elements);
      break;
    case DType::kF16:
      ToFloatKernel<__half><<<g, kThreads, 0, stream>>>(static_cast<const __half*>(in), out, elements);
      break;
  }
  return cudaGetLastError();
}

cudaError_t KernelsRunnableOnCurrentDevice() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, DenseKernel);
}

}  // namespace cuda
}  // namespace loupe
