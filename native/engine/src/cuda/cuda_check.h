// Every CUDA runtime call goes through LOUPE_CUDA_CHECK: a failure becomes a Status naming the call
// (the binding turns it into a JS exception), never an abort.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "loupe/status.h"

#define LOUPE_CUDA_CHECK(call)                                                              \
  do {                                                                                      \
    cudaError_t _e = (call);                                                                \
    if (_e != cudaSuccess)                                                                  \
      return ::loupe::Status(::loupe::StatusCode::kInternal,                                \
                             std::string(#call) + " failed: " + cudaGetErrorString(_e));    \
  } while (0)

// After a kernel launch: launch-configuration errors show up in cudaGetLastError.
#define LOUPE_CUDA_CHECK_LAUNCH(kernel_name)                                                \
  do {                                                                                      \
    cudaError_t _e = cudaGetLastError();                                                    \
    if (_e != cudaSuccess)                                                                  \
      return ::loupe::Status(::loupe::StatusCode::kInternal,                                \
                             std::string("launch of ") + kernel_name + " failed: " +        \
                             cudaGetErrorString(_e));                                       \
  } while (0)
