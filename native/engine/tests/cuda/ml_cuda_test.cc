// GPU vs CPU for the ML kernels (svm.h, knn.h). Every case SKIPs when no CUDA device is present.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "loupe/knn.h"
#include "loupe/svm.h"
#include "ml/ml_cuda.h"
#include "ml/ml_internal.h"
#include "test_util.h"

using namespace loupe;

namespace {

void RequireGpu() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    SKIP(std::string("no CUDA device: ") + cudaGetErrorString(e));
  }
  if (count <= 0) SKIP("no CUDA device");
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<float> Gaussian(uint64_t seed, size_t count, double scale = 1.0) {
  uint64_t st = ml::StreamState(seed, 3);
  std::vector<float> m(count);
  for (size_t i = 0; i < count; i += 2) {
    double z0, z1;
    ml::GaussianPair(&st, &z0, &z1);
    m[i] = (float)(z0 * scale);
    if (i + 1 < count) m[i + 1] = (float)(z1 * scale);
  }
  return m;
}

// A 10-class problem: x = mu_c + noise (overlapping), columns standardised.
struct Problem {
  int64_t n, d;
  int classes;
  std::vector<float> X;
  std::vector<int> label;
};
Problem MakeProblem(uint64_t seed, int64_t n, int64_t d, int classes, double sep) {
  Problem p{n, d, classes, {}, {}};
  const auto mu = Gaussian(seed * 7 + 1, (size_t)(classes * d), sep);
  p.X = Gaussian(seed * 7 + 2, (size_t)(n * d));
  p.label.resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const int c = (int)(i % classes);
    p.label[(size_t)i] = c;
    for (int64_t j = 0; j < d; ++j) p.X[(size_t)(i * d + j)] += mu[(size_t)(c * d + j)];
  }
  for (int64_t j = 0; j < d; ++j) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = p.X[(size_t)(i * d + j)];
      s += v;
      s2 += v * v;
    }
    const double mean = s / n, sd = std::sqrt(std::max(1e-12, s2 / n - mean * mean));
    for (int64_t i = 0; i < n; ++i)
      p.X[(size_t)(i * d + j)] = (float)((p.X[(size_t)(i * d + j)] - mean) / sd);
  }
  return p;
}

double OvaAccuracy(const Problem& p, const std::vector<float>& w, const std::vector<float>& b) {
  int64_t ok = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    int best = 0;
    double bs = -1e300;
    for (int c = 0; c < p.classes; ++c) {
      double s = b[(size_t)c];
      for (int64_t j = 0; j < p.d; ++j) s += (double)w[(size_t)(c * p.d + j)] * p.X[(size_t)(i * p.d + j)];
      if (s > bs) bs = s, best = c;
    }
    ok += best == p.label[(size_t)i];
  }
  return 100.0 * ok / p.n;
}

double Cosine(const float* a, const float* b, int64_t d) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < d; ++i) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  return ab / std::sqrt(std::max(1e-300, aa * bb));
}

// ||a - b|| / ||a||: catches what the cosine cannot see (a wrong overall scale, e.g. an averaging
// divisor or a dropped w-scale factor).
double RelativeError(const float* a, const float* b, int64_t d) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < d; ++i) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)a[i] * a[i];
  }
  return std::sqrt(num / std::max(1e-300, den));
}

// "The same model up to float rounding", per learner. Rounding can flip one hinge decision late in a
// run, which moves w by about eta ||x||, so the bar is 1e-2 (a scale or bias bug is off by O(1)).
struct LearnerDiff {
  double min_cos = 1.0, max_rel = 0.0, max_db = 0.0;
};
LearnerDiff CompareLearners(const std::vector<float>& wc, const std::vector<float>& bc,
                            const std::vector<float>& wg, const std::vector<float>& bg, int k,
                            int64_t d) {
  LearnerDiff r;
  for (int j = 0; j < k; ++j) {
    const float* a = wc.data() + (size_t)j * d;
    const float* g = wg.data() + (size_t)j * d;
    r.min_cos = std::min(r.min_cos, Cosine(a, g, d));
    r.max_rel = std::max(r.max_rel, RelativeError(a, g, d));
    r.max_db = std::max(r.max_db, std::fabs((double)bc[(size_t)j] - bg[(size_t)j]) /
                                      (1.0 + std::fabs((double)bc[(size_t)j])));
  }
  return r;
}
void CheckLearners(const LearnerDiff& r) {
  CHECK(r.min_cos > 0.999);
  CHECK(r.max_rel <= 1e-2);
  CHECK(r.max_db <= 1e-2);
}

}  // namespace

TEST_CASE(cuda_backend_choice) {
  std::string why;
  const bool have = ml::CudaDeviceAvailable(0, &why);
  std::vector<float> X = {1, 0, 0, 1, -1, 0, 0, -1};
  std::vector<int8_t> t = {1, 1, -1, -1};
  std::vector<float> w, b;
  SgdSvmOptions o;
  o.epochs = 2;
  o.backend = BackendKind::kCuda;
  const Status s = TrainLinearSvms(X.data(), 4, 2, t.data(), 1, o, &w, &b);
  if (!have) {
    CHECK(s.code() == StatusCode::kUnavailable);
    o.backend = BackendKind::kAuto;  // falls back to the CPU
    CHECK_OK(TrainLinearSvms(X.data(), 4, 2, t.data(), 1, o, &w, &b));
    SKIP("no CUDA device (" + why + "): kCuda -> Unavailable, kAuto -> CPU checked");
  }
  CHECK_OK(s);
  o.device_id = 999;
  CHECK(TrainLinearSvms(X.data(), 4, 2, t.data(), 1, o, &w, &b).code() == StatusCode::kUnavailable);
}

TEST_CASE(svm_gpu_matches_cpu_5000x512x10) {
  RequireGpu();
  const Problem p = MakeProblem(1, 5000, 512, 10, 0.12);
  std::vector<int8_t> t((size_t)(10 * p.n));
  for (int c = 0; c < 10; ++c)
    for (int64_t i = 0; i < p.n; ++i) t[(size_t)(c * p.n + i)] = p.label[(size_t)i] == c ? 1 : -1;
  for (SgdSchedule sched : {SgdSchedule::kAveraged, SgdSchedule::kPegasos}) {
    SgdSvmOptions o;
    o.epochs = 10;
    o.seed = 3;
    o.lambda = 1e-3;
    o.schedule = sched;
    std::vector<float> wc, bc, wg, bg, wg2, bg2;
    o.backend = BackendKind::kCpu;
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_OK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), 10, o, &wc, &bc));
    const double tc = Seconds(t0);
    o.backend = BackendKind::kCuda;
    t0 = std::chrono::steady_clock::now();
    REQUIRE_OK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), 10, o, &wg, &bg));
    const double tg = Seconds(t0);
    REQUIRE_OK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), 10, o, &wg2, &bg2));
    CHECK(std::memcmp(wg.data(), wg2.data(), wg.size() * 4) == 0);  // deterministic on the GPU too
    CHECK(std::memcmp(bg.data(), bg2.data(), bg.size() * 4) == 0);
    const double ac = OvaAccuracy(p, wc, bc), ag = OvaAccuracy(p, wg, bg);
    const LearnerDiff r = CompareLearners(wc, bc, wg, bg, 10, p.d);
    std::printf("  %s: train accuracy cpu %.2f%% gpu %.2f%%, min cosine %.6f, max |dw|/|w| %.3g, "
                "max |db|/(1+|b|) %.3g (cpu %.2fs, gpu %.2fs)\n",
                sched == SgdSchedule::kAveraged ? "averaged" : "pegasos", ac, ag, r.min_cos, r.max_rel,
                r.max_db, tc, tg);
    CHECK(std::fabs(ac - ag) <= 0.5);
    CheckLearners(r);
    CHECK(ac > 50.0);
  }
}

TEST_CASE(svm_gpu_ovo_odd_dims_and_wide_fallback) {
  RequireGpu();
  // OvO (skipped samples), d not a multiple of 4, every register-path instance (float4 chunks per
  // thread x rows in flight: 37 -> 1x8, 1030 -> 2x8, 2500 -> 4x8, 3500 -> 4x4, 8000 -> 8x4) and d
  // above the register path (9001 -> the wide kernel). n = 1500 gives each learner 1000 samples a
  // epoch, more than the 512-entry sequence ring, so the ring wraps.
  struct Case { int64_t d, n; };
  for (const Case c : {Case{37, 600}, Case{1030, 1500}, Case{2500, 1500}, Case{3500, 1500},
                       Case{8000, 1500}, Case{9001, 600}}) {
    const int64_t d = c.d;
    const Problem p = MakeProblem(2, c.n, d, 3, 0.3);
    std::vector<int8_t> t;
    int k = 0;
    for (int a = 0; a < 3; ++a)
      for (int c = a + 1; c < 3; ++c, ++k)
        for (int64_t i = 0; i < p.n; ++i) {
          const int l = p.label[(size_t)i];
          t.push_back(l == a ? 1 : (l == c ? -1 : 0));
        }
    SgdSvmOptions o;
    o.epochs = 5;
    o.lambda = 1e-2;
    std::vector<float> wc, bc, wg, bg;
    REQUIRE_OK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), k, o, &wc, &bc));
    o.backend = BackendKind::kCuda;
    REQUIRE_OK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), k, o, &wg, &bg));
    const LearnerDiff r = CompareLearners(wc, bc, wg, bg, k, d);
    std::printf("  d=%lld n=%lld: min cosine %.6f, max |dw|/|w| %.3g, max |db|/(1+|b|) %.3g, b cpu "
                "%.4f gpu %.4f\n",
                (long long)d, (long long)c.n, r.min_cos, r.max_rel, r.max_db, bc[0], bg[0]);
    CheckLearners(r);
  }
}

TEST_CASE(svm_gpu_progress_and_cancel) {
  RequireGpu();
  const Problem p = MakeProblem(3, 300, 64, 2, 0.5);
  std::vector<int8_t> t((size_t)p.n);
  for (int64_t i = 0; i < p.n; ++i) t[(size_t)i] = p.label[(size_t)i] == 0 ? 1 : -1;
  SgdSvmOptions o;
  o.backend = BackendKind::kCuda;
  o.epochs = 4;
  std::atomic<bool> cancel{false};
  std::vector<int> seen;
  o.cancel = &cancel;
  o.progress = [&](int e, int) {
    seen.push_back(e);
    if (e == 2) cancel = true;
  };
  std::vector<float> w, b;
  CHECK(TrainLinearSvms(p.X.data(), p.n, p.d, t.data(), 1, o, &w, &b).code() == StatusCode::kCancelled);
  CHECK((seen == std::vector<int>{1, 2}));
}

TEST_CASE(knn_gpu_matches_cpu) {
  RequireGpu();
  struct Case { int64_t nb, nq, d; int k; };
  const Case cases[] = {{1, 3, 5, 1},       {100, 10, 3, 9},      {1000, 784, 64, 1},
                        {2049, 784, 1536, 9}, {5000, 31, 100, 16}, {777, 200, 33, 64}};
  for (const Case& c : cases) {
    const auto bank = Gaussian(100 + c.nb, (size_t)(c.nb * c.d));
    const auto q = Gaussian(200 + c.nq, (size_t)(c.nq * c.d));
    std::vector<float> dc((size_t)(c.nq * c.k)), dg((size_t)(c.nq * c.k));
    std::vector<int64_t> ic((size_t)(c.nq * c.k)), ig((size_t)(c.nq * c.k));
    KnnOptions o;
    REQUIRE_OK(KnnSearch(bank.data(), c.nb, q.data(), c.nq, c.d, c.k, o, dc.data(), ic.data()));
    o.backend = BackendKind::kCuda;
    REQUIRE_OK(KnnSearch(bank.data(), c.nb, q.data(), c.nq, c.d, c.k, o, dg.data(), ig.data()));
    int mism = 0;
    double max_rel = 0;
    for (int64_t i = 0; i < c.nq * c.k; ++i) {
      const double scale = 1e-5 * (2.0 * c.d) + 1e-6;  // |q|^2 + |b|^2 ~ 2d here
      max_rel = std::max(max_rel, std::fabs((double)dc[(size_t)i] - dg[(size_t)i]) / (2.0 * c.d));
      CHECK(std::fabs((double)dc[(size_t)i] - dg[(size_t)i]) <= scale);
      if (ic[(size_t)i] != ig[(size_t)i]) {
        ++mism;
        // Only float near-ties may swap: the exact distance of the GPU's pick is within tolerance
        // of the CPU's k-th distance.
        const int64_t r = ig[(size_t)i];
        CHECK(r >= 0 && r < c.nb);
        if (r < 0 || r >= c.nb) continue;
        const int64_t qi = i / c.k;
        double exact = 0;
        for (int64_t j = 0; j < c.d; ++j) {
          const double diff = (double)q[(size_t)(qi * c.d + j)] - bank[(size_t)(r * c.d + j)];
          exact += diff * diff;
        }
        CHECK(std::fabs(exact - dc[(size_t)i]) <= scale);
      }
    }
    std::printf("  nb=%lld nq=%lld d=%lld k=%d: %d index swaps, max |ddist|/(2d) %.2e\n",
                (long long)c.nb, (long long)c.nq, (long long)c.d, c.k, mism, max_rel);
    CHECK(mism <= (int)(c.nq * c.k / 200) + 1);
  }
  // Ties (duplicate bank rows) go to the lower index on the GPU too.
  const int64_t d = 40;
  auto base = Gaussian(9, (size_t)(5 * d));
  std::vector<float> bank;
  for (int rep = 0; rep < 30; ++rep) bank.insert(bank.end(), base.begin(), base.end());  // 150 rows
  const auto q = Gaussian(10, (size_t)(4 * d));
  std::vector<float> dg(4 * 9);
  std::vector<int64_t> ig(4 * 9);
  KnnOptions o;
  o.backend = BackendKind::kCuda;
  REQUIRE_OK(KnnSearch(bank.data(), 150, q.data(), 4, d, 9, o, dg.data(), ig.data()));
  for (int i = 0; i < 4; ++i) {
    // The nearest base row r appears as r, r + 5, r + 10, ... in increasing order.
    const int64_t r0 = ig[(size_t)(i * 9)];
    CHECK(r0 < 5);
    for (int j = 0; j < 9; ++j) CHECK(ig[(size_t)(i * 9 + j)] == r0 + 5 * j);
  }
}

TEST_CASE(knn_gpu_index_reuse_and_throughput) {
  RequireGpu();
  const int64_t nb = 16384, d = 1536, nq = 784;
  const auto bank = Gaussian(31, (size_t)(nb * d));
  const auto q = Gaussian(32, (size_t)(nq * d));
  KnnOptions o;
  o.backend = BackendKind::kCuda;
  std::unique_ptr<KnnIndex> index;
  REQUIRE_OK(KnnIndex::Create(bank.data(), nb, d, o, &index));
  CHECK(index->backend() == BackendKind::kCuda);
  std::vector<float> d1((size_t)nq), d2((size_t)nq);
  std::vector<int64_t> i1((size_t)nq), i2((size_t)nq);
  REQUIRE_OK(index->Search(q.data(), nq, 1, d1.data(), i1.data()));
  const auto t0 = std::chrono::steady_clock::now();
  const int reps = 5;
  for (int r = 0; r < reps; ++r) REQUIRE_OK(index->Search(q.data(), nq, 1, d2.data(), i2.data()));
  const double s = Seconds(t0) / reps;
  CHECK(i1 == i2);
  CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
  std::printf("  784 x 1536 queries vs 16384 bank, k=1: %.2f ms per image (%.0f queries/s)\n",
              s * 1e3, nq / s);
  CHECK(index->Search(q.data(), nq, 65, d2.data(), i2.data()).code() == StatusCode::kInvalidArgument);
}

TEST_CASE(coreset_gpu_selects_the_same_rows) {
  RequireGpu();
  for (int pd : {0, 128, 20}) {
    const int64_t n = 20000, d = 300, m = 200;
    const auto X = Gaussian(41, (size_t)(n * d));
    CoresetOptions o;
    o.seed = 9;
    o.projection_dim = pd;
    std::vector<int64_t> sc, sg;
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_OK(GreedyCoreset(X.data(), n, d, m, o, &sc));
    const double tc = Seconds(t0);
    o.backend = BackendKind::kCuda;
    std::vector<int64_t> seen;
    o.progress = [&](int64_t done, int64_t) { seen.push_back(done); };
    t0 = std::chrono::steady_clock::now();
    REQUIRE_OK(GreedyCoreset(X.data(), n, d, m, o, &sg));
    const double tg = Seconds(t0);
    int first_diff = -1;
    for (int64_t i = 0; i < m && first_diff < 0; ++i)
      if (sc[(size_t)i] != sg[(size_t)i]) first_diff = (int)i;
    std::printf("  projection %d: %s (first difference at %d; cpu %.3fs, gpu %.3fs)\n", pd,
                sc == sg ? "identical" : "DIFFERENT", first_diff, tc, tg);
    CHECK(sc == sg);
    CHECK(!seen.empty() && seen.back() == m);
  }
}

LOUPE_TEST_MAIN()
