// CUDA kNN (persistent KnnIndex: the bank stays in device memory) and greedy coreset selection.
//
// kNN: one block per (64-query tile, bank segment). For each 64-row bank tile the block computes the
// 64x64 dot products with a shared-memory tiled GEMM (K in steps of 32, 4x4 register micro-tile per
// thread, fp32 FFMA; no cuBLAS), turns them into clamped GEMM-form distances in shared memory, and one
// thread per query folds them, in increasing bank index, into that query's sorted top-k list (ties keep
// the lower index). Bank segments (enough blocks to fill the GPU when there are few queries) are merged
// by (distance, index) in a second kernel.
//
// Coreset: one launch per selected centre: distances of every row to the newest centre, fused min
// update and a (distance, -index) argmax through a 64-bit atomicMax; the next launch reads the winner
// from device memory, so there is no host round trip per step. Same arithmetic order as the CPU
// (CoresetDist2, round-to-nearest intrinsics: no FMA contraction) -> same selection.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/ml_device_util.h"
#include "ml/ml_cuda.h"
#include "ml/ml_internal.h"

namespace loupe {
namespace ml {
namespace {

constexpr int kTQ = 64;   // queries per tile
constexpr int kTB = 64;   // bank rows per tile
constexpr int kTK = 32;   // K step
constexpr int kKnnThreads = 256;
constexpr int kTileStride = kTQ + 4;  // Qs/Bs rows: [kTK][68] floats (16-byte aligned rows)
constexpr int kDsStride = kTB + 1;    // Ds: [64][65]
constexpr int kMaxSegments = 32;

size_t KnnSmemBytes(int k) {
  return sizeof(float) * (2 * kTK * kTileStride + kTQ * kDsStride + kTQ) +
         (size_t)kTQ * k * (sizeof(float) + sizeof(int32_t));
}

// Q: [nq_pad][dp], B: [nb_pad][dp] (rows padded to 64, columns to 32, padding zero); qn, bn: norms
// (padded). Out: partial lists [seg][nq][k].
__global__ void __launch_bounds__(kKnnThreads)
    KnnTileKernel(const float* __restrict__ Q, const float* __restrict__ qn, int64_t nq,
                  const float* __restrict__ B, const float* __restrict__ bn, int64_t nb, int64_t dp,
                  int k, int64_t tiles_per_seg, float* __restrict__ out_d,
                  int32_t* __restrict__ out_i) {
  extern __shared__ __align__(16) float ksm[];
  float* Qs = ksm;                               // [kTK][kTileStride]
  float* Bs = Qs + kTK * kTileStride;            // [kTK][kTileStride]
  float* Ds = Bs + kTK * kTileStride;            // [kTQ][kDsStride]
  float* qns = Ds + kTQ * kDsStride;             // [kTQ]
  float* topd = qns + kTQ;                       // [kTQ][k]
  int32_t* topi = reinterpret_cast<int32_t*>(topd + kTQ * k);  // [kTQ][k]

  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  const int64_t q0 = (int64_t)blockIdx.x * kTQ;
  const int64_t seg = blockIdx.y;
  const int64_t btiles = (nb + kTB - 1) / kTB;
  const int64_t bt_begin = seg * tiles_per_seg;
  const int64_t bt_end = min(btiles, bt_begin + tiles_per_seg);
  const float inf = __int_as_float(0x7f800000);

  float worst = inf;
  if (tid < kTQ) {
    for (int r = 0; r < k; ++r) {
      topd[tid * k + r] = inf;
      topi[tid * k + r] = -1;
    }
    qns[tid] = qn[q0 + tid];
  }
  __syncthreads();

  for (int64_t bt = bt_begin; bt < bt_end; ++bt) {
    const int64_t b0 = bt * kTB;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int64_t k0 = 0; k0 < dp; k0 += kTK) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int f = tid + h * kKnnThreads;  // 512 float4 per 64x32 tile
        const int r = f >> 3, c4 = f & 7;
        const float4 qv = *reinterpret_cast<const float4*>(Q + (q0 + r) * dp + k0 + 4 * c4);
        const float4 bv = *reinterpret_cast<const float4*>(B + (b0 + r) * dp + k0 + 4 * c4);
        Qs[(4 * c4 + 0) * kTileStride + r] = qv.x;
        Qs[(4 * c4 + 1) * kTileStride + r] = qv.y;
        Qs[(4 * c4 + 2) * kTileStride + r] = qv.z;
        Qs[(4 * c4 + 3) * kTileStride + r] = qv.w;
        Bs[(4 * c4 + 0) * kTileStride + r] = bv.x;
        Bs[(4 * c4 + 1) * kTileStride + r] = bv.y;
        Bs[(4 * c4 + 2) * kTileStride + r] = bv.z;
        Bs[(4 * c4 + 3) * kTileStride + r] = bv.w;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kTK; ++kk) {
        const float4 a = *reinterpret_cast<const float4*>(Qs + kk * kTileStride + ty * 4);
        const float4 b = *reinterpret_cast<const float4*>(Bs + kk * kTileStride + tx * 4);
        const float av[4] = {a.x, a.y, a.z, a.w};
        const float bw[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bw[j], acc[i][j]);
      }
      __syncthreads();
    }
    // Distances of this tile into shared memory (invalid bank rows -> +inf).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = tx * 4 + j;
        const int64_t gb = b0 + col;
        float dv = qns[q] + bn[gb] - 2.0f * acc[i][j];
        if (dv < 0.0f) dv = 0.0f;
        if (gb >= nb) dv = inf;
        Ds[q * kDsStride + col] = dv;
      }
    }
    __syncthreads();
    if (tid < kTQ) {
      float* td = topd + tid * k;
      int32_t* ti = topi + tid * k;
      const float* drow = Ds + tid * kDsStride;
      for (int c = 0; c < kTB; ++c) {
        const float dv = drow[c];
        if (dv < worst) {
          int p = k - 1;
          while (p > 0 && td[p - 1] > dv) {
            td[p] = td[p - 1];
            ti[p] = ti[p - 1];
            --p;
          }
          td[p] = dv;
          ti[p] = (int32_t)(b0 + c);
          worst = td[k - 1];
        }
      }
    }
    // The next writes to Ds come after the next tile's K-loop barriers, which the scanning threads
    // reach only when done.
  }
  if (tid < kTQ && q0 + tid < nq) {
    float* od = out_d + (seg * nq + q0 + tid) * k;
    int32_t* oi = out_i + (seg * nq + q0 + tid) * k;
    for (int r = 0; r < k; ++r) {
      od[r] = topd[tid * k + r];
      oi[r] = topi[tid * k + r];
    }
  }
}

// One thread per query: merges the segments' sorted lists by (distance, index).
__global__ void KnnMergeKernel(const float* __restrict__ pd, const int32_t* __restrict__ pi,
                               int64_t nq, int k, int nseg, float* __restrict__ dist,
                               int64_t* __restrict__ idx) {
  const int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= nq) return;
  int pos[kMaxSegments];
  for (int s = 0; s < nseg; ++s) pos[s] = 0;
  for (int o = 0; o < k; ++o) {
    int best = -1;
    float bd = 0.0f;
    int32_t bi = 0;
    for (int s = 0; s < nseg; ++s) {
      if (pos[s] >= k) continue;
      const int64_t at = ((int64_t)s * nq + q) * k + pos[s];
      const int32_t iv = pi[at];
      if (iv < 0) continue;
      const float dv = pd[at];
      if (best < 0 || dv < bd || (dv == bd && iv < bi)) {
        best = s;
        bd = dv;
        bi = iv;
      }
    }
    if (best < 0) {
      dist[q * k + o] = __int_as_float(0x7f800000);
      idx[q * k + o] = -1;
    } else {
      dist[q * k + o] = bd;
      idx[q * k + o] = bi;
      ++pos[best];
    }
  }
}

class CudaKnnIndex : public KnnIndex {
 public:
  CudaKnnIndex(int64_t nb, int64_t d, const KnnOptions& opts)
      : nb_(nb), d_(d), device_(opts.device_id), nt_(ResolveThreads(opts.num_threads)) {}
  ~CudaKnnIndex() override {
    // Free on our device, whichever is current on the destroying thread.
    CudaDeviceScope scope;
    scope.Enter(device_);
    bank_.Free();
    bnorm_.Free();
    q_.Free();
    qn_.Free();
    pd_.Free();
    pi_.Free();
    od_.Free();
    oi_.Free();
    stream_.reset();
  }

  Status Init(const float* bank) {
    CudaDeviceScope scope;
    LOUPE_RETURN_IF_ERROR(scope.Enter(device_));
    LOUPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device_));
    stream_.reset(new CudaStream());
    LOUPE_RETURN_IF_ERROR(stream_->Create());
    cudaStream_t s = stream_->get();
    dp_ = RoundUp(d_, kTK);
    nb_pad_ = RoundUp(nb_, kTB);
    LOUPE_RETURN_IF_ERROR(bank_.Alloc((size_t)(nb_pad_ * dp_), "kNN bank"));
    LOUPE_CUDA_CHECK(cudaMemsetAsync(bank_.get(), 0, bank_.count() * sizeof(float), s));
    LOUPE_CUDA_CHECK(cudaMemcpy2DAsync(bank_.get(), (size_t)dp_ * sizeof(float), bank,
                                       (size_t)d_ * sizeof(float), (size_t)d_ * sizeof(float),
                                       (size_t)nb_, cudaMemcpyHostToDevice, s));
    std::vector<double> n2;
    RowNorms2(bank, nb_, d_, nt_, &n2);
    std::vector<float> bn((size_t)nb_pad_, 0.0f);
    for (int64_t i = 0; i < nb_; ++i) bn[(size_t)i] = (float)n2[(size_t)i];
    LOUPE_RETURN_IF_ERROR(bnorm_.Alloc(bn.size(), "kNN bank norms"));
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(bnorm_.get(), bn.data(), bn.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, s));
    LOUPE_CUDA_CHECK(cudaFuncSetAttribute(KnnTileKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)KnnSmemBytes(kKnnMaxKCuda)));
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));  // `bank` and `bn` may go away after return
    return Status::Ok();
  }

  int64_t size() const override { return nb_; }
  int64_t dim() const override { return d_; }
  BackendKind backend() const override { return BackendKind::kCuda; }

  Status Search(const float* queries, int64_t nq, int k, float* dist, int64_t* idx) override {
    LOUPE_RETURN_IF_ERROR(ValidateKnnQuery(queries, nq, d_, k, nb_, dist, idx));
    if (k > kKnnMaxKCuda)
      return Status(StatusCode::kInvalidArgument,
                    "KnnIndex::Search (CUDA): k = " + std::to_string(k) + " exceeds " +
                        std::to_string(kKnnMaxKCuda));
    if (nq == 0) return Status::Ok();
    std::lock_guard<std::mutex> lock(mu_);
    CudaDeviceScope scope;
    LOUPE_RETURN_IF_ERROR(scope.Enter(device_));
    cudaStream_t s = stream_->get();

    const int64_t nq_pad = RoundUp(nq, kTQ);
    if (q_.count() < (size_t)(nq_pad * dp_)) {
      LOUPE_RETURN_IF_ERROR(q_.Alloc((size_t)(nq_pad * dp_), "kNN queries"));
      // Padding columns must be zero; Memcpy2D never writes them, so once is enough.
      LOUPE_CUDA_CHECK(cudaMemsetAsync(q_.get(), 0, q_.count() * sizeof(float), s));
    }
    LOUPE_CUDA_CHECK(cudaMemcpy2DAsync(q_.get(), (size_t)dp_ * sizeof(float), queries,
                                       (size_t)d_ * sizeof(float), (size_t)d_ * sizeof(float),
                                       (size_t)nq, cudaMemcpyHostToDevice, s));
    std::vector<double> n2;
    RowNorms2(queries, nq, d_, nt_, &n2);
    std::vector<float> qn((size_t)nq_pad, 0.0f);
    for (int64_t i = 0; i < nq; ++i) qn[(size_t)i] = (float)n2[(size_t)i];
    LOUPE_RETURN_IF_ERROR(qn_.Reserve(qn.size(), "kNN query norms"));
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(qn_.get(), qn.data(), qn.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, s));

    const int64_t qtiles = nq_pad / kTQ;
    const int64_t btiles = nb_pad_ / kTB;
    int64_t nseg = std::max<int64_t>(1, (2 * (int64_t)sms_ + qtiles - 1) / qtiles);
    nseg = std::min<int64_t>(nseg, std::min<int64_t>(btiles, kMaxSegments));
    const int64_t tiles_per_seg = (btiles + nseg - 1) / nseg;
    nseg = (btiles + tiles_per_seg - 1) / tiles_per_seg;

    LOUPE_RETURN_IF_ERROR(pd_.Reserve((size_t)(nseg * nq * k), "kNN partial distances"));
    LOUPE_RETURN_IF_ERROR(pi_.Reserve((size_t)(nseg * nq * k), "kNN partial indices"));
    LOUPE_RETURN_IF_ERROR(od_.Reserve((size_t)(nq * k), "kNN distances"));
    LOUPE_RETURN_IF_ERROR(oi_.Reserve((size_t)(nq * k), "kNN indices"));

    const dim3 grid((unsigned)qtiles, (unsigned)nseg);
    KnnTileKernel<<<grid, kKnnThreads, KnnSmemBytes(k), s>>>(q_.get(), qn_.get(), nq, bank_.get(),
                                                             bnorm_.get(), nb_, dp_, k,
                                                             tiles_per_seg, pd_.get(), pi_.get());
    LOUPE_CUDA_CHECK_LAUNCH("KnnTileKernel");
    KnnMergeKernel<<<(unsigned)((nq + 127) / 128), 128, 0, s>>>(pd_.get(), pi_.get(), nq, k,
                                                                 (int)nseg, od_.get(), oi_.get());
    LOUPE_CUDA_CHECK_LAUNCH("KnnMergeKernel");
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(dist, od_.get(), (size_t)(nq * k) * sizeof(float),
                                     cudaMemcpyDeviceToHost, s));
    LOUPE_CUDA_CHECK(cudaMemcpyAsync(idx, oi_.get(), (size_t)(nq * k) * sizeof(int64_t),
                                     cudaMemcpyDeviceToHost, s));
    LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));
    return Status::Ok();
  }

 private:
  int64_t nb_, d_;
  int device_;
  int nt_;
  int sms_ = 1;
  int64_t dp_ = 0, nb_pad_ = 0;
  std::mutex mu_;
  std::unique_ptr<CudaStream> stream_;
  DeviceBuffer<float> bank_, bnorm_, q_, qn_, pd_, od_;
  DeviceBuffer<int32_t> pi_;
  DeviceBuffer<int64_t> oi_;
};

// ------------------------------------------------------------------------------------------------
// Coreset.

constexpr int kCoreThreads = 256;

__global__ void FillKernel(float* __restrict__ p, int64_t n, float v) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

__device__ __forceinline__ unsigned long long WarpMaxU64(unsigned long long v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v ? o : v;
  }
  return v;
}

// Yt: [dim][n] (transposed rows). keys[step - 1] names the newest centre; the winner of this step
// (largest min-distance, then lowest index) goes to keys[step] (zeroed beforehand).
__global__ void __launch_bounds__(kCoreThreads)
    CoresetStepKernel(const float* __restrict__ Yt, int64_t n, int dim, float* __restrict__ mind,
                      unsigned long long* __restrict__ keys, int64_t step) {
  __shared__ unsigned long long wmax[kCoreThreads / 32];
  const unsigned long long prev = keys[step - 1];
  const int64_t c = (int64_t)(0xFFFFFFFFu - (unsigned)(prev & 0xFFFFFFFFull));
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  unsigned long long key = 0;
  if (i < n) {
    float mi = mind[i];
    if (i == c) {
      mind[i] = -1.0f;  // selected: out of the candidate set
    } else if (mi >= 0.0f) {
      float acc[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) acc[j] = 0.0f;
      int kk = 0;
      for (; kk + 16 <= dim; kk += 16) {
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          const int64_t row = (int64_t)(kk + j) * n;
          const float df = __fsub_rn(Yt[row + i], Yt[row + c]);
          acc[j] = __fadd_rn(acc[j], __fmul_rn(df, df));
        }
      }
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if (kk + j < dim) {
          const int64_t row = (int64_t)(kk + j) * n;
          const float df = __fsub_rn(Yt[row + i], Yt[row + c]);
          acc[j] = __fadd_rn(acc[j], __fmul_rn(df, df));
        }
      }
      float sdist = acc[0];
#pragma unroll
      for (int j = 1; j < 16; ++j) sdist = __fadd_rn(sdist, acc[j]);
      if (sdist < mi) {
        mi = sdist;
        mind[i] = sdist;
      }
      key = ((unsigned long long)__float_as_uint(mi) << 32) |
            (unsigned long long)(0xFFFFFFFFu - (unsigned)i);
    }
  }
  key = WarpMaxU64(key);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) wmax[warp] = key;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long m = wmax[0];
    for (int w = 1; w < kCoreThreads / 32; ++w) m = wmax[w] > m ? wmax[w] : m;
    if (m != 0) atomicMax(keys + step, m);
  }
}

}  // namespace

Status CreateKnnIndexCuda(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                          std::unique_ptr<KnnIndex>* out) {
  if (nb >= (int64_t)INT32_MAX)
    return Status(StatusCode::kInvalidArgument, "KnnIndex (CUDA): nb must be < 2^31");
  std::unique_ptr<CudaKnnIndex> index(new CudaKnnIndex(nb, d, opts));
  LOUPE_RETURN_IF_ERROR(index->Init(bank));
  *out = std::move(index);
  return Status::Ok();
}

Status CoresetSelectCuda(const float* Y, int64_t n, int64_t dim, int64_t m, const CoresetOptions& opts,
                         std::vector<int64_t>* selected) {
  if (n >= (int64_t)INT32_MAX)
    return Status(StatusCode::kInvalidArgument, "GreedyCoreset (CUDA): n must be < 2^31");
  if (dim >= (int64_t)INT32_MAX)
    return Status(StatusCode::kInvalidArgument, "GreedyCoreset (CUDA): dim too large");
  CudaDeviceScope scope;
  LOUPE_RETURN_IF_ERROR(scope.Enter(opts.device_id));
  CudaStream stream;
  LOUPE_RETURN_IF_ERROR(stream.Create());
  cudaStream_t s = stream.get();

  std::vector<float> Yt;
  TransposeRows(Y, n, dim, ResolveThreads(opts.num_threads), &Yt);
  DeviceBuffer<float> dYt, dMind;
  DeviceBuffer<unsigned long long> dKeys;
  LOUPE_RETURN_IF_ERROR(dYt.Alloc(Yt.size(), "coreset rows"));
  LOUPE_RETURN_IF_ERROR(dMind.Alloc((size_t)n, "coreset min distances"));
  LOUPE_RETURN_IF_ERROR(dKeys.Alloc((size_t)m, "coreset keys"));
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(dYt.get(), Yt.data(), Yt.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, s));
  const unsigned blocks = (unsigned)((n + kCoreThreads - 1) / kCoreThreads);
  FillKernel<<<blocks, kCoreThreads, 0, s>>>(dMind.get(), n, std::numeric_limits<float>::infinity());
  LOUPE_CUDA_CHECK_LAUNCH("FillKernel");
  LOUPE_CUDA_CHECK(cudaMemsetAsync(dKeys.get(), 0, (size_t)m * sizeof(unsigned long long), s));
  const int64_t first = CoresetFirstIndex(opts.seed, n);
  const unsigned long long key0 = (unsigned long long)(0xFFFFFFFFu - (unsigned)first);
  LOUPE_CUDA_CHECK(
      cudaMemcpyAsync(dKeys.get(), &key0, sizeof(key0), cudaMemcpyHostToDevice, s));
  LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));  // Yt and key0 are host temporaries

  const int64_t every = std::max<int64_t>(1, m / 100);
  if (opts.progress && (1 % every == 0 || m == 1)) opts.progress(1, m);
  for (int64_t step = 1; step < m; ++step) {
    if (opts.cancel && step == 1 && opts.cancel->load(std::memory_order_relaxed))
      return Status(StatusCode::kCancelled, "GreedyCoreset cancelled");
    CoresetStepKernel<<<blocks, kCoreThreads, 0, s>>>(dYt.get(), n, (int)dim, dMind.get(),
                                                      dKeys.get(), step);
    LOUPE_CUDA_CHECK_LAUNCH("CoresetStepKernel");
    const int64_t done = step + 1;
    if (done % every == 0 || done == m) {
      LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));
      if (opts.progress) opts.progress(done, m);
      if (done < m && opts.cancel && opts.cancel->load(std::memory_order_relaxed))
        return Status(StatusCode::kCancelled, "GreedyCoreset cancelled");
    }
  }
  std::vector<unsigned long long> keys((size_t)m);
  LOUPE_CUDA_CHECK(cudaMemcpyAsync(keys.data(), dKeys.get(), (size_t)m * sizeof(unsigned long long),
                                   cudaMemcpyDeviceToHost, s));
  LOUPE_CUDA_CHECK(cudaStreamSynchronize(s));
  selected->resize((size_t)m);
  for (int64_t i = 0; i < m; ++i)
    (*selected)[(size_t)i] = (int64_t)(0xFFFFFFFFu - (unsigned)(keys[(size_t)i] & 0xFFFFFFFFull));
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
