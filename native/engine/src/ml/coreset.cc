// Greedy k-center (farthest point) coreset selection on the CPU, and the seeded random projection.
// The distance uses a fixed 16-lane summation order with no FMA contraction, shared bit-for-bit with the
// CUDA kernel (which uses __fsub_rn/__fmul_rn/__fadd_rn), so both backends select the same rows.
#pragma GCC optimize("fp-contract=off")
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "loupe/knn.h"
#include "ml/ml_internal.h"

namespace loupe {
namespace ml {

void CoresetProjectionMatrix(uint64_t seed, int64_t d, int64_t pd, std::vector<float>* P) {
  P->resize((size_t)(d * pd));
  uint64_t state = StreamState(seed, 0x50524F4A00000000ull);  // "PROJ"
  const double scale = 1.0 / std::sqrt((double)pd);
  const int64_t total = d * pd;
  float* p = P->data();
  for (int64_t i = 0; i < total; i += 2) {
    double z0, z1;
    GaussianPair(&state, &z0, &z1);
    p[i] = (float)(z0 * scale);
    if (i + 1 < total) p[i + 1] = (float)(z1 * scale);
  }
}

void ProjectRows(const float* X, int64_t n, int64_t d, const std::vector<float>& P, int64_t pd,
                 int num_threads, std::vector<float>* Y) {
  std::vector<float> panels;
  PackMatrixAsPanels(P.data(), d, pd, &panels);
  const int64_t npanels = (pd + kGemmNR - 1) / kGemmNR;
  const int64_t ldc = npanels * kGemmNR;
  constexpr int64_t kRows = 96;
  Y->resize((size_t)(n * pd));
  float* y = Y->data();
  const int64_t nblocks = (n + kRows - 1) / kRows;
#pragma omp parallel num_threads(num_threads)
  {
    std::vector<float> C((size_t)(kRows * ldc));
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < nblocks; ++bi) {
      const int64_t i0 = bi * kRows;
      const int64_t mr = std::min(kRows, n - i0);
      GemmPanels(X + i0 * d, d, mr, d, panels.data(), npanels, C.data(), ldc);
      for (int64_t r = 0; r < mr; ++r)
        std::copy(C.data() + r * ldc, C.data() + r * ldc + pd, y + (i0 + r) * pd);
    }
  }
}

int64_t CoresetFirstIndex(uint64_t seed, int64_t n) {
  uint64_t state = StreamState(seed, 0x434F524500000000ull);  // "CORE"
  return (int64_t)UniformBelow(&state, (uint64_t)n);
}

// Wider vectors change nothing in the result (16 fixed lanes, IEEE add/mul, no contraction).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
float CoresetDist2(const float* a, const float* b, int64_t dim) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    for (int j = 0; j < 16; ++j) {
      const float df = a[i + j] - b[i + j];
      const float sq = df * df;
      acc[j] = acc[j] + sq;
    }
  }
  for (int j = 0; i + j < dim; ++j) {
    const float df = a[i + j] - b[i + j];
    const float sq = df * df;
    acc[j] = acc[j] + sq;
  }
  float s = acc[0];
  for (int j = 1; j < 16; ++j) s = s + acc[j];
  return s;
}

void TransposeRows(const float* Y, int64_t n, int64_t dim, int num_threads, std::vector<float>* Yt) {
  Yt->resize((size_t)(n * dim));
  float* out = Yt->data();
  constexpr int64_t kB = 64;
  const int64_t nbi = (n + kB - 1) / kB;
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t bi = 0; bi < nbi; ++bi) {
    const int64_t i0 = bi * kB, i1 = std::min(n, i0 + kB);
    for (int64_t c0 = 0; c0 < dim; c0 += kB) {
      const int64_t c1 = std::min(dim, c0 + kB);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t c = c0; c < c1; ++c) out[c * n + i] = Y[i * dim + c];
    }
  }
}

Status CoresetSelectCpu(const float* Y, int64_t n, int64_t dim, int64_t m, const CoresetOptions& opts,
                        std::vector<int64_t>* selected) {
  // Each step is O(n * dim); below ~1M elements a thread team costs more than it saves.
  const int nt = (int)std::max<int64_t>(
      1, std::min<int64_t>(ResolveThreads(opts.num_threads), n * dim / (1 << 20)));
  std::vector<float> mind((size_t)n, std::numeric_limits<float>::infinity());
  std::vector<int64_t> sel;
  sel.reserve((size_t)m);
  int64_t c = CoresetFirstIndex(opts.seed, n);
  const int64_t every = std::max<int64_t>(1, m / 100);
  std::vector<float> best_val((size_t)nt);
  std::vector<int64_t> best_idx((size_t)nt);
  for (;;) {
    sel.push_back(c);
    mind[(size_t)c] = -1.0f;  // selected: never picked again
    const int64_t done = (int64_t)sel.size();
    if (opts.progress && (done % every == 0 || done == m)) opts.progress(done, m);
    if (done == m) break;
    if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
      return Status(StatusCode::kCancelled, "GreedyCoreset cancelled");
    const float* yc = Y + c * dim;
    float* md = mind.data();
    std::fill(best_idx.begin(), best_idx.end(), (int64_t)-1);
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      float bv = -1.0f;
      int64_t bi = -1;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        float mi = md[i];
        if (mi < 0.0f) continue;
        const float dv = CoresetDist2(Y + i * dim, yc, dim);
        if (dv < mi) {
          mi = dv;
          md[i] = dv;
        }
        if (mi > bv) {  // rows arrive in increasing order: ties keep the lower index
          bv = mi;
          bi = i;
        }
      }
      best_val[(size_t)tid] = bv;
      best_idx[(size_t)tid] = bi;
    }
    float bv = -1.0f;
    int64_t bi = -1;
    for (int t = 0; t < nt; ++t) {
      const int64_t ti = best_idx[(size_t)t];
      if (ti < 0) continue;
      const float tv = best_val[(size_t)t];
      if (bi < 0 || tv > bv || (tv == bv && ti < bi)) {
        bv = tv;
        bi = ti;
      }
    }
    c = bi;  // m <= n guarantees an unselected row exists
  }
  *selected = std::move(sel);
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
