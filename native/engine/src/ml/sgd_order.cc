// The SGD sample order shared by every backend, and small shared helpers.
#include <omp.h>

#include <numeric>
#include <vector>

#include "loupe/svm.h"
#include "ml/ml_internal.h"

namespace loupe {

// Fisher-Yates over [0, n) driven by splitmix64 on a stream keyed by (seed, epoch): portable and
// bit-reproducible (no std:: distributions).
void SgdSampleOrder(uint64_t seed, int epoch, int64_t n, std::vector<int64_t>* order) {
  order->resize(n > 0 ? (size_t)n : 0);
  if (n <= 0) return;
  std::iota(order->begin(), order->end(), (int64_t)0);
  uint64_t state = ml::StreamState(seed, 0x5347440000000000ull ^ (uint64_t)(uint32_t)epoch);
  int64_t* o = order->data();
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = (int64_t)ml::UniformBelow(&state, (uint64_t)(i + 1));
    const int64_t tmp = o[i];
    o[i] = o[j];
    o[j] = tmp;
  }
}

namespace ml {

int ResolveThreads(int requested) {
  if (requested > 0) return requested;
  const int m = omp_get_max_threads();
  return m > 0 ? m : 1;
}

void RowNorms2(const float* X, int64_t n, int64_t d, int num_threads, std::vector<double>* out) {
  out->resize((size_t)n);
  double* o = out->data();
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = X + i * d;
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) s += (double)x[c] * (double)x[c];
    o[i] = s;
  }
}

}  // namespace ml
}  // namespace loupe
