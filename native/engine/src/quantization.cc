// The int8 scheme's tensor names, weight quantization, calibration histograms and range selection.
#include "loupe/quantization.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include "backends.h"

namespace loupe {

namespace {

std::vector<std::string> MakeNames() {
  std::vector<std::string> v = {"input", "conv1", "pool1"};
  const int blocks_per_stage[4] = {3, 4, 6, 3};
  for (int s = 0; s < 4; ++s)
    for (int b = 0; b < blocks_per_stage[s]; ++b) {
      const std::string id = "res" + std::to_string(s + 2) + std::string(1, (char)('a' + b));
      v.push_back(id + "_branch2a");
      v.push_back(id + "_branch2b");
      v.push_back(id + "_branch2c");
      if (b == 0) v.push_back(id + "_branch1");
      v.push_back(id);
    }
  return v;
}

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

const std::vector<std::string>& Int8TensorNames() {
  static const std::vector<std::string> names = MakeNames();
  return names;
}

bool Int8TensorIsSigned(const std::string& name) {
  return name == "input" || EndsWith(name, "_branch2c") || EndsWith(name, "_branch1");
}

float Int8TensorScale(const std::string& name, float range) {
  return range / (Int8TensorIsSigned(name) ? 127.f : 255.f);
}

Status ValidateInt8Calibration(const Int8Calibration& c, const ResNet50Model& model) {
  if (!c.weights_hash.empty() && !model.weights_hash.empty() && c.weights_hash != model.weights_hash)
    return Status(StatusCode::kInvalidArgument,
                  "int8 calibration: made for weights " + c.weights_hash + ", the model's are " +
                      model.weights_hash);
  const std::vector<std::string>& names = Int8TensorNames();
  const std::set<std::string> known(names.begin(), names.end());
  for (const auto& e : c.ranges)
    if (!known.count(e.first))
      return Status(StatusCode::kInvalidArgument, "int8 calibration: unknown tensor '" + e.first + "'");
  for (const auto& n : names) {
    auto it = c.ranges.find(n);
    if (it == c.ranges.end())
      return Status(StatusCode::kInvalidArgument, "int8 calibration: no range for tensor '" + n + "'");
    const float r = it->second;
    if (!(std::isfinite(r) && r > 0.f && r < 1e30f))
      return Status(StatusCode::kInvalidArgument,
                    "int8 calibration: the range of '" + n + "' must be finite and > 0, got " + std::to_string(r));
  }
  return Status::Ok();
}

const char* CalibrationMethodName(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kPercentile: return "percentile";
    case CalibrationMethod::kMse: return "mse";
    case CalibrationMethod::kMax: return "max";
  }
  return "?";
}

bool CalibrationMethodFromName(const std::string& name, CalibrationMethod* out) {
  for (CalibrationMethod m : {CalibrationMethod::kPercentile, CalibrationMethod::kMse, CalibrationMethod::kMax})
    if (name == CalibrationMethodName(m)) {
      *out = m;
      return true;
    }
  return false;
}

namespace internal {

void QuantizeConv(const FoldedConv& cv, float src_scale, QuantizedConv* out) {
  const int co = cv.cout;
  std::vector<float> amax(co, 0.f);
  for (size_t i = 0; i < cv.w_hwio.size(); ++i)
    amax[i % co] = std::max(amax[i % co], std::fabs(cv.w_hwio[i]));
  out->w_scale.resize(co);
  for (int c = 0; c < co; ++c) out->w_scale[c] = amax[c] > 0.f ? amax[c] / 127.f : 1.f;
  out->w_hwio.resize(cv.w_hwio.size());
  for (size_t i = 0; i < cv.w_hwio.size(); ++i) {
    const float q = std::nearbyint(cv.w_hwio[i] / out->w_scale[i % co]);
    out->w_hwio[i] = (int8_t)std::min(127.f, std::max(-127.f, q));
  }
  out->bias.resize(co);
  for (int c = 0; c < co; ++c) {
    const float bias_scale = src_scale * out->w_scale[c];
    const double q = std::nearbyint((double)cv.bias[c] / (double)bias_scale);
    out->bias[c] = (int32_t)std::min(2147483647.0, std::max(-2147483648.0, q));
  }
}

namespace {

// ∫_0^x e(t)^2 dt, e = the rounding error to a grid of step d (a sawtooth of period d).
double SawtoothIntegral(double x, double d) {
  const double k = std::floor(x / d);
  const double r = x - k * d;
  const double d3 = d * d * d;
  double g;
  if (r <= 0.5 * d) {
    g = r * r * r / 3.0;
  } else {
    const double u = r - d;
    g = d3 / 24.0 + (u * u * u + d3 / 8.0) / 3.0;
  }
  return k * d3 / 12.0 + g;
}

// Expected squared error (summed over the elements) of quantizing |x| to `levels` steps of T / levels,
// clipped at T; each bin's mass is spread uniformly over it; exact zeros cost nothing.
double QuantError(const std::vector<uint64_t>& counts, double width, uint64_t zeros, double T, int levels) {
  const double d = T / levels;
  double err = 0;
  for (size_t j = 0; j < counts.size(); ++j) {
    double m = (double)counts[j];
    if (j == 0) m -= (double)zeros;
    if (m <= 0) continue;
    const double a = j * width, b = a + width;
    double e = 0;
    if (a < T) e += SawtoothIntegral(std::min(b, T), d) - SawtoothIntegral(a, d);
    if (b > T) {
      const double lo = std::max(a, T) - T, hi = b - T;
      e += (hi * hi * hi - lo * lo * lo) / 3.0;
    }
    err += m * e / width;
  }
  return err;
}

}  // namespace

float RangeFromHistogram(const std::vector<uint64_t>& counts, double top, uint64_t zeros, bool is_signed,
                         const CalibrationOptions& options) {
  const size_t bins = counts.size();
  const double width = top / bins;
  uint64_t total = 0;
  size_t last = 0;  // last non-empty bin
  for (size_t j = 0; j < bins; ++j) {
    total += counts[j];
    if (counts[j] && !(j == 0 && counts[0] == zeros)) last = j;
  }
  const double hi = (last + 1) * width;  // upper bound of the largest value
  if (total == 0 || total == zeros) return 1.f;  // nothing but zeros: any range is exact
  double r = hi;
  switch (options.method) {
    case CalibrationMethod::kMax:
      break;
    case CalibrationMethod::kPercentile: {
      const double target = options.percentile / 100.0 * (double)total;
      double cum = 0;
      for (size_t j = 0; j < bins; ++j) {
        const double c = (double)counts[j];
        if (c > 0 && cum + c >= target) {
          double lo = j * width, frac = (target - cum) / c;
          if (j == 0) {  // exact zeros sit at 0, the rest is spread over the bin
            const double z = (double)zeros;
            frac = target <= z ? 0.0 : (target - z) / std::max(1.0, c - z);
          }
          r = lo + std::min(1.0, std::max(0.0, frac)) * width;
          break;
        }
        cum += c;
      }
      break;
    }
    case CalibrationMethod::kMse: {
      const int levels = is_signed ? 127 : 255;
      // Coarse pass over every 16th bin edge up to the largest value, then every edge around the best.
      const size_t n_edges = last + 1;
      size_t best = n_edges;
      double best_err = std::numeric_limits<double>::infinity();
      auto consider = [&](size_t e) {
        if (e < 1 || e > n_edges) return;
        const double err = QuantError(counts, width, zeros, e * width, levels);
        if (err < best_err) best_err = err, best = e;
      };
      for (size_t e = n_edges; e >= 1; e = e > 16 ? e - 16 : 0) consider(e);
      const size_t coarse = best;
      for (size_t e = coarse > 16 ? coarse - 16 : 1; e <= std::min(n_edges, coarse + 16); ++e) consider(e);
      r = best * width;
      break;
    }
  }
  if (!(r > 0)) r = std::max(width, 1e-12);
  return (float)std::min(r, hi);
}

}  // namespace internal

#ifdef LOUPE_HAVE_ONEDNN
namespace {

constexpr int kBinsLog2 = 12;
constexpr int kBins = 1 << kBinsLog2;

// Counts of |x| over [0, 2^top_exp) in kBins equal bins. The range only grows, by powers of two, and bins
// then merge exactly, so the counts equal those of a single pass at the final range.
struct Histogram {
  std::vector<uint64_t> counts = std::vector<uint64_t>(kBins, 0);
  uint64_t zeros = 0;
  int top_exp = std::numeric_limits<int>::min();  // no data yet

  void Grow(int exp) {
    if (top_exp == std::numeric_limits<int>::min()) {  // only zeros so far (all in bin 0)
      top_exp = exp;
      return;
    }
    if (exp <= top_exp) return;
    const int shift = std::min(exp - top_exp, kBinsLog2 + 1);
    std::vector<uint64_t> merged(kBins, 0);
    for (int j = 0; j < kBins; ++j) merged[shift > kBinsLog2 ? 0 : (j >> shift)] += counts[j];
    counts.swap(merged);
    top_exp = exp;
  }
};

class Calibrator : public Int8Calibrator {
 public:
  Calibrator(std::shared_ptr<const ResNet50Model> model, std::unique_ptr<internal::ObservingSession> s)
      : model_(std::move(model)), session_(std::move(s)) {
    for (const auto& n : Int8TensorNames()) hist_[n];
  }

  Status Add(const float* input, int batch, const std::atomic<bool>* cancel) override {
    if (!input || batch < 1) return Status(StatusCode::kInvalidArgument, "calibration: no input or batch < 1");
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, Histogram> staged = hist_;  // a cancelled or failed batch leaves no trace
    std::string bad;
    Status st = session_->RunObserved(input, batch, [&](const std::string& name, const float* x, size_t n) {
      auto it = staged.find(name);
      if (it == staged.end() || !bad.empty()) return;
      if (!Accumulate(x, n, &it->second)) bad = name;
    }, cancel);
    LOUPE_RETURN_IF_ERROR(st);
    if (!bad.empty())
      return Status(StatusCode::kInvalidArgument, "calibration: tensor '" + bad +
                                                      "' has a non-finite value (is the input finite?)");
    hist_.swap(staged);
    images_ += batch;
    return Status::Ok();
  }

  Status Compute(const CalibrationOptions& options, Int8Calibration* out) const override {
    if (!(options.percentile > 0 && options.percentile <= 100))
      return Status(StatusCode::kInvalidArgument, "calibration: percentile must be in (0, 100]");
    std::lock_guard<std::mutex> lock(mu_);
    if (images_ == 0) return Status(StatusCode::kInvalidArgument, "calibration: no images added");
    Int8Calibration c;
    c.weights_hash = model_->weights_hash;
    c.method = CalibrationMethodName(options.method);
    for (const auto& e : hist_) {
      const Histogram& h = e.second;
      float r = 1.f;
      if (h.top_exp != std::numeric_limits<int>::min())
        r = internal::RangeFromHistogram(h.counts, std::ldexp(1.0, h.top_exp), h.zeros,
                                         Int8TensorIsSigned(e.first), options);
      c.ranges[e.first] = r;
    }
    *out = std::move(c);
    return Status::Ok();
  }

  int64_t images() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return images_;
  }

 private:
  // Runs on the session's compute thread (its OpenMP team). False on a non-finite value.
  static bool Accumulate(const float* x, size_t n, Histogram* h) {
    float mx = 0.f;
    bool finite = true;
#pragma omp parallel for reduction(max : mx) reduction(&& : finite) schedule(static)
    for (int64_t i = 0; i < (int64_t)n; ++i) {
      const float a = std::fabs(x[i]);
      finite = finite && std::isfinite(a);
      mx = std::max(mx, a);
    }
    if (!finite) return false;
    if (mx == 0.f) {  // all zeros: bin 0 under any range
      h->counts[0] += n;
      h->zeros += n;
      return true;
    }
    int exp;
    std::frexp(mx, &exp);  // mx = f * 2^exp with f in [0.5, 1): 2^exp > mx
    h->Grow(exp);
    const float inv = std::ldexp(1.f, kBinsLog2 - h->top_exp);  // bins per unit: exact power of two
    uint64_t zeros = 0;
    std::vector<uint64_t> total(kBins, 0);
#pragma omp parallel reduction(+ : zeros)
    {
      std::vector<uint64_t> local(kBins, 0);
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < (int64_t)n; ++i) {
        const float a = std::fabs(x[i]);
        if (a == 0.f) ++zeros;
        const int j = std::min(kBins - 1, (int)(a * inv));
        ++local[j];
      }
#pragma omp critical
      for (int j = 0; j < kBins; ++j) total[j] += local[j];
    }
    for (int j = 0; j < kBins; ++j) h->counts[j] += total[j];
    h->zeros += zeros;
    return true;
  }

  std::shared_ptr<const ResNet50Model> model_;
  std::unique_ptr<internal::ObservingSession> session_;
  mutable std::mutex mu_;
  std::map<std::string, Histogram> hist_;
  int64_t images_ = 0;
};

}  // namespace
#endif

Status CreateInt8Calibrator(std::shared_ptr<const ResNet50Model> model, int num_threads,
                            std::unique_ptr<Int8Calibrator>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateInt8Calibrator: no model");
  if (num_threads < 0) return Status(StatusCode::kInvalidArgument, "CreateInt8Calibrator: num_threads < 0");
#ifdef LOUPE_HAVE_ONEDNN
  std::unique_ptr<internal::ObservingSession> s;
  LOUPE_RETURN_IF_ERROR(internal::CreateOneDnnObservingSession(model, num_threads, &s));
  out->reset(new Calibrator(std::move(model), std::move(s)));
  return Status::Ok();
#else
  return Status(StatusCode::kUnavailable, "int8 calibration needs the oneDNN CPU backend (built without oneDNN)");
#endif
}

}  // namespace loupe
