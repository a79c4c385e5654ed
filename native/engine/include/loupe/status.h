// Status codes returned by every engine entry point (onnxruntime-style: no exceptions cross the API).
#pragma once
#include <string>
#include <utility>

namespace loupe {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // caller passed something malformed (shape, name, option)
  kNotFound,         // a file or a named tensor/tap does not exist
  kIoError,          // a read/write failed (permissions, short read)
  kCorruptData,      // a file exists but its content is wrong (truncated shard, bad JSON, bad shape)
  kUnavailable,      // the requested backend/device is not available on this machine
  kCancelled,        // work was cancelled before it ran
  kInternal,         // a library call (oneDNN, CUDA, cuDNN) failed; message names the call
};

const char* StatusCodeName(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CorruptData: shard group1-shard3of25.bin is 123 bytes, expected 4194304"
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

#define LOUPE_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::loupe::Status _st = (expr);            \
    if (!_st.ok()) return _st;               \
  } while (0)

}  // namespace loupe
