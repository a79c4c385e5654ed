// Test-only minimal PNG decoder: 8-bit gray / gray+alpha / RGB / RGBA, non-interlaced, via zlib.
// Enough for the reference images; the product decodes images elsewhere (the TypeScript side).
#pragma once
#ifdef LOUPE_TEST_HAVE_ZLIB
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "file_util.h"

namespace loupe_test {

// Decodes `path` into 8-bit RGB (alpha dropped). Returns "" on success, else the reason.
inline std::string ReadPngRgb(const std::string& path, int* width, int* height, std::vector<uint8_t>* rgb) {
  std::string b;
  loupe::Status st = loupe::internal::ReadWholeFile(path, 256u << 20, &b);
  if (!st.ok()) return st.ToString();
  static const unsigned char kSig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (b.size() < 8 || b.compare(0, 8, std::string(reinterpret_cast<const char*>(kSig), 8)) != 0)
    return "not a PNG";
  auto be32 = [&](size_t o) {
    return (uint32_t)(uint8_t)b[o] << 24 | (uint32_t)(uint8_t)b[o + 1] << 16 |
           (uint32_t)(uint8_t)b[o + 2] << 8 | (uint32_t)(uint8_t)b[o + 3];
  };
  uint32_t w = 0, h = 0;
  int color = -1, channels = 0;
  std::string idat;
  size_t o = 8;
  bool seen_end = false;
  while (o + 12 <= b.size()) {
    uint32_t len = be32(o);
    std::string type = b.substr(o + 4, 4);
    if (len > b.size() - o - 12) return "truncated chunk " + type;
    const size_t d = o + 8;
    if (type == "IHDR") {
      if (len != 13) return "bad IHDR";
      w = be32(d);
      h = be32(d + 4);
      int depth = (uint8_t)b[d + 8];
      color = (uint8_t)b[d + 9];
      if (depth != 8) return "only 8-bit PNGs are supported";
      if ((uint8_t)b[d + 10] != 0 || (uint8_t)b[d + 11] != 0) return "unknown compression/filter";
      if ((uint8_t)b[d + 12] != 0) return "interlaced PNGs are not supported";
      channels = color == 0 ? 1 : color == 4 ? 2 : color == 2 ? 3 : color == 6 ? 4 : 0;
      if (!channels) return "unsupported color type " + std::to_string(color);
      if (w == 0 || h == 0 || w > 16384 || h > 16384) return "bad dimensions";
    } else if (type == "IDAT") {
      idat.append(b, d, len);
    } else if (type == "IEND") {
      seen_end = true;
      break;
    }
    o += 12 + len;
  }
  if (!channels) return "no IHDR";
  if (!seen_end) return "no IEND (truncated)";
  const size_t stride = (size_t)w * channels;
  std::vector<uint8_t> raw((stride + 1) * h);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_len != raw.size())
    return "corrupt image data";
  std::vector<uint8_t> px(stride * h), zero(stride, 0);
  for (uint32_t y = 0; y < h; ++y) {
    const uint8_t* f = raw.data() + y * (stride + 1);
    const uint8_t* prev = y ? px.data() + (y - 1) * stride : zero.data();
    uint8_t* cur = px.data() + y * stride;
    for (size_t x = 0; x < stride; ++x) {
      int a = x >= (size_t)channels ? cur[x - channels] : 0;
      int up = prev[x];
      int c = x >= (size_t)channels ? prev[x - channels] : 0;
      int v = f[1 + x], pred;
      switch (f[0]) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = up; break;
        case 3: pred = (a + up) / 2; break;
        case 4: {
          int p = a + up - c, pa = std::abs(p - a), pb = std::abs(p - up), pc = std::abs(p - c);
          pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? up : c);
          break;
        }
        default: return "bad filter type";
      }
      cur[x] = (uint8_t)(v + pred);
    }
  }
  rgb->resize((size_t)w * h * 3);
  for (size_t i = 0; i < (size_t)w * h; ++i)
    for (int k = 0; k < 3; ++k)
      (*rgb)[i * 3 + k] = px[i * channels + (channels >= 3 ? k : 0)];
  *width = (int)w;
  *height = (int)h;
  return "";
}

}  // namespace loupe_test
#endif  // LOUPE_TEST_HAVE_ZLIB
