// Exact kNN (GEMM form) against a double-precision brute force, ties, KnnIndex; greedy coreset against a
// naive implementation (knn.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loupe/knn.h"
#include "ml/ml_internal.h"
#ifdef LOUPE_HAVE_CUDA
#include "ml/ml_cuda.h"
#endif
#include "test_util.h"

using namespace loupe;

namespace {

std::vector<float> RandomMatrix(uint64_t seed, int64_t rows, int64_t cols, double scale = 1.0) {
  uint64_t st = ml::StreamState(seed, 11);
  std::vector<float> m((size_t)(rows * cols));
  for (size_t i = 0; i < m.size(); i += 2) {
    double z0, z1;
    ml::GaussianPair(&st, &z0, &z1);
    m[i] = (float)(z0 * scale);
    if (i + 1 < m.size()) m[i + 1] = (float)(z1 * scale);
  }
  return m;
}

struct BruteResult {
  std::vector<double> dist;  // [nq][nb]
};

// All distances in double, exact difference form.
std::vector<double> BruteDistances(const std::vector<float>& bank, int64_t nb, const std::vector<float>& q,
                                   int64_t nq, int64_t d) {
  std::vector<double> out((size_t)(nq * nb));
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nb; ++j) {
      double s = 0;
      for (int64_t c = 0; c < d; ++c) {
        const double df = (double)q[(size_t)(i * d + c)] - (double)bank[(size_t)(j * d + c)];
        s += df * df;
      }
      out[(size_t)(i * nb + j)] = s;
    }
  return out;
}

// Checks a kNN answer against brute force: the distance list matches the true k smallest within a
// tolerance scaled by the magnitudes (GEMM-form float rounding), every returned index is a real
// neighbour at its reported distance, and indices are the exact ones except where true distances are
// within the tolerance of each other (float near-ties).
void CheckKnn(const std::vector<float>& bank, int64_t nb, const std::vector<float>& q, int64_t nq,
              int64_t d, int k, const std::vector<float>& dist, const std::vector<int64_t>& idx,
              int* index_mismatches) {
  const auto bd = BruteDistances(bank, nb, q, nq, d);
  int mism = 0;
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<int64_t> order((size_t)nb);
    for (int64_t j = 0; j < nb; ++j) order[(size_t)j] = j;
    const double* row = bd.data() + i * nb;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] < row[b]; });
    double qn = 0;
    for (int64_t c = 0; c < d; ++c) qn += (double)q[(size_t)(i * d + c)] * q[(size_t)(i * d + c)];
    for (int r = 0; r < k; ++r) {
      const int64_t got = idx[(size_t)(i * k + r)];
      const float gd = dist[(size_t)(i * k + r)];
      const int64_t want = order[(size_t)r];
      double bn = 0;
      for (int64_t c = 0; c < d; ++c)
        bn += (double)bank[(size_t)(want * d + c)] * bank[(size_t)(want * d + c)];
      const double tol = 1e-5 * (qn + bn) + 1e-6;
      CHECK(got >= 0 && got < nb);
      if (got < 0 || got >= nb) return;
      CHECK_NEAR(gd, row[want], tol);
      CHECK_NEAR(row[got], row[want], 2 * tol);
      if (r > 0) CHECK(dist[(size_t)(i * k + r - 1)] <= gd);
      if (got != want) ++mism;
    }
  }
  *index_mismatches = mism;
}

}  // namespace

TEST_CASE(knn_matches_double_brute_force) {
  struct Case { int64_t nb, nq, d; int k; };
  const Case cases[] = {{1, 3, 5, 1},     {17, 5, 3, 9},     {300, 40, 64, 1},  {300, 40, 64, 9},
                        {257, 97, 130, 9}, {1000, 13, 300, 16}, {513, 200, 33, 5}, {64, 7, 1, 3},
                        {40, 2, 16, 40}};
  for (const Case& c : cases) {
    const auto bank = RandomMatrix(100 + c.nb, c.nb, c.d);
    const auto q = RandomMatrix(200 + c.nq, c.nq, c.d);
    for (int threads : {1, 2, 3}) {
      KnnOptions o;
      o.num_threads = threads;
      std::vector<float> dist((size_t)(c.nq * c.k));
      std::vector<int64_t> idx((size_t)(c.nq * c.k));
      REQUIRE_OK(KnnSearch(bank.data(), c.nb, q.data(), c.nq, c.d, c.k, o, dist.data(), idx.data()));
      int mism = 0;
      CheckKnn(bank, c.nb, q, c.nq, c.d, c.k, dist, idx, &mism);
      CHECK(mism <= (int)(c.nq * c.k / 100));  // only float near-ties may swap
      if (mism) std::printf("  nb=%lld d=%lld k=%d: %d near-tie swaps\n", (long long)c.nb,
                            (long long)c.d, c.k, mism);
    }
  }
}

TEST_CASE(knn_is_the_same_for_any_thread_count_and_index_reuse) {
  const int64_t nb = 700, nq = 50, d = 96;
  const int k = 7;
  const auto bank = RandomMatrix(5, nb, d);
  const auto q = RandomMatrix(6, nq, d);
  std::vector<float> d1((size_t)(nq * k)), d2((size_t)(nq * k)), d3((size_t)(nq * k));
  std::vector<int64_t> i1((size_t)(nq * k)), i2((size_t)(nq * k)), i3((size_t)(nq * k));
  KnnOptions o;
  o.num_threads = 1;
  REQUIRE_OK(KnnSearch(bank.data(), nb, q.data(), nq, d, k, o, d1.data(), i1.data()));
  o.num_threads = 4;  // several bank segments per query block: exercises the merge
  REQUIRE_OK(KnnSearch(bank.data(), nb, q.data(), nq, d, k, o, d2.data(), i2.data()));
  CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
  CHECK(i1 == i2);
  std::unique_ptr<KnnIndex> index;
  REQUIRE_OK(KnnIndex::Create(bank.data(), nb, d, o, &index));
  CHECK(index->size() == nb && index->dim() == d && index->backend() == BackendKind::kCpu);
  for (int rep = 0; rep < 2; ++rep) {
    REQUIRE_OK(index->Search(q.data(), nq, k, d3.data(), i3.data()));
    CHECK(std::memcmp(d1.data(), d3.data(), d1.size() * 4) == 0);
    CHECK(i1 == i3);
  }
  CHECK_OK(index->Search(q.data(), 0, k, nullptr, nullptr));  // empty query set
}

TEST_CASE(knn_ties_go_to_the_lower_index_and_distances_clamp_at_zero) {
  // Bank: rows 0..9 are 5 distinct rows each duplicated (row r and r + 5 equal), plus exact copies of
  // the queries at rows 10..12.
  const int64_t d = 24;
  auto base = RandomMatrix(9, 5, d);
  auto q = RandomMatrix(10, 3, d, 10.0);  // large norms: GEMM-form cancellation around 0
  std::vector<float> bank;
  for (int rep = 0; rep < 2; ++rep) bank.insert(bank.end(), base.begin(), base.end());
  bank.insert(bank.end(), q.begin(), q.end());
  const int64_t nb = 13;
  const int k = 13;
  for (int threads : {1, 3}) {
    KnnOptions o;
    o.num_threads = threads;
    std::vector<float> dist(3 * k);
    std::vector<int64_t> idx(3 * k);
    REQUIRE_OK(KnnSearch(bank.data(), nb, q.data(), 3, d, k, o, dist.data(), idx.data()));
    for (int i = 0; i < 3; ++i) {
      CHECK(idx[(size_t)(i * k)] == 10 + i);   // itself
      CHECK(dist[(size_t)(i * k)] >= 0.0f);    // clamped
      CHECK(dist[(size_t)(i * k)] <= 1e-2f * 10 * 10 * d * 1e-3f + 1e-3f);
      // Each duplicated pair appears as (r, r + 5) adjacent, lower index first.
      for (int r = 1; r < k; ++r) {
        const int64_t a = idx[(size_t)(i * k + r)];
        if (a < 5) {
          CHECK(r + 1 < k && idx[(size_t)(i * k + r + 1)] == a + 5);
          CHECK(r + 1 < k && dist[(size_t)(i * k + r + 1)] == dist[(size_t)(i * k + r)]);
        }
      }
    }
  }
  // All-equal bank: the k lowest indices in order.
  std::vector<float> flat((size_t)(40 * d), 0.5f), one((size_t)d, 0.5f), dd(9);
  std::vector<int64_t> ii(9);
  KnnOptions o;
  o.num_threads = 2;
  REQUIRE_OK(KnnSearch(flat.data(), 40, one.data(), 1, d, 9, o, dd.data(), ii.data()));
  for (int r = 0; r < 9; ++r) {
    CHECK(ii[(size_t)r] == r);
    CHECK(dd[(size_t)r] == dd[0]);
    CHECK(dd[(size_t)r] >= 0.0f);
  }
}

TEST_CASE(knn_bad_inputs) {
  std::vector<float> bank(40, 1.0f), q(8, 1.0f), dist(8);
  std::vector<int64_t> idx(8);
  KnnOptions o;
  auto code = [](const Status& s) { return s.code(); };
  CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 4, 11, o, dist.data(), idx.data())) ==
        StatusCode::kInvalidArgument);  // k > nb
  CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 4, 0, o, dist.data(), idx.data())) ==
        StatusCode::kInvalidArgument);
  CHECK(code(KnnSearch(nullptr, 10, q.data(), 2, 4, 1, o, dist.data(), idx.data())) ==
        StatusCode::kInvalidArgument);
  CHECK(code(KnnSearch(bank.data(), 0, q.data(), 2, 4, 1, o, dist.data(), idx.data())) ==
        StatusCode::kInvalidArgument);
  CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 0, 1, o, dist.data(), idx.data())) ==
        StatusCode::kInvalidArgument);
  CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 4, 1, o, nullptr, idx.data())) ==
        StatusCode::kInvalidArgument);
  bool have_gpu = false;
#ifdef LOUPE_HAVE_CUDA
  have_gpu = ml::CudaDeviceAvailable(0, nullptr);
#endif
  if (!have_gpu) {  // kCuda without a GPU -> Unavailable; kAuto -> the CPU
    o.backend = BackendKind::kCuda;
    CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 4, 1, o, dist.data(), idx.data())) ==
          StatusCode::kUnavailable);
    CoresetOptions co;
    co.backend = BackendKind::kCuda;
    std::vector<int64_t> sel;
    CHECK(GreedyCoreset(bank.data(), 10, 4, 2, co, &sel).code() == StatusCode::kUnavailable);
    o.backend = BackendKind::kAuto;
    CHECK(code(KnnSearch(bank.data(), 10, q.data(), 2, 4, 1, o, dist.data(), idx.data())) ==
          StatusCode::kOk);
  }
  o.backend = BackendKind::kCuda;  // k above the CUDA limit is refused up front
  std::vector<float> big(100 * 4, 0.0f), bd(70);
  std::vector<int64_t> bi(70);
  CHECK(code(KnnSearch(big.data(), 100, q.data(), 1, 4, 70, o, bd.data(), bi.data())) ==
        StatusCode::kInvalidArgument);
  o.backend = BackendKind::kAuto;  // ... and kAuto takes the CPU for it
  CHECK(code(KnnSearch(big.data(), 100, q.data(), 1, 4, 70, o, bd.data(), bi.data())) ==
        StatusCode::kOk);
}

// ------------------------------------------------------------------------------------------------
// The bound-pruned index (KnnMethod::kPruned).

namespace {

// Rows of rank `rank` signal plus isotropic noise: what PatchCore banks look like (low-rank), and the
// case where the bound prunes most rows.
std::vector<float> LowRankRows(uint64_t seed, int64_t rows, int64_t d, int64_t rank, double noise,
                               const std::vector<float>& mix) {
  const auto coef = RandomMatrix(seed, rows, rank, 3.0);
  const auto eps = RandomMatrix(seed + 1, rows, d, noise);
  std::vector<float> out((size_t)(rows * d));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < d; ++c) {
      double v = 1.0 + eps[(size_t)(i * d + c)];  // an offset: the index centres on the bank mean
      for (int64_t r = 0; r < rank; ++r) v += (double)coef[(size_t)(i * rank + r)] * mix[(size_t)(r * d + c)];
      out[(size_t)(i * d + c)] = (float)v;
    }
  return out;
}

}  // namespace

TEST_CASE(knn_pruned_index_matches_double_brute_force) {
  struct Case { int64_t nb, nq, d, rank; double noise; int k; int r; };
  const Case cases[] = {{1200, 150, 384, 16, 0.05, 1, 0},  {1200, 150, 384, 16, 0.05, 9, 0},
                        {900, 70, 256, 200, 0.3, 5, 0},    // near full rank: little to prune, still exact
                        {600, 90, 300, 8, 0.01, 3, 7},     // r below the signal rank
                        {50, 20, 256, 4, 0.1, 9, 64},      // r above the bank's rank
                        {20000, 30, 256, 12, 0.05, 2, 0}}; // covariance from a row sample
  for (const Case& c : cases) {
    const auto mix = RandomMatrix(7 + c.d, c.rank, c.d, 1.0 / std::sqrt((double)c.rank));
    const auto bank = LowRankRows(30 + c.nb, c.nb, c.d, c.rank, c.noise, mix);
    auto q = LowRankRows(40 + c.nq, c.nq, c.d, c.rank, c.noise, mix);
    // Some queries are bank rows (distance 0), some are far outliers (everything survives the bound).
    std::copy(bank.begin(), bank.begin() + 3 * c.d, q.begin());
    for (int64_t t = 0; t < c.d; ++t) q[(size_t)(4 * c.d + t)] += 50.0f * (float)((t % 7) - 3);
    for (int threads : {1, 2}) {
      KnnOptions o;
      o.num_threads = threads;
      o.method = KnnMethod::kPruned;
      o.subspace_dim = c.r;
      std::unique_ptr<KnnIndex> index;
      REQUIRE_OK(KnnIndex::Create(bank.data(), c.nb, c.d, o, &index));
      CHECK(index->method() == KnnMethod::kPruned && index->size() == c.nb && index->dim() == c.d);
      std::vector<float> dist((size_t)(c.nq * c.k));
      std::vector<int64_t> idx((size_t)(c.nq * c.k));
      for (int rep = 0; rep < 2; ++rep) {
        REQUIRE_OK(index->Search(q.data(), c.nq, c.k, dist.data(), idx.data()));
        int mism = 0;
        CheckKnn(bank, c.nb, q, c.nq, c.d, c.k, dist, idx, &mism);
        CHECK(mism <= (int)(c.nq * c.k / 100));
        for (int i = 0; i < 3; ++i) CHECK(idx[(size_t)(i * c.k)] == i && dist[(size_t)(i * c.k)] == 0.0f);
      }
      // The brute-force index agrees on the neighbours.
      KnnOptions ob = o;
      ob.method = KnnMethod::kBruteForce;
      std::unique_ptr<KnnIndex> brute;
      REQUIRE_OK(KnnIndex::Create(bank.data(), c.nb, c.d, ob, &brute));
      CHECK(brute->method() == KnnMethod::kBruteForce);
      std::vector<float> bd((size_t)(c.nq * c.k));
      std::vector<int64_t> bi((size_t)(c.nq * c.k));
      REQUIRE_OK(brute->Search(q.data(), c.nq, c.k, bd.data(), bi.data()));
      int differ = 0;
      for (size_t i = 0; i < bi.size(); ++i) differ += bi[i] != idx[i];
      CHECK(differ <= (int)(c.nq * c.k / 100));
    }
  }
}

TEST_CASE(knn_pruned_index_ties_degenerate_banks_and_options) {
  const int64_t d = 256;
  // Duplicated rows (r and r + 300 equal): the lower index comes first, at the same distance.
  const auto mix = RandomMatrix(3, 6, d, 0.4);
  auto half = LowRankRows(4, 300, d, 6, 0.02, mix);
  std::vector<float> bank = half;
  bank.insert(bank.end(), half.begin(), half.end());
  const auto q = LowRankRows(5, 20, d, 6, 0.02, mix);
  KnnOptions o;
  o.num_threads = 2;
  std::unique_ptr<KnnIndex> index;
  REQUIRE_OK(KnnIndex::Create(bank.data(), 600, d, o, &index));  // kAuto picks the pruned index here
  CHECK(index->method() == KnnMethod::kPruned);
  std::vector<float> dist(20 * 4);
  std::vector<int64_t> idx(20 * 4);
  REQUIRE_OK(index->Search(q.data(), 20, 4, dist.data(), idx.data()));
  for (int i = 0; i < 20; ++i) {
    CHECK(idx[(size_t)(i * 4)] < 300 && idx[(size_t)(i * 4 + 1)] == idx[(size_t)(i * 4)] + 300);
    CHECK(dist[(size_t)(i * 4)] == dist[(size_t)(i * 4 + 1)]);
  }
  // An all-equal bank (zero covariance): the k lowest indices.
  std::vector<float> flat((size_t)(600 * d), 0.25f), one((size_t)d, 0.5f), dd(9);
  std::vector<int64_t> ii(9);
  o.method = KnnMethod::kPruned;
  REQUIRE_OK(KnnIndex::Create(flat.data(), 600, d, o, &index));
  REQUIRE_OK(index->Search(one.data(), 1, 9, dd.data(), ii.data()));
  for (int r = 0; r < 9; ++r) {
    CHECK(ii[(size_t)r] == r);
    CHECK_NEAR(dd[(size_t)r], 0.0625 * d, 1e-3);
  }
  // kAuto falls back to brute force on a bank without low-rank structure (isotropic noise).
  {
    KnnOptions oa;
    oa.num_threads = 2;
    const auto noise = RandomMatrix(21, 600, d);
    REQUIRE_OK(KnnIndex::Create(noise.data(), 600, d, oa, &index));
    CHECK(index->method() == KnnMethod::kBruteForce);
    oa.method = KnnMethod::kPruned;  // ... unless asked for
    REQUIRE_OK(KnnIndex::Create(noise.data(), 600, d, oa, &index));
    CHECK(index->method() == KnnMethod::kPruned);
  }
  // Small or narrow banks stay brute force under kAuto; a bad subspace size is refused.
  o.method = KnnMethod::kAuto;
  REQUIRE_OK(KnnIndex::Create(flat.data(), 600, 64, o, &index));
  CHECK(index->method() == KnnMethod::kBruteForce);
  REQUIRE_OK(KnnIndex::Create(flat.data(), 100, d, o, &index));
  CHECK(index->method() == KnnMethod::kBruteForce);
  o.subspace_dim = d + 1;
  CHECK(KnnIndex::Create(flat.data(), 600, d, o, &index).code() == StatusCode::kInvalidArgument);
  o.subspace_dim = 0;
  flat[(size_t)(123 * d + 7)] = std::numeric_limits<float>::quiet_NaN();  // a poisoned bank is refused
  const Status nan = KnnIndex::Create(flat.data(), 600, d, o, &index);
  CHECK(nan.code() == StatusCode::kInvalidArgument && nan.message().find("row 123") != std::string::npos);
  flat[(size_t)(123 * d + 7)] = 0.25f;
  o.subspace_dim = -1;
  CHECK(KnnIndex::Create(flat.data(), 600, d, o, &index).code() == StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------------------------------------------
// Coreset.

namespace {

// Naive greedy k-center in double on the given rows (re-computes every distance from scratch).
std::vector<int64_t> NaiveCoreset(const std::vector<float>& Y, int64_t n, int64_t dim, int64_t m,
                                  int64_t first, std::vector<double>* radii) {
  std::vector<int64_t> sel = {first};
  radii->clear();
  while ((int64_t)sel.size() < m) {
    double best = -1;
    int64_t bi = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (std::find(sel.begin(), sel.end(), i) != sel.end()) continue;
      double md = std::numeric_limits<double>::infinity();
      for (int64_t s : sel) {
        double dd = 0;
        for (int64_t c = 0; c < dim; ++c) {
          const double df = (double)Y[(size_t)(i * dim + c)] - Y[(size_t)(s * dim + c)];
          dd += df * df;
        }
        md = std::min(md, dd);
      }
      if (md > best) best = md, bi = i;
    }
    radii->push_back(best);
    sel.push_back(bi);
  }
  return sel;
}

}  // namespace

TEST_CASE(coreset_matches_naive_and_radius_decreases) {
  const int64_t n = 600, d = 20, m = 40;
  const auto X = RandomMatrix(21, n, d);
  for (int pd : {0, 8}) {
    CoresetOptions o;
    o.seed = 5;
    o.projection_dim = pd;
    std::vector<int64_t> sel;
    REQUIRE_OK(GreedyCoreset(X.data(), n, d, m, o, &sel));
    CHECK((int64_t)sel.size() == m);
    std::vector<int64_t> sorted = sel;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::unique(sorted.begin(), sorted.end()) == sorted.end());  // distinct
    CHECK(sel[0] == ml::CoresetFirstIndex(5, n));
    // The naive algorithm on the same rows the selection ran on (the projection, when on).
    std::vector<float> Y = X;
    int64_t dim = d;
    if (pd > 0) {
      std::vector<float> P;
      ml::CoresetProjectionMatrix(5, d, pd, &P);
      ml::ProjectRows(X.data(), n, d, P, pd, 2, &Y);
      dim = pd;
      // The projection itself against a double product.
      for (int64_t i = 0; i < n; i += 37)
        for (int64_t c = 0; c < pd; ++c) {
          double s = 0;
          for (int64_t j = 0; j < d; ++j) s += (double)X[(size_t)(i * d + j)] * P[(size_t)(j * pd + c)];
          CHECK_NEAR(Y[(size_t)(i * pd + c)], s, 1e-4 * (1 + std::fabs(s)));
        }
    }
    std::vector<double> radii;
    const auto naive = NaiveCoreset(Y, n, dim, m, sel[0], &radii);
    CHECK(naive == sel);
    for (size_t r = 1; r < radii.size(); ++r) CHECK(radii[r] <= radii[r - 1]);
    // Thread count does not change the selection.
    o.num_threads = 3;
    std::vector<int64_t> sel3;
    REQUIRE_OK(GreedyCoreset(X.data(), n, d, m, o, &sel3));
    CHECK(sel3 == sel);
  }
}

TEST_CASE(coreset_seed_first_centre_duplicates_progress_cancel) {
  const int64_t n = 300, d = 12;
  const auto X = RandomMatrix(22, n, d);
  CoresetOptions o;
  o.projection_dim = 4;
  std::vector<int64_t> a, b;
  o.seed = 1;
  REQUIRE_OK(GreedyCoreset(X.data(), n, d, 10, o, &a));
  o.seed = 2;
  REQUIRE_OK(GreedyCoreset(X.data(), n, d, 10, o, &b));
  CHECK(a[0] == ml::CoresetFirstIndex(1, n));
  CHECK(b[0] == ml::CoresetFirstIndex(2, n));
  CHECK(a != b);
  // m = n selects every row once, even with duplicate rows (zero distances).
  std::vector<float> dup((size_t)(8 * d), 0.0f);
  for (int64_t i = 0; i < 4 * d; ++i) dup[(size_t)i] = X[(size_t)i];
  std::vector<int64_t> all;
  o.projection_dim = 0;
  REQUIRE_OK(GreedyCoreset(dup.data(), 8, d, 8, o, &all));
  std::sort(all.begin(), all.end());
  CHECK((all == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Progress about every 1% and at the end; cancel stops it.
  std::vector<int64_t> seen;
  o.progress = [&](int64_t done, int64_t total) {
    CHECK(total == 250);
    seen.push_back(done);
  };
  std::vector<int64_t> sel;
  REQUIRE_OK(GreedyCoreset(X.data(), n, d, 250, o, &sel));
  CHECK(!seen.empty() && seen.back() == 250);
  CHECK(seen.size() >= 100 && seen.size() <= 260);
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] > seen[i - 1]);
  std::atomic<bool> cancel{false};
  o.cancel = &cancel;
  o.progress = [&](int64_t done, int64_t) {
    if (done >= 20) cancel = true;
  };
  CHECK(GreedyCoreset(X.data(), n, d, 250, o, &sel).code() == StatusCode::kCancelled);
  // Bad inputs.
  CoresetOptions ok;
  CHECK(GreedyCoreset(X.data(), n, d, 0, ok, &sel).code() == StatusCode::kInvalidArgument);
  CHECK(GreedyCoreset(X.data(), n, d, n + 1, ok, &sel).code() == StatusCode::kInvalidArgument);
  CHECK(GreedyCoreset(nullptr, n, d, 5, ok, &sel).code() == StatusCode::kInvalidArgument);
  ok.projection_dim = -1;
  CHECK(GreedyCoreset(X.data(), n, d, 5, ok, &sel).code() == StatusCode::kInvalidArgument);
}

LOUPE_TEST_MAIN()
