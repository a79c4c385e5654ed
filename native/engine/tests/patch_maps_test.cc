// PatchCore patch features and anomaly maps (patch_maps.h) against naive reference loops written from
// the torch / anomalib definitions (explicit zero padding, the bilinear formula, explicit reflection),
// edge sizes, and argument checking.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loupe/patch_maps.h"
#include "test_util.h"

using namespace loupe;

namespace {

std::vector<float> Random(uint64_t seed, int64_t n) {
  std::vector<float> v((size_t)n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
  }
  return v;
}

// Relative-ish tolerance for float results of double references.
bool Near(double got, double want, double tol = 2e-6) {
  return std::fabs(got - want) <= tol * (1 + std::fabs(want));
}

// torch AvgPool2d(3, 1, 1), count_include_pad: sum of the in-bounds 3x3 neighbours / 9.
std::vector<double> NaivePool(const std::vector<float>& src, int64_t n, int64_t h, int64_t w, int64_t c) {
  std::vector<double> out((size_t)(n * h * w * c));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t ch = 0; ch < c; ++ch) {
          double s = 0;
          for (int64_t dy = -1; dy <= 1; ++dy)
            for (int64_t dx = -1; dx <= 1; ++dx) {
              const int64_t yy = y + dy, xx = x + dx;
              if (yy >= 0 && yy < h && xx >= 0 && xx < w) s += src[(size_t)(((i * h + yy) * w + xx) * c + ch)];
            }
          out[(size_t)(((i * h + y) * w + x) * c + ch)] = s / 9;
        }
  return out;
}

// torch bilinear, align_corners = false, of plane(y, x) [h][w] at output (oy, ox) of [H][W].
template <typename F>
double NaiveBilinear(F plane, int64_t h, int64_t w, int64_t H, int64_t W, int64_t oy, int64_t ox) {
  const double sy = std::max(0.0, (oy + 0.5) * h / H - 0.5), sx = std::max(0.0, (ox + 0.5) * w / W - 0.5);
  const int64_t y0 = std::min<int64_t>((int64_t)sy, h - 1), x0 = std::min<int64_t>((int64_t)sx, w - 1);
  const int64_t y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
  const double ly = sy - y0, lx = sx - x0;
  return (1 - ly) * ((1 - lx) * plane(y0, x0) + lx * plane(y0, x1)) +
         ly * ((1 - lx) * plane(y1, x0) + lx * plane(y1, x1));
}

// Mirror into [0, n) one bounce at a time (torch 'reflect', edge not repeated).
int64_t NaiveReflect(int64_t i, int64_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

// 2-D Gaussian blur as the double sum over the full (outer product) kernel with reflected taps.
std::vector<double> NaiveBlur(const std::vector<float>& src, int64_t h, int64_t w, double sigma) {
  const int64_t half = (int64_t)std::floor(4 * sigma + 0.5);
  std::vector<double> k((size_t)(2 * half + 1));
  double sum = 0;
  for (int64_t t = -half; t <= half; ++t)
    sum += k[(size_t)(t + half)] = std::exp(-(double)(t * t) / (2 * sigma * sigma));
  for (auto& v : k) v /= sum;
  std::vector<double> out((size_t)(h * w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double s = 0;
      for (int64_t dy = -half; dy <= half; ++dy)
        for (int64_t dx = -half; dx <= half; ++dx)
          s += k[(size_t)(dy + half)] * k[(size_t)(dx + half)] *
               src[(size_t)(NaiveReflect(y + dy, h) * w + NaiveReflect(x + dx, w))];
      out[(size_t)(y * w + x)] = s;
    }
  return out;
}

bool IsInvalid(const Status& s) { return s.code() == StatusCode::kInvalidArgument && !s.message().empty(); }

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE(pool_matches_naive_reference) {
  struct Case { int64_t n, h, w, c; } cases[] = {
      {2, 5, 7, 3}, {1, 1, 1, 4}, {1, 2, 2, 1}, {3, 1, 6, 2}, {1, 6, 1, 5}, {1, 9, 11, 17}};
  for (const auto& cs : cases) {
    auto src = Random(cs.n * 100 + cs.h, cs.n * cs.h * cs.w * cs.c);
    std::vector<float> out(src.size());
    REQUIRE_OK(AvgPool3x3(src.data(), cs.n, cs.h, cs.w, cs.c, out.data(), cs.c));
    auto ref = NaivePool(src, cs.n, cs.h, cs.w, cs.c);
    int bad = 0;
    for (size_t i = 0; i < out.size(); ++i) bad += !Near(out[i], ref[i]);
    CHECK(bad == 0);
  }
  // 3x3 ones: the centre sees 9, a corner 4, an edge 6 (always / 9).
  std::vector<float> ones(9, 1.f), o(9);
  REQUIRE_OK(AvgPool3x3(ones.data(), 1, 3, 3, 1, o.data(), 1));
  CHECK_NEAR(o[4], 1.0, 1e-7);
  CHECK_NEAR(o[0], 4.0 / 9, 1e-7);
  CHECK_NEAR(o[1], 6.0 / 9, 1e-7);
}

TEST_CASE(pool_writes_strided_rows_only) {
  const int64_t h = 3, w = 4, c = 2, stride = 5;
  auto src = Random(7, h * w * c);
  std::vector<float> out((size_t)((h * w - 1) * stride + c), -99.f);
  REQUIRE_OK(AvgPool3x3(src.data(), 1, h, w, c, out.data(), stride));
  auto ref = NaivePool(src, 1, h, w, c);
  for (int64_t p = 0; p < h * w; ++p)
    for (int64_t j = 0; j < stride && p * stride + j < (int64_t)out.size(); ++j) {
      if (j < c) CHECK(Near(out[(size_t)(p * stride + j)], ref[(size_t)(p * c + j)]));
      else CHECK(out[(size_t)(p * stride + j)] == -99.f);
    }
}

TEST_CASE(bilinear_axis_matches_torch_grid) {
  std::vector<int32_t> i0(28), i1(28);
  std::vector<float> l(28);
  REQUIRE_OK(BilinearAxisWeights(14, 28, i0.data(), i1.data(), l.data()));
  CHECK(i0[0] == 0 && i1[0] == 1 && l[0] == 0.f);  // -0.25 clamps to 0
  CHECK(i0[1] == 0 && i1[1] == 1 && l[1] == 0.25f);
  CHECK(i0[2] == 0 && i1[2] == 1 && l[2] == 0.75f);
  CHECK(i0[27] == 13 && i1[27] == 13);
}

TEST_CASE(resize_matches_naive_reference) {
  struct Case { int64_t sh, sw, dh, dw; } cases[] = {
      {5, 7, 3, 11}, {7, 5, 13, 9}, {1, 1, 4, 3}, {3, 1, 2, 6}, {28, 28, 224, 224}, {224, 224, 97, 301}, {2, 3, 1, 1}};
  for (const auto& cs : cases) {
    auto src = Random(cs.sh * 31 + cs.dw, cs.sh * cs.sw);
    std::vector<float> out((size_t)(cs.dh * cs.dw));
    REQUIRE_OK(ResizeBilinear(src.data(), cs.sh, cs.sw, cs.dh, cs.dw, out.data()));
    int bad = 0;
    for (int64_t y = 0; y < cs.dh; ++y)
      for (int64_t x = 0; x < cs.dw; ++x) {
        const double ref = NaiveBilinear([&](int64_t yy, int64_t xx) { return (double)src[(size_t)(yy * cs.sw + xx)]; },
                                         cs.sh, cs.sw, cs.dh, cs.dw, y, x);
        bad += !Near(out[(size_t)(y * cs.dw + x)], ref);
      }
    CHECK(bad == 0);
  }
  // torch's 2x2 -> 4x4 exactly.
  const float s[4] = {1, 2, 3, 4};
  const float want[16] = {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4};
  float got[16];
  REQUIRE_OK(ResizeBilinear(s, 2, 2, 4, 4, got));
  CHECK(std::memcmp(got, want, sizeof got) == 0);
}

TEST_CASE(resize_same_size_copies_and_may_alias) {
  auto src = Random(3, 6 * 9);
  std::vector<float> out(src.size());
  REQUIRE_OK(ResizeBilinear(src.data(), 6, 9, 6, 9, out.data()));
  CHECK(BitEqual(out, src));
  // In place (a same-size resize, then a shrink into the front of the same buffer).
  std::vector<float> a = src;
  REQUIRE_OK(ResizeBilinear(a.data(), 6, 9, 6, 9, a.data()));
  CHECK(BitEqual(a, src));
  std::vector<float> b(4 * 5), c = src;
  REQUIRE_OK(ResizeBilinear(src.data(), 6, 9, 4, 5, b.data()));
  REQUIRE_OK(ResizeBilinear(c.data(), 6, 9, 4, 5, c.data()));
  CHECK(std::memcmp(b.data(), c.data(), b.size() * sizeof(float)) == 0);
}

TEST_CASE(gaussian_kernel_and_reflect) {
  CHECK(GaussianKernelSize(4) == 33);
  CHECK(GaussianKernelSize(1) == 9);
  CHECK(GaussianKernelSize(0) == 1);
  CHECK(GaussianKernelSize(-1) == -1);
  CHECK(GaussianKernelSize(std::nan("")) == -1);
  std::vector<float> k(33);
  REQUIRE_OK(GaussianKernel1d(4, 33, k.data()));
  double sum = 0;
  for (float v : k) sum += v;
  CHECK_NEAR(sum, 1.0, 1e-6);
  for (int i = 0; i < 16; ++i) CHECK(k[(size_t)i] == k[(size_t)(32 - i)]);
  CHECK_NEAR(k[16] / k[20], std::exp(16.0 / 32), 1e-5);
  const int64_t want[] = {3, 2, 1, 0, 4, 3, 2, 1};
  const int64_t at[] = {-3, -2, -1, 0, 4, 5, 6, 7};
  for (int i = 0; i < 8; ++i) CHECK(ReflectIndex(at[i], 5) == want[i]);
  for (int64_t i = -40; i <= 40; ++i) {
    CHECK(ReflectIndex(i, 1) == 0);
    CHECK(ReflectIndex(i, 2) == NaiveReflect(i, 2));
    CHECK(ReflectIndex(i, 7) == NaiveReflect(i, 7));
  }
}

TEST_CASE(blur_matches_naive_reference) {
  struct Case { int64_t h, w; double sigma; } cases[] = {
      {9, 13, 1.3}, {41, 37, 4}, {224, 224, 4}, {5, 6, 2} /* kernel wider than the map: several bounces */,
      {1, 7, 1}, {7, 1, 0.7}, {1, 1, 3}, {2, 2, 0.5}, {19, 35, 0.1} /* 1 tap */};
  for (const auto& cs : cases) {
    auto src = Random(cs.h * 7 + cs.w, cs.h * cs.w);
    std::vector<float> out(src.size());
    REQUIRE_OK(GaussianBlur(src.data(), cs.h, cs.w, cs.sigma, out.data()));
    auto ref = NaiveBlur(src, cs.h, cs.w, cs.sigma);
    int bad = 0;
    for (size_t i = 0; i < out.size(); ++i) bad += !Near(out[i], ref[i], 1e-5);
    if (bad) std::printf("  blur %lldx%lld sigma %g: %d mismatches\n", (long long)cs.h, (long long)cs.w, cs.sigma, bad);
    CHECK(bad == 0);
    // In place gives the same bits.
    std::vector<float> inplace = src;
    REQUIRE_OK(GaussianBlur(inplace.data(), cs.h, cs.w, cs.sigma, inplace.data()));
    CHECK(BitEqual(inplace, out));
  }
  // A constant stays constant; sigma <= 0 (and NaN) copies.
  std::vector<float> c(40 * 40, 3.f), o(c.size());
  REQUIRE_OK(GaussianBlur(c.data(), 40, 40, 4, o.data()));
  for (float v : o) CHECK_NEAR(v, 3.0, 1e-5);
  auto src = Random(5, 8 * 3);
  for (double sigma : {0.0, -2.0, std::nan("")}) {
    std::vector<float> copy(src.size());
    REQUIRE_OK(GaussianBlur(src.data(), 8, 3, sigma, copy.data()));
    CHECK(BitEqual(copy, src));
  }
}

// The header promises TypeScript's rounding: each pass sums taps in order in double, rows stored as float.
TEST_CASE(blur_rounds_like_the_separable_definition) {
  for (double sigma : {4.0, 1.3}) {
    const int64_t h = 37, w = 41, taps = GaussianKernelSize(sigma), half = (taps - 1) / 2;
    auto src = Random(77, h * w);
    std::vector<float> k((size_t)taps), tmp(src.size()), want(src.size()), got(src.size());
    REQUIRE_OK(GaussianKernel1d(sigma, taps, k.data()));
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double acc = 0;
        for (int64_t t = 0; t < taps; ++t)
          acc += (double)k[(size_t)t] * src[(size_t)(y * w + NaiveReflect(x + t - half, w))];
        tmp[(size_t)(y * w + x)] = (float)acc;
      }
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double acc = 0;
        for (int64_t t = 0; t < taps; ++t)
          acc += (double)k[(size_t)t] * tmp[(size_t)(NaiveReflect(y + t - half, h) * w + x)];
        want[(size_t)(y * w + x)] = (float)acc;
      }
    REQUIRE_OK(GaussianBlur(src.data(), h, w, sigma, got.data()));
    CHECK(BitEqual(got, want));
  }
}

// Pooling and bilinear round like the former TypeScript too: double sums, float rows in between.
TEST_CASE(pool_and_resize_round_like_the_separable_definition) {
  const int64_t h = 7, w = 9, c = 5;
  auto src = Random(91, h * w * c);
  std::vector<float> rows(src.size()), want(src.size()), got(src.size());
  for (int64_t y = 0; y < h; ++y)
    for (int64_t i = 0; i < w * c; ++i) {
      double s = 0;
      for (int64_t yy = y - 1; yy <= y + 1; ++yy)
        if (yy >= 0 && yy < h) s += src[(size_t)(yy * w * c + i)];
      rows[(size_t)(y * w * c + i)] = (float)s;
    }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        double s = 0;
        for (int64_t xx = x - 1; xx <= x + 1; ++xx)
          if (xx >= 0 && xx < w) s += rows[(size_t)((y * w + xx) * c + ch)];
        want[(size_t)((y * w + x) * c + ch)] = (float)(s * (1.0 / 9.0));
      }
  REQUIRE_OK(AvgPool3x3(src.data(), 1, h, w, c, got.data(), c));
  CHECK(BitEqual(got, want));

  const int64_t sh = 11, sw = 13, dh = 29, dw = 17;
  auto map = Random(92, sh * sw);
  std::vector<int32_t> y0(dh), y1(dh), x0(dw), x1(dw);
  std::vector<float> ly(dh), lx(dw), tmp((size_t)(sh * dw)), rwant((size_t)(dh * dw)), rgot(rwant.size());
  REQUIRE_OK(BilinearAxisWeights(sh, dh, y0.data(), y1.data(), ly.data()));
  REQUIRE_OK(BilinearAxisWeights(sw, dw, x0.data(), x1.data(), lx.data()));
  for (int64_t y = 0; y < sh; ++y)
    for (int64_t x = 0; x < dw; ++x)
      tmp[(size_t)(y * dw + x)] = (float)((1 - (double)lx[(size_t)x]) * map[(size_t)(y * sw + x0[(size_t)x])] +
                                          (double)lx[(size_t)x] * map[(size_t)(y * sw + x1[(size_t)x])]);
  for (int64_t y = 0; y < dh; ++y)
    for (int64_t x = 0; x < dw; ++x)
      rwant[(size_t)(y * dw + x)] = (float)((1 - (double)ly[(size_t)y]) * tmp[(size_t)(y0[(size_t)y] * dw + x)] +
                                            (double)ly[(size_t)y] * tmp[(size_t)(y1[(size_t)y] * dw + x)]);
  REQUIRE_OK(ResizeBilinear(map.data(), sh, sw, dh, dw, rgot.data()));
  CHECK(BitEqual(rgot, rwant));
}

TEST_CASE(embeddings_match_naive_reference) {
  const PatchTapShapes shapes[] = {
      {5, 7, 3, 3, 4, 2}, {28, 28, 512, 14, 14, 1024}, {1, 1, 2, 1, 1, 3}, {4, 4, 1, 2, 2, 1}};
  for (const auto& s : shapes) {
    const int64_t n = s.h2 == 28 ? 1 : 2, d = s.c2 + s.c3;
    auto res3d = Random(11, n * s.h2 * s.w2 * s.c2), res4f = Random(12, n * s.h3 * s.w3 * s.c3);
    std::vector<float> emb((size_t)(n * s.h2 * s.w2 * d));
    REQUIRE_OK(BuildPatchEmbeddings(res3d.data(), res4f.data(), n, s, emb.data()));
    auto p2 = NaivePool(res3d, n, s.h2, s.w2, s.c2), p3 = NaivePool(res4f, n, s.h3, s.w3, s.c3);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t y = 0; y < s.h2; ++y)
        for (int64_t x = 0; x < s.w2; ++x) {
          const float* row = emb.data() + ((i * s.h2 + y) * s.w2 + x) * d;
          for (int64_t ch = 0; ch < s.c2; ++ch)
            bad += !Near(row[ch], p2[(size_t)(((i * s.h2 + y) * s.w2 + x) * s.c2 + ch)]);
          for (int64_t ch = 0; ch < s.c3; ++ch) {
            const double ref = NaiveBilinear(
                [&](int64_t yy, int64_t xx) { return p3[(size_t)(((i * s.h3 + yy) * s.w3 + xx) * s.c3 + ch)]; }, s.h3,
                s.w3, s.h2, s.w2, y, x);
            bad += !Near(row[s.c2 + ch], ref, 5e-6);
          }
        }
    CHECK(bad == 0);
  }
}

TEST_CASE(projection_matches_naive_sum) {
  const int64_t n = 13, in_dim = 50, out_dim = 9;  // 13 rows: one full block of 8 and a partial one
  auto src = Random(21, n * in_dim);
  std::vector<int32_t> start{0}, index;
  std::vector<float> value;
  uint64_t s = 5;
  for (int64_t j = 0; j < out_dim; ++j) {
    for (int64_t i = 0; i < in_dim; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      if ((s >> 60) < 3) {
        index.push_back((int32_t)i);
        value.push_back((s >> 59) & 1 ? 0.5f : -0.5f);
      }
    }
    if (j == 4) index.resize(start.back()), value.resize(start.back());  // an empty output column
    start.push_back((int32_t)index.size());
  }
  std::vector<float> out((size_t)(n * out_dim), -1.f);
  REQUIRE_OK(SparseProjectRows(src.data(), n, in_dim, start.data(), index.data(), value.data(), (int64_t)index.size(),
                               out_dim, out.data()));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < out_dim; ++j) {
      double ref = 0;
      for (int32_t e = start[(size_t)j]; e < start[(size_t)j + 1]; ++e)
        ref += (double)value[(size_t)e] * src[(size_t)(r * in_dim + index[(size_t)e])];
      CHECK(out[(size_t)(r * out_dim + j)] == (float)ref);  // same order, double sums: exact
    }
  CHECK(out[4] == 0.f);
}

TEST_CASE(patch_scores_to_map_is_resize_blur_resize) {
  auto ps = Random(31, 28 * 28);
  std::vector<float> up(224 * 224), blurred(224 * 224), resized(300 * 256), got(300 * 256), same(224 * 224);
  REQUIRE_OK(ResizeBilinear(ps.data(), 28, 28, 224, 224, up.data()));
  REQUIRE_OK(GaussianBlur(up.data(), 224, 224, 4, blurred.data()));
  REQUIRE_OK(ResizeBilinear(blurred.data(), 224, 224, 300, 256, resized.data()));
  REQUIRE_OK(PatchScoresToMap(ps.data(), 28, 28, 224, 224, 4, 300, 256, got.data()));
  CHECK(BitEqual(got, resized));
  REQUIRE_OK(PatchScoresToMap(ps.data(), 28, 28, 224, 224, 4, 224, 224, same.data()));
  CHECK(BitEqual(same, blurred));
  REQUIRE_OK(PatchScoresToMap(ps.data(), 28, 28, 224, 224, 0, 224, 224, same.data()));
  CHECK(BitEqual(same, up));
  // The peak of one hot patch lands under it.
  std::vector<float> hot(28 * 28, 2.f);
  hot[14 * 28 + 14] = 10.f;
  REQUIRE_OK(PatchScoresToMap(hot.data(), 28, 28, 224, 224, 4, 224, 224, same.data()));
  size_t arg = 0;
  for (size_t i = 0; i < same.size(); ++i) if (same[i] > same[arg]) arg = i;
  CHECK(std::abs((long)(arg / 224) - 116) <= 4 && std::abs((long)(arg % 224) - 116) <= 4);
}

TEST_CASE(bad_arguments_are_invalid) {
  std::vector<float> a(64), b(64);
  std::vector<int32_t> i0(8), i1(8);
  CHECK(IsInvalid(AvgPool3x3(a.data(), 1, 0, 2, 2, b.data(), 2)));
  CHECK(IsInvalid(AvgPool3x3(a.data(), -1, 2, 2, 2, b.data(), 2)));
  CHECK(IsInvalid(AvgPool3x3(a.data(), 1, 2, 2, 2, b.data(), 1)));           // stride < c
  CHECK(IsInvalid(AvgPool3x3(a.data(), 1, 2, 2, 2, a.data() + 3, 2)));       // overlap
  CHECK(IsInvalid(AvgPool3x3(nullptr, 1, 2, 2, 2, b.data(), 2)));
  CHECK_OK(AvgPool3x3(nullptr, 0, 2, 2, 2, nullptr, 2));                      // no images: nothing to do
  CHECK(IsInvalid(AvgPool3x3(a.data(), int64_t{1} << 30, 1 << 20, 1 << 20, 2, b.data(), 2)));  // too large
  PatchTapShapes s{2, 2, 2, 1, 1, 2};
  CHECK_OK(BuildPatchEmbeddings(a.data(), a.data() + 8, 1, s, b.data()));
  CHECK(IsInvalid(BuildPatchEmbeddings(a.data(), a.data() + 8, 1, s, a.data() + 4)));
  CHECK(IsInvalid(BuildPatchEmbeddings(a.data(), a.data() + 8, 1, PatchTapShapes{2, 2, 0, 1, 1, 2}, b.data())));
  CHECK(IsInvalid(BuildPatchEmbeddings(a.data(), a.data() + 8, -2, s, b.data())));
  CHECK(IsInvalid(BilinearAxisWeights(0, 8, i0.data(), i1.data(), a.data())));
  CHECK(IsInvalid(BilinearAxisWeights(4, 8, i0.data(), nullptr, a.data())));
  CHECK(IsInvalid(ResizeBilinear(a.data(), 2, 0, 4, 4, b.data())));
  CHECK(IsInvalid(ResizeBilinear(a.data(), 2, 2, 4, -4, b.data())));
  CHECK(IsInvalid(GaussianBlur(a.data(), 0, 4, 1, b.data())));
  CHECK(IsInvalid(GaussianBlur(a.data(), 4, 4, 1e9, b.data())));
  CHECK(IsInvalid(GaussianBlur(a.data(), 4, 4, INFINITY, b.data())));
  CHECK(IsInvalid(GaussianKernel1d(0, 3, a.data())));
  CHECK(IsInvalid(GaussianKernel1d(1, 4, a.data())));
  CHECK(IsInvalid(GaussianKernel1d(1, -1, a.data())));
  CHECK(IsInvalid(PatchScoresToMap(a.data(), 2, 2, 0, 4, 1, 4, 4, b.data())));
  CHECK(IsInvalid(PatchScoresToMap(a.data(), 2, 2, 4, 4, 1e9, 4, 4, b.data())));
  // CSR: wrong end, decreasing start, index out of range, overlapping output.
  const int32_t st[3] = {0, 2, 3}, bad_st[3] = {0, 3, 2}, idx[3] = {0, 3, 1}, bad_idx[3] = {0, 4, 1};
  const float val[3] = {1, -1, 1};
  CHECK_OK(SparseProjectRows(a.data(), 2, 4, st, idx, val, 3, 2, b.data()));
  CHECK(IsInvalid(SparseProjectRows(a.data(), 2, 4, st, idx, val, 2, 2, b.data())));
  CHECK(IsInvalid(SparseProjectRows(a.data(), 2, 4, bad_st, idx, val, 2, 2, b.data())));
  CHECK(IsInvalid(SparseProjectRows(a.data(), 2, 4, st, bad_idx, val, 3, 2, b.data())));
  CHECK(IsInvalid(SparseProjectRows(a.data(), 2, 4, st, idx, val, 3, 2, a.data() + 6)));
  CHECK(IsInvalid(SparseProjectRows(a.data(), 2, 0, st, idx, val, 3, 2, b.data())));
}

LOUPE_TEST_MAIN()
