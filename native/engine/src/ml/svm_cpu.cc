// CPU training of many binary linear SVMs by Pegasos SGD (see ml_internal.h for the exact step).
// Learners are independent: OpenMP threads take disjoint groups of learners, and each group walks the
// shared sample order once per epoch, updating all its learners with a row while the row is in cache.
// A learner's arithmetic never depends on the grouping, so the bytes do not depend on num_threads.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "loupe/svm.h"
#include "ml/ml_internal.h"

namespace loupe {
namespace ml {
namespace {

// 16 fixed lanes, summed in a fixed order: deterministic whatever the vector width of the clone.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
float DotLanes(const float* a, const float* b, int64_t d) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i + j < d; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0.0f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void ApplyOps(const SvmVecOps ops, float* v, float* A, const float* x, int64_t d) {
  if (ops.flush != 0.0f) {
    const float f = ops.flush;
    for (int64_t i = 0; i < d; ++i) A[i] += f * v[i];
  }
  if (ops.delta != 0.0f) {
    const float dl = ops.delta;
    for (int64_t i = 0; i < d; ++i) v[i] += dl * x[i];
  }
  if (ops.vscale != 1.0f) {
    const float sc = ops.vscale;
    for (int64_t i = 0; i < d; ++i) v[i] *= sc;
  }
}

}  // namespace

Status ValidateSvmInputs(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                         const SgdSvmOptions& opts, std::vector<int64_t>* counts) {
  if (n <= 0 || d <= 0 || k <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "TrainLinearSvms: n, d and k must be > 0 (got n=" + std::to_string(n) +
                      ", d=" + std::to_string(d) + ", k=" + std::to_string(k) + ")");
  if (X == nullptr || targets == nullptr)
    return Status(StatusCode::kInvalidArgument, "TrainLinearSvms: X and targets must not be null");
  if (!(opts.lambda > 0.0) || !std::isfinite(opts.lambda))
    return Status(StatusCode::kInvalidArgument,
                  "TrainLinearSvms: lambda must be finite and > 0 (got " +
                      std::to_string(opts.lambda) + ")");
  if (!(opts.eta0 >= 0.0) || !std::isfinite(opts.eta0))
    return Status(StatusCode::kInvalidArgument,
                  "TrainLinearSvms: eta0 must be finite and >= 0 (got " + std::to_string(opts.eta0) + ")");
  if (opts.epochs <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "TrainLinearSvms: epochs must be > 0 (got " + std::to_string(opts.epochs) + ")");
  if (opts.schedule != SgdSchedule::kPegasos && opts.schedule != SgdSchedule::kAveraged)
    return Status(StatusCode::kInvalidArgument, "TrainLinearSvms: unknown schedule");
  counts->assign((size_t)k, 0);
  for (int j = 0; j < k; ++j) {
    const int8_t* tj = targets + (int64_t)j * n;
    int64_t pos = 0, neg = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int8_t y = tj[i];
      if (y == 1) {
        ++pos;
      } else if (y == -1) {
        ++neg;
      } else if (y != 0) {
        return Status(StatusCode::kInvalidArgument,
                      "TrainLinearSvms: learner " + std::to_string(j) + ": target of sample " +
                          std::to_string(i) + " is " + std::to_string((int)y) +
                          ", expected -1, 0 or +1");
      }
    }
    if (pos == 0 || neg == 0)
      return Status(StatusCode::kInvalidArgument,
                    "TrainLinearSvms: learner " + std::to_string(j) + " has " +
                        std::to_string(pos) + " positive and " + std::to_string(neg) +
                        " negative samples; it needs both classes");
    (*counts)[(size_t)j] = pos + neg;
  }
  return Status::Ok();
}

SvmStepParams MakeSvmStepParams(const SgdSvmOptions& opts, int64_t count, int64_t n) {
  SvmStepParams p;
  // The same C = 1 / (lambda n) for every binary problem (svm.h): lambda_j = lambda n / n_j.
  p.lambda = opts.lambda * ((double)n / (double)count);
  p.radius2 = 1.0 / p.lambda;
  p.t0 = opts.eta0 > 0.0 ? 1.0 / (p.lambda * opts.eta0) : 0.0;
  const int64_t total = count * (int64_t)opts.epochs;
  p.avg_start = opts.schedule == SgdSchedule::kAveraged ? total / 2 : -1;
  p.project = opts.project ? 1 : 0;
  return p;
}

void SvmFinalize(const SgdSvmOptions& opts, const SvmLearnerState& st, const float* v, const float* A,
                 int64_t d, float* w_out, float* b_out) {
  if (opts.schedule == SgdSchedule::kAveraged && st.avg_count > 0) {
    const double inv = 1.0 / (double)st.avg_count;
    // Pending flush: A + sacc * v, in double here.
    for (int64_t i = 0; i < d; ++i)
      w_out[i] = (float)(((double)A[i] + st.sacc * (double)v[i]) * inv);
    *b_out = (float)(st.bsum * inv);
  } else {
    for (int64_t i = 0; i < d; ++i) w_out[i] = (float)(st.s * (double)v[i]);
    *b_out = (float)st.b;
  }
}

void BuildSvmEpochSequences(const int8_t* targets, int64_t n, int k, const std::vector<int64_t>& order,
                            const std::vector<double>& xn, const std::vector<int64_t>& off,
                            int num_threads, int32_t* seq, double* seq_xn) {
#pragma omp parallel for num_threads(std::max(1, std::min(num_threads, k))) schedule(static)
  for (int j = 0; j < k; ++j) {
    const int8_t* tj = targets + (int64_t)j * n;
    int64_t o = off[(size_t)j];
    for (int64_t p = 0; p < n; ++p) {
      const int64_t i = order[(size_t)p];
      const int y = tj[i];
      if (y == 0) continue;
      seq[o] = (int32_t)((i + 1) * y);
      seq_xn[o] = xn[(size_t)i];
      ++o;
    }
  }
}

Status TrainLinearSvmsCpu(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                          const SgdSvmOptions& opts, const std::vector<int64_t>& counts,
                          std::vector<float>* w, std::vector<float>* b) {
  const int nt = ResolveThreads(opts.num_threads);
  const int groups = std::max(1, std::min(k, nt));
  const bool averaged = opts.schedule == SgdSchedule::kAveraged;

  std::vector<float> V((size_t)k * (size_t)d, 0.0f);
  std::vector<float> A(averaged ? (size_t)k * (size_t)d : 0, 0.0f);
  std::vector<SvmLearnerState> states((size_t)k);
  std::vector<SvmStepParams> params((size_t)k);
  for (int j = 0; j < k; ++j) {
    SvmInitState(&states[(size_t)j]);
    params[(size_t)j] = MakeSvmStepParams(opts, counts[(size_t)j], n);
  }
  std::vector<double> xn;
  RowNorms2(X, n, d, nt, &xn);

  std::vector<int64_t> order;
  for (int e = 0; e < opts.epochs; ++e) {
    if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
      return Status(StatusCode::kCancelled, "TrainLinearSvms cancelled");
    SgdSampleOrder(opts.seed, e, n, &order);
    const int64_t* ord = order.data();
    // Group g holds learners g, g + groups, g + 2 groups, ...
#pragma omp parallel for num_threads(groups) schedule(static, 1)
    for (int g = 0; g < groups; ++g) {
      for (int64_t p = 0; p < n; ++p) {
        const int64_t i = ord[p];
        const float* x = X + i * d;
        for (int j = g; j < k; j += groups) {
          const int y = targets[(int64_t)j * n + i];
          if (y == 0) continue;
          float* v = V.data() + (size_t)j * (size_t)d;
          const float dot = DotLanes(v, x, d);
          const SvmVecOps ops = SvmScalarStep(&states[(size_t)j], params[(size_t)j], y, dot, xn[i]);
          if (ops.flush != 0.0f || ops.delta != 0.0f || ops.vscale != 1.0f)
            ApplyOps(ops, v, averaged ? A.data() + (size_t)j * (size_t)d : nullptr, x, d);
        }
      }
    }
    if (opts.progress) opts.progress(e + 1, opts.epochs);
  }

  w->assign((size_t)k * (size_t)d, 0.0f);
  b->assign((size_t)k, 0.0f);
  for (int j = 0; j < k; ++j) {
    SvmFinalize(opts, states[(size_t)j], V.data() + (size_t)j * (size_t)d,
                averaged ? A.data() + (size_t)j * (size_t)d : nullptr, d,
                w->data() + (size_t)j * (size_t)d, b->data() + j);
  }
  return Status::Ok();
}

}  // namespace ml
}  // namespace loupe
