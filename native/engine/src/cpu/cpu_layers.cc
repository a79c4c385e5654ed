#include "cpu_layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace loupe {
namespace internal {

Status ValidateRequest(const RunRequest& req) {
  if (!req.input) return Status(StatusCode::kInvalidArgument, "Run: input is null");
  if (req.batch < 1) return Status(StatusCode::kInvalidArgument, "Run: batch must be >= 1");
  for (Tap t : req.taps)
    if ((int)t < 0 || (int)t >= (int)Tap::kCount)
      return Status(StatusCode::kInvalidArgument, "Run: unknown tap " + std::to_string((int)t));
  return Status::Ok();
}

void MaxPool3x3s2Pad1(const float* in, int batch, int h, int w, int c, float* out, int threads) {
  const int oh = (h + 2 - 3) / 2 + 1, ow = (w + 2 - 3) / 2 + 1;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int b = 0; b < batch; ++b)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox) {
        float* o = out + (((size_t)b * oh + oy) * ow + ox) * c;
        bool padded = oy == 0 || ox == 0 || 2 * oy + 1 >= h || 2 * ox + 1 >= w;
        for (int ch = 0; ch < c; ++ch) o[ch] = padded ? 0.f : -INFINITY;
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            int iy = 2 * oy - 1 + ky, ix = 2 * ox - 1 + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            const float* p = in + (((size_t)b * h + iy) * w + ix) * c;
            for (int ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], p[ch]);
          }
      }
}

void GlobalAvgPool(const float* in, int batch, int hw, int c, float* out) {
  std::vector<double> acc(c);
  for (int b = 0; b < batch; ++b) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int p = 0; p < hw; ++p) {
      const float* x = in + ((size_t)b * hw + p) * c;
      for (int ch = 0; ch < c; ++ch) acc[ch] += x[ch];
    }
    for (int ch = 0; ch < c; ++ch) out[(size_t)b * c + ch] = (float)(acc[ch] / hw);
  }
}

void Dense(const float* in, int batch, const float* w, const float* bias, int nin, int nout, float* out,
           int threads) {
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> acc(nout);
#pragma omp for
    for (int b = 0; b < batch; ++b) {
      for (int o = 0; o < nout; ++o) acc[o] = bias[o];
      for (int i = 0; i < nin; ++i) {
        const double x = in[(size_t)b * nin + i];
        const float* wr = w + (size_t)i * nout;
        for (int o = 0; o < nout; ++o) acc[o] += x * wr[o];
      }
      for (int o = 0; o < nout; ++o) out[(size_t)b * nout + o] = (float)acc[o];
    }
  }
}

void Softmax(const float* logits, int batch, int n, float* out) {
  for (int b = 0; b < batch; ++b) {
    const float* l = logits + (size_t)b * n;
    double mx = l[0];
    for (int i = 1; i < n; ++i) mx = std::max(mx, (double)l[i]);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::exp((double)l[i] - mx);
    for (int i = 0; i < n; ++i) out[(size_t)b * n + i] = (float)(std::exp((double)l[i] - mx) / sum);
  }
}

}  // namespace internal
}  // namespace loupe
