// Exact nearest-neighbour search and greedy k-center coreset selection for the one-class scorer.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "loupe/session.h"
#include "loupe/status.h"

namespace loupe {

struct KnnOptions {
  BackendKind backend = BackendKind::kCpu;
  int num_threads = 0;
  int device_id = 0;
};

// For each of nq queries (rows of `queries`, [nq][d]) the k nearest bank rows ([nb][d]) by squared L2
// distance, ascending; dist [nq][k], idx [nq][k]. Distances via ||q||^2 - 2 q·b + ||b||^2 in blocked
// GEMM form, clamped at 0. Ties broken by the lower index.
Status KnnSearch(const float* bank, int64_t nb, const float* queries, int64_t nq, int64_t d, int k,
                 const KnnOptions& opts, float* dist, int64_t* idx);

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
Status GreedyCoreset(const float* X, int64_t n, int64_t d, int64_t m, const CoresetOptions& opts,
                     std::vector<int64_t>* selected);

}  // namespace loupe
