// Internal: a minimal protocol-buffers wire-format encoder (proto2 semantics), enough to write ONNX.
// Messages are built bottom-up into byte strings: a nested message is encoded first, then added to
// its parent as a length-delimited field. Repeated scalars are written unpacked (the proto2 default,
// which every parser accepts). Only the wire types ONNX needs exist: varint (0) and bytes (2).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace loupe {
namespace pb {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

inline void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline void AppendTag(std::string* out, uint32_t field, WireType wt) {
  AppendVarint(out, (static_cast<uint64_t>(field) << 3) | wt);
}

// Builds one message. Fields are appended in the order called (parsers accept any order).
class Message {
 public:
  // int32/int64/enum/bool fields: negative values are sign-extended to 10 bytes, as protobuf does.
  Message& Int(uint32_t field, int64_t v) {
    AppendTag(&buf_, field, kVarint);
    AppendVarint(&buf_, static_cast<uint64_t>(v));
    return *this;
  }
  Message& Float(uint32_t field, float v) {
    AppendTag(&buf_, field, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
    return *this;
  }
  Message& Bytes(uint32_t field, const void* data, size_t n) {
    AppendTag(&buf_, field, kLengthDelimited);
    AppendVarint(&buf_, n);
    buf_.append(static_cast<const char*>(data), n);
    return *this;
  }
  Message& String(uint32_t field, const std::string& s) { return Bytes(field, s.data(), s.size()); }
  Message& Sub(uint32_t field, const Message& m) { return Bytes(field, m.buf_.data(), m.buf_.size()); }
  // Repeated int64, unpacked (one tag per element).
  Message& Ints(uint32_t field, const std::vector<int64_t>& vs) {
    for (int64_t v : vs) Int(field, v);
    return *this;
  }
  // Reserves room for a following Bytes() call of n payload bytes (avoids regrowth for big tensors).
  void Reserve(size_t extra) { buf_.reserve(buf_.size() + extra); }

  const std::string& bytes() const { return buf_; }
  std::string Take() { return std::move(buf_); }  // leaves this message empty
  size_t size() const { return buf_.size(); }

 private:
  std::string buf_;
};

}  // namespace pb
}  // namespace loupe
