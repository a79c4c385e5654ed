// Linear SVMs trained by SGD (hinge loss + L2), many binary problems over one feature matrix at once.
// The multiclass coding (one-vs-one / one-vs-all, MATLAB fitcecoc style) is decided by the caller, which
// passes one target column per binary learner; this kernel only trains the binary learners.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "loupe/session.h"
#include "loupe/status.h"

namespace loupe {

enum class SgdSchedule {
  kPegasos = 0,  // eta_t = 1 / (lambda * t), Shalev-Shwartz et al. 2007
  kAveraged,     // Pegasos steps, returns the average of the iterates over the last half of training
};

struct SgdSvmOptions {
  // L2 strength (per sample, Pegasos convention) for a learner that uses all n rows. A learner over
  // n_j < n rows (one-vs-one) uses lambda n / n_j, so every binary problem has the same C = 1 / (lambda n)
  // in liblinear terms (min 1/2 |w|^2 + C sum_i hinge_i), as liblinear and fitcecoc give each learner:
  // with one lambda for all, learners over two small classes were regularised n / n_j times less.
  double lambda = 1e-4;
  // Initial step: eta_t = 1 / (lambda (t + t0)) with t0 = 1 / (lambda eta0) (Bottou's offset schedule).
  // 0 = plain Pegasos (t0 = 0, eta_1 = 1/lambda). A step near 1 / mean ||x||^2 keeps the early steps
  // from overshooting by orders of magnitude when lambda is small (they would take ~1/lambda steps to
  // forget); the averaged iterate then converges within a few tens of epochs.
  double eta0 = 0.0;
  int epochs = 20;
  uint64_t seed = 0;       // sample order: same seed -> bit-identical model on the same backend
  SgdSchedule schedule = SgdSchedule::kAveraged;
  // Pegasos projection: after each step, w is scaled back onto the ball ||w|| <= 1/sqrt(lambda) (where
  // the optimum lies); keeps the large early steps (eta_1 = 1/lambda) from blowing w up.
  bool project = true;
  BackendKind backend = BackendKind::kCpu;  // kCuda: same algorithm and sample order on the GPU
  int num_threads = 0;     // CPU: learners trained in parallel
  int device_id = 0;
  std::function<void(int epoch, int epochs)> progress;  // optional, called from the calling thread
  const std::atomic<bool>* cancel = nullptr;
};

// The step (identical on every backend; only the rounding of the dot products differs). Per learner, t
// counts its own samples (target != 0) from 1 over all epochs, lambda is the learner's (lambda n / n_j),
// u = t + t0, eta_t = 1 / (lambda u), w = s v:
//   score = w.x + b;  violated = y score < 1;  w <- (1 - 1/u) w;  if violated: w += eta_t y x and
//   b += y min(eta_t, 1 - y score)  (the bias is not regularised nor shrunk; its step is the proximal
//   hinge step: the plain subgradient step, stopped where the sample's margin is met, so the huge early
//   steps cannot throw it far off);  if project: w <- min(1, 1 / (sqrt(lambda) ||w||)) w.
// kAveraged returns the mean of (w_t, b_t) over the steps t in (T/2, T], T = epochs * (samples used).
// X: [n][d] row-major (already standardised by the caller).
// targets: [k][n], +1 / -1 for samples in learner j, 0 = sample not used by learner j (OvO).
// Out: w [k][d], b [k]. Scores are w·x + b; positive means the +1 side.
Status TrainLinearSvms(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                       const SgdSvmOptions& opts, std::vector<float>* w, std::vector<float>* b);

// The permutation of [0, n) used in epoch `epoch` (shared by every backend: same seed semantics).
void SgdSampleOrder(uint64_t seed, int epoch, int64_t n, std::vector<int64_t>* order);

}  // namespace loupe
