// Internal: the CUDA implementations behind svm.h / knn.h (src/cuda/svm_kernels.cu, knn_kernels.cu).
// Compiled and declared only under LOUPE_HAVE_CUDA; ml_dispatch.cc is the only caller.
#pragma once
#ifdef LOUPE_HAVE_CUDA
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loupe/knn.h"
#include "loupe/status.h"
#include "loupe/svm.h"

namespace loupe {
namespace ml {

// True when device `device_id` exists (cudaGetDeviceCount succeeds and is > device_id); else `why`.
bool CudaDeviceAvailable(int device_id, std::string* why);

// Inputs already validated; counts[j] = samples used by learner j.
Status TrainLinearSvmsCuda(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                           const SgdSvmOptions& opts, const std::vector<int64_t>& counts,
                           std::vector<float>* w, std::vector<float>* b);

Status CreateKnnIndexCuda(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                          std::unique_ptr<KnnIndex>* out);

// Greedy selection on the (already projected) rows Y [n][dim]; same arithmetic as CoresetSelectCpu.
Status CoresetSelectCuda(const float* Y, int64_t n, int64_t dim, int64_t m, const CoresetOptions& opts,
                         std::vector<int64_t>* selected);

}  // namespace ml
}  // namespace loupe
#endif  // LOUPE_HAVE_CUDA
