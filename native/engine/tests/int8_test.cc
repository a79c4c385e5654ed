// INT8 (oneDNN CPU backend, loupe/quantization.h): calibration determinism and range selection, the
// int8 session against the fp32 one on seeded weights (no real weights needed) and on the real weights
// with the reference images, calibration validation, and the option plumbing.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine_test_env.h"
#include "loupe/quantization.h"
#include "loupe/session.h"
#include "png_io.h"

using namespace loupe;

namespace {

std::shared_ptr<const ResNet50Model> SeededModel() {
  static std::shared_ptr<const ResNet50Model> model;
  if (!model) {
    WeightStore ws;
    Status st = MakeSeededResNet50Weights(3, &ws);
    if (st.ok()) st = BuildResNet50(ws, &model);
    if (!st.ok()) {
      std::printf("  seeded model: %s\n", st.ToString().c_str());
      std::abort();
    }
  }
  return model;
}

constexpr size_t kImage = (size_t)kInputSize * kInputSize * kInputChannels;

// Caffe-range smooth noise images (as backend_consistency_test), deterministic.
std::vector<float> Inputs(int batch, uint64_t seed) {
  std::vector<float> x((size_t)batch * kImage);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& v : x) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    v = (float)((s >> 40) % 27600) / 100.0f - 124.0f;
  }
  for (size_t i = 3; i < x.size(); ++i) x[i] = 0.7f * x[i - 3] + 0.3f * x[i];
  return x;
}

std::vector<Tap> AllTaps() {
  std::vector<Tap> t;
  for (int i = 0; i < (int)Tap::kCount; ++i) t.push_back((Tap)i);
  return t;
}

bool HaveOneDnn() { return GetBuildInfo().has_onednn; }

std::unique_ptr<Int8Calibrator> CalibratorOrSkip(std::shared_ptr<const ResNet50Model> m, int threads = 0) {
  if (!HaveOneDnn()) SKIP("built without oneDNN: no int8");
  std::unique_ptr<Int8Calibrator> c;
  Status st = CreateInt8Calibrator(std::move(m), threads, &c);
  CHECK_OK(st);
  if (!st.ok()) SKIP("no calibrator");
  return c;
}

std::shared_ptr<const Int8Calibration> Compute(const Int8Calibrator& c, CalibrationMethod m) {
  auto out = std::make_shared<Int8Calibration>();
  CalibrationOptions o;
  o.method = m;
  CHECK_OK(c.Compute(o, out.get()));
  return out;
}

std::unique_ptr<Session> Int8Session(std::shared_ptr<const ResNet50Model> m,
                                     std::shared_ptr<const Int8Calibration> c, int threads = 0) {
  SessionOptions o;
  o.backend = BackendKind::kCpu;
  o.precision = Precision::kInt8;
  o.int8_calibration = std::move(c);
  o.num_threads = threads;
  std::unique_ptr<Session> s;
  CHECK_OK(CreateSession(std::move(m), o, &s));
  return s;
}

std::unique_ptr<Session> Fp32Session(std::shared_ptr<const ResNet50Model> m) {
  SessionOptions o;
  o.backend = BackendKind::kCpu;
  std::unique_ptr<Session> s;
  CHECK_OK(CreateSession(std::move(m), o, &s));
  return s;
}

Status RunTaps(Session& s, const float* x, int batch, RunResult* r) {
  RunRequest req;
  req.input = x;
  req.batch = batch;
  req.taps = AllTaps();
  return s.Run(req, r);
}

double Cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
  return aa == 0 && bb == 0 ? 1.0 : ab / std::sqrt(aa * bb);
}

std::vector<int> TopK(const float* p, int k) {
  std::vector<int> idx(1000);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return p[a] > p[b]; });
  idx.resize(k);
  return idx;
}

}  // namespace

TEST_CASE(names_validation_and_options) {
  Precision p;
  CHECK(PrecisionFromName("int8", &p) && p == Precision::kInt8 && std::string(PrecisionName(p)) == "int8");
  CalibrationMethod m;
  CHECK(CalibrationMethodFromName("mse", &m) && m == CalibrationMethod::kMse);
  CHECK(CalibrationMethodFromName("percentile", &m) && m == CalibrationMethod::kPercentile);
  CHECK(!CalibrationMethodFromName("kl", &m));
  const auto& names = Int8TensorNames();
  CHECK(names.size() == 3 + 16 * 4 + 4);
  CHECK(names.front() == "input" && names[3] == "res2a_branch2a" && names.back() == "res5c");
  CHECK(Int8TensorIsSigned("res3a_branch1") && Int8TensorIsSigned("res4f_branch2c") && Int8TensorIsSigned("input"));
  CHECK(!Int8TensorIsSigned("res4f") && !Int8TensorIsSigned("pool1") && !Int8TensorIsSigned("res2b_branch2b"));
  CHECK(Int8TensorScale("res2a", 2.55f) == 2.55f / 255.f && Int8TensorScale("res2a_branch1", 1.27f) == 1.27f / 127.f);

  auto model = SeededModel();
  Int8Calibration c;
  for (const auto& n : names) c.ranges[n] = 1.f;
  CHECK_OK(ValidateInt8Calibration(c, *model));
  c.weights_hash = model->weights_hash;
  CHECK_OK(ValidateInt8Calibration(c, *model));
  Int8Calibration bad = c;
  bad.weights_hash = "0123";
  CHECK(ValidateInt8Calibration(bad, *model).code() == StatusCode::kInvalidArgument);
  bad = c;
  bad.ranges.erase("res3b");
  Status st = ValidateInt8Calibration(bad, *model);
  CHECK(st.code() == StatusCode::kInvalidArgument && st.message().find("res3b") != std::string::npos);
  bad = c;
  bad.ranges["res9z"] = 1.f;
  CHECK(ValidateInt8Calibration(bad, *model).code() == StatusCode::kInvalidArgument);
  for (float v : {0.f, -1.f, NAN, INFINITY}) {
    bad = c;
    bad.ranges["res4a_branch2b"] = v;
    CHECK(ValidateInt8Calibration(bad, *model).code() == StatusCode::kInvalidArgument);
  }

  // int8 needs a calibration; CUDA refuses int8; auto picks the CPU for it.
  std::unique_ptr<Session> s;
  SessionOptions o;
  o.precision = Precision::kInt8;
  o.backend = BackendKind::kCpu;
  if (!HaveOneDnn()) {
    o.int8_calibration = std::make_shared<Int8Calibration>(c);
    CHECK(CreateSession(model, o, &s).code() == StatusCode::kUnavailable);
    SKIP("built without oneDNN: no int8 sessions");
  }
  CHECK(CreateSession(model, o, &s).code() == StatusCode::kInvalidArgument);
  o.int8_calibration = std::make_shared<Int8Calibration>(bad);
  CHECK(CreateSession(model, o, &s).code() == StatusCode::kInvalidArgument);
  o.int8_calibration = std::make_shared<Int8Calibration>(c);
  o.backend = BackendKind::kCuda;
  CHECK(CreateSession(model, o, &s).code() == StatusCode::kInvalidArgument);
  o.backend = BackendKind::kAuto;
  REQUIRE_OK(CreateSession(model, o, &s));
  CHECK(s->backend_name() == "cpu-onednn" && s->precision() == Precision::kInt8);
  const std::string k = s->kernel_info();
  std::printf("  kernels: %s\n", k.c_str());
  CHECK(k.find("int8 ") == 0);
  BuildInfo bi = GetBuildInfo();
  std::printf("  oneDNN %s, ISA %s, int8 kernel %s, fp32 kernel %s\n", bi.onednn_version.c_str(),
              bi.onednn_isa.c_str(), bi.onednn_int8_kernel.c_str(), bi.onednn_fp32_kernel.c_str());
  CHECK(!bi.onednn_version.empty() && !bi.onednn_isa.empty() && !bi.onednn_int8_kernel.empty());
  // Reduced float precisions stay CUDA-only.
  o.backend = BackendKind::kCpu;
  o.precision = Precision::kBf16;
  CHECK(CreateSession(model, o, &s).code() == StatusCode::kInvalidArgument);
}

TEST_CASE(range_selection_from_histograms) {
  using internal::RangeFromHistogram;
  CalibrationOptions o;
  // Uniform |x| over [0, 1) in 1000 of 1024 bins of [0, 1.024): max ~1, percentile 50 ~0.5, MSE ~max.
  std::vector<uint64_t> h(1024, 0);
  for (int j = 0; j < 1000; ++j) h[j] = 100;
  o.method = CalibrationMethod::kMax;
  CHECK_NEAR(RangeFromHistogram(h, 1.024, 0, false, o), 1.0, 1e-6);
  o.method = CalibrationMethod::kPercentile;
  o.percentile = 50;
  CHECK_NEAR(RangeFromHistogram(h, 1.024, 0, false, o), 0.5, 1e-3);
  o.percentile = 100;
  CHECK_NEAR(RangeFromHistogram(h, 1.024, 0, false, o), 1.0, 1e-6);
  o.method = CalibrationMethod::kMse;
  CHECK(RangeFromHistogram(h, 1.024, 0, false, o) >= 0.98);  // clipping a uniform tail never pays
  // A long sparse tail (60 values beyond the bulk of 25.6M): max keeps all of it, MSE clips part of it
  // (a finer step for the bulk against the clipping error of the tail).
  std::vector<uint64_t> t(4096, 0);
  for (int j = 0; j < 256; ++j) t[j] = 100000;
  for (int j = 256; j < 4096; j += 64) t[j] = 1;
  o.method = CalibrationMethod::kMse;
  const float mse = RangeFromHistogram(t, 4096.0, 0, false, o);
  o.method = CalibrationMethod::kMax;
  const float mx = RangeFromHistogram(t, 4096.0, 0, false, o);
  std::printf("  tail: mse %.1f, max %.1f\n", mse, mx);
  CHECK(mx > 4000 && mse < 0.5 * mx && mse > 256);
  // Exact zeros: all-zero tensors get range 1; zeros count in the percentile.
  std::vector<uint64_t> z(16, 0);
  z[0] = 10;
  CHECK(RangeFromHistogram(z, 1.0, 10, false, o) == 1.f);
  z[8] = 10;  // half zeros, half at ~0.53
  o.method = CalibrationMethod::kPercentile;
  o.percentile = 40;
  CHECK(RangeFromHistogram(z, 1.0, 10, false, o) <= 1.0 / 16);
  o.percentile = 90;
  CHECK_NEAR(RangeFromHistogram(z, 1.0, 10, false, o), 0.5 + 0.8 / 16, 1e-6);
}

TEST_CASE(calibration_is_deterministic) {
  auto model = SeededModel();
  const std::vector<float> x = Inputs(4, 11);
  auto a = CalibratorOrSkip(model);
  CHECK(a->images() == 0);
  Int8Calibration none;
  CHECK(a->Compute(CalibrationOptions(), &none).code() == StatusCode::kInvalidArgument);
  REQUIRE_OK(a->Add(x.data(), 4));
  CHECK(a->images() == 4);
  // Same images again, another calibrator: bit-identical ranges for every method.
  auto b = CalibratorOrSkip(model);
  REQUIRE_OK(b->Add(x.data(), 4));
  for (CalibrationMethod m : {CalibrationMethod::kPercentile, CalibrationMethod::kMse, CalibrationMethod::kMax}) {
    auto ca = Compute(*a, m), cb = Compute(*b, m), ca2 = Compute(*a, m);
    CHECK(ca->ranges == cb->ranges && ca->ranges == ca2->ranges);
    CHECK(ca->weights_hash == model->weights_hash && ca->method == CalibrationMethodName(m));
    CHECK_OK(ValidateInt8Calibration(*ca, *model));
  }
  // Other batch splits and orders of the same images: the histograms are exact integer counts, so only
  // fp32 differences between batch sizes (last bits, in other kernels' summation orders) can move a value
  // across a bin edge. Measured: identical here; allowed: 0.1% per range.
  auto c = CalibratorOrSkip(model, 1);
  for (int i : {3, 1, 0, 2}) REQUIRE_OK(c->Add(x.data() + i * kImage, 1));
  auto d = CalibratorOrSkip(model);
  REQUIRE_OK(d->Add(x.data() + 2 * kImage, 2));
  REQUIRE_OK(d->Add(x.data(), 2));
  for (CalibrationMethod m : {CalibrationMethod::kPercentile, CalibrationMethod::kMse, CalibrationMethod::kMax}) {
    auto ca = Compute(*a, m);
    for (const Int8Calibrator* other : {c.get(), d.get()}) {
      auto co = Compute(*other, m);
      int differ = 0;
      double worst = 0;
      for (const auto& e : ca->ranges) {
        const double r = std::fabs(co->ranges.at(e.first) / e.second - 1.0);
        differ += r > 0;
        worst = std::max(worst, r);
      }
      std::printf("  %s, other split: %d of %zu ranges differ, worst by %.2g\n", CalibrationMethodName(m), differ,
                  ca->ranges.size(), worst);
      CHECK(worst <= 1e-3);
    }
  }
  // A non-finite input is refused and leaves the calibrator as it was.
  std::vector<float> bad = Inputs(1, 5);
  bad[1234] = NAN;
  auto before = Compute(*a, CalibrationMethod::kMse);
  CHECK(a->Add(bad.data(), 1).code() == StatusCode::kInvalidArgument);
  CHECK(a->images() == 4 && Compute(*a, CalibrationMethod::kMse)->ranges == before->ranges);
  // Cancelled: nothing counted.
  std::atomic<bool> cancel{true};
  CHECK(a->Add(x.data(), 1, &cancel).code() == StatusCode::kCancelled && a->images() == 4);
}

TEST_CASE(int8_session_tracks_fp32_on_seeded_weights) {
  auto model = SeededModel();
  auto cal = CalibratorOrSkip(model);
  const std::vector<float> calib_images = Inputs(4, 21), x = Inputs(3, 22);
  REQUIRE_OK(cal->Add(calib_images.data(), 4));
  auto c = Compute(*cal, CalibrationMethod::kMse);
  auto q = Int8Session(model, c);
  auto f = Fp32Session(model);
  RunResult rq, rf;
  REQUIRE_OK(RunTaps(*q, x.data(), 3, &rq));
  REQUIRE_OK(RunTaps(*f, x.data(), 3, &rf));
  // Every tap is float32 in the fp32 session's layout and close to it. Thresholds: measured minimum
  // cosine over these images (in brackets in the log) less a margin.
  const double min_cos[(int)Tap::kCount] = {0.9999, 0.999, 0.995, 0.99, 0.99, 0.99, 0.99, 0.99};
  for (int t = 0; t < (int)Tap::kCount; ++t) {
    const size_t n = (size_t)TapElements((Tap)t);
    CHECK(rq.outputs[t].size() == 3 * n);
    double worst = 1;
    for (int i = 0; i < 3; ++i) worst = std::min(worst, Cosine(&rq.outputs[t][i * n], &rf.outputs[t][i * n], n));
    std::printf("  %-13s cosine int8 vs fp32 >= %.6f\n", TapName((Tap)t), worst);
    CHECK(worst >= min_cos[t]);
  }
  // Same calibration (copied, as a caller would store and reload it): the same outputs, bit for bit.
  auto q2 = Int8Session(model, std::make_shared<Int8Calibration>(*c));
  RunResult rq2;
  REQUIRE_OK(RunTaps(*q2, x.data(), 3, &rq2));
  for (int t = 0; t < (int)Tap::kCount; ++t) CHECK(rq.outputs[t] == rq2.outputs[t]);
  // An image alone or inside a batch: the integer part is exact; fp32 conv1 may differ in its last bits
  // between batch sizes and flip a rounding, so compare by cosine.
  RunResult one;
  REQUIRE_OK(RunTaps(*q, x.data() + kImage, 1, &one));
  double worst = 1;
  for (int t = 0; t < (int)Tap::kCount; ++t) {
    const size_t n = (size_t)TapElements((Tap)t);
    worst = std::min(worst, Cosine(&rq.outputs[t][n], one.outputs[t].data(), n));
  }
  std::printf("  batch 1 vs 3: min cosine %.8f\n", worst);
  CHECK(worst >= 0.99999);
}

namespace {

// Keras preprocess_input('caffe') of a 224x224 PNG, or SKIP.
void AppendPngOrSkip(const std::string& path, std::vector<float>* x) {
#ifndef LOUPE_TEST_HAVE_ZLIB
  SKIP("zlib not found at build time: cannot decode PNGs");
#else
  int w, h;
  std::vector<uint8_t> rgb;
  std::string err = loupe_test::ReadPngRgb(path, &w, &h, &rgb);
  if (!err.empty() || w != 224 || h != 224) SKIP("cannot read " + path + ": " + err);
  for (size_t i = 0; i < (size_t)w * h; ++i) {
    x->push_back(rgb[i * 3 + 2] - 103.939f);
    x->push_back(rgb[i * 3 + 1] - 116.779f);
    x->push_back(rgb[i * 3 + 0] - 123.68f);
  }
#endif
}

}  // namespace

// Real weights, the three reference images. Calibrated (MSE) on them plus the CLI's bundled sample image
// (what `npm run bench` does). Tolerances from measurements (docs/benchmarks/int8.md): fc1000 cosine
// to fp32 0.998-0.999 on these images (0.990-0.999 over 344 held-out industrial images); top-1 equal on
// all three; top-5 sets may swap one near-tie (rocket's 4th/5th are 0.047 apart in logits).
TEST_CASE(int8_matches_fp32_on_the_reference_images) {
  auto model = loupe_test::RealModelOrSkip();
  std::string dir = loupe_test::ReferenceDirOrSkip();
  std::vector<float> x;
  for (const char* n : {"chelsea", "coffee", "rocket"}) AppendPngOrSkip(dir + "/" + n + "_224.png", &x);
  std::vector<float> calib_images = x;
  const std::string sample = loupe_test::Env("LOUPE_REPO_DIR") + "/apps/cli/assets/sample.png";
  if (loupe_test::FileExists(sample)) AppendPngOrSkip(sample, &calib_images);
  auto cal = CalibratorOrSkip(model);
  REQUIRE_OK(cal->Add(calib_images.data(), (int)(calib_images.size() / kImage)));
  auto q = Int8Session(model, Compute(*cal, CalibrationMethod::kMse));
  auto f = Fp32Session(model);
  RunResult rq, rf;
  REQUIRE_OK(RunTaps(*q, x.data(), 3, &rq));
  REQUIRE_OK(RunTaps(*f, x.data(), 3, &rf));
  for (int i = 0; i < 3; ++i) {
    const float* lq = &rq.outputs[(int)Tap::kFc1000][i * 1000];
    const float* lf = &rf.outputs[(int)Tap::kFc1000][i * 1000];
    const double cos = Cosine(lq, lf, 1000);
    const double pool = Cosine(&rq.outputs[(int)Tap::kAvgPool][i * 2048], &rf.outputs[(int)Tap::kAvgPool][i * 2048], 2048);
    const auto tq = TopK(lq, 5), tf = TopK(lf, 5);
    int overlap = 0;
    for (int k : tf) overlap += std::count(tq.begin(), tq.end(), k) > 0;
    std::printf("  image %d: fc1000 cosine %.5f, avg_pool cosine %.5f, top-1 %d vs %d, top-5 overlap %d/5\n", i, cos,
                pool, tq[0], tf[0], overlap);
    CHECK(cos >= 0.995);
    CHECK(pool >= 0.99);
    CHECK(tq[0] == tf[0]);
    CHECK(overlap >= 4);
  }
}

LOUPE_TEST_MAIN()
