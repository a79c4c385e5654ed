// Internal: small RAII helpers for the ML CUDA code (svm_kernels.cu, knn_kernels.cu). Every runtime
// call is checked (cuda_check.h); destructors free quietly (they cannot report).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "loupe/status.h"

namespace loupe {
namespace ml {

// Makes `device` current for the scope and restores the previous current device.
class CudaDeviceScope {
 public:
  CudaDeviceScope() = default;
  CudaDeviceScope(const CudaDeviceScope&) = delete;
  CudaDeviceScope& operator=(const CudaDeviceScope&) = delete;
  ~CudaDeviceScope() {
    if (restore_) cudaSetDevice(prev_);
  }
  Status Enter(int device) {
    LOUPE_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) {
      LOUPE_CUDA_CHECK(cudaSetDevice(device));
      restore_ = true;
    }
    return Status::Ok();
  }

 private:
  int prev_ = 0;
  bool restore_ = false;
};

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Free(); }
  void Free() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    count_ = 0;
  }
  // Allocates exactly `count` elements (previous content is dropped).
  Status Alloc(size_t count, const char* what) {
    Free();
    if (count == 0) count = 1;
    cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&p_), count * sizeof(T));
    if (e != cudaSuccess) {
      p_ = nullptr;
      return Status(StatusCode::kInternal, std::string("cudaMalloc(") + what + ", " +
                                               std::to_string(count * sizeof(T)) +
                                               " bytes) failed: " + cudaGetErrorString(e));
    }
    count_ = count;
    return Status::Ok();
  }
  // Grow-only: keeps the allocation when it is large enough.
  Status Reserve(size_t count, const char* what) {
    if (p_ && count_ >= count) return Status::Ok();
    return Alloc(count, what);
  }
  T* get() const { return p_; }
  size_t count() const { return count_; }

 private:
  T* p_ = nullptr;
  size_t count_ = 0;
};

class CudaStream {
 public:
  CudaStream() = default;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Status Create() {
    LOUPE_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    return Status::Ok();
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace ml
}  // namespace loupe
