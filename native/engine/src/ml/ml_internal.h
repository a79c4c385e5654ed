// Internal helpers shared by the CPU and CUDA implementations of svm.h / knn.h: the portable random
// generator, the SVM learner state and its scalar step (host and device), the blocked CPU GEMM, the
// coreset projection. Nothing here is public API.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "loupe/knn.h"
#include "loupe/status.h"
#include "loupe/svm.h"

#if defined(__CUDACC__)
#define LOUPE_HD __host__ __device__ __forceinline__
#else
#define LOUPE_HD inline
#endif

namespace loupe {
namespace ml {

// ---------------------------------------------------------------------------------------------------
// Random numbers: splitmix64 (Steele, Lea, Flood 2014). Portable and exactly reproducible everywhere;
// no std:: distributions (their output is implementation-defined).
LOUPE_HD uint64_t SplitMix64Next(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform integer in [0, bound), bound > 0, unbiased (rejection of the short top range).
inline uint64_t UniformBelow(uint64_t* state, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t r = SplitMix64Next(state);
    if (r >= threshold) return r % bound;
  }
}
// Independent streams: the stream key is mixed into the seed.
inline uint64_t StreamState(uint64_t seed, uint64_t stream) {
  uint64_t s = seed ^ 0x6A09E667F3BCC909ull;
  uint64_t a = SplitMix64Next(&s);
  uint64_t t = stream ^ 0xBB67AE8584CAA73Bull;
  uint64_t b = SplitMix64Next(&t);
  return a ^ (b * 0x9E3779B97F4A7C15ull);
}
// Standard normal pairs by Box-Muller on 53-bit uniforms in (0, 1].
inline void GaussianPair(uint64_t* state, double* z0, double* z1) {
  const double u1 = (double)((SplitMix64Next(state) >> 11) + 1) * (1.0 / 9007199254740992.0);
  const double u2 = (double)(SplitMix64Next(state) >> 11) * (1.0 / 9007199254740992.0);
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 6.283185307179586476925286766559 * u2;
  *z0 = r * std::cos(a);
  *z1 = r * std::sin(a);
}

int ResolveThreads(int requested);  // 0 -> omp_get_max_threads()

// ---------------------------------------------------------------------------------------------------
// Linear SVM by Pegasos. w = s * v (the w-scale trick: the shrink w <- (1 - 1/t) w is O(1)).
// One step on sample (x, y), learner step counter t (1-based, counts only this learner's samples), offset
// t0 = 1 / (lambda eta0) (0 for plain Pegasos; t below stands for t + t0):
//   eta   = 1 / (lambda t)
//   score = s (v.x) + b,  violated = y score < 1
//   w    <- (1 - 1/t) w                                   (s *= 1 - 1/t; at t = 1, v is still 0)
//   if violated: w <- w + eta y x                          (v += (eta y / s) x)
//                b <- b + y min(eta, 1 - y score)          (bias: not regularised, not shrunk; the
//                   proximal (implicit) hinge step on b: a plain subgradient step of size eta that
//                   stops where the current sample's margin is met, so the huge early steps
//                   (eta_1 = 1/lambda) cannot throw b far away, and late steps are the plain ones)
//   if project and ||w|| > 1/sqrt(lambda): w <- w / (sqrt(lambda) ||w||)   (||v||^2 kept incrementally)
//   if s < 1e-6: v <- s v, s <- 1                           (renormalisation, rare)
// Averaging (kAveraged): the mean of the iterates (w_t, b_t) for t in (T/2, T], T = epochs * n_j.
// Lazily: A accumulates sum_t s_t v_t as A += (sum of s since v last changed) * v, flushed only just
// before v changes (a violation or a renormalisation) and at the end; O(1) per non-violating step.
struct SvmLearnerState {
  double s;          // scale of v
  double b;          // bias
  double norm2;      // ||v||^2, maintained incrementally (for the projection)
  double sacc;       // sum of s over averaged steps since the last flush into A
  double bsum;       // sum of b over averaged steps
  int64_t t;         // steps taken
  int64_t avg_count; // averaged steps
};

struct SvmStepParams {
  double lambda;
  double t0;          // step offset: eta = 1 / (lambda (t + t0)); 0 = Pegasos
  double radius2;     // 1 / lambda
  int64_t avg_start;  // steps t > avg_start are averaged; -1 = no averaging
  int project;        // 0/1
};

// What the vector part of a step must do, in this order, for every element i:
//   if (flush != 0) A[i] += flush * v[i];
//   if (delta != 0) v[i] += delta * x[i];
//   if (vscale != 1) v[i] *= vscale;
struct SvmVecOps {
  float flush;
  float delta;
  float vscale;
};

LOUPE_HD void SvmInitState(SvmLearnerState* st) {
  st->s = 1.0;
  st->b = 0.0;
  st->norm2 = 0.0;
  st->sacc = 0.0;
  st->bsum = 0.0;
  st->t = 0;
  st->avg_count = 0;
}

// The scalar part of one step, identical on every backend (only `dot` = v.x differs by rounding).
LOUPE_HD SvmVecOps SvmScalarStep(SvmLearnerState* st, const SvmStepParams& p, int y, float dot,
                                 double xnorm2) {
  SvmVecOps ops;
  ops.flush = 0.0f;
  ops.delta = 0.0f;
  ops.vscale = 1.0f;
  st->t += 1;
  const double t = (double)st->t + p.t0;
  const double eta = 1.0 / (p.lambda * t);
  const double yd = (double)y;
  const double score = st->s * (double)dot + st->b;
  const bool violated = yd * score < 1.0;
  if (t > 1.0) st->s *= 1.0 - 1.0 / t;  // (Pegasos' t = 1: v = 0 and s stays 1)
  if (violated) {
    if (st->sacc != 0.0) {
      ops.flush = (float)st->sacc;
      st->sacc = 0.0;
    }
    ops.delta = (float)(eta * yd / st->s);
    const double dl = (double)ops.delta;
    double n2 = st->norm2 + 2.0 * dl * (double)dot + dl * dl * xnorm2;
    st->norm2 = n2 > 0.0 ? n2 : 0.0;
    const double gap = 1.0 - yd * score;  // > 0
    st->b += yd * (eta < gap ? eta : gap);
  }
  if (p.project && st->norm2 > 0.0 && st->s * st->s * st->norm2 > p.radius2) {
    st->s = sqrt(p.radius2 / st->norm2);
  }
  if (st->s < 1e-6) {
    if (st->sacc != 0.0) {
      ops.flush = (float)st->sacc;  // cannot already be set: a violation zeroed sacc
      st->sacc = 0.0;
    }
    ops.vscale = (float)st->s;
    st->norm2 *= (double)ops.vscale * (double)ops.vscale;
    st->s = 1.0;
  }
  if (p.avg_start >= 0 && st->t > p.avg_start) {
    st->sacc += st->s;
    st->bsum += st->b;
    st->avg_count += 1;
  }
  return ops;
}

// Validation shared by the backends. On error the message names the learner.
Status ValidateSvmInputs(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                         const SgdSvmOptions& opts, std::vector<int64_t>* counts);
// Per-row ||x||^2 in double, row-sequential (deterministic), OpenMP over rows.
void RowNorms2(const float* X, int64_t n, int64_t d, int num_threads, std::vector<double>* out);
// Learner j's step parameters: count = its samples n_j of the n rows (lambda_j = lambda n / n_j).
SvmStepParams MakeSvmStepParams(const SgdSvmOptions& opts, int64_t count, int64_t n);
// From the final state (v, A, scalars) to the returned model row.
void SvmFinalize(const SgdSvmOptions& opts, const SvmLearnerState& st, const float* v, const float* A,
                 int64_t d, float* w_out, float* b_out);

// For the GPU: this epoch's per-learner sample lists in the shared order, learner j at off[j]:
// seq = (row + 1) * y (row < 2^31 - 1), seq_xn = ||x_row||^2. OpenMP over learners.
void BuildSvmEpochSequences(const int8_t* targets, int64_t n, int k, const std::vector<int64_t>& order,
                            const std::vector<double>& xn, const std::vector<int64_t>& off,
                            int num_threads, int32_t* seq, double* seq_xn);

Status TrainLinearSvmsCpu(const float* X, int64_t n, int64_t d, const int8_t* targets, int k,
                          const SgdSvmOptions& opts, const std::vector<int64_t>& counts,
                          std::vector<float>* w, std::vector<float>* b);

// ---------------------------------------------------------------------------------------------------
// Blocked CPU GEMM. B is packed in panels of kGemmNR columns: Bp[panel][K][kGemmNR] (zero-padded).
// C[i][j] = sum_k A[i*lda + k] * B[k][j] for rows i < m and columns j < npanels*kGemmNR.
constexpr int kGemmNR = 16;
// Packs the rows r of R[rows][K] (row-major, ld = K) as columns of B: B[k][r] = R[r][k] (the NT case,
// used for the kNN bank). Out: ceil(rows/NR) panels.
void PackRowsAsPanels(const float* R, int64_t rows, int64_t K, std::vector<float>* panels);
// Packs a row-major K x N matrix (the NN case, used for the coreset projection).
void PackMatrixAsPanels(const float* Bm, int64_t K, int64_t N, std::vector<float>* panels);
// Single-threaded (the caller parallelises over row blocks): C has ldc >= npanels*NR.
void GemmPanels(const float* A, int64_t lda, int64_t m, int64_t K, const float* Bp, int64_t npanels,
                float* C, int64_t ldc);

// R [n][K] kept for products C[m][rows] = A[m][K] . R[row0 .. row0 + rows)^T, the NT case of the CPU
// kNN indexes: oneDNN's sgemm on the rows where it is built in, else GemmPanels on packed panels (then
// row0 must be a multiple of kGemmNR and C needs room for whole panels: min_ldc()). On the calling thread
// (inside an OpenMP parallel region oneDNN does not start a nested team).
class RowMatrix {
 public:
  void Set(const float* R, int64_t n, int64_t K);
  int64_t min_ldc() const { return (n_ + kGemmNR - 1) / kGemmNR * kGemmNR; }
  // rows < 0: all rows from row0. False when oneDNN's sgemm fails.
  bool MultiplyNT(const float* A, int64_t m, float* C, int64_t ldc, int64_t row0 = 0, int64_t rows = -1) const;

 private:
  int64_t n_ = 0, K_ = 0;
  std::vector<float> data_;  // the rows as given (oneDNN) or packed panels (portable)
};

// ---------------------------------------------------------------------------------------------------
// kNN.
Status ValidateKnnBank(const float* bank, int64_t nb, int64_t d);
// A NaN or infinity would silently poison every distance (and the pruned index's subspace): checked
// once, where an index is built (KnnSearch builds one too).
Status CheckKnnBankFinite(const float* bank, int64_t nb, int64_t d);
Status ValidateKnnQuery(const float* queries, int64_t nq, int64_t d, int k, int64_t nb, float* dist,
                        int64_t* idx);
Status CreateKnnIndexCpu(const float* bank, int64_t nb, int64_t d, const KnnOptions& opts,
                         std::unique_ptr<KnnIndex>* out);
// The bound-pruned exact index (knn_pruned_cpu.cc) on an r-dim principal subspace.
Status CreatePrunedKnnIndexCpu(const float* bank, int64_t nb, int64_t d, int r, const KnnOptions& opts,
                               std::unique_ptr<KnnIndex>* out);
// The pruned index's default subspace dimension, min(128, d / 4) (at least 1).
int DefaultPrunedSubspaceDim(int64_t d);
// The subspace dimension kAuto uses for a bank of nb x d (0: brute force pays better).
int PrunedKnnSubspaceDim(int64_t nb, int64_t d);
// Inserts (dv, id) into a list sorted by (dist, idx) of length k when it beats the last entry; the
// candidates of one list arrive in increasing id order, so ties keep the lower index.
inline void TopKInsert(float* td, int64_t* ti, int k, float dv, int64_t id) {
  if (!(dv < td[k - 1])) return;
  int p = k - 1;
  while (p > 0 && td[p - 1] > dv) {
    td[p] = td[p - 1];
    ti[p] = ti[p - 1];
    --p;
  }
  td[p] = dv;
  ti[p] = id;
}

// ---------------------------------------------------------------------------------------------------
// Coreset.
// The seeded projection matrix P [d][pd], N(0, 1/pd) entries, row-major.
void CoresetProjectionMatrix(uint64_t seed, int64_t d, int64_t pd, std::vector<float>* P);
// Y = X P ([n][pd]); OpenMP over row blocks.
void ProjectRows(const float* X, int64_t n, int64_t d, const std::vector<float>& P, int64_t pd,
                 int num_threads, std::vector<float>* Y);
// The first centre for a seed.
int64_t CoresetFirstIndex(uint64_t seed, int64_t n);
// Squared distance with the fixed 16-lane order shared with the GPU kernel (no FMA contraction):
//   acc[j] += (a[i] - b[i])^2 for i = 16 q + j;  result = ((acc[0] + acc[1]) + acc[2]) + ... acc[15].
float CoresetDist2(const float* a, const float* b, int64_t dim);
// Yt[c][i] = Y[i][c] ([dim][n], for coalesced GPU reads); OpenMP, cache-blocked.
void TransposeRows(const float* Y, int64_t n, int64_t dim, int num_threads, std::vector<float>* Yt);
Status CoresetSelectCpu(const float* Y, int64_t n, int64_t dim, int64_t m, const CoresetOptions& opts,
                        std::vector<int64_t>* selected);

}  // namespace ml
}  // namespace loupe
