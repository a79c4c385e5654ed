// Exact kNN that skips most of the arithmetic: a lower bound from a principal subspace prunes bank rows
// that cannot be among the k nearest, and only the survivors get an exact distance.
//
// With P an orthonormal basis [r][d] (r << d) of the bank's top principal directions and mu the bank
// mean, every x splits into its coordinates p(x) = P (x - mu) and a residual of norm
// e(x) = sqrt(||x - mu||^2 - ||p(x)||^2). For any two rows
//     ||x - y||^2 = ||p(x) - p(y)||^2 + ||res(x) - res(y)||^2 >= ||p(x) - p(y)||^2 + (e(x) - e(y))^2,
// the bound LB. Per query: LB against every bank row (one r-dim GEMM instead of a d-dim one), exact
// distances of the k rows with the smallest LB give the current k-th distance U, then only rows with
// LB < U are checked, in increasing LB, stopping at the first LB >= U. The result is the exact k nearest
// whatever the basis is (the basis only decides how much is pruned); distances are direct sums of
// squared differences, so they are more accurate than the GEMM form. PatchCore banks are strongly
// low-rank (1536-dim features; 128 principal directions hold 86-96% of the variance on our data), so
// 2-35 rows per query survive instead of thousands: ~5-10x fewer flops than the brute-force GEMM.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "loupe/knn.h"
#include "ml/ml_internal.h"

namespace loupe {
namespace ml {
namespace {

// Rows of Y [r][d] made orthonormal (modified Gram-Schmidt, twice for stability, in double). A row that
// collapses (rank-deficient bank) becomes a fresh random direction orthogonal to the others.
void OrthonormaliseRows(std::vector<double>* Y, int64_t r, int64_t d, uint64_t* rng) {
  double* y = Y->data();
  for (int64_t i = 0; i < r; ++i) {
    double* yi = y + i * d;
    for (int attempt = 0;; ++attempt) {
      double before = 0.0;
      for (int64_t t = 0; t < d; ++t) before += yi[t] * yi[t];
      for (int pass = 0; pass < 2; ++pass) {
        for (int64_t j = 0; j < i; ++j) {
          const double* yj = y + j * d;
          double dot = 0.0;
          for (int64_t t = 0; t < d; ++t) dot += yi[t] * yj[t];
          for (int64_t t = 0; t < d; ++t) yi[t] -= dot * yj[t];
        }
      }
      double n2 = 0.0;
      for (int64_t t = 0; t < d; ++t) n2 += yi[t] * yi[t];
      if (n2 > 1e-20 * std::max(before, 1e-300) && n2 > 0.0) {
        const double inv = 1.0 / std::sqrt(n2);
        for (int64_t t = 0; t < d; ++t) yi[t] *= inv;
        break;
      }
      for (int64_t t = 0; t + 1 < d; t += 2) GaussianPair(rng, &yi[t], &yi[t + 1]);
      if (d % 2 == 1) {
        double z1;
        GaussianPair(rng, &yi[d - 1], &z1);
      }
      if (attempt > 8) {  // cannot happen for r <= d; keeps the loop finite regardless
        std::fill(yi, yi + d, 0.0);
        break;
      }
    }
  }
}

// The exact distance of a candidate, or any value > limit as soon as a partial sum passes it (checked
// every 128 dims): most candidates of a far (defective) query are rejected halfway. 16 lanes in two
// vectors; the x86-64-v3 (AVX2) build is picked at run time.
typedef float v8f __attribute__((vector_size(32)));
__attribute__((always_inline)) inline float CappedBody(const float* a, const float* b, int64_t d, float limit) {
  v8f s0 = {}, s1 = {};
  int64_t t = 0;
  float total = 0.0f;
  while (t + 16 <= d) {
    const int64_t end = std::min<int64_t>(d, t + 128) & ~int64_t{15};
    for (; t < end; t += 16) {
      v8f x0, y0, x1, y1;
      std::memcpy(&x0, a + t, 32);
      std::memcpy(&y0, b + t, 32);
      std::memcpy(&x1, a + t + 8, 32);
      std::memcpy(&y1, b + t + 8, 32);
      const v8f e0 = x0 - y0, e1 = x1 - y1;
      s0 += e0 * e0;
      s1 += e1 * e1;
    }
    const v8f h = s0 + s1;
    total = ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
    if (total > limit) return total;
  }
  for (; t < d; ++t) {
    const float x = a[t] - b[t];
    total += x * x;
  }
  return total;
}
__attribute__((target("arch=x86-64-v3"))) float CappedV3(const float* a, const float* b, int64_t d, float limit) {
  return CappedBody(a, b, d, limit);
}
float CappedBase(const float* a, const float* b, int64_t d, float limit) { return CappedBody(a, b, d, limit); }
using CappedFn = float (*)(const float*, const float*, int64_t, float);
CappedFn PickCapped() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CappedV3 : CappedBase;
}
inline float SquaredL2Capped(const float* a, const float* b, int64_t d, float limit) {
  static const CappedFn fn = PickCapped();
  return fn(a, b, d, limit);
}

// Sum of squares (8 partial sums: vectorisable without -ffast-math).
inline float SumSquares(const float* a, int64_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t t = 0;
  for (; t + 8 <= d; t += 8)
    for (int l = 0; l < 8; ++l) s[l] += a[t + l] * a[t + l];
  float tail = 0.0f;
  for (; t < d; ++t) tail += a[t] * a[t];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

// Sorted insert by (distance, index) into a full list of k (the last entry is dropped).
inline void InsertByDistanceThenIndex(float* td, int64_t* ti, int k, float dv, int64_t id) {
  if (dv > td[k - 1] || (dv == td[k - 1] && id >= ti[k - 1] && ti[k - 1] >= 0)) return;
  int p = k - 1;
  while (p > 0 && (td[p - 1] > dv || (td[p - 1] == dv && (ti[p - 1] > id || ti[p - 1] < 0)))) {
    td[p] = td[p - 1];
    ti[p] = ti[p - 1];
    --p;
  }
  td[p] = dv;
  ti[p] = id;
}

constexpr int kSubspaceIterations = 6;
constexpr int64_t kCovarianceRows = 16384;
constexpr double kMinCapturedVariance = 0.5;  // kAuto's threshold, see CreatePrunedKnnIndexCpu
constexpr uint64_t kBasisSeed = 0x9E3779B97F4A7C15ull;  // the basis never changes results, only speed
// Relative slack on the bound: LB and U carry float rounding (GEMM form, projected coordinates); a row
// is pruned only when LB exceeds U by more than this fraction of the squared norms involved.
constexpr float kBoundSlack = 1e-3f;

class PrunedCpuKnnIndex : public KnnIndex {
 public:
  PrunedCpuKnnIndex(int64_t nb, int64_t d, int r, int nt) : nb_(nb), d_(d), r_(r), nt_(nt) {}

  Status Init(const float* bank) {
    bank_.assign(bank, bank + nb_ * d_);
    // Mean and centred rows.
    std::vector<double> mu((size_t)d_, 0.0);
    for (int64_t i = 0; i < nb_; ++i)
      for (int64_t t = 0; t < d_; ++t) mu[(size_t)t] += bank[i * d_ + t];
    mu_.resize((size_t)d_);
    for (int64_t t = 0; t < d_; ++t) mu_[(size_t)t] = (float)(mu[(size_t)t] / (double)nb_);
    std::vector<float> centred((size_t)(nb_ * d_));
#pragma omp parallel for num_threads(nt_) schedule(static)
    for (int64_t i = 0; i < nb_; ++i)
      for (int64_t t = 0; t < d_; ++t) centred[(size_t)(i * d_ + t)] = bank[i * d_ + t] - mu_[(size_t)t];

    // Covariance C = Bc^T Bc [d][d] as a product of the transposed centred bank with itself, on at most
    // kCovarianceRows evenly spaced rows (the basis only decides how much is pruned, and a sample of a
    // huge bank gives nearly the same principal directions at a fraction of nb x d^2).
    const int64_t ns = std::min<int64_t>(nb_, kCovarianceRows);
    std::vector<float> ct((size_t)(d_ * ns));
#pragma omp parallel for num_threads(nt_) schedule(static)
    for (int64_t t = 0; t < d_; ++t)
      for (int64_t i = 0; i < ns; ++i) ct[(size_t)(t * ns + i)] = centred[(size_t)((i * nb_ / ns) * d_ + t)];
    RowMatrix ctm;
    ctm.Set(ct.data(), d_, ns);
    std::vector<float> cov((size_t)(d_ * ctm.min_ldc()));
    if (!MultiplyParallel(ctm, ct.data(), d_, ns, cov.data(), ctm.min_ldc()))
      return Status(StatusCode::kInternal, "kNN index: oneDNN sgemm failed (covariance)");
    ct.clear();
    ct.shrink_to_fit();
    const int64_t cld = ctm.min_ldc();
    std::vector<float> covc((size_t)(d_ * d_));
    for (int64_t t = 0; t < d_; ++t) std::memcpy(&covc[(size_t)(t * d_)], &cov[(size_t)(t * cld)], sizeof(float) * (size_t)d_);
    cov.clear();
    RowMatrix covm;  // symmetric, so Y . C^T = Y . C
    covm.Set(covc.data(), d_, d_);

    // Subspace iteration from a seeded random start: Pt <- orth(Pt . C).
    uint64_t rng = StreamState(kBasisSeed, (uint64_t)d_);
    std::vector<double> Y((size_t)(r_ * d_));
    for (size_t i = 0; i + 1 < Y.size(); i += 2) GaussianPair(&rng, &Y[i], &Y[i + 1]);
    OrthonormaliseRows(&Y, r_, d_, &rng);
    std::vector<float> pt((size_t)(r_ * d_));
    std::vector<float> prod((size_t)(r_ * covm.min_ldc()));
    for (int it = 0; it < kSubspaceIterations; ++it) {
      for (size_t i = 0; i < pt.size(); ++i) pt[i] = (float)Y[i];
      if (!MultiplyParallel(covm, pt.data(), r_, d_, prod.data(), covm.min_ldc()))
        return Status(StatusCode::kInternal, "kNN index: oneDNN sgemm failed (subspace iteration)");
      for (int64_t i = 0; i < r_; ++i)
        for (int64_t t = 0; t < d_; ++t) Y[(size_t)(i * d_ + t)] = prod[(size_t)(i * covm.min_ldc() + t)];
      OrthonormaliseRows(&Y, r_, d_, &rng);
    }
    for (size_t i = 0; i < pt.size(); ++i) pt[i] = (float)Y[i];
    basis_.Set(pt.data(), r_, d_);

    // Bank coordinates, their norms and the residual norms.
    std::vector<float> bp((size_t)(nb_ * basis_.min_ldc()));
    if (!MultiplyParallel(basis_, centred.data(), nb_, d_, bp.data(), basis_.min_ldc()))
      return Status(StatusCode::kInternal, "kNN index: oneDNN sgemm failed (bank projection)");
    std::vector<float> bpc((size_t)(nb_ * r_));
    bpn_.resize((size_t)nb_);
    bres_.resize((size_t)nb_);
    bcn_max_ = 0.0f;
    double captured = 0.0, total = 0.0;
    std::vector<double> cn2;
    RowNorms2(centred.data(), nb_, d_, nt_, &cn2);
    for (int64_t i = 0; i < nb_; ++i) {
      double pn = 0.0;
      const double cn = cn2[(size_t)i];
      for (int64_t j = 0; j < r_; ++j) {
        const float v = bp[(size_t)(i * basis_.min_ldc() + j)];
        bpc[(size_t)(i * r_ + j)] = v;
        pn += (double)v * v;
      }
      bpn_[(size_t)i] = (float)pn;
      bres_[(size_t)i] = (float)std::sqrt(std::max(0.0, cn - pn));
      bcn_max_ = std::max(bcn_max_, (float)cn);
      captured += pn;
      total += cn;
    }
    captured_ = total > 0.0 ? captured / total : 1.0;
    coords_.Set(bpc.data(), nb_, r_);
    return Status::Ok();
  }

  int64_t size() const override { return nb_; }
  int64_t dim() const override { return d_; }
  BackendKind backend() const override { return BackendKind::kCpu; }
  KnnMethod method() const override { return KnnMethod::kPruned; }
  // Fraction of the bank's variance (about its mean) on the subspace: how tight the bound can be.
  double captured_variance() const { return captured_; }

  Status Search(const float* queries, int64_t nq, int k, float* dist, int64_t* idx) override {
    LOUPE_RETURN_IF_ERROR(ValidateKnnQuery(queries, nq, d_, k, nb_, dist, idx));
    if (nq == 0) return Status::Ok();
    // One search at a time: each already uses every thread it was given, and concurrent ones (a server's
    // streams) would only stack OpenMP teams on the same cores.
    std::lock_guard<std::mutex> lock(search_mu_);
    // Query rows per task: up to 128 (the GEMMs' efficiency), at least 4 tasks per thread (balance),
    // and the bound block [qb][nb] within ~8 MB per thread.
    int64_t qb = std::min<int64_t>(128, (nq + 4 * nt_ - 1) / (4 * nt_));
    qb = std::min<int64_t>(qb, (int64_t{1} << 21) / nb_);
    qb = std::max<int64_t>(8, (qb + 7) / 8 * 8);
    const int64_t ntasks = (nq + qb - 1) / qb;
    const int64_t gld = coords_.min_ldc();
    const int64_t pld = basis_.min_ldc();
    std::atomic<bool> failed{false};
    const float inf = std::numeric_limits<float>::infinity();
#pragma omp parallel num_threads(std::max<int>(1, std::min<int64_t>(nt_, ntasks)))
    {
      std::vector<float> qc((size_t)(qb * d_)), qp((size_t)(qb * pld)), qpc((size_t)(qb * r_));
      std::vector<float> G((size_t)(qb * gld));
      std::vector<float> lb((size_t)nb_);
      std::vector<std::pair<float, int64_t>> cand;
      std::vector<float> sd((size_t)k);
      std::vector<int64_t> si((size_t)k);
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t i0 = task * qb;
        const int64_t mq = std::min(qb, nq - i0);
        for (int64_t r = 0; r < mq; ++r)
          for (int64_t t = 0; t < d_; ++t) qc[(size_t)(r * d_ + t)] = queries[(i0 + r) * d_ + t] - mu_[(size_t)t];
        if (!basis_.MultiplyNT(qc.data(), mq, qp.data(), pld)) {
          failed.store(true);
          continue;
        }
        for (int64_t r = 0; r < mq; ++r)
          std::memcpy(&qpc[(size_t)(r * r_)], &qp[(size_t)(r * pld)], sizeof(float) * (size_t)r_);
        if (!coords_.MultiplyNT(qpc.data(), mq, G.data(), gld)) {
          failed.store(true);
          continue;
        }
        for (int64_t r = 0; r < mq; ++r) {
          const float* q = queries + (i0 + r) * d_;
          const float qpn = SumSquares(qpc.data() + r * r_, r_);
          const float qcn = SumSquares(qc.data() + r * d_, d_);
          const float qres = std::sqrt(std::max(0.0f, qcn - qpn));
          const float slack = kBoundSlack * (qcn + bcn_max_);
          const float* g = G.data() + r * gld;
          // Bounds (a branch-free, vectorised pass), then the k rows with the smallest bound as the first
          // exact candidates.
          const float* bpn = bpn_.data();
          const float* bres = bres_.data();
          float* lbp = lb.data();
          for (int64_t j = 0; j < nb_; ++j) {
            const float p2 = std::max(0.0f, qpn + bpn[j] - 2.0f * g[j]);
            const float e = qres - bres[j];
            lbp[j] = p2 + e * e;
          }
          for (int j = 0; j < k; ++j) {
            sd[(size_t)j] = inf;
            si[(size_t)j] = -1;
          }
          for (int64_t j = 0; j < nb_; ++j)
            if (lbp[j] < sd[(size_t)(k - 1)]) TopKInsert(sd.data(), si.data(), k, lbp[j], j);
          float* td = dist + (i0 + r) * k;
          int64_t* ti = idx + (i0 + r) * k;
          for (int j = 0; j < k; ++j) {
            td[j] = inf;
            ti[j] = -1;
          }
          for (int j = 0; j < k; ++j) {
            const int64_t b = si[(size_t)j];
            InsertByDistanceThenIndex(td, ti, k, SquaredL2Capped(q, bank_.data() + b * d_, d_, inf), b);
            lb[(size_t)b] = inf;  // done
          }
          // Survivors of the bound, checked in increasing bound until it passes the k-th distance.
          float limit = td[k - 1] + slack;
          cand.clear();
          for (int64_t j = 0; j < nb_; ++j)
            if (lb[(size_t)j] <= limit) cand.emplace_back(lb[(size_t)j], j);
          std::sort(cand.begin(), cand.end());
          for (const auto& c : cand) {
            if (c.first > td[k - 1] + slack) break;
            // A row exactly at the k-th distance with a lower index still enters, so the cap sits just above.
            const float cap = td[k - 1] + slack;
            const float dv = SquaredL2Capped(q, bank_.data() + c.second * d_, d_, cap);
            if (dv <= cap) InsertByDistanceThenIndex(td, ti, k, dv, c.second);
          }
        }
      }
    }
    if (failed.load()) return Status(StatusCode::kInternal, "kNN: oneDNN sgemm failed");
    return Status::Ok();
  }

 private:
  // Row blocks of A spread over the threads (each block's product runs on its own thread).
  bool MultiplyParallel(const RowMatrix& R, const float* A, int64_t m, int64_t K, float* C,
                        int64_t ldc) const {
    const int64_t block = 64;
    const int64_t nblocks = (m + block - 1) / block;
    std::atomic<bool> ok{true};
#pragma omp parallel for num_threads(nt_) schedule(dynamic, 1)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t i0 = b * block;
      if (!R.MultiplyNT(A + i0 * K, std::min(block, m - i0), C + i0 * ldc, ldc)) ok.store(false);
    }
    return ok.load();
  }

  std::mutex search_mu_;
  int64_t nb_, d_;
  int r_;
  int nt_;
  std::vector<float> bank_;   // [nb][d] as given (exact distances)
  std::vector<float> mu_;     // [d] bank mean
  RowMatrix basis_;           // P [r][d], orthonormal rows
  RowMatrix coords_;          // p(bank) [nb][r]
  std::vector<float> bpn_;    // ||p(bank row)||^2
  std::vector<float> bres_;   // residual norms e(bank row)
  float bcn_max_ = 0.0f;      // max ||bank row - mu||^2 (scale of the slack)
  double captured_ = 1.0;     // see captured_variance()
};

}  // namespace

int DefaultPrunedSubspaceDim(int64_t d) { return (int)std::max<int64_t>(1, std::min<int64_t>(128, d / 4)); }

int PrunedKnnSubspaceDim(int64_t nb, int64_t d) {
  // Worth it when the d-dim GEMM dominates: wide rows and a bank much larger than the subspace.
  const int r = DefaultPrunedSubspaceDim(d);
  if (d < 256 || nb < 4 * (int64_t)r) return 0;
  return r;
}

Status CreatePrunedKnnIndexCpu(const float* bank, int64_t nb, int64_t d, int r, const KnnOptions& opts,
                               std::unique_ptr<KnnIndex>* out) {
  if (r < 1 || r > d)
    return Status(StatusCode::kInvalidArgument, "kNN index: subspace dimension must be in [1, d] (got " +
                                                    std::to_string(r) + ", d=" + std::to_string(d) + ")");
  std::unique_ptr<PrunedCpuKnnIndex> index(new PrunedCpuKnnIndex(nb, d, r, ResolveThreads(opts.num_threads)));
  LOUPE_RETURN_IF_ERROR(index->Init(bank));
  // kAuto on a bank without low-rank structure (isotropic noise keeps r/d of its variance on any r-dim
  // subspace): the bound would prune little and the brute-force GEMM is faster. PatchCore banks keep
  // 86-96% on 128 directions.
  if (opts.method == KnnMethod::kAuto && index->captured_variance() < kMinCapturedVariance)
    return CreateKnnIndexCpu(bank, nb, d, opts, out);
  *out = std::move(index);
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
