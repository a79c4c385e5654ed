// SHA-256 (FIPS 180-4), incremental: identifies weight sets (WeightStore::ContentHash).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace loupe {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t len);
  std::string HexDigest();  // finalises; 64 lowercase hex chars

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string Sha256Hex(const void* data, size_t len);

}  // namespace loupe
