// Backends agree with each other on seeded weights (no real weights needed): oneDNN vs the reference
// on every tap, batch 1 and 3; cancellation; unavailable backends; concurrent Run() calls.
#include <algorithm>
#include <cmath>
#include <thread>

#include "engine_test_env.h"
#include "loupe/session.h"

using namespace loupe;

namespace {

std::shared_ptr<const ResNet50Model> SeededModel() {
  static std::shared_ptr<const ResNet50Model> model;
  if (!model) {
    WeightStore ws;
    Status st = MakeSeededResNet50Weights(1, &ws);
    if (st.ok()) st = BuildResNet50(ws, &model);
    if (!st.ok()) {
      std::printf("  seeded model: %s\n", st.ToString().c_str());
      std::abort();
    }
  }
  return model;
}

// Caffe-range inputs (BGR minus the means lies in about [-124, 152]), deterministic.
std::vector<float> Inputs(int batch, uint64_t seed) {
  std::vector<float> x((size_t)batch * kInputSize * kInputSize * kInputChannels);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& v : x) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    v = (float)((s >> 40) % 27600) / 100.0f - 124.0f;
  }
  // Smooth it a little so the image has structure rather than pure noise.
  for (size_t i = 3; i < x.size(); ++i) x[i] = 0.7f * x[i - 3] + 0.3f * x[i];
  return x;
}

std::vector<Tap> AllTaps() {
  std::vector<Tap> t;
  for (int i = 0; i < (int)Tap::kCount; ++i) t.push_back((Tap)i);
  return t;
}

std::unique_ptr<Session> Reference(int threads = 0) {
  SessionOptions o;
  o.num_threads = threads;
  std::unique_ptr<Session> s;
  Status st = CreateReferenceSession(SeededModel(), o, &s);
  CHECK_OK(st);
  return s;
}

// The default CPU backend, or SKIP when it is the reference itself (no oneDNN in this build).
std::unique_ptr<Session> FastCpuOrSkip(int threads = 0) {
  SessionOptions o;
  o.backend = BackendKind::kCpu;
  o.num_threads = threads;
  std::unique_ptr<Session> s;
  Status st = CreateSession(SeededModel(), o, &s);
  CHECK_OK(st);
  if (!st.ok()) SKIP("no CPU session");
  if (s->backend_name() == "cpu-reference") SKIP("built without oneDNN: only the reference CPU backend exists");
  return s;
}

Status RunAll(Session& s, const std::vector<float>& x, int batch, RunResult* r) {
  RunRequest req;
  req.input = x.data();
  req.batch = batch;
  req.taps = AllTaps();
  return s.Run(req, r);
}

// max |a - b| / max(max |a|, 1): the error relative to the tap's scale.
double ScaledDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, (double)std::fabs(a[i]));
    diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE(seeded_activations_stay_order_one) {
  auto ref = Reference();
  std::vector<float> x = Inputs(1, 11);
  RunResult r;
  REQUIRE_OK(RunAll(*ref, x, 1, &r));
  for (int t = 0; t < (int)Tap::kCount; ++t) {
    double sum = 0, sq = 0;
    const auto& v = r.outputs[t];
    for (float f : v) sum += f;
    double mean = sum / v.size();
    for (float f : v) sq += (f - mean) * (f - mean);
    double sd = std::sqrt(sq / v.size());
    std::printf("  %-13s mean %8.4f std %8.4f\n", TapName((Tap)t), mean, sd);
    if (t <= (int)Tap::kFc1000) CHECK(sd >= 0.1 && sd <= 10);
  }
  double psum = 0;
  for (float p : r.outputs[(int)Tap::kProbabilities]) psum += p;
  CHECK_NEAR(psum, 1.0, 1e-5);
}

TEST_CASE(onednn_matches_reference_on_all_taps) {
  auto fast = FastCpuOrSkip();
  auto ref = Reference();
  for (int batch : {1, 3}) {
    std::vector<float> x = Inputs(batch, 100 + batch);
    RunResult a, b;
    REQUIRE_OK(RunAll(*ref, x, batch, &a));
    REQUIRE_OK(RunAll(*fast, x, batch, &b));
    for (int t = 0; t < (int)Tap::kCount; ++t) {
      CHECK(a.outputs[t].size() == (size_t)batch * TapElements((Tap)t) && b.outputs[t].size() == a.outputs[t].size());
      double d = ScaledDiff(a.outputs[t], b.outputs[t]);
      std::printf("  batch %d %-13s scaled max diff %.3g\n", batch, TapName((Tap)t), d);
      CHECK(d <= 2e-5);
    }
  }
}

TEST_CASE(tap_subsets_match_full_runs) {
  for (bool fast : {false, true}) {
    std::unique_ptr<Session> s;
    if (fast) {
      SessionOptions o;
      o.backend = BackendKind::kCpu;
      REQUIRE_OK(CreateSession(SeededModel(), o, &s));
    } else {
      s = Reference();
    }
    std::vector<float> x = Inputs(2, 5);
    RunResult all, some;
    REQUIRE_OK(RunAll(*s, x, 2, &all));
    RunRequest req;
    req.input = x.data();
    req.batch = 2;
    req.taps = {Tap::kRes3d, Tap::kConv1, Tap::kRes3d};  // order kept, repeats allowed; stops at res3d
    REQUIRE_OK(s->Run(req, &some));
    CHECK(some.outputs.size() == 3);
    CHECK(some.outputs[0] == all.outputs[(int)Tap::kRes3d]);
    CHECK(some.outputs[1] == all.outputs[(int)Tap::kConv1]);
    CHECK(some.outputs[2] == all.outputs[(int)Tap::kRes3d]);
    req.taps = {};
    REQUIRE_OK(s->Run(req, &some));
    CHECK(some.outputs.empty());
  }
}

TEST_CASE(cancel_flag_gives_cancelled) {
  std::atomic<bool> cancel{true};
  std::vector<float> x = Inputs(1, 1);
  RunRequest req;
  req.input = x.data();
  req.batch = 1;
  req.taps = {Tap::kProbabilities};
  req.cancel = &cancel;
  RunResult r;
  CHECK(Reference()->Run(req, &r).code() == StatusCode::kCancelled);
  SessionOptions o;
  o.backend = BackendKind::kCpu;
  std::unique_ptr<Session> s;
  REQUIRE_OK(CreateSession(SeededModel(), o, &s));
  CHECK(s->Run(req, &r).code() == StatusCode::kCancelled);
  // Cancelling mid-run (from another thread) also ends in kCancelled, and the session stays usable.
  cancel = false;
  std::thread t([&] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); cancel = true; });
  req.batch = 1;
  Status st = s->Run(req, &r);
  t.join();
  CHECK(st.ok() || st.code() == StatusCode::kCancelled);
  cancel = false;
  CHECK_OK(s->Run(req, &r));
}

TEST_CASE(bad_requests_and_unavailable_backends) {
  BackendKind k;
  CHECK(!BackendKindFromName("tpu", &k));
  CHECK(BackendKindFromName("cuda", &k) && k == BackendKind::kCuda);
  Precision p;
  CHECK(PrecisionFromName("bf16", &p) && p == Precision::kBf16 && !PrecisionFromName("int4", &p));
  Tap tap;
  CHECK(TapFromName("res4f", &tap) && tap == Tap::kRes4f && !TapFromName("res4e", &tap));
  CHECK(TapElements(Tap::kRes5c) == 7 * 7 * 2048 && TapShape(Tap::kFc1000)[2] == 1000);

  std::unique_ptr<Session> s;
  SessionOptions o;
  o.backend = BackendKind::kCuda;
  BuildInfo info = GetBuildInfo();
  std::printf("  build: onednn=%d cuda=%d usable=%d (%s)\n", info.has_onednn, info.has_cuda, info.cuda_usable,
              info.cuda_detail.c_str());
  if (!info.cuda_usable) {
    Status st = CreateSession(SeededModel(), o, &s);
    std::printf("  %s\n", st.ToString().c_str());
    CHECK(st.code() == StatusCode::kUnavailable);
  }
  o.backend = (BackendKind)99;  // not a backend at all
  CHECK(CreateSession(SeededModel(), o, &s).code() == StatusCode::kUnavailable);
  o.backend = BackendKind::kCpu;
  o.precision = Precision::kBf16;
  CHECK(CreateSession(SeededModel(), o, &s).code() == StatusCode::kInvalidArgument);
  o.precision = Precision::kFp32;
  o.num_threads = -1;
  CHECK(CreateSession(SeededModel(), o, &s).code() == StatusCode::kInvalidArgument);
  CHECK(CreateSession(nullptr, SessionOptions(), &s).code() == StatusCode::kInvalidArgument);
  o.num_threads = 0;
  REQUIRE_OK(CreateSession(SeededModel(), o, &s));
  RunRequest req;
  RunResult r;
  req.batch = 1;
  CHECK(s->Run(req, &r).code() == StatusCode::kInvalidArgument);  // null input
  std::vector<float> x = Inputs(1, 2);
  req.input = x.data();
  req.batch = 0;
  CHECK(s->Run(req, &r).code() == StatusCode::kInvalidArgument);
  req.batch = 1;
  req.taps = {(Tap)42};
  CHECK(s->Run(req, &r).code() == StatusCode::kInvalidArgument);
}

TEST_CASE(concurrent_runs_are_serialised_and_correct) {
  for (bool fast : {false, true}) {
    std::unique_ptr<Session> s;
    if (fast) {
      SessionOptions o;
      o.backend = BackendKind::kCpu;
      REQUIRE_OK(CreateSession(SeededModel(), o, &s));
    } else {
      s = Reference();
    }
    const int kThreads = 4;
    std::vector<std::vector<float>> inputs;
    std::vector<RunResult> expected(kThreads), got(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      inputs.push_back(Inputs(1 + i % 2, 40 + i));
      REQUIRE_OK(RunAll(*s, inputs[i], 1 + i % 2, &expected[i]));
    }
    std::vector<Status> st(kThreads);
    std::vector<std::thread> th;
    for (int i = 0; i < kThreads; ++i)
      th.emplace_back([&, i] { st[i] = RunAll(*s, inputs[i], 1 + i % 2, &got[i]); });
    for (auto& t : th) t.join();
    for (int i = 0; i < kThreads; ++i) {
      CHECK_OK(st[i]);
      for (int t = 0; t < (int)Tap::kCount && st[i].ok(); ++t)
        CHECK(ScaledDiff(expected[i].outputs[t], got[i].outputs[t]) <= 1e-6);
    }
    std::printf("  %s: %d concurrent runs OK\n", s->backend_name().c_str(), kThreads);
  }
}

LOUPE_TEST_MAIN()
