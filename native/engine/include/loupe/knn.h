// Exact nearest-neighbour search and greedy k-center coreset selection for the one-class scorer.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loupe/session.h"
#include "loupe/status.h"

namespace loupe {

// How a CPU index finds the exact neighbours (the CUDA index is always brute force):
//   kBruteForce: every distance, in blocked GEMM form.
//   kPruned:     a lower bound on an r-dim principal subspace of the bank skips the rows that cannot be
//                among the k nearest; survivors get direct distances. Same neighbours, 5-10x fewer flops
//                on PatchCore banks; building the index costs a covariance (nb x d^2) once.
//   kAuto:       kPruned for wide rows and large banks (d >= 256, nb >= 4 r) whose r principal
//                directions hold at least half the variance, else kBruteForce.
enum class KnnMethod { kAuto, kBruteForce, kPruned };

struct KnnOptions {
  BackendKind backend = BackendKind::kCpu;
  int num_threads = 0;
  int device_id = 0;
  KnnMethod method = KnnMethod::kAuto;  // KnnIndex::Create only; one-shot KnnSearch is brute force
  int subspace_dim = 0;                 // kPruned's r; 0 = min(128, d / 4)
};

// For each of nq queries (rows of `queries`, [nq][d]) the k nearest bank rows ([nb][d]) by squared L2
// distance, ascending; dist [nq][k], idx [nq][k]. Distances via ||q||^2 - 2 q·b + ||b||^2 in blocked
// GEMM form, clamped at 0. Ties broken by the lower index.
Status KnnSearch(const float* bank, int64_t nb, const float* queries, int64_t nq, int64_t d, int k,
                 const KnnOptions& opts, float* dist, int64_t* idx);

// A bank kept ready for repeated searches (the one-class scorer queries the same bank for every image):
// the CPU index packs the bank once for the blocked GEMM; the CUDA index keeps it in device memory.
// Search is thread-safe (concurrent calls are serialised: each uses all of the index's threads). Every method returns the
// exact k nearest rows (ties to the lower index); distances agree with KnnSearch's up to float
// rounding (the pruned index sums squared differences directly, the GEMM form uses norms).
class KnnIndex {
 public:
  virtual ~KnnIndex() = default;
  // The bank is copied; the caller's buffer can be freed after Create. opts.backend as for KnnSearch.
  static Status Create(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                       std::unique_ptr<KnnIndex>* out);
  virtual Status Search(const float* queries, int64_t nq, int k, float* dist, int64_t* idx) = 0;
  virtual int64_t size() const = 0;          // nb
  virtual int64_t dim() const = 0;           // d
  virtual BackendKind backend() const = 0;   // kCpu or kCuda (never kAuto)
  virtual KnnMethod method() const { return KnnMethod::kBruteForce; }  // never kAuto
};
// Limits: 1 <= k <= nb on every backend; the CUDA backend supports k <= kKnnMaxKCuda (KnnSearch with
// kAuto takes the CPU above it; a CUDA KnnIndex refuses it with kInvalidArgument).
constexpr int kKnnMaxKCuda = 64;

struct CoresetOptions {
  uint64_t seed = 0;           // picks the first centre
  int projection_dim = 128;    // distances computed on a seeded random projection (0 = full features)
  BackendKind backend = BackendKind::kCpu;
  int num_threads = 0;
  int device_id = 0;
  std::function<void(int64_t done, int64_t total)> progress;
  const std::atomic<bool>* cancel = nullptr;
};

// Greedy k-center (farthest point) selection of m rows of X [n][d] (PatchCore's coreset).
// selected[0] is drawn from the seed; each next one is the row farthest (squared L2 on the projection)
// from those already selected, ties to the lower index; 1 <= m <= n. progress(done, m) about every 1%.
// The CUDA backend uses the same projection and arithmetic order, so it selects the same rows.
Status GreedyCoreset(const float* X, int64_t n, int64_t d, int64_t m, const CoresetOptions& opts,
                     std::vector<int64_t>* selected);

}  // namespace loupe
