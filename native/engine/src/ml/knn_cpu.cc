// Exact kNN on the CPU: squared L2 distances in GEMM form (||q||^2 - 2 q.b + ||b||^2), then a per-query
// sorted top-k. The GEMM of each (query block, bank block) is oneDNN's sgemm where oneDNN is built in
// (its JIT kernels run at ~10x our portable micro-kernel on AVX2 machines), else our packed,
// cache-blocked micro-kernel (8 query rows x 16 bank rows in registers with AVX-512, K in chunks of 256). OpenMP over query blocks; when there are fewer query blocks than threads the
// bank is also split into segments whose top-k lists are merged by (distance, index).
#include <omp.h>

// v16f values cross inline helpers only; the ABI note for the non-AVX-512 clones is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loupe/knn.h"
#include "ml/ml_internal.h"
#ifdef LOUPE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace loupe {
namespace ml {
namespace {

typedef float v16f __attribute__((vector_size(64)));  // lowered to 1 zmm / 2 ymm / 4 xmm

constexpr int64_t kKC = 256;

inline v16f LoadV16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreV16(float* p, v16f v) { std::memcpy(p, &v, sizeof(v)); }

// acc[r][0..16) (+)= sum_kk a[r*lda + kk] * b[kk*16 + 0..16)
template <int MR>
__attribute__((always_inline)) inline void MicroKernel(const float* a, int64_t lda, const float* b,
                                                       int64_t kc, float* c, int64_t ldc, bool first) {
  v16f acc[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r] = first ? v16f{} : LoadV16(c + r * ldc);
  for (int64_t kk = 0; kk < kc; ++kk) {
    const v16f bv = LoadV16(b + kk * kGemmNR);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r] += a[r * lda + kk] * bv;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) StoreV16(c + r * ldc, acc[r]);
}

}  // namespace

namespace {

// The macro-kernel, instantiated per instruction set below: MR rows x 16 columns of C in registers
// (MR = 8 with AVX-512: 8 zmm accumulators cover the FMA latency; MR = 4 with AVX2: 8 ymm pairs).
template <int MR>
__attribute__((always_inline)) inline void GemmPanelsBody(const float* A, int64_t lda, int64_t m,
                                                          int64_t K, const float* Bp, int64_t npanels,
                                                          float* C, int64_t ldc) {
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool first = k0 == 0;
    for (int64_t p = 0; p < npanels; ++p) {
      const float* bp = Bp + p * K * kGemmNR + k0 * kGemmNR;
      float* cp = C + p * kGemmNR;
      int64_t i0 = 0;
      for (; i0 + MR <= m; i0 += MR)
        MicroKernel<MR>(A + i0 * lda + k0, lda, bp, kc, cp + i0 * ldc, ldc, first);
      const float* ar = A + i0 * lda + k0;
      float* cr = cp + i0 * ldc;
      switch (m - i0) {
        case 7: MicroKernel<7>(ar, lda, bp, kc, cr, ldc, first); break;
        case 6: MicroKernel<6>(ar, lda, bp, kc, cr, ldc, first); break;
        case 5: MicroKernel<5>(ar, lda, bp, kc, cr, ldc, first); break;
        case 4: MicroKernel<4>(ar, lda, bp, kc, cr, ldc, first); break;
        case 3: MicroKernel<3>(ar, lda, bp, kc, cr, ldc, first); break;
        case 2: MicroKernel<2>(ar, lda, bp, kc, cr, ldc, first); break;
        case 1: MicroKernel<1>(ar, lda, bp, kc, cr, ldc, first); break;
        default: break;
      }
    }
  }
}

__attribute__((target("arch=x86-64-v4"))) void GemmPanelsV4(const float* A, int64_t lda, int64_t m,
                                                             int64_t K, const float* Bp,
                                                             int64_t npanels, float* C, int64_t ldc) {
  GemmPanelsBody<8>(A, lda, m, K, Bp, npanels, C, ldc);
}
__attribute__((target("arch=x86-64-v3"))) void GemmPanelsV3(const float* A, int64_t lda, int64_t m,
                                                             int64_t K, const float* Bp,
                                                             int64_t npanels, float* C, int64_t ldc) {
  GemmPanelsBody<4>(A, lda, m, K, Bp, npanels, C, ldc);
}
void GemmPanelsBase(const float* A, int64_t lda, int64_t m, int64_t K, const float* Bp, int64_t npanels,
                    float* C, int64_t ldc) {
  GemmPanelsBody<2>(A, lda, m, K, Bp, npanels, C, ldc);
}

using GemmFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, float*, int64_t);
GemmFn PickGemm() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return GemmPanelsV4;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GemmPanelsV3;
  return GemmPanelsBase;
}

}  // namespace

void GemmPanels(const float* A, int64_t lda, int64_t m, int64_t K, const float* Bp, int64_t npanels,
                float* C, int64_t ldc) {
  static const GemmFn fn = PickGemm();
  fn(A, lda, m, K, Bp, npanels, C, ldc);
}

void PackRowsAsPanels(const float* R, int64_t rows, int64_t K, std::vector<float>* panels) {
  const int64_t np = (rows + kGemmNR - 1) / kGemmNR;
  panels->assign((size_t)(np * K * kGemmNR), 0.0f);
  float* out = panels->data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < np; ++p) {
    float* dst = out + p * K * kGemmNR;
    for (int j = 0; j < kGemmNR; ++j) {
      const int64_t r = p * kGemmNR + j;
      if (r >= rows) break;
      const float* src = R + r * K;
      for (int64_t kk = 0; kk < K; ++kk) dst[kk * kGemmNR + j] = src[kk];
    }
  }
}

void RowMatrix::Set(const float* R, int64_t n, int64_t K) {
  n_ = n;
  K_ = K;
#ifdef LOUPE_HAVE_ONEDNN
  data_.assign(R, R + n * K);
#else
  PackRowsAsPanels(R, n, K, &data_);
#endif
}

bool RowMatrix::MultiplyNT(const float* A, int64_t m, float* C, int64_t ldc, int64_t row0, int64_t rows) const {
  if (rows < 0) rows = n_ - row0;
  if (m == 0 || rows == 0) return true;
#ifdef LOUPE_HAVE_ONEDNN
  return dnnl_sgemm('N', 'T', m, rows, K_, 1.0f, A, K_, data_.data() + row0 * K_, K_, 0.0f, C, ldc) ==
         dnnl_success;
#else
  GemmPanels(A, K_, m, K_, data_.data() + (row0 / kGemmNR) * K_ * kGemmNR, (rows + kGemmNR - 1) / kGemmNR, C,
             ldc);
  return true;
#endif
}

void PackMatrixAsPanels(const float* Bm, int64_t K, int64_t N, std::vector<float>* panels) {
  const int64_t np = (N + kGemmNR - 1) / kGemmNR;
  panels->assign((size_t)(np * K * kGemmNR), 0.0f);
  float* out = panels->data();
  for (int64_t p = 0; p < np; ++p) {
    float* dst = out + p * K * kGemmNR;
    const int64_t c0 = p * kGemmNR;
    const int64_t nc = std::min<int64_t>(kGemmNR, N - c0);
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t j = 0; j < nc; ++j) dst[kk * kGemmNR + j] = Bm[kk * N + c0 + j];
  }
}

Status ValidateKnnBank(const float* bank, int64_t nb, int64_t d) {
  if (bank == nullptr) return Status(StatusCode::kInvalidArgument, "kNN: bank is null");
  if (nb <= 0 || d <= 0)
    return Status(StatusCode::kInvalidArgument, "kNN: nb and d must be > 0 (got nb=" +
                                                    std::to_string(nb) + ", d=" + std::to_string(d) +
                                                    ")");
  return Status::Ok();
}

Status CheckKnnBankFinite(const float* bank, int64_t nb, int64_t d) {
  for (int64_t i = 0; i < nb * d; ++i)
    if (!std::isfinite(bank[i]))
      return Status(StatusCode::kInvalidArgument, "kNN: bank row " + std::to_string(i / d) +
                                                      " has a non-finite value at column " + std::to_string(i % d));
  return Status::Ok();
}

Status ValidateKnnQuery(const float* queries, int64_t nq, int64_t d, int k, int64_t nb, float* dist,
                        int64_t* idx) {
  if (nq < 0) return Status(StatusCode::kInvalidArgument, "kNN: nq must be >= 0");
  if (nq > 0 && (queries == nullptr || dist == nullptr || idx == nullptr))
    return Status(StatusCode::kInvalidArgument, "kNN: queries, dist and idx must not be null");
  if (k < 1 || (int64_t)k > nb)
    return Status(StatusCode::kInvalidArgument, "kNN: k must be in [1, nb] (got k=" +
                                                    std::to_string(k) + ", nb=" + std::to_string(nb) +
                                                    ")");
  (void)d;
  return Status::Ok();
}

namespace {

constexpr int64_t kQB = 96;                     // query rows per task (multiple of 8)
constexpr int64_t kBankBlockPanels = 16;        // 256 bank rows per GEMM block
constexpr int64_t kBankBlockRows = kBankBlockPanels * kGemmNR;

class CpuKnnIndex : public KnnIndex {
 public:
  CpuKnnIndex(int64_t nb, int64_t d, int nt) : nb_(nb), d_(d), nt_(nt) {}
  Status Init(const float* bank) {
    rows_.Set(bank, nb_, d_);
    std::vector<double> n2;
    RowNorms2(bank, nb_, d_, nt_, &n2);
    bnorm_.resize((size_t)nb_);
    for (int64_t i = 0; i < nb_; ++i) bnorm_[(size_t)i] = (float)n2[(size_t)i];
    return Status::Ok();
  }
  int64_t size() const override { return nb_; }
  int64_t dim() const override { return d_; }
  BackendKind backend() const override { return BackendKind::kCpu; }

  Status Search(const float* queries, int64_t nq, int k, float* dist, int64_t* idx) override {
    LOUPE_RETURN_IF_ERROR(ValidateKnnQuery(queries, nq, d_, k, nb_, dist, idx));
    if (nq == 0) return Status::Ok();
    // One search at a time: each already uses every thread it was given, and concurrent ones (a server's
    // streams) would only stack OpenMP teams on the same cores.
    std::lock_guard<std::mutex> lock(search_mu_);
    std::vector<double> qn2;
    RowNorms2(queries, nq, d_, nt_, &qn2);

    const int64_t npanels = (nb_ + kGemmNR - 1) / kGemmNR;
    const int64_t nbb = (npanels + kBankBlockPanels - 1) / kBankBlockPanels;  // bank blocks
    const int64_t nqb = (nq + kQB - 1) / kQB;
    int64_t nseg = 1;
    if (nqb < nt_) nseg = std::min<int64_t>(nbb, (nt_ + nqb - 1) / nqb);
    const int64_t blocks_per_seg = (nbb + nseg - 1) / nseg;
    nseg = (nbb + blocks_per_seg - 1) / blocks_per_seg;

    std::vector<float> pd;
    std::vector<int64_t> pi;
    float* outd = dist;
    int64_t* outi = idx;
    if (nseg > 1) {
      pd.resize((size_t)(nseg * nq * k));
      pi.resize((size_t)(nseg * nq * k));
      outd = pd.data();
      outi = pi.data();
    }
    const int64_t ntasks = nqb * nseg;
    const float inf = std::numeric_limits<float>::infinity();
    const int64_t d = d_;
    const int64_t nb = nb_;
    std::atomic<bool> failed{false};  // a GEMM error (oneDNN), reported after the parallel region
#pragma omp parallel num_threads(nt_)
    {
      std::vector<float> C((size_t)(kQB * kBankBlockRows));
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t qb = task / nseg, s = task % nseg;
        const int64_t i0 = qb * kQB;
        const int64_t mq = std::min(kQB, nq - i0);
        float* td0 = outd + (s * nq + i0) * k;
        int64_t* ti0 = outi + (s * nq + i0) * k;
        for (int64_t r = 0; r < mq * k; ++r) {
          td0[r] = inf;
          ti0[r] = -1;
        }
        const int64_t bb_end = std::min(nbb, (s + 1) * blocks_per_seg);
        for (int64_t bb = s * blocks_per_seg; bb < bb_end; ++bb) {
          const int64_t p0 = bb * kBankBlockPanels;
          const int64_t np = std::min(kBankBlockPanels, npanels - p0);
          const int64_t j0 = p0 * kGemmNR;
          const int64_t nc = std::min(np * kGemmNR, nb - j0);
          // C[mq][nc] = Q[i0.., :] . bank[j0.., :]^T, on this thread (the threads stay ours).
          if (!rows_.MultiplyNT(queries + i0 * d, mq, C.data(), kBankBlockRows, j0, nc)) {
            failed.store(true);
            continue;
          }
          for (int64_t r = 0; r < mq; ++r) {
            const float qn = (float)qn2[(size_t)(i0 + r)];
            const float* cr = C.data() + r * kBankBlockRows;
            float* td = td0 + r * k;
            int64_t* ti = ti0 + r * k;
            const float* bn = bnorm_.data() + j0;
            for (int64_t j = 0; j < nc; ++j) {
              float dv = qn + bn[j] - 2.0f * cr[j];
              if (dv < 0.0f) dv = 0.0f;
              if (dv < td[k - 1]) TopKInsert(td, ti, k, dv, j0 + j);
            }
          }
        }
      }
    }
    if (failed.load()) return Status(StatusCode::kInternal, "kNN: oneDNN sgemm failed");
    if (nseg > 1) {
      // Merge the segments' lists by (distance, index).
#pragma omp parallel for num_threads(nt_) schedule(static)
      for (int64_t q = 0; q < nq; ++q) {
        std::vector<int> pos((size_t)nseg, 0);
        for (int o = 0; o < k; ++o) {
          int64_t best = -1;
          float bd = 0.0f;
          int64_t bi = 0;
          for (int64_t s = 0; s < nseg; ++s) {
            if (pos[(size_t)s] >= k) continue;
            const float dv = pd[(size_t)((s * nq + q) * k + pos[(size_t)s])];
            const int64_t iv = pi[(size_t)((s * nq + q) * k + pos[(size_t)s])];
            if (iv < 0) continue;
            if (best < 0 || dv < bd || (dv == bd && iv < bi)) {
              best = s;
              bd = dv;
              bi = iv;
            }
          }
          if (best < 0) {
            dist[q * k + o] = inf;
            idx[q * k + o] = -1;
          } else {
            dist[q * k + o] = bd;
            idx[q * k + o] = bi;
            ++pos[(size_t)best];
          }
        }
      }
    }
    return Status::Ok();
  }

 private:
  std::mutex search_mu_;
  int64_t nb_, d_;
  int nt_;
  RowMatrix rows_;             // the bank, for Q . bank^T
  std::vector<float> bnorm_;
};

}  // namespace

Status CreateKnnIndexCpu(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                         std::unique_ptr<KnnIndex>* out) {
  std::unique_ptr<CpuKnnIndex> index(new CpuKnnIndex(nb, d, ResolveThreads(opts.num_threads)));
  LOUPE_RETURN_IF_ERROR(index->Init(bank));
  *out = std::move(index);
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
