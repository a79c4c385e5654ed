#include "conv_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace loupe {
namespace internal {

namespace {

constexpr int kMR = 6, kNR = 16;  // micro-tile: 6 rows x 16 columns of accumulators
constexpr int kMC = 96;           // rows per task (A block ~ kMC x kKC floats stays in L2)
constexpr int kKC = 256;          // depth per pass (a B panel slice of 16 KB stays in L1)

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned access allowed

#if defined(__x86_64__) && defined(__GNUC__)
#define LOUPE_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define LOUPE_CLONES
#endif

// C[6][16] (+)= A[kc][6]^T-panel x B[kc][16]. The accumulators live in registers.
LOUPE_CLONES
void Micro(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int ldc,
           bool accumulate) {
  v16 c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
  for (int k = 0; k < kc; ++k) {
    v16 bv = *reinterpret_cast<const v16u*>(b + kNR * k);
    const float* ak = a + kMR * k;
    c0 += ak[0] * bv;
    c1 += ak[1] * bv;
    c2 += ak[2] * bv;
    c3 += ak[3] * bv;
    c4 += ak[4] * bv;
    c5 += ak[5] * bv;
  }
  v16 acc[kMR] = {c0, c1, c2, c3, c4, c5};
  for (int r = 0; r < kMR; ++r) {
    v16u* dst = reinterpret_cast<v16u*>(c + r * ldc);
    if (accumulate) *dst += acc[r];
    else *dst = acc[r];
  }
}

// Packs rows [m0, m0+mc) x depth [k0, k0+kc) of the implicit im2col matrix into 6-row panels
// ([tile][k][6]); rows past mc and taps in the zero padding become 0.
void PackA(const ConvArgs& a, const FoldedConv& cv, int oh, int ow, int m0, int mc, int k0, int kc,
           float* dst) {
  const int cin = cv.cin, kw = cv.kw;
  const int tiles = (mc + kMR - 1) / kMR;
  for (int t = 0; t < tiles; ++t) {
    float* panel = dst + (size_t)t * kc * kMR;
    for (int r = 0; r < kMR; ++r) {
      int row = t * kMR + r;
      if (row >= mc) {
        for (int k = 0; k < kc; ++k) panel[k * kMR + r] = 0.f;
        continue;
      }
      int m = m0 + row;
      int n = m / (oh * ow), pix = m % (oh * ow), oy = pix / ow, ox = pix % ow;
      for (int k = k0; k < k0 + kc;) {
        int tap = k / cin, ci = k % cin;
        int run = std::min(cin - ci, k0 + kc - k);
        int iy = oy * cv.stride - cv.pad + tap / kw, ix = ox * cv.stride - cv.pad + tap % kw;
        float* d = panel + (k - k0) * kMR + r;
        if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) {
          for (int j = 0; j < run; ++j) d[j * kMR] = 0.f;
        } else {
          const float* s = a.in + (((size_t)n * a.h + iy) * a.w + ix) * cin + ci;
          for (int j = 0; j < run; ++j) d[j * kMR] = s[j];
        }
        k += run;
      }
    }
  }
}

}  // namespace

void PackConv(const FoldedConv& conv, PackedConv* out) {
  out->conv = &conv;
  out->K = conv.kh * conv.kw * conv.cin;
  out->N = conv.cout;
  int panels = (out->N + kNR - 1) / kNR;
  out->panels.assign((size_t)panels * out->K * kNR, 0.f);
  for (int p = 0; p < panels; ++p)
    for (int k = 0; k < out->K; ++k)
      for (int j = 0; j < kNR && p * kNR + j < out->N; ++j)
        out->panels[((size_t)p * out->K + k) * kNR + j] = conv.w_hwio[(size_t)k * out->N + p * kNR + j];
}

void RunConv(const PackedConv& pc, const ConvArgs& a) {
  const FoldedConv& cv = *pc.conv;
  const int oh = ConvOutSize(a.h, cv.kh, cv.stride, cv.pad), ow = ConvOutSize(a.w, cv.kw, cv.stride, cv.pad);
  const int M = a.batch * oh * ow, N = pc.N, K = pc.K;
  const int mblocks = (M + kMC - 1) / kMC;
  const int npanels = (N + kNR - 1) / kNR;
  // Split columns too when there are few row blocks (deep layers at small batch), so every thread works.
  int nsplit = std::max(1, std::min(npanels, (4 * a.threads + mblocks - 1) / mblocks));
  const int panels_per_task = (npanels + nsplit - 1) / nsplit;
  nsplit = (npanels + panels_per_task - 1) / panels_per_task;
  const int tasks = mblocks * nsplit;
  // N is a multiple of 16 for every ResNet-50 conv; the tail path below keeps other N correct.
#pragma omp parallel num_threads(a.threads)
  {
    std::vector<float> apack((size_t)kMC * kKC);
    float tail[kMR * kNR];
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int mb = task / nsplit, nb = task % nsplit;
      const int m0 = mb * kMC, mc = std::min(kMC, M - m0);
      const int p0 = nb * panels_per_task, p1 = std::min(npanels, p0 + panels_per_task);
      const int tiles = (mc + kMR - 1) / kMR;
      for (int k0 = 0; k0 < K; k0 += kKC) {
        const int kc = std::min(kKC, K - k0);
        PackA(a, cv, oh, ow, m0, mc, k0, kc, apack.data());
        for (int p = p0; p < p1; ++p) {
          const float* bp = pc.panels.data() + ((size_t)p * K + k0) * kNR;
          const int ncols = std::min(kNR, N - p * kNR);
          for (int t = 0; t < tiles; ++t) {
            const int rows = std::min(kMR, mc - t * kMR);
            float* c = a.out + (size_t)(m0 + t * kMR) * N + p * kNR;
            if (rows == kMR && ncols == kNR) {
              Micro(kc, apack.data() + (size_t)t * kc * kMR, bp, c, N, k0 > 0);
              continue;
            }
            Micro(kc, apack.data() + (size_t)t * kc * kMR, bp, tail, kNR, false);
            for (int r = 0; r < rows; ++r)
              for (int j = 0; j < ncols; ++j)
                c[(size_t)r * N + j] = (k0 > 0 ? c[(size_t)r * N + j] : 0.f) + tail[r * kNR + j];
          }
        }
      }
      // Epilogue while the block is still in cache: bias, residual, ReLU.
      const int n0 = p0 * kNR, n1 = std::min(N, p1 * kNR);
      for (int r = 0; r < mc; ++r) {
        float* c = a.out + (size_t)(m0 + r) * N;
        const float* res = a.residual ? a.residual + (size_t)(m0 + r) * N : nullptr;
        for (int n = n0; n < n1; ++n) {
          float v = c[n] + cv.bias[n];
          if (res) v += res[n];
          c[n] = (a.relu && v < 0.f) ? 0.f : v;
        }
      }
    }
  }
}

}  // namespace internal
}  // namespace loupe
