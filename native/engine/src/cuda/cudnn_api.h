// Our own minimal declarations of the cuDNN 9 legacy C API that the CUDA backend uses.
//
// We never include <cudnn.h>: libcudnn.so.9 is dlopen()ed at run time (cudnn_loader.cc), so the engine
// builds without cuDNN and a binary built with CUDA runs CPU-only where no GPU or no cuDNN exists.
// Everything lives in namespace loupe::cudnn (same names as cuDNN, so the code reads like cuDNN code and
// tests/cuda/cudnn_decl_test.cc can include the real header next to this one without clashes).
//
// Values and signatures are those of cuDNN 9.x (cudnn_graph.h, cudnn_ops.h, cudnn_cnn.h; the cuDNN 9
// ABI keeps them stable across 9.x). NOTE: cuDNN 9 renumbered cudnnStatus_t (BAD_PARAM is 2000, not 3
// as in cuDNN 8): never load a cuDNN 8 library with these declarations (the loader checks the major).
// tests/cuda/cudnn_decl_test.cc static_asserts every value, struct offset and function type below
// against the real headers whenever CMake finds them (CUDNN_ROOT / the pip package nvidia-cudnn-cu13).
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstddef>
#include <string>

namespace loupe {
namespace cudnn {

// ---- opaque handles (cudnn_graph.h, cudnn_ops.h, cudnn_cnn.h) ----
struct cudnnContext;
typedef cudnnContext* cudnnHandle_t;
struct cudnnTensorStruct;
typedef cudnnTensorStruct* cudnnTensorDescriptor_t;
struct cudnnFilterStruct;
typedef cudnnFilterStruct* cudnnFilterDescriptor_t;
struct cudnnActivationStruct;
typedef cudnnActivationStruct* cudnnActivationDescriptor_t;
struct cudnnConvolutionStruct;
typedef cudnnConvolutionStruct* cudnnConvolutionDescriptor_t;

// ---- enums (exact cuDNN 9 values) ----
typedef enum {
  CUDNN_STATUS_SUCCESS = 0,
  CUDNN_STATUS_NOT_INITIALIZED = 1001,
  CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH = 1002,
  CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH = 1003,
  CUDNN_STATUS_DEPRECATED = 1004,
  CUDNN_STATUS_LICENSE_ERROR = 1005,
  CUDNN_STATUS_RUNTIME_IN_PROGRESS = 1006,
  CUDNN_STATUS_RUNTIME_FP_OVERFLOW = 1007,
  CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED = 1008,
  CUDNN_STATUS_BAD_PARAM = 2000,
  CUDNN_STATUS_BAD_PARAM_NULL_POINTER = 2002,
  CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER = 2003,
  CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED = 2004,
  CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND = 2005,
  CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT = 2006,
  CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH = 2007,
  CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH = 2008,
  CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES = 2009,
  CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE = 2010,
  CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH = 2011,
  CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE = 2012,
  CUDNN_STATUS_NOT_SUPPORTED = 3000,
  CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN = 3001,
  CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002,
  CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE = 3003,
  CUDNN_STATUS_NOT_SUPPORTED_LAYOUT = 3004,
  CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER = 3005,
  CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART = 3006,
  CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH = 3007,
  CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING = 3008,
  CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE = 3009,
  CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT = 3010,
  CUDNN_STATUS_NOT_SUPPORTED_PADDING = 3011,
  CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM = 3012,
  CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API = 3013,
  CUDNN_STATUS_INTERNAL_ERROR = 4000,
  CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED = 4001,
  CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE = 4002,
  CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED = 4003,
  CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED = 4004,
  CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM = 4005,
  CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED = 4006,
  CUDNN_STATUS_EXECUTION_FAILED = 5000,
  CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER = 5001,
  CUDNN_STATUS_EXECUTION_FAILED_CUBLAS = 5002,
  CUDNN_STATUS_EXECUTION_FAILED_CUDART = 5003,
  CUDNN_STATUS_EXECUTION_FAILED_CURAND = 5004,
} cudnnStatus_t;

typedef enum {
  CUDNN_DATA_FLOAT = 0,
  CUDNN_DATA_DOUBLE = 1,
  CUDNN_DATA_HALF = 2,
  CUDNN_DATA_INT8 = 3,
  CUDNN_DATA_INT32 = 4,
  CUDNN_DATA_UINT8 = 6,
  CUDNN_DATA_BFLOAT16 = 9,
  CUDNN_DATA_INT64 = 10,
} cudnnDataType_t;

typedef enum {
  CUDNN_DEFAULT_MATH = 0,
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3,
} cudnnMathType_t;

typedef enum {
  CUDNN_NOT_PROPAGATE_NAN = 0,
  CUDNN_PROPAGATE_NAN = 1,
} cudnnNanPropagation_t;

typedef enum {
  CUDNN_TENSOR_NCHW = 0,
  CUDNN_TENSOR_NHWC = 1,  // for filters: KRSC (k, r, s, c), c fastest
  CUDNN_TENSOR_NCHW_VECT_C = 2,
} cudnnTensorFormat_t;

typedef enum {
  CUDNN_ACTIVATION_SIGMOID = 0,
  CUDNN_ACTIVATION_RELU = 1,
  CUDNN_ACTIVATION_TANH = 2,
  CUDNN_ACTIVATION_CLIPPED_RELU = 3,
  CUDNN_ACTIVATION_ELU = 4,
  CUDNN_ACTIVATION_IDENTITY = 5,
  CUDNN_ACTIVATION_SWISH = 6,
} cudnnActivationMode_t;

typedef enum { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 } cudnnConvolutionMode_t;

typedef enum {
  CUDNN_NON_DETERMINISTIC = 0,
  CUDNN_DETERMINISTIC = 1,
} cudnnDeterminism_t;

typedef enum {
  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0,
  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM = 1,
  CUDNN_CONVOLUTION_FWD_ALGO_GEMM = 2,
  CUDNN_CONVOLUTION_FWD_ALGO_DIRECT = 3,
  CUDNN_CONVOLUTION_FWD_ALGO_FFT = 4,
  CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING = 5,
  CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD = 6,
  CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED = 7,
  CUDNN_CONVOLUTION_FWD_ALGO_COUNT = 8,
} cudnnConvolutionFwdAlgo_t;

// cudnn_cnn.h: cudnnConvolutionFwdAlgoPerfStruct (48 bytes on LP64).
typedef struct {
  cudnnConvolutionFwdAlgo_t algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t mathType;
  int reserved[3];
} cudnnConvolutionFwdAlgoPerf_t;

// ---- function types (CUDNNWINAPI is empty on Linux) ----
// cudnn_graph.h
typedef size_t (*PFN_cudnnGetVersion)(void);
typedef size_t (*PFN_cudnnGetCudartVersion)(void);
typedef const char* (*PFN_cudnnGetErrorString)(cudnnStatus_t status);
typedef void (*PFN_cudnnGetLastErrorString)(char* message, size_t max_size);
typedef cudnnStatus_t (*PFN_cudnnCreate)(cudnnHandle_t* handle);
typedef cudnnStatus_t (*PFN_cudnnDestroy)(cudnnHandle_t handle);
typedef cudnnStatus_t (*PFN_cudnnSetStream)(cudnnHandle_t handle, cudaStream_t streamId);
// cudnn_ops.h
typedef cudnnStatus_t (*PFN_cudnnCreateTensorDescriptor)(cudnnTensorDescriptor_t* tensorDesc);
typedef cudnnStatus_t (*PFN_cudnnSetTensor4dDescriptor)(cudnnTensorDescriptor_t tensorDesc,
                                                        cudnnTensorFormat_t format,
                                                        cudnnDataType_t dataType, int n, int c, int h,
                                                        int w);
typedef cudnnStatus_t (*PFN_cudnnDestroyTensorDescriptor)(cudnnTensorDescriptor_t tensorDesc);
typedef cudnnStatus_t (*PFN_cudnnCreateFilterDescriptor)(cudnnFilterDescriptor_t* filterDesc);
typedef cudnnStatus_t (*PFN_cudnnSetFilter4dDescriptor)(cudnnFilterDescriptor_t filterDesc,
                                                        cudnnDataType_t dataType,
                                                        cudnnTensorFormat_t format, int k, int c,
                                                        int h, int w);
typedef cudnnStatus_t (*PFN_cudnnDestroyFilterDescriptor)(cudnnFilterDescriptor_t filterDesc);
typedef cudnnStatus_t (*PFN_cudnnCreateActivationDescriptor)(
    cudnnActivationDescriptor_t* activationDesc);
typedef cudnnStatus_t (*PFN_cudnnSetActivationDescriptor)(cudnnActivationDescriptor_t activationDesc,
                                                          cudnnActivationMode_t mode,
                                                          cudnnNanPropagation_t reluNanOpt,
                                                          double coef);
typedef cudnnStatus_t (*PFN_cudnnDestroyActivationDescriptor)(
    cudnnActivationDescriptor_t activationDesc);
// cudnn_cnn.h
typedef cudnnStatus_t (*PFN_cudnnCreateConvolutionDescriptor)(
    cudnnConvolutionDescriptor_t* convDesc);
typedef cudnnStatus_t (*PFN_cudnnDestroyConvolutionDescriptor)(cudnnConvolutionDescriptor_t convDesc);
typedef cudnnStatus_t (*PFN_cudnnSetConvolutionMathType)(cudnnConvolutionDescriptor_t convDesc,
                                                         cudnnMathType_t mathType);
typedef cudnnStatus_t (*PFN_cudnnSetConvolution2dDescriptor)(cudnnConvolutionDescriptor_t convDesc,
                                                             int pad_h, int pad_w, int u, int v,
                                                             int dilation_h, int dilation_w,
                                                             cudnnConvolutionMode_t mode,
                                                             cudnnDataType_t computeType);
typedef cudnnStatus_t (*PFN_cudnnGetConvolution2dForwardOutputDim)(
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t inputTensorDesc,
    const cudnnFilterDescriptor_t filterDesc, int* n, int* c, int* h, int* w);
typedef cudnnStatus_t (*PFN_cudnnGetConvolutionForwardAlgorithm_v7)(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t* perfResults);
typedef cudnnStatus_t (*PFN_cudnnFindConvolutionForwardAlgorithm)(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t* perfResults);
typedef cudnnStatus_t (*PFN_cudnnGetConvolutionForwardWorkspaceSize)(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes);
typedef cudnnStatus_t (*PFN_cudnnConvolutionForward)(
    cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc, const void* x,
    const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
    const cudnnTensorDescriptor_t yDesc, void* y);
// y = act(alpha1 * conv(x) + alpha2 * z + bias)
typedef cudnnStatus_t (*PFN_cudnnConvolutionBiasActivationForward)(
    cudnnHandle_t handle, const void* alpha1, const cudnnTensorDescriptor_t xDesc, const void* x,
    const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes, const void* alpha2,
    const cudnnTensorDescriptor_t zDesc, const void* z, const cudnnTensorDescriptor_t biasDesc,
    const void* bias, const cudnnActivationDescriptor_t activationDesc,
    const cudnnTensorDescriptor_t yDesc, void* y);

// X-macro: every function the backend needs (REQUIRED: missing -> cuDNN unusable) or may use.
#define LOUPE_CUDNN_REQUIRED_FUNCTIONS(X)      \
  X(cudnnGetVersion)                           \
  X(cudnnGetErrorString)                       \
  X(cudnnCreate)                               \
  X(cudnnDestroy)                              \
  X(cudnnSetStream)                            \
  X(cudnnCreateTensorDescriptor)               \
  X(cudnnSetTensor4dDescriptor)                \
  X(cudnnDestroyTensorDescriptor)              \
  X(cudnnCreateFilterDescriptor)               \
  X(cudnnSetFilter4dDescriptor)                \
  X(cudnnDestroyFilterDescriptor)              \
  X(cudnnCreateActivationDescriptor)           \
  X(cudnnSetActivationDescriptor)              \
  X(cudnnDestroyActivationDescriptor)          \
  X(cudnnCreateConvolutionDescriptor)          \
  X(cudnnDestroyConvolutionDescriptor)         \
  X(cudnnSetConvolutionMathType)               \
  X(cudnnSetConvolution2dDescriptor)           \
  X(cudnnGetConvolution2dForwardOutputDim)     \
  X(cudnnGetConvolutionForwardAlgorithm_v7)    \
  X(cudnnFindConvolutionForwardAlgorithm)      \
  X(cudnnGetConvolutionForwardWorkspaceSize)   \
  X(cudnnConvolutionForward)                   \
  X(cudnnConvolutionBiasActivationForward)

#define LOUPE_CUDNN_OPTIONAL_FUNCTIONS(X) \
  X(cudnnGetCudartVersion)                \
  X(cudnnGetLastErrorString)

// The loaded library: one process-wide instance, never unloaded.
struct Api {
#define LOUPE_CUDNN_FIELD(name) PFN_##name name = nullptr;
  LOUPE_CUDNN_REQUIRED_FUNCTIONS(LOUPE_CUDNN_FIELD)
  LOUPE_CUDNN_OPTIONAL_FUNCTIONS(LOUPE_CUDNN_FIELD)
#undef LOUPE_CUDNN_FIELD
  size_t version = 0;       // cudnnGetVersion(): e.g. 91300 for 9.13.0
  std::string path;         // what dlopen() opened
};

// Loads libcudnn.so.9 once (thread-safe) and resolves every function. Search order:
//   1. $LOUPE_CUDNN_LIB (a file, or a folder holding libcudnn.so.9)
//   2. $CUDNN_ROOT/lib/libcudnn.so.9, $CUDNN_ROOT/lib64/libcudnn.so.9
//   3. "libcudnn.so.9" through the dynamic loader (LD_LIBRARY_PATH, rpath, ld.so.cache)
// Returns nullptr when unusable and sets *why (missing library, missing symbol, cuDNN major != 9).
const Api* LoadCudnn(std::string* why);

// "cudnnConvolutionForward failed: CUDNN_STATUS_NOT_SUPPORTED (3000)[: last error text]"
std::string CudnnErrorText(const Api& api, const char* call, cudnnStatus_t st);

}  // namespace cudnn
}  // namespace loupe
