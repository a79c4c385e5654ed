// Checks our own cuDNN declarations (src/cuda/cudnn_api.h) against the real cuDNN 9 headers at compile
// time: every enum value we use, the perf struct layout, and every function pointer type (mapped type by
// type onto the real declaration). CMake defines LOUPE_REAL_CUDNN_H (and adds the include folder) only
// where it found cudnn.h (CUDNN_ROOT, e.g. the pip package nvidia-cudnn-cu13); elsewhere this prints SKIP.
// Also a run-time check that the loader fails cleanly, or loads a cuDNN 9 when one is there.
#include <cstdio>
#include <string>
#include <type_traits>

#include "cuda/cudnn_api.h"
#include "test_util.h"

#ifdef LOUPE_REAL_CUDNN_H
#include <cudnn.h>

#include <cstddef>

namespace ours = ::loupe::cudnn;

static_assert(CUDNN_MAJOR == 9, "cudnn_api.h declares the cuDNN 9 ABI");

// ---- enum values ----
#define SAME_VALUE(name) \
  static_assert(static_cast<long long>(ours::name) == static_cast<long long>(::name), #name)
SAME_VALUE(CUDNN_STATUS_SUCCESS);
SAME_VALUE(CUDNN_STATUS_NOT_INITIALIZED);
SAME_VALUE(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH);
SAME_VALUE(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH);
SAME_VALUE(CUDNN_STATUS_DEPRECATED);
SAME_VALUE(CUDNN_STATUS_LICENSE_ERROR);
SAME_VALUE(CUDNN_STATUS_RUNTIME_IN_PROGRESS);
SAME_VALUE(CUDNN_STATUS_RUNTIME_FP_OVERFLOW);
SAME_VALUE(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_NULL_POINTER);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH);
SAME_VALUE(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_SHAPE);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_PADDING);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM);
SAME_VALUE(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM);
SAME_VALUE(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED);
SAME_VALUE(CUDNN_STATUS_EXECUTION_FAILED);
SAME_VALUE(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER);
SAME_VALUE(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS);
SAME_VALUE(CUDNN_STATUS_EXECUTION_FAILED_CUDART);
SAME_VALUE(CUDNN_STATUS_EXECUTION_FAILED_CURAND);
SAME_VALUE(CUDNN_DATA_FLOAT);
SAME_VALUE(CUDNN_DATA_DOUBLE);
SAME_VALUE(CUDNN_DATA_HALF);
SAME_VALUE(CUDNN_DATA_INT8);
SAME_VALUE(CUDNN_DATA_INT32);
SAME_VALUE(CUDNN_DATA_UINT8);
SAME_VALUE(CUDNN_DATA_BFLOAT16);
SAME_VALUE(CUDNN_DATA_INT64);
SAME_VALUE(CUDNN_DEFAULT_MATH);
SAME_VALUE(CUDNN_TENSOR_OP_MATH);
SAME_VALUE(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
SAME_VALUE(CUDNN_FMA_MATH);
SAME_VALUE(CUDNN_NOT_PROPAGATE_NAN);
SAME_VALUE(CUDNN_PROPAGATE_NAN);
SAME_VALUE(CUDNN_TENSOR_NCHW);
SAME_VALUE(CUDNN_TENSOR_NHWC);
SAME_VALUE(CUDNN_TENSOR_NCHW_VECT_C);
SAME_VALUE(CUDNN_ACTIVATION_SIGMOID);
SAME_VALUE(CUDNN_ACTIVATION_RELU);
SAME_VALUE(CUDNN_ACTIVATION_TANH);
SAME_VALUE(CUDNN_ACTIVATION_CLIPPED_RELU);
SAME_VALUE(CUDNN_ACTIVATION_ELU);
SAME_VALUE(CUDNN_ACTIVATION_IDENTITY);
SAME_VALUE(CUDNN_ACTIVATION_SWISH);
SAME_VALUE(CUDNN_CONVOLUTION);
SAME_VALUE(CUDNN_CROSS_CORRELATION);
SAME_VALUE(CUDNN_NON_DETERMINISTIC);
SAME_VALUE(CUDNN_DETERMINISTIC);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_GEMM);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_DIRECT);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_FFT);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED);
SAME_VALUE(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
#undef SAME_VALUE

// ---- enum sizes (they are passed by value through the function pointers) ----
#define SAME_SIZE(t) static_assert(sizeof(ours::t) == sizeof(::t), "sizeof " #t)
SAME_SIZE(cudnnStatus_t);
SAME_SIZE(cudnnDataType_t);
SAME_SIZE(cudnnMathType_t);
SAME_SIZE(cudnnNanPropagation_t);
SAME_SIZE(cudnnTensorFormat_t);
SAME_SIZE(cudnnActivationMode_t);
SAME_SIZE(cudnnConvolutionMode_t);
SAME_SIZE(cudnnDeterminism_t);
SAME_SIZE(cudnnConvolutionFwdAlgo_t);
SAME_SIZE(cudnnConvolutionFwdAlgoPerf_t);
#undef SAME_SIZE

// ---- perf struct layout ----
#define SAME_OFFSET(f)                                                                  \
  static_assert(offsetof(ours::cudnnConvolutionFwdAlgoPerf_t, f) ==                     \
                    offsetof(::cudnnConvolutionFwdAlgoPerf_t, f),                        \
                "offsetof cudnnConvolutionFwdAlgoPerf_t::" #f)
SAME_OFFSET(algo);
SAME_OFFSET(status);
SAME_OFFSET(time);
SAME_OFFSET(memory);
SAME_OFFSET(determinism);
SAME_OFFSET(mathType);
SAME_OFFSET(reserved);
#undef SAME_OFFSET

// ---- function types: map each of our types onto the real one, then compare ----
template <typename T> struct Map { using type = T; };  // int, size_t, double, void, cudaStream_t, ...
template <typename T> struct Map<T*> { using type = typename Map<T>::type*; };
template <typename T> struct Map<const T> { using type = const typename Map<T>::type; };
#define MAP(t) \
  template <> struct Map<ours::t> { using type = ::t; }
MAP(cudnnStatus_t);
MAP(cudnnDataType_t);
MAP(cudnnMathType_t);
MAP(cudnnNanPropagation_t);
MAP(cudnnTensorFormat_t);
MAP(cudnnActivationMode_t);
MAP(cudnnConvolutionMode_t);
MAP(cudnnDeterminism_t);
MAP(cudnnConvolutionFwdAlgo_t);
MAP(cudnnConvolutionFwdAlgoPerf_t);
#undef MAP
// The handle typedefs are pointers to our own opaque structs: map the pointer as a whole (a full
// specialisation wins over Map<T*>).
template <> struct Map<ours::cudnnContext*> { using type = ::cudnnHandle_t; };
template <> struct Map<ours::cudnnTensorStruct*> { using type = ::cudnnTensorDescriptor_t; };
template <> struct Map<ours::cudnnFilterStruct*> { using type = ::cudnnFilterDescriptor_t; };
template <> struct Map<ours::cudnnActivationStruct*> { using type = ::cudnnActivationDescriptor_t; };
template <> struct Map<ours::cudnnConvolutionStruct*> { using type = ::cudnnConvolutionDescriptor_t; };

template <typename F> struct MapFn;
template <typename R, typename... A> struct MapFn<R (*)(A...)> {
  using type = typename Map<R>::type (*)(typename Map<A>::type...);
};

#define SAME_FUNCTION(name)                                                               \
  static_assert(std::is_same<MapFn<ours::PFN_##name>::type, decltype(&::name)>::value,    \
                "signature of " #name)
#define SAME_FUNCTION_X(name) SAME_FUNCTION(name);
LOUPE_CUDNN_REQUIRED_FUNCTIONS(SAME_FUNCTION_X)
LOUPE_CUDNN_OPTIONAL_FUNCTIONS(SAME_FUNCTION_X)
#undef SAME_FUNCTION_X
#undef SAME_FUNCTION
#endif  // LOUPE_REAL_CUDNN_H

TEST_CASE(DeclarationsMatchRealHeaders) {
#ifdef LOUPE_REAL_CUDNN_H
  std::printf("  checked against cudnn.h %d.%d.%d at compile time (static_asserts)\n", CUDNN_MAJOR,
              CUDNN_MINOR, CUDNN_PATCHLEVEL);
#else
  SKIP("real cudnn.h not found at configure time (set CUDNN_ROOT to a cuDNN 9 with include/)");
#endif
}

TEST_CASE(LoaderFailsCleanlyOrLoadsCudnn9) {
  std::string why;
  const loupe::cudnn::Api* api = loupe::cudnn::LoadCudnn(&why);
  if (!api) {
    CHECK(!why.empty());
    std::printf("  cuDNN not loadable here (expected on CPU-only machines): %s\n", why.c_str());
    return;
  }
  CHECK(api->version >= 90000 && api->version < 100000);
  CHECK(api->cudnnGetErrorString != nullptr);
  const char* s = api->cudnnGetErrorString(loupe::cudnn::CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(s != nullptr);
  std::printf("  loaded %s, version %zu, CUDNN_STATUS_NOT_SUPPORTED -> %s\n", api->path.c_str(),
              api->version, s ? s : "(null)");
#ifdef LOUPE_REAL_CUDNN_H
  // The library we load at run time should be the cuDNN 9 whose headers we compiled against.
  CHECK(api->version / 10000 == CUDNN_MAJOR);
#endif
}

LOUPE_TEST_MAIN()
