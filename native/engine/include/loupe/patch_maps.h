// PatchCore's patch features and anomaly maps (anomalib semantics), on flat row-major float arrays.
//   patch features: res3d and res4f each 3x3 average-pooled (torch AvgPool2d(3, 1, 1), count_include_pad),
//     res4f bilinearly upsampled to the res3d grid, concatenated along channels;
//   anomaly maps: patch scores bilinearly resized (torch, align_corners = false), smoothed by a normalised
//     Gaussian (anomalib: 2*floor(4*sigma+0.5)+1 taps, reflect padding), resized to the output size.
// Single-threaded and synchronous (about 1 ms per 224x224 image): callers run them on their own thread.
// Arithmetic is in double with float stores at fixed points and no FMA contraction, so results are
// bit-for-bit those of @loupe/core's former TypeScript (JS numbers are doubles, typed arrays float).
// Counts are int64; every function returns kInvalidArgument for a bad size, a null pointer or (where
// noted) output memory that overlaps the input.
#pragma once
#include <cstdint>

#include "loupe/status.h"

namespace loupe {

// Per-image NHWC shapes of the two taps PatchCore concatenates: "layer2" (res3d, the patch grid) and
// "layer3" (res4f, upsampled to that grid). The caller passes the engine's tap shapes (TapShape).
struct PatchTapShapes {
  int64_t h2 = 0, w2 = 0, c2 = 0;  // res3d
  int64_t h3 = 0, w3 = 0, c3 = 0;  // res4f
};

// 3x3 average pooling, stride 1, zero padding 1, always divided by 9, of n NHWC images [h][w][c].
// Output pixel p = y * w + x of image i goes to dst[(i * h * w + p) * dst_stride + ch] (dst_stride >= c
// writes into wider rows); dst must hold (n * h * w - 1) * dst_stride + c floats and not overlap src.
Status AvgPool3x3(const float* src, int64_t n, int64_t h, int64_t w, int64_t c, float* dst, int64_t dst_stride);

// PatchCore embeddings [n * h2 * w2][c2 + c3] (rows image-major, then y, then x): channels [0, c2) are
// pooled res3d [n][h2][w2][c2], [c2, c2 + c3) pooled res4f [n][h3][w3][c3] upsampled to h2 x w2.
// dst must not overlap the inputs.
Status BuildPatchEmbeddings(const float* res3d, const float* res4f, int64_t n, const PatchTapShapes& shapes,
                            float* dst);

// Applies a sparse projection stored by output column (CSR: output j sums value[k] * row[index[k]] for k
// in [start[j], start[j + 1])) to rows [n][in_dim] -> [n][out_dim]. start has out_dim + 1 entries from 0
// to nnz (non-decreasing), index entries are in [0, in_dim). Sums in double in k order. dst must not
// overlap src.
Status SparseProjectRows(const float* src, int64_t n, int64_t in_dim, const int32_t* start, const int32_t* index,
                         const float* value, int64_t nnz, int64_t out_dim, float* dst);

// torch bilinear sampling along one axis (align_corners = false): output o reads source i0[o] with weight
// 1 - lambda[o] and i1[o] with weight lambda[o]. Each array holds out_size entries.
Status BilinearAxisWeights(int64_t in_size, int64_t out_size, int32_t* i0, int32_t* i1, float* lambda);

// Bilinear resize of a single-channel map [sh][sw] -> [dh][dw] (torch, align_corners = false); equal
// sizes copy. dst may overlap src (src is read completely before dst is written).
Status ResizeBilinear(const float* src, int64_t sh, int64_t sw, int64_t dh, int64_t dw, float* dst);

// Largest sigma the Gaussian functions accept (a 2^20 + 1 tap kernel).
constexpr double kMaxGaussianSigma = 131072.0;

// anomalib's kernel size for sigma in [0, kMaxGaussianSigma]: 2 * floor(4 * sigma + 0.5) + 1 (else -1).
int64_t GaussianKernelSize(double sigma);

// Normalised (sums to 1), centred 1-D Gaussian of odd `size` taps; sigma in (0, kMaxGaussianSigma].
Status GaussianKernel1d(double sigma, int64_t size, float* kernel);

// torch 'reflect' padding index (mirror, edge not repeated) of offset i into [0, n), any i; n >= 1.
int64_t ReflectIndex(int64_t i, int64_t n);

// Separable Gaussian blur of [h][w] with GaussianKernel1d(sigma, GaussianKernelSize(sigma)) and
// reflect borders; sigma <= 0 (or NaN) copies. dst may overlap src.
Status GaussianBlur(const float* src, int64_t h, int64_t w, double sigma, float* dst);

// Patch scores [grid_h][grid_w] -> anomaly map [out_h][out_w]: bilinear resize to [map_h][map_w] (the model
// input), Gaussian blur (sigma <= 0: none), bilinear resize to [out_h][out_w] (equal: none). Exactly
// ResizeBilinear + GaussianBlur + ResizeBilinear in one call. dst may overlap scores.
Status PatchScoresToMap(const float* scores, int64_t grid_h, int64_t grid_w, int64_t map_h, int64_t map_w,
                        double sigma, int64_t out_h, int64_t out_w, float* dst);

}  // namespace loupe
