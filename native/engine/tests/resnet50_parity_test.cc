// Real weights + the reference PNGs: every CPU backend must match the reference outputs
// (README tolerances: softmax 1e-5 abs, logits/avg_pool 1e-4 abs, stage mean/std 1e-4 rel, top-5 equal)
// and give the same answer for an image alone or inside a batch.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine_test_env.h"
#include "json.h"
#include "loupe/session.h"
#include "png_io.h"

using namespace loupe;

namespace {

const char* kImages[3] = {"chelsea", "coffee", "rocket"};
const std::pair<Tap, const char*> kStages[5] = {{Tap::kConv1, "activation"},
                                                {Tap::kRes2c, "activation_9"},
                                                {Tap::kRes3d, "activation_21"},
                                                {Tap::kRes4f, "activation_39"},
                                                {Tap::kRes5c, "activation_48"}};

std::vector<Tap> AllTaps() {
  std::vector<Tap> t;
  for (int i = 0; i < (int)Tap::kCount; ++i) t.push_back((Tap)i);
  return t;
}

// Keras preprocess_input('caffe'): RGB -> BGR, subtract the BGR means, no scaling, NHWC.
std::vector<float> LoadInputsOrSkip(const std::string& dir) {
#ifndef LOUPE_TEST_HAVE_ZLIB
  SKIP("zlib not found at build time: cannot decode the reference PNGs");
#else
  std::vector<float> x;
  for (const char* name : kImages) {
    int w, h;
    std::vector<uint8_t> rgb;
    std::string err = loupe_test::ReadPngRgb(dir + "/" + name + "_224.png", &w, &h, &rgb);
    if (!err.empty() || w != 224 || h != 224) SKIP(std::string("cannot read ") + name + "_224.png: " + err);
    for (size_t i = 0; i < (size_t)w * h; ++i) {
      x.push_back(rgb[i * 3 + 2] - 103.939f);
      x.push_back(rgb[i * 3 + 1] - 116.779f);
      x.push_back(rgb[i * 3 + 0] - 123.68f);
    }
  }
  return x;
#endif
}

struct Expected {
  std::vector<int> top5;
  std::vector<double> avg_pool, logits, softmax;
  double mean[5], std[5];
};

std::vector<double> Numbers(const json::Value* v) {
  std::vector<double> out;
  if (v && v->is_array())
    for (const auto& e : v->array) out.push_back(e.number);
  return out;
}

bool LoadExpected(const std::string& path, Expected* e) {
  std::string text;
  json::Value root;
  if (!internal::ReadWholeFile(path, 64 << 20, &text).ok() || !json::Parse(text, path, &root).ok())
    return false;
  for (const auto& t : root.Find("top5")->array) e->top5.push_back((int)t.Find("index")->number);
  e->avg_pool = Numbers(root.Find("avg_pool"));
  e->logits = Numbers(root.Find("logits"));
  e->softmax = Numbers(root.Find("softmax"));
  const json::Value* ss = root.Find("stage_stats");
  for (int i = 0; i < 5; ++i) {
    const json::Value* s = ss->Find(kStages[i].second);
    if (!s) return false;
    e->mean[i] = s->Find("mean")->number;
    e->std[i] = s->Find("std")->number;
  }
  return e->top5.size() == 5 && e->avg_pool.size() == 2048 && e->logits.size() == 1000 &&
         e->softmax.size() == 1000;
}

std::vector<int> Top5(const float* p) {
  std::vector<int> idx(1000);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int a, int b) { return p[a] > p[b]; });
  idx.resize(5);
  return idx;
}

double MaxAbsDiff(const float* a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// All sessions to check: the reference always, plus the default CPU backend when it differs.
std::vector<std::unique_ptr<Session>> CpuSessions(std::shared_ptr<const ResNet50Model> model) {
  std::vector<std::unique_ptr<Session>> out;
  SessionOptions o;
  o.backend = BackendKind::kCpu;
  std::unique_ptr<Session> s;
  Status st = CreateReferenceSession(model, o, &s);
  CHECK_OK(st);
  if (st.ok()) out.push_back(std::move(s));
  st = CreateSession(model, o, &s);
  CHECK_OK(st);
  if (st.ok() && s->backend_name() != "cpu-reference") out.push_back(std::move(s));
  return out;
}

}  // namespace

TEST_CASE(matches_reference_outputs) {
  auto model = loupe_test::RealModelOrSkip();
  std::string dir = loupe_test::ReferenceDirOrSkip();
  std::vector<float> x = LoadInputsOrSkip(dir);
  Expected exp[3];
  for (int i = 0; i < 3; ++i) {
    bool ok = LoadExpected(dir + "/" + kImages[i] + ".json", &exp[i]);
    CHECK(ok);
    if (!ok) return;
  }
  for (auto& s : CpuSessions(model)) {
    RunRequest req;
    req.input = x.data();
    req.batch = 3;
    req.taps = AllTaps();
    RunResult res;
    REQUIRE_OK(s->Run(req, &res));
    double m_soft = 0, m_logit = 0, m_pool = 0, m_stage = 0;
    for (int i = 0; i < 3; ++i) {
      const float* probs = res.outputs[(int)Tap::kProbabilities].data() + i * 1000;
      CHECK(Top5(probs) == exp[i].top5);
      m_soft = std::max(m_soft, MaxAbsDiff(probs, exp[i].softmax));
      m_logit = std::max(m_logit, MaxAbsDiff(res.outputs[(int)Tap::kFc1000].data() + i * 1000, exp[i].logits));
      m_pool = std::max(m_pool, MaxAbsDiff(res.outputs[(int)Tap::kAvgPool].data() + i * 2048, exp[i].avg_pool));
      for (int k = 0; k < 5; ++k) {
        const int64_t n = TapElements(kStages[k].first);
        const float* a = res.outputs[(int)kStages[k].first].data() + i * n;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < n; ++j) sum += a[j];
        double mean = sum / n;
        for (int64_t j = 0; j < n; ++j) sq += (a[j] - mean) * (a[j] - mean);
        double sd = std::sqrt(sq / n);
        m_stage = std::max({m_stage, std::fabs(mean - exp[i].mean[k]) / std::fabs(exp[i].mean[k]),
                            std::fabs(sd - exp[i].std[k]) / exp[i].std[k]});
      }
    }
    std::printf("  %s: max |softmax| %.3g, |logits| %.3g, |avg_pool| %.3g, stage mean/std rel %.3g\n",
                s->backend_name().c_str(), m_soft, m_logit, m_pool, m_stage);
    CHECK(m_soft <= 1e-5);
    CHECK(m_logit <= 1e-4);
    CHECK(m_pool <= 1e-4);
    CHECK(m_stage <= 1e-4);
  }
}

TEST_CASE(batch_of_one_equals_batch_of_three) {
  auto model = loupe_test::RealModelOrSkip();
  std::string dir = loupe_test::ReferenceDirOrSkip();
  std::vector<float> x = LoadInputsOrSkip(dir);
  const size_t per_image = 224 * 224 * 3;
  for (auto& s : CpuSessions(model)) {
    RunRequest req;
    req.input = x.data();
    req.batch = 3;
    req.taps = AllTaps();
    RunResult all;
    REQUIRE_OK(s->Run(req, &all));
    double worst = 0;
    for (int i = 0; i < 3; ++i) {
      RunRequest one = req;
      one.input = x.data() + i * per_image;
      one.batch = 1;
      RunResult r;
      REQUIRE_OK(s->Run(one, &r));
      for (size_t t = 0; t < req.taps.size(); ++t) {
        const int64_t n = TapElements(req.taps[t]);
        const float* a = all.outputs[t].data() + i * n;
        double scale = 0, diff = 0;
        for (int64_t j = 0; j < n; ++j) {
          scale = std::max(scale, (double)std::fabs(a[j]));
          diff = std::max(diff, (double)std::fabs(a[j] - r.outputs[t][j]));
        }
        worst = std::max(worst, diff / std::max(scale, 1.0));
      }
    }
    std::printf("  %s: batch 1 vs 3, max diff relative to tap scale %.3g\n", s->backend_name().c_str(), worst);
    CHECK(worst <= 1e-5);
  }
}

LOUPE_TEST_MAIN()
