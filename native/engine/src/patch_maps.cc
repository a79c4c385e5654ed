// PatchCore patch features and anomaly maps (patch_maps.h). Every value is computed in double and stored
// as float exactly where @loupe/core's former TypeScript stored into a Float32Array, in the same summation
// order, with no FMA contraction: the results are bit-identical to it (and to the torch formulas up to
// float rounding). The hot loops run over contiguous channels / columns so they vectorise; the AVX2
// clones change nothing in the results (IEEE add/mul/convert per lane, no contraction).
#pragma GCC optimize("fp-contract=off")
#include "loupe/patch_maps.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>

namespace loupe {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;  // no array of ours is larger (a JS typed array is far smaller)
constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();  // axis indices are int32

Status Invalid(const std::string& msg) { return Status(StatusCode::kInvalidArgument, msg); }

// a * b * ... of non-negative factors; false when one is negative or the product exceeds kMaxElements.
bool Product(std::initializer_list<int64_t> dims, int64_t* out) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0 || (d != 0 && p > kMaxElements / d)) return false;
    p *= d;
  }
  *out = p;
  return true;
}

Status CheckSide(const char* fn, const char* name, int64_t v) {
  if (v < 1 || v > kMaxSide)
    return Invalid(std::string(fn) + ": " + name + " must be in [1, " + std::to_string(kMaxSide) + "], got " +
                   std::to_string(v));
  return Status::Ok();
}

Status CheckSize(const char* fn, const char* what, std::initializer_list<int64_t> dims, int64_t* out) {
  if (!Product(dims, out)) return Invalid(std::string(fn) + ": " + what + " is too large");
  return Status::Ok();
}

bool Overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + static_cast<uintptr_t>(b_bytes) &&
         pb < pa + static_cast<uintptr_t>(a_bytes);
}

template <typename T>
std::unique_ptr<T[]> Uninit(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

// ---------------------------------------------------------------------------------------------------
// Kernels (sizes already checked).

// One image: vertical 3-row sum into `row` (w * c, rounded to float), then horizontal 3-sum / 9; edges
// in their own loops so the inner loops have no branches.
__attribute__((target_clones("arch=x86-64-v3", "default")))
void PoolImage(const float* src, int64_t h, int64_t w, int64_t c, float* dst, int64_t ds, float* row) {
  const int64_t rs = w * c;
  const double inv9 = 1.0 / 9.0;
  for (int64_t y = 0; y < h; ++y) {
    const float* r0 = src + y * rs;
    if (h == 1) {
      std::memcpy(row, r0, static_cast<size_t>(rs) * sizeof(float));
    } else if (y > 0 && y < h - 1) {
      const float* a = r0 - rs;
      const float* b = r0 + rs;
      for (int64_t i = 0; i < rs; ++i) row[i] = static_cast<float>(double(a[i]) + double(r0[i]) + double(b[i]));
    } else {
      const float* o = y == 0 ? r0 + rs : r0 - rs;
      for (int64_t i = 0; i < rs; ++i) row[i] = static_cast<float>(double(r0[i]) + double(o[i]));
    }
    float* orow = dst + y * w * ds;
    if (w == 1) {
      for (int64_t ch = 0; ch < c; ++ch) orow[ch] = static_cast<float>(double(row[ch]) * inv9);
      continue;
    }
    for (int64_t ch = 0; ch < c; ++ch) orow[ch] = static_cast<float>((double(row[ch]) + double(row[c + ch])) * inv9);
    for (int64_t x = 1; x < w - 1; ++x) {
      float* o = orow + x * ds;
      const float* m = row + x * c;
      for (int64_t ch = 0; ch < c; ++ch)
        o[ch] = static_cast<float>((double(m[ch - c]) + double(m[ch]) + double(m[ch + c])) * inv9);
    }
    float* ol = orow + (w - 1) * ds;
    const float* ml = row + (w - 1) * c;
    for (int64_t ch = 0; ch < c; ++ch) ol[ch] = static_cast<float>((double(ml[ch - c]) + double(ml[ch])) * inv9);
  }
}

// o = (1 - l) * a + l * b over n contiguous values (k = 1 - l, computed once in double by the caller).
inline void Lerp(float* __restrict o, const float* __restrict a, const float* __restrict b, double k, double l,
                 int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(k * double(a[i]) + l * double(b[i]));
}

void AxisWeights(int64_t in, int64_t out, int32_t* i0, int32_t* i1, float* lambda) {
  const double scale = double(in) / double(out);
  for (int64_t o = 0; o < out; ++o) {
    double s = (double(o) + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int64_t a = static_cast<int64_t>(std::floor(s));
    if (a > in - 1) a = in - 1;
    i0[o] = static_cast<int32_t>(a);
    i1[o] = static_cast<int32_t>(a < in - 1 ? a + 1 : a);
    lambda[o] = static_cast<float>(s - double(a));
  }
}

struct Axis {
  std::unique_ptr<int32_t[]> i0, i1;
  std::unique_ptr<float[]> lambda;
  Axis(int64_t in, int64_t out) : i0(Uninit<int32_t>(out)), i1(Uninit<int32_t>(out)), lambda(Uninit<float>(out)) {
    AxisWeights(in, out, i0.get(), i1.get(), lambda.get());
  }
};

// Pooled res4f of one image `p3` [h3][w3][c3] -> horizontally upsampled `hx` [h3][w2][c3] -> channels
// [c2, c2 + c3) of the embedding rows.
__attribute__((target_clones("arch=x86-64-v3", "default")))
void UpsampleIntoRows(const float* p3, const PatchTapShapes& s, const Axis& ay, const Axis& ax, float* hx,
                      float* dst) {
  const int64_t d = s.c2 + s.c3, c3 = s.c3;
  for (int64_t y = 0; y < s.h3; ++y)
    for (int64_t x = 0; x < s.w2; ++x) {
      const double l = ax.lambda[x];
      Lerp(hx + (y * s.w2 + x) * c3, p3 + (y * s.w3 + ax.i0[x]) * c3, p3 + (y * s.w3 + ax.i1[x]) * c3, 1 - l, l, c3);
    }
  for (int64_t y = 0; y < s.h2; ++y) {
    const double l = ay.lambda[y];
    const float* r0 = hx + ay.i0[y] * s.w2 * c3;
    const float* r1 = hx + ay.i1[y] * s.w2 * c3;
    for (int64_t x = 0; x < s.w2; ++x) Lerp(dst + (y * s.w2 + x) * d + s.c2, r0 + x * c3, r1 + x * c3, 1 - l, l, c3);
  }
}

// Horizontal pass into tmp [sh][dw] (float), then vertical: 4 multiply-adds per output value.
__attribute__((target_clones("arch=x86-64-v3", "default")))
void ResizeKernel(const float* src, int64_t sh, int64_t sw, int64_t dh, int64_t dw, const Axis& ay, const Axis& ax,
                  float* tmp, float* dst) {
  for (int64_t y = 0; y < sh; ++y) {
    const float* r = src + y * sw;
    float* o = tmp + y * dw;
    for (int64_t x = 0; x < dw; ++x) {
      const double l = ax.lambda[x];
      o[x] = static_cast<float>((1 - l) * double(r[ax.i0[x]]) + l * double(r[ax.i1[x]]));
    }
  }
  for (int64_t y = 0; y < dh; ++y) {
    const double l = ay.lambda[y];
    Lerp(dst + y * dw, tmp + ay.i0[y] * dw, tmp + ay.i1[y] * dw, 1 - l, l, dw);
  }
}

void Resize(const float* src, int64_t sh, int64_t sw, int64_t dh, int64_t dw, float* dst) {
  if (sh == dh && sw == dw) {
    std::memmove(dst, src, static_cast<size_t>(sh * sw) * sizeof(float));
    return;
  }
  const Axis ay(sh, dh), ax(sw, dw);
  auto tmp = Uninit<float>(sh * dw);
  ResizeKernel(src, sh, sw, dh, dw, ay, ax, tmp.get(), dst);
}

// GCC vector types (lowered to ymm in the AVX2 clones, xmm pairs otherwise); the u variants load
// unaligned. The helpers are always inlined into the kernel clones, so their (default-target) vector
// ABI never applies: -Wpsabi would only warn about that ABI.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double v4d __attribute__((vector_size(32)));
typedef double v4du __attribute__((vector_size(32), aligned(8)));
typedef float v4f __attribute__((vector_size(16)));
typedef float v4fu __attribute__((vector_size(16), aligned(4)));

[[gnu::always_inline]] inline v4d LoadD(const double* p) { return *reinterpret_cast<const v4du*>(p); }
[[gnu::always_inline]] inline v4d LoadF(const float* p) {
  return __builtin_convertvector(*reinterpret_cast<const v4fu*>(p), v4d);
}
[[gnu::always_inline]] inline void StoreF(float* p, const v4d& v) {
  *reinterpret_cast<v4fu*>(p) = __builtin_convertvector(v, v4f);
}
[[gnu::always_inline]] inline v4d Splat(double x) { return v4d{x, x, x, x}; }

// Each output is the sum over taps t (in order) of k[t] * x[t] in double, stored as float (the TS summed
// that way). kAcc vectors of outputs per block keep enough independent sums in flight to hide the add
// latency.
constexpr int64_t kAcc = 8, kBlock = 4 * kAcc;

__attribute__((target_clones("arch=x86-64-v3", "default")))
void BlurKernel(const float* src, int64_t h, int64_t w, const float* k, int64_t taps, const int32_t* col_idx,
                const int32_t* row_idx, double* line, float* tmp, float* dst) {
  const int64_t half = (taps - 1) / 2;
  // Horizontal: each row padded by reflection into `line` (double), rounded to float into tmp.
  for (int64_t y = 0; y < h; ++y) {
    const float* r = src + y * w;
    for (int64_t i = 0; i < w + 2 * half; ++i) line[i] = r[col_idx[i]];
    float* o = tmp + y * w;
    int64_t x = 0;
    for (; x + kBlock <= w; x += kBlock) {
      v4d acc[kAcc] = {};
      for (int64_t t = 0; t < taps; ++t) {
        const v4d kt = Splat(k[t]);
        const double* l = line + x + t;
        for (int64_t a = 0; a < kAcc; ++a) acc[a] += kt * LoadD(l + 4 * a);
      }
      for (int64_t a = 0; a < kAcc; ++a) StoreF(o + x + 4 * a, acc[a]);
    }
    for (; x < w; ++x) {
      double acc = 0;
      for (int64_t t = 0; t < taps; ++t) acc += double(k[t]) * line[x + t];
      o[x] = static_cast<float>(acc);
    }
  }
  // Vertical, over reflected rows of tmp.
  for (int64_t y = 0; y < h; ++y) {
    float* o = dst + y * w;
    int64_t x = 0;
    for (; x + kBlock <= w; x += kBlock) {
      v4d acc[kAcc] = {};
      for (int64_t t = 0; t < taps; ++t) {
        const v4d kt = Splat(k[t]);
        const float* r = tmp + row_idx[y + t] * w + x;
        for (int64_t a = 0; a < kAcc; ++a) acc[a] += kt * LoadF(r + 4 * a);
      }
      for (int64_t a = 0; a < kAcc; ++a) StoreF(o + x + 4 * a, acc[a]);
    }
    for (; x < w; ++x) {
      double acc = 0;
      for (int64_t t = 0; t < taps; ++t) acc += double(k[t]) * double(tmp[row_idx[y + t] * w + x]);
      o[x] = static_cast<float>(acc);
    }
  }
}

void KernelValues(double sigma, int64_t size, float* out) {
  const int64_t half = (size - 1) / 2;
  auto k = Uninit<double>(size);
  double sum = 0;
  for (int64_t i = 0; i < size; ++i) {
    const double x = double(i - half);
    k[i] = std::exp(-(x * x) / (2 * sigma * sigma));
    sum += k[i];
  }
  for (int64_t i = 0; i < size; ++i) out[i] = static_cast<float>(k[i] / sum);
}

// sigma already checked to be in (0, kMaxGaussianSigma]. src is read completely before dst is written.
void Blur(const float* src, int64_t h, int64_t w, double sigma, float* dst) {
  const int64_t taps = GaussianKernelSize(sigma), half = (taps - 1) / 2;
  auto k = Uninit<float>(taps);
  KernelValues(sigma, taps, k.get());
  auto col_idx = Uninit<int32_t>(w + 2 * half), row_idx = Uninit<int32_t>(h + 2 * half);
  for (int64_t i = 0; i < w + 2 * half; ++i) col_idx[i] = static_cast<int32_t>(ReflectIndex(i - half, w));
  for (int64_t i = 0; i < h + 2 * half; ++i) row_idx[i] = static_cast<int32_t>(ReflectIndex(i - half, h));
  auto line = Uninit<double>(w + 2 * half);
  auto tmp = Uninit<float>(h * w);
  BlurKernel(src, h, w, k.get(), taps, col_idx.get(), row_idx.get(), line.get(), tmp.get(), dst);
}

// Rows in blocks of kRows, transposed to double [in_dim][kRows] so each non-zero updates kRows contiguous
// sums, two output columns at a time for independent sums in flight. Each sum still runs over its
// column's non-zeros in order. Leftover rows go one at a time.
constexpr int64_t kRows = 16;

// acc[0..3] (rows of the block) += value[e] * block[index[e]] for e in [e0, e1).
[[gnu::always_inline]] inline void ProjectColumn(const double* block, const int32_t* index, const float* value,
                                                 int32_t e0, int32_t e1, v4d* acc) {
  for (int32_t e = e0; e < e1; ++e) {
    const v4d v = Splat(value[e]);
    const double* b = block + int64_t(index[e]) * kRows;
    for (int64_t q = 0; q < kRows / 4; ++q) acc[q] += v * LoadD(b + 4 * q);
  }
}

__attribute__((target_clones("arch=x86-64-v3", "default")))
void ProjectKernel(const float* src, int64_t n, int64_t in_dim, const int32_t* start, const int32_t* index,
                   const float* value, int64_t out_dim, double* block, float* dst) {
  int64_t r0 = 0;
  for (; r0 + kRows <= n; r0 += kRows) {
    const float* s = src + r0 * in_dim;
    for (int64_t i = 0; i < in_dim; ++i)
      for (int64_t r = 0; r < kRows; ++r) block[i * kRows + r] = s[r * in_dim + i];
    auto store = [&](int64_t j, const v4d* acc) {
      for (int64_t q = 0; q < kRows / 4; ++q)
        for (int64_t l = 0; l < 4; ++l) dst[(r0 + 4 * q + l) * out_dim + j] = static_cast<float>(acc[q][l]);
    };
    int64_t j = 0;
    for (; j + 2 <= out_dim; j += 2) {
      v4d a[kRows / 4] = {}, b[kRows / 4] = {};
      const int32_t a0 = start[j], a1 = start[j + 1], b0 = start[j + 1], b1 = start[j + 2];
      const int32_t both = std::min(a1 - a0, b1 - b0);
      for (int32_t q = 0; q < both; ++q) {
        ProjectColumn(block, index, value, a0 + q, a0 + q + 1, a);
        ProjectColumn(block, index, value, b0 + q, b0 + q + 1, b);
      }
      ProjectColumn(block, index, value, a0 + both, a1, a);
      ProjectColumn(block, index, value, b0 + both, b1, b);
      store(j, a);
      store(j + 1, b);
    }
    if (j < out_dim) {
      v4d a[kRows / 4] = {};
      ProjectColumn(block, index, value, start[j], start[j + 1], a);
      store(j, a);
    }
  }
  for (; r0 < n; ++r0) {
    const float* s = src + r0 * in_dim;
    for (int64_t j = 0; j < out_dim; ++j) {
      double acc = 0;
      for (int32_t e = start[j]; e < start[j + 1]; ++e) acc += double(value[e]) * double(s[index[e]]);
      dst[r0 * out_dim + j] = static_cast<float>(acc);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

Status AvgPool3x3(const float* src, int64_t n, int64_t h, int64_t w, int64_t c, float* dst, int64_t dst_stride) {
  constexpr const char* fn = "AvgPool3x3";
  if (n < 0) return Invalid("AvgPool3x3: n must be >= 0, got " + std::to_string(n));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "h", h));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "w", w));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "c", c));
  if (dst_stride < c)
    return Invalid("AvgPool3x3: dst_stride " + std::to_string(dst_stride) + " is less than c = " + std::to_string(c));
  int64_t in_count = 0, pixels = 0, stride_span = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "src", {n, h, w, c}, &in_count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "dst", {n, h, w, dst_stride}, &stride_span));
  if (n == 0) return Status::Ok();
  pixels = n * h * w;
  if (!src || !dst) return Invalid("AvgPool3x3: null pointer");
  const int64_t out_count = (pixels - 1) * dst_stride + c;
  if (Overlaps(src, in_count * 4, dst, out_count * 4)) return Invalid("AvgPool3x3: dst overlaps src");
  auto row = Uninit<float>(w * c);
  for (int64_t i = 0; i < n; ++i)
    PoolImage(src + i * h * w * c, h, w, c, dst + i * h * w * dst_stride, dst_stride, row.get());
  return Status::Ok();
}

Status BuildPatchEmbeddings(const float* res3d, const float* res4f, int64_t n, const PatchTapShapes& s, float* dst) {
  constexpr const char* fn = "BuildPatchEmbeddings";
  if (n < 0) return Invalid("BuildPatchEmbeddings: n must be >= 0, got " + std::to_string(n));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res3d height", s.h2));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res3d width", s.w2));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res3d channels", s.c2));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res4f height", s.h3));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res4f width", s.w3));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "res4f channels", s.c3));
  int64_t n2 = 0, n3 = 0, nout = 0, hx_count = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "res3d", {n, s.h2, s.w2, s.c2}, &n2));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "res4f", {n, s.h3, s.w3, s.c3}, &n3));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the embeddings", {n, s.h2, s.w2, s.c2 + s.c3}, &nout));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the upsampling buffer", {s.h3, s.w2, s.c3}, &hx_count));
  if (n == 0) return Status::Ok();
  if (!res3d || !res4f || !dst) return Invalid("BuildPatchEmbeddings: null pointer");
  if (Overlaps(dst, nout * 4, res3d, n2 * 4) || Overlaps(dst, nout * 4, res4f, n3 * 4))
    return Invalid("BuildPatchEmbeddings: dst overlaps an input");
  const int64_t d = s.c2 + s.c3;
  const Axis ay(s.h3, s.h2), ax(s.w3, s.w2);
  auto row = Uninit<float>(std::max(s.w2 * s.c2, s.w3 * s.c3));
  auto p3 = Uninit<float>(s.h3 * s.w3 * s.c3);
  auto hx = Uninit<float>(hx_count);
  for (int64_t i = 0; i < n; ++i) {
    float* out = dst + i * s.h2 * s.w2 * d;
    PoolImage(res3d + i * s.h2 * s.w2 * s.c2, s.h2, s.w2, s.c2, out, d, row.get());
    PoolImage(res4f + i * s.h3 * s.w3 * s.c3, s.h3, s.w3, s.c3, p3.get(), s.c3, row.get());
    UpsampleIntoRows(p3.get(), s, ay, ax, hx.get(), out);
  }
  return Status::Ok();
}

Status SparseProjectRows(const float* src, int64_t n, int64_t in_dim, const int32_t* start, const int32_t* index,
                         const float* value, int64_t nnz, int64_t out_dim, float* dst) {
  constexpr const char* fn = "SparseProjectRows";
  if (n < 0) return Invalid("SparseProjectRows: n must be >= 0, got " + std::to_string(n));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "in_dim", in_dim));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "out_dim", out_dim));
  if (nnz < 0 || nnz > std::numeric_limits<int32_t>::max())
    return Invalid("SparseProjectRows: nnz must be in [0, 2^31 - 1], got " + std::to_string(nnz));
  int64_t in_count = 0, out_count = 0, block_count = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "src", {n, in_dim}, &in_count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "dst", {n, out_dim}, &out_count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the row block", {in_dim, kRows}, &block_count));
  if (!start || (nnz > 0 && (!index || !value))) return Invalid("SparseProjectRows: null pointer");
  if (start[0] != 0 || start[out_dim] != nnz)
    return Invalid("SparseProjectRows: start must run from 0 to nnz = " + std::to_string(nnz) + ", got " +
                   std::to_string(start[0]) + " .. " + std::to_string(start[out_dim]));
  for (int64_t j = 0; j < out_dim; ++j)
    if (start[j + 1] < start[j]) return Invalid("SparseProjectRows: start decreases at output " + std::to_string(j));
  for (int64_t e = 0; e < nnz; ++e)
    if (index[e] < 0 || index[e] >= in_dim)
      return Invalid("SparseProjectRows: index[" + std::to_string(e) + "] = " + std::to_string(index[e]) +
                     " is outside [0, " + std::to_string(in_dim) + ")");
  if (n == 0) return Status::Ok();
  if (!src || !dst) return Invalid("SparseProjectRows: null pointer");
  if (Overlaps(src, in_count * 4, dst, out_count * 4)) return Invalid("SparseProjectRows: dst overlaps src");
  auto block = Uninit<double>(block_count);
  ProjectKernel(src, n, in_dim, start, index, value, out_dim, block.get(), dst);
  return Status::Ok();
}

Status BilinearAxisWeights(int64_t in_size, int64_t out_size, int32_t* i0, int32_t* i1, float* lambda) {
  LOUPE_RETURN_IF_ERROR(CheckSide("BilinearAxisWeights", "in_size", in_size));
  LOUPE_RETURN_IF_ERROR(CheckSide("BilinearAxisWeights", "out_size", out_size));
  if (!i0 || !i1 || !lambda) return Invalid("BilinearAxisWeights: null pointer");
  AxisWeights(in_size, out_size, i0, i1, lambda);
  return Status::Ok();
}

Status ResizeBilinear(const float* src, int64_t sh, int64_t sw, int64_t dh, int64_t dw, float* dst) {
  constexpr const char* fn = "ResizeBilinear";
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "source height", sh));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "source width", sw));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "output height", dh));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "output width", dw));
  int64_t count = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the source", {sh, sw}, &count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the output", {dh, dw}, &count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the row buffer", {sh, dw}, &count));
  if (!src || !dst) return Invalid("ResizeBilinear: null pointer");
  Resize(src, sh, sw, dh, dw, dst);
  return Status::Ok();
}

int64_t GaussianKernelSize(double sigma) {
  if (!(sigma >= 0 && sigma <= kMaxGaussianSigma)) return -1;
  return 2 * static_cast<int64_t>(std::floor(4 * sigma + 0.5)) + 1;
}

Status GaussianKernel1d(double sigma, int64_t size, float* kernel) {
  if (!(sigma > 0 && sigma <= kMaxGaussianSigma))
    return Invalid("GaussianKernel1d: sigma must be in (0, " + std::to_string(kMaxGaussianSigma) + "], got " +
                   std::to_string(sigma));
  if (size < 1 || size % 2 != 1 || size > GaussianKernelSize(kMaxGaussianSigma))
    return Invalid("GaussianKernel1d: kernel size must be odd, in [1, " +
                   std::to_string(GaussianKernelSize(kMaxGaussianSigma)) + "], got " + std::to_string(size));
  if (!kernel) return Invalid("GaussianKernel1d: null pointer");
  KernelValues(sigma, size, kernel);
  return Status::Ok();
}

int64_t ReflectIndex(int64_t i, int64_t n) {
  if (n <= 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

Status GaussianBlur(const float* src, int64_t h, int64_t w, double sigma, float* dst) {
  constexpr const char* fn = "GaussianBlur";
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "h", h));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "w", w));
  int64_t count = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the map", {h, w}, &count));
  if (sigma > kMaxGaussianSigma)
    return Invalid("GaussianBlur: sigma must be <= " + std::to_string(kMaxGaussianSigma) + ", got " +
                   std::to_string(sigma));
  if (!src || !dst) return Invalid("GaussianBlur: null pointer");
  if (!(sigma > 0))
    std::memmove(dst, src, static_cast<size_t>(count) * sizeof(float));
  else
    Blur(src, h, w, sigma, dst);
  return Status::Ok();
}

Status PatchScoresToMap(const float* scores, int64_t grid_h, int64_t grid_w, int64_t map_h, int64_t map_w,
                        double sigma, int64_t out_h, int64_t out_w, float* dst) {
  constexpr const char* fn = "PatchScoresToMap";
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "grid height", grid_h));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "grid width", grid_w));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "map height", map_h));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "map width", map_w));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "output height", out_h));
  LOUPE_RETURN_IF_ERROR(CheckSide(fn, "output width", out_w));
  int64_t count = 0, map_count = 0;
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the scores", {grid_h, grid_w}, &count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the map", {map_h, map_w}, &map_count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "the output", {out_h, out_w}, &count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "a row buffer", {grid_h, map_w}, &count));
  LOUPE_RETURN_IF_ERROR(CheckSize(fn, "a row buffer", {map_h, out_w}, &count));
  if (sigma > kMaxGaussianSigma)
    return Invalid("PatchScoresToMap: sigma must be <= " + std::to_string(kMaxGaussianSigma) + ", got " +
                   std::to_string(sigma));
  if (!scores || !dst) return Invalid("PatchScoresToMap: null pointer");
  auto map = Uninit<float>(map_count);
  Resize(scores, grid_h, grid_w, map_h, map_w, map.get());
  if (sigma > 0) Blur(map.get(), map_h, map_w, sigma, map.get());
  Resize(map.get(), map_h, map_w, out_h, out_w, dst);
  return Status::Ok();
}

}  // namespace loupe
