// Public entry points of svm.h / knn.h: argument checks, then the backend choice.
//   kCpu  -> CPU.  kCuda -> CUDA when compiled in and a device exists, else kUnavailable.
//   kAuto -> CUDA when compiled in and a device exists, else CPU.
#include <string>
#include <vector>

#include "loupe/knn.h"
#include "loupe/svm.h"
#include "ml/ml_internal.h"
#ifdef LOUPE_HAVE_CUDA
#include "ml/ml_cuda.h"
#endif

namespace loupe {
namespace {

Status ResolveMlBackend(BackendKind requested, int device_id, const char* what, BackendKind* out) {
  if (requested == BackendKind::kCpu) {
    *out = BackendKind::kCpu;
    return Status::Ok();
  }
  if (requested != BackendKind::kCuda && requested != BackendKind::kAuto)
    return Status(StatusCode::kInvalidArgument, std::string(what) + ": unknown backend");
#ifdef LOUPE_HAVE_CUDA
  std::string why;
  if (ml::CudaDeviceAvailable(device_id, &why)) {
    *out = BackendKind::kCuda;
    return Status::Ok();
  }
  if (requested == BackendKind::kCuda)
    return Status(StatusCode::kUnavailable, std::string(what) + ": CUDA backend unavailable: " + why);
#else
  if (requested == BackendKind::kCuda)
    return Status(StatusCode::kUnavailable,
                  std::string(what) + ": CUDA backend unavailable: built without CUDA");
#endif
  *out = BackendKind::kCpu;
  return Status::Ok();
}

}  // namespace

Status TrainLinearSvms(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                       const SgdSvmOptions& opts, std::vector<float>* w, std::vector<float>* b) {
  if (w == nullptr || b == nullptr)
    return Status(StatusCode::kInvalidArgument, "TrainLinearSvms: w and b must not be null");
  std::vector<int64_t> counts;
  LOUPE_RETURN_IF_ERROR(ml::ValidateSvmInputs(X, n, d, targets, k, opts, &counts));
  if (opts.num_threads < 0)
    return Status(StatusCode::kInvalidArgument, "TrainLinearSvms: num_threads must be >= 0");
  BackendKind backend;
  LOUPE_RETURN_IF_ERROR(ResolveMlBackend(opts.backend, opts.device_id, "TrainLinearSvms", &backend));
#ifdef LOUPE_HAVE_CUDA
  if (backend == BackendKind::kCuda)
    return ml::TrainLinearSvmsCuda(X, n, d, targets, k, opts, counts, w, b);
#endif
  return ml::TrainLinearSvmsCpu(X, n, d, targets, k, opts, counts, w, b);
}

Status KnnIndex::Create(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                        std::unique_ptr<KnnIndex>* out) {
  if (out == nullptr) return Status(StatusCode::kInvalidArgument, "KnnIndex::Create: out is null");
  LOUPE_RETURN_IF_ERROR(ml::ValidateKnnBank(bank, nb, d));
  if (opts.num_threads < 0)
    return Status(StatusCode::kInvalidArgument, "KnnIndex::Create: num_threads must be >= 0");
  LOUPE_RETURN_IF_ERROR(ml::CheckKnnBankFinite(bank, nb, d));
  BackendKind backend;
  LOUPE_RETURN_IF_ERROR(ResolveMlBackend(opts.backend, opts.device_id, "KnnIndex", &backend));
#ifdef LOUPE_HAVE_CUDA
  if (backend == BackendKind::kCuda) return ml::CreateKnnIndexCuda(bank, nb, d, opts, out);
#endif
  if (opts.subspace_dim < 0 || opts.subspace_dim > d)
    return Status(StatusCode::kInvalidArgument, "KnnIndex::Create: subspace_dim must be in [0, d] (got " +
                                                    std::to_string(opts.subspace_dim) + ", d=" +
                                                    std::to_string(d) + ")");
  int r = 0;
  if (opts.method == KnnMethod::kPruned)
    r = opts.subspace_dim > 0 ? opts.subspace_dim : ml::DefaultPrunedSubspaceDim(d);
  else if (opts.method == KnnMethod::kAuto)
    r = opts.subspace_dim > 0 ? opts.subspace_dim : ml::PrunedKnnSubspaceDim(nb, d);
  if (r > 0) return ml::CreatePrunedKnnIndexCpu(bank, nb, d, r, opts, out);
  return ml::CreateKnnIndexCpu(bank, nb, d, opts, out);
}

Status KnnSearch(const float* bank, int64_t nb, const float* queries, int64_t nq, int64_t d, int k,
                 const KnnOptions& opts, float* dist, int64_t* idx) {
  LOUPE_RETURN_IF_ERROR(ml::ValidateKnnBank(bank, nb, d));
  LOUPE_RETURN_IF_ERROR(ml::ValidateKnnQuery(queries, nq, d, k, nb, dist, idx));
  KnnOptions o = opts;
  if (o.backend == BackendKind::kCuda && k > kKnnMaxKCuda)
    return Status(StatusCode::kInvalidArgument,
                  "KnnSearch: k = " + std::to_string(k) + " exceeds the CUDA limit of " +
                      std::to_string(kKnnMaxKCuda));
  if (o.backend == BackendKind::kAuto && k > kKnnMaxKCuda) o.backend = BackendKind::kCpu;
  // One search does not repay building a subspace (a covariance of the bank) unless asked for.
  if (o.method == KnnMethod::kAuto) o.method = KnnMethod::kBruteForce;
  std::unique_ptr<KnnIndex> index;
  LOUPE_RETURN_IF_ERROR(KnnIndex::Create(bank, nb, d, o, &index));
  return index->Search(queries, nq, k, dist, idx);
}

Status GreedyCoreset(const float* X, int64_t n, int64_t d, int64_t m, const CoresetOptions& opts,
                     std::vector<int64_t>* selected) {
  if (selected == nullptr)
    return Status(StatusCode::kInvalidArgument, "GreedyCoreset: selected is null");
  if (X == nullptr) return Status(StatusCode::kInvalidArgument, "GreedyCoreset: X is null");
  if (n <= 0 || d <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "GreedyCoreset: n and d must be > 0 (got n=" + std::to_string(n) +
                      ", d=" + std::to_string(d) + ")");
  if (m < 1 || m > n)
    return Status(StatusCode::kInvalidArgument,
                  "GreedyCoreset: m must be in [1, n] (got m=" + std::to_string(m) +
                      ", n=" + std::to_string(n) + ")");
  if (opts.projection_dim < 0)
    return Status(StatusCode::kInvalidArgument, "GreedyCoreset: projection_dim must be >= 0");
  if (opts.num_threads < 0)
    return Status(StatusCode::kInvalidArgument, "GreedyCoreset: num_threads must be >= 0");
  BackendKind backend;
  LOUPE_RETURN_IF_ERROR(ResolveMlBackend(opts.backend, opts.device_id, "GreedyCoreset", &backend));
  if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
    return Status(StatusCode::kCancelled, "GreedyCoreset cancelled");

  // The projection is computed on the CPU for every backend (same bytes -> same selection).
  const float* Y = X;
  int64_t dim = d;
  std::vector<float> projected;
  if (opts.projection_dim > 0) {
    std::vector<float> P;
    ml::CoresetProjectionMatrix(opts.seed, d, opts.projection_dim, &P);
    ml::ProjectRows(X, n, d, P, opts.projection_dim, ml::ResolveThreads(opts.num_threads),
                    &projected);
    Y = projected.data();
    dim = opts.projection_dim;
  }
#ifdef LOUPE_HAVE_CUDA
  if (backend == BackendKind::kCuda) return ml::CoresetSelectCuda(Y, n, dim, m, opts, selected);
#endif
  return ml::CoresetSelectCpu(Y, n, dim, m, opts, selected);
}

}  // namespace loupe
