// Internal: convolution as im2col + a cache-blocked SGEMM (NHWC in, NHWC out), OpenMP-parallel.
// The reference backend's workhorse: plain C++ (GCC vector extensions, cloned for AVX2/AVX-512 at
// run time), so it builds everywhere and is still fast enough to be the oracle for the fast backends.
#pragma once
#include <vector>

#include "loupe/resnet50.h"

namespace loupe {
namespace internal {

// A folded conv whose HWIO weights ([K = kh*kw*cin][N = cout]) are packed into 16-column panels:
// panel p holds [K][16] floats (zero-padded past N), so the GEMM streams them contiguously.
struct PackedConv {
  const FoldedConv* conv = nullptr;
  int K = 0, N = 0;
  std::vector<float> panels;
};
void PackConv(const FoldedConv& conv, PackedConv* out);

inline int ConvOutSize(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

// out[b][oy][ox][n] = relu?(sum conv + bias + residual?); `residual` has out's shape and must not
// alias `out` (the GEMM accumulates into out before the epilogue reads the residual).
struct ConvArgs {
  const float* in = nullptr;  // [batch][h][w][cin]
  int batch = 0, h = 0, w = 0;
  float* out = nullptr;
  const float* residual = nullptr;
  bool relu = true;
  int threads = 1;
};
void RunConv(const PackedConv& pc, const ConvArgs& a);

}  // namespace internal
}  // namespace loupe
