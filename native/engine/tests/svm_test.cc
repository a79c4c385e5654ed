// Linear SVMs by Pegasos SGD (svm.h): OvO / OvA codings built here, determinism, validation.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include <limits>

#include "loupe/svm.h"
#include "ml/ml_internal.h"
#ifdef LOUPE_HAVE_CUDA
#include "ml/ml_cuda.h"
#endif
#include "test_util.h"

using namespace loupe;

namespace {

// Gaussian blobs: class c has mean mu_c (entries N(0, sep^2)); x = mu_c + N(0, 1) noise, then every
// column standardised over the training set (the statistics are reused for the test set).
struct Blobs {
  int64_t n = 0, d = 0;
  int classes = 0;
  std::vector<float> X;
  std::vector<int> label;
};

void MakeBlobs(uint64_t seed, int64_t n, int64_t d, int classes, double sep, double noise,
               Blobs* train, Blobs* test, int64_t n_test) {
  uint64_t st = ml::StreamState(seed, 77);
  std::vector<double> mu((size_t)(classes * d));
  for (auto& m : mu) {
    double z0, z1;
    ml::GaussianPair(&st, &z0, &z1);
    m = z0 * sep;
  }
  auto fill = [&](Blobs* b, int64_t rows) {
    b->n = rows;
    b->d = d;
    b->classes = classes;
    b->X.resize((size_t)(rows * d));
    b->label.resize((size_t)rows);
    for (int64_t i = 0; i < rows; ++i) {
      const int c = (int)(i % classes);
      b->label[(size_t)i] = c;
      for (int64_t j = 0; j < d; ++j) {
        double z0, z1;
        ml::GaussianPair(&st, &z0, &z1);
        b->X[(size_t)(i * d + j)] = (float)(mu[(size_t)(c * d + j)] + noise * z0);
      }
    }
  };
  fill(train, n);
  fill(test, n_test);
  for (int64_t j = 0; j < d; ++j) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = train->X[(size_t)(i * d + j)];
      s += v;
      s2 += v * v;
    }
    const double mean = s / n;
    const double sd = std::sqrt(std::max(1e-12, s2 / n - mean * mean));
    for (Blobs* b : {train, test})
      for (int64_t i = 0; i < b->n; ++i) {
        float& v = b->X[(size_t)(i * d + j)];
        v = (float)((v - mean) / sd);
      }
  }
}

// One-vs-all: learner c = class c vs the rest.
std::vector<int8_t> OvaTargets(const Blobs& b) {
  std::vector<int8_t> t((size_t)(b.classes * b.n));
  for (int c = 0; c < b.classes; ++c)
    for (int64_t i = 0; i < b.n; ++i) t[(size_t)(c * b.n + i)] = b.label[(size_t)i] == c ? 1 : -1;
  return t;
}
// One-vs-one: learner (a, b), a < b: +1 = a, -1 = b, 0 = other classes.
std::vector<int8_t> OvoTargets(const Blobs& b, int* k) {
  std::vector<int8_t> t;
  *k = 0;
  for (int a = 0; a < b.classes; ++a)
    for (int c = a + 1; c < b.classes; ++c) {
      for (int64_t i = 0; i < b.n; ++i) {
        const int l = b.label[(size_t)i];
        t.push_back(l == a ? 1 : (l == c ? -1 : 0));
      }
      ++*k;
    }
  return t;
}

std::vector<double> Scores(const Blobs& b, const std::vector<float>& w, const std::vector<float>& bias,
                           int k) {
  std::vector<double> s((size_t)(b.n * k));
  for (int64_t i = 0; i < b.n; ++i)
    for (int j = 0; j < k; ++j) {
      double acc = bias[(size_t)j];
      for (int64_t c = 0; c < b.d; ++c)
        acc += (double)w[(size_t)(j * b.d + c)] * b.X[(size_t)(i * b.d + c)];
      s[(size_t)(i * k + j)] = acc;
    }
  return s;
}

double OvaAccuracy(const Blobs& b, const std::vector<float>& w, const std::vector<float>& bias) {
  const auto s = Scores(b, w, bias, b.classes);
  int64_t ok = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    int best = 0;
    for (int c = 1; c < b.classes; ++c)
      if (s[(size_t)(i * b.classes + c)] > s[(size_t)(i * b.classes + best)]) best = c;
    ok += best == b.label[(size_t)i];
  }
  return 100.0 * ok / b.n;
}

double OvoAccuracy(const Blobs& b, const std::vector<float>& w, const std::vector<float>& bias, int k) {
  const auto s = Scores(b, w, bias, k);
  int64_t ok = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    std::vector<int> votes((size_t)b.classes, 0);
    int j = 0;
    for (int a = 0; a < b.classes; ++a)
      for (int c = a + 1; c < b.classes; ++c, ++j) ++votes[(size_t)(s[(size_t)(i * k + j)] > 0 ? a : c)];
    const int best = (int)(std::max_element(votes.begin(), votes.end()) - votes.begin());
    ok += best == b.label[(size_t)i];
  }
  return 100.0 * ok / b.n;
}

SgdSvmOptions BaseOptions() {
  SgdSvmOptions o;
  o.backend = BackendKind::kCpu;
  o.epochs = 10;
  o.seed = 42;
  return o;
}

}  // namespace

TEST_CASE(sample_order_is_a_seeded_permutation) {
  std::vector<int64_t> a, b, c;
  SgdSampleOrder(7, 0, 1000, &a);
  SgdSampleOrder(7, 0, 1000, &b);
  SgdSampleOrder(7, 1, 1000, &c);
  CHECK(a == b);
  CHECK(a != c);
  std::vector<int64_t> s = a;
  std::sort(s.begin(), s.end());
  bool perm = true;
  for (int64_t i = 0; i < 1000; ++i) perm = perm && s[(size_t)i] == i;
  CHECK(perm);
  // Pinned first values: the order is part of the contract (every backend uses it).
  std::vector<int64_t> small;
  SgdSampleOrder(0, 0, 8, &small);
  std::printf("  order(seed 0, epoch 0, n 8) = %lld %lld %lld %lld %lld %lld %lld %lld\n",
              (long long)small[0], (long long)small[1], (long long)small[2], (long long)small[3],
              (long long)small[4], (long long)small[5], (long long)small[6], (long long)small[7]);
  CHECK((small == std::vector<int64_t>{1, 3, 5, 2, 7, 0, 4, 6}));
  SgdSampleOrder(1, 0, 1, &small);
  CHECK(small.size() == 1 && small[0] == 0);
}

TEST_CASE(separable_four_classes_ova_and_ovo_reach_100_percent) {
  Blobs tr, te;
  MakeBlobs(1, 800, 64, 4, 2.0, 1.0, &tr, &te, 400);
  for (SgdSchedule sched : {SgdSchedule::kAveraged, SgdSchedule::kPegasos}) {
    SgdSvmOptions o = BaseOptions();
    o.schedule = sched;
    o.lambda = 1e-2;  // lambda * T large enough for Pegasos to be near the max-margin solution
    o.epochs = 20;
    std::vector<float> w, b;
    auto t = OvaTargets(tr);
    REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 4, o, &w, &b));
    const double a_tr = OvaAccuracy(tr, w, b), a_te = OvaAccuracy(te, w, b);
    std::printf("  OvA %s: train %.2f%% test %.2f%%\n",
                sched == SgdSchedule::kAveraged ? "averaged" : "pegasos", a_tr, a_te);
    CHECK_NEAR(a_tr, 100.0, 1e-9);
    CHECK_NEAR(a_te, 100.0, 1e-9);
    int k = 0;
    auto to = OvoTargets(tr, &k);
    CHECK(k == 6);
    REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, to.data(), k, o, &w, &b));
    const double o_tr = OvoAccuracy(tr, w, b, k), o_te = OvoAccuracy(te, w, b, k);
    std::printf("  OvO %s: train %.2f%% test %.2f%%\n",
                sched == SgdSchedule::kAveraged ? "averaged" : "pegasos", o_tr, o_te);
    CHECK_NEAR(o_tr, 100.0, 1e-9);
    CHECK_NEAR(o_te, 100.0, 1e-9);
  }
}

TEST_CASE(noisy_overlapping_classes_give_sane_accuracy) {
  // Overlapping blobs: the Bayes rate is well below 100%; a linear SVM should get most of it.
  Blobs tr, te;
  MakeBlobs(2, 3000, 32, 5, 0.35, 1.0, &tr, &te, 2000);
  // Nearest-class-mean accuracy on the test set as a yardstick (close to optimal for this data).
  std::vector<double> mean((size_t)(5 * tr.d), 0.0);
  std::vector<int> cnt(5, 0);
  for (int64_t i = 0; i < tr.n; ++i) {
    ++cnt[(size_t)tr.label[(size_t)i]];
    for (int64_t c = 0; c < tr.d; ++c)
      mean[(size_t)(tr.label[(size_t)i] * tr.d + c)] += tr.X[(size_t)(i * tr.d + c)];
  }
  int64_t ok = 0;
  for (int64_t i = 0; i < te.n; ++i) {
    int best = 0;
    double bd = 1e300;
    for (int cl = 0; cl < 5; ++cl) {
      double dd = 0;
      for (int64_t c = 0; c < te.d; ++c) {
        const double df = te.X[(size_t)(i * te.d + c)] - mean[(size_t)(cl * tr.d + c)] / cnt[(size_t)cl];
        dd += df * df;
      }
      if (dd < bd) bd = dd, best = cl;
    }
    ok += best == te.label[(size_t)i];
  }
  const double ncm = 100.0 * ok / te.n;
  SgdSvmOptions o = BaseOptions();
  std::vector<float> w, b;
  auto t = OvaTargets(tr);
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 5, o, &w, &b));
  const double ova = OvaAccuracy(te, w, b);
  int k = 0;
  auto to = OvoTargets(tr, &k);
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, to.data(), k, o, &w, &b));
  const double ovo = OvoAccuracy(te, w, b, k);
  std::printf("  nearest-mean %.2f%%, OvA %.2f%%, OvO %.2f%% (chance 20%%)\n", ncm, ova, ovo);
  CHECK(ova > ncm - 5.0);
  CHECK(ovo > ncm - 5.0);
  CHECK(ova > 40.0);
}

// The regime of CNN features: few rows, many z-scored dims (||x||^2 ~ d), small lambda. Plain Pegasos
// starts with eta_1 = 1/lambda and is still far from the optimum after 20 epochs; the offset schedule
// (eta0 ~ 1/||x||^2) gets a much lower primal objective and a better classifier from the same epochs.
TEST_CASE(offset_schedule_converges_where_plain_pegasos_does_not) {
  Blobs tr, te;
  MakeBlobs(5, 300, 1024, 2, 0.08, 1.0, &tr, &te, 1000);
  auto t = OvaTargets(tr);  // learner 0: class 0 vs class 1
  auto objective = [&](const std::vector<float>& w, const std::vector<float>& b, double lambda) {
    const auto sc = Scores(tr, w, b, 2);
    double w2 = 0, hinge = 0;
    for (int64_t c = 0; c < tr.d; ++c) w2 += (double)w[(size_t)c] * w[(size_t)c];
    for (int64_t i = 0; i < tr.n; ++i) hinge += std::max(0.0, 1.0 - t[(size_t)i] * sc[(size_t)(i * 2)]);
    return 0.5 * lambda * w2 + hinge / (double)tr.n;
  };
  SgdSvmOptions o = BaseOptions();
  o.epochs = 20;
  o.lambda = 1.0 / (10.0 * (double)tr.n);  // C = 10
  std::vector<float> w, b;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 2, o, &w, &b));
  const double plain = objective(w, b, o.lambda), plain_acc = OvaAccuracy(te, w, b);
  o.eta0 = 1.0 / (double)tr.d;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 2, o, &w, &b));
  const double offset = objective(w, b, o.lambda), offset_acc = OvaAccuracy(te, w, b);
  std::printf("  primal objective: plain Pegasos %.4g, offset %.4g; test accuracy %.1f%% vs %.1f%%\n", plain, offset,
              plain_acc, offset_acc);
  CHECK(offset < 0.5 * plain);
  CHECK(offset_acc >= plain_acc);
}

TEST_CASE(same_seed_same_bytes_any_thread_count_and_different_seeds_differ) {
  Blobs tr, te;
  MakeBlobs(3, 600, 40, 3, 0.5, 1.0, &tr, &te, 10);
  int k = 0;
  auto t = OvoTargets(tr, &k);
  auto ta = OvaTargets(tr);
  t.insert(t.end(), ta.begin(), ta.end());  // 3 OvO + 3 OvA learners in one call
  k += 3;
  SgdSvmOptions o = BaseOptions();
  o.epochs = 4;
  std::vector<float> w1, b1, w2, b2, w3, b3, w4, b4;
  o.num_threads = 1;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), k, o, &w1, &b1));
  o.num_threads = 2;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), k, o, &w2, &b2));
  o.num_threads = 5;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), k, o, &w3, &b3));
  CHECK(w1.size() == (size_t)(k * tr.d) && b1.size() == (size_t)k);
  CHECK(std::memcmp(w1.data(), w2.data(), w1.size() * 4) == 0);
  CHECK(std::memcmp(w1.data(), w3.data(), w1.size() * 4) == 0);
  CHECK(std::memcmp(b1.data(), b2.data(), b1.size() * 4) == 0);
  CHECK(std::memcmp(b1.data(), b3.data(), b1.size() * 4) == 0);
  o.seed = 43;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), k, o, &w4, &b4));
  CHECK(std::memcmp(w1.data(), w4.data(), w1.size() * 4) != 0);
  // A learner trained alone gives the same bytes as in the batch.
  o.seed = 42;
  o.num_threads = 1;
  std::vector<float> wl, bl;
  REQUIRE_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data() + 4 * tr.n, 1, o, &wl, &bl));
  CHECK(std::memcmp(wl.data(), w1.data() + 4 * tr.d, (size_t)tr.d * 4) == 0);
  CHECK(bl[0] == b1[4]);
}

TEST_CASE(progress_and_cancel) {
  Blobs tr, te;
  MakeBlobs(4, 200, 16, 2, 1.0, 1.0, &tr, &te, 10);
  auto t = OvaTargets(tr);
  SgdSvmOptions o = BaseOptions();
  o.epochs = 5;
  std::vector<int> seen;
  std::atomic<bool> cancel{false};
  bool cancel_at_2 = true;
  o.progress = [&](int e, int total) {
    seen.push_back(e);
    CHECK(total == 5);
    if (e == 2 && cancel_at_2) cancel = true;
  };
  o.cancel = &cancel;
  std::vector<float> w, b;
  Status s = TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 1, o, &w, &b);
  CHECK(s.code() == StatusCode::kCancelled);
  CHECK((seen == std::vector<int>{1, 2}));
  cancel = false;
  cancel_at_2 = false;
  seen.clear();
  CHECK_OK(TrainLinearSvms(tr.X.data(), tr.n, tr.d, t.data(), 1, o, &w, &b));
  CHECK((seen == std::vector<int>{1, 2, 3, 4, 5}));
}

TEST_CASE(bad_inputs_are_rejected) {
  std::vector<float> X(40, 1.0f), w, b;
  std::vector<int8_t> t = {1, -1, 1, -1, 0, 0, 0, 0, 1, 1, 1, 1};  // learner 1 unused, 2 one-sided
  SgdSvmOptions o = BaseOptions();
  auto code = [&](const Status& s) { return s.code(); };
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, o, &w, &b)) == StatusCode::kOk);
  Status s1 = TrainLinearSvms(X.data(), 4, 10, t.data(), 2, o, &w, &b);
  CHECK(s1.code() == StatusCode::kInvalidArgument);
  CHECK(s1.message().find("learner 1") != std::string::npos);
  Status s2 = TrainLinearSvms(X.data(), 4, 10, t.data() + 4, 2, o, &w, &b);
  CHECK(s2.code() == StatusCode::kInvalidArgument);
  std::vector<int8_t> t3 = {1, -1, 2, -1};
  Status s3 = TrainLinearSvms(X.data(), 4, 10, t3.data(), 1, o, &w, &b);
  CHECK(s3.code() == StatusCode::kInvalidArgument);
  CHECK(s3.message().find("learner 0") != std::string::npos);
  CHECK(code(TrainLinearSvms(X.data(), 0, 10, t.data(), 1, o, &w, &b)) == StatusCode::kInvalidArgument);
  CHECK(code(TrainLinearSvms(X.data(), 4, 0, t.data(), 1, o, &w, &b)) == StatusCode::kInvalidArgument);
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 0, o, &w, &b)) == StatusCode::kInvalidArgument);
  CHECK(code(TrainLinearSvms(nullptr, 4, 10, t.data(), 1, o, &w, &b)) == StatusCode::kInvalidArgument);
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, o, nullptr, &b)) ==
        StatusCode::kInvalidArgument);
  SgdSvmOptions bad = o;
  bad.lambda = 0;
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kInvalidArgument);
  bad = o;
  bad.eta0 = -1.0;
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kInvalidArgument);
  bad.eta0 = std::numeric_limits<double>::infinity();
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kInvalidArgument);
  bad = o;
  bad.epochs = 0;
  CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kInvalidArgument);
  bool have_gpu = false;
#ifdef LOUPE_HAVE_CUDA
  have_gpu = ml::CudaDeviceAvailable(0, nullptr);
#endif
  if (!have_gpu) {  // kCuda without a GPU -> Unavailable; kAuto -> the CPU
    bad = o;
    bad.backend = BackendKind::kCuda;
    CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kUnavailable);
    bad.backend = BackendKind::kAuto;
    CHECK(code(TrainLinearSvms(X.data(), 4, 10, t.data(), 1, bad, &w, &b)) == StatusCode::kOk);
  }
}

LOUPE_TEST_MAIN()
