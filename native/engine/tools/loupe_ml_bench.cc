// loupe_ml_bench: timings of the ML kernels (svm.h, knn.h) on synthetic, seeded data.
//   loupe_ml_bench [--json] [--backends cpu,cuda] [--threads N] [--quick]
//                  [--svm-epochs N] [--cpu-svm-epochs N] [--cpu-knn-queries N]
// Rows:
//   svm   100000 x 2048, 10 classes one-vs-all, --svm-epochs (5) epochs; 10000 x 2048 x 10, 20 epochs
//         (the library default). The CPU may time fewer epochs (--cpu-svm-epochs); the per-epoch time
//         (marginal: a 1-epoch call is timed too, its excess is the set-up) is comparable across
//         backends (same algorithm and sample order every epoch).
//   knn   bank 16384 x 1536, 784 x 32 queries (32 images of 784 patches), k = 1 and k = 9. The CPU
//         may time fewer queries (--cpu-knn-queries; by default all of them with >= 8 threads, else 2
//         images); queries/s is the figure. CUDA: the bank is kept on the device (KnnIndex), one call
//         per 32 images, plus the per-image latency (784 queries per call).
//   coreset 50000 x 1536 -> 1% (500 rows), 128-dim projection.
// A table on stdout; with --json also a last line holding one JSON object. CUDA rows are skipped when
// no device is usable. --quick shrinks every problem (smoke test).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "loupe/knn.h"
#include "loupe/svm.h"

using namespace loupe;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform noise of unit variance, from a per-row counter stream (parallel and reproducible): 16 bits
// per value, four values per 64-bit draw.
inline float Noise(uint64_t row_seed, int64_t j) {
  const uint64_t r = Mix(row_seed + (uint64_t)(j >> 2) * 0xD1B54A32D192ED03ull);
  const uint32_t u = (uint32_t)(r >> (16 * (j & 3))) & 0xFFFFu;
  return ((float)u * (1.0f / 65536.0f) - 0.5f + 0.5f / 65536.0f) * 3.4641016f;
}

// Class-structured rows: x = mu[label] + noise; mu entries uniform * sep.
void MakeRows(uint64_t seed, int64_t n, int64_t d, int classes, float sep, int threads,
              std::vector<float>* X, std::vector<int>* label) {
  std::vector<float> mu((size_t)(classes * d));
  for (int c = 0; c < classes; ++c)
    for (int64_t j = 0; j < d; ++j) mu[(size_t)(c * d + j)] = sep * Noise(Mix(seed ^ (0xC1A55ull + c)), j);
  X->resize((size_t)(n * d));
  if (label) label->resize((size_t)n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int c = classes > 0 ? (int)(Mix(seed * 31 + (uint64_t)i) % (uint64_t)classes) : 0;
    if (label) (*label)[(size_t)i] = c;
    const uint64_t rs = Mix(seed ^ Mix((uint64_t)i + 1));
    float* x = X->data() + i * d;
    for (int64_t j0 = 0; j0 < d; j0 += 4) {
      const uint64_t r = Mix(rs + (uint64_t)(j0 >> 2) * 0xD1B54A32D192ED03ull);
      for (int64_t j = j0; j < std::min(d, j0 + 4); ++j) {
        const uint32_t u = (uint32_t)(r >> (16 * (j & 3))) & 0xFFFFu;
        const float nz = ((float)u * (1.0f / 65536.0f) - 0.5f + 0.5f / 65536.0f) * 3.4641016f;
        x[j] = (classes > 0 ? mu[(size_t)(c * d + j)] : 0.0f) + nz;
      }
    }
  }
}

double OvaAccuracy(const std::vector<float>& X, const std::vector<int>& label, int64_t rows, int64_t d,
                   int classes, const std::vector<float>& w, const std::vector<float>& b, int threads) {
  int64_t ok = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : ok) schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    int best = 0;
    double bs = -1e300;
    for (int c = 0; c < classes; ++c) {
      double s = b[(size_t)c];
      const float* wc = w.data() + (size_t)c * d;
      const float* x = X.data() + i * d;
      for (int64_t j = 0; j < d; ++j) s += (double)wc[j] * x[j];
      if (s > bs) bs = s, best = c;
    }
    ok += best == label[(size_t)i];
  }
  return 100.0 * (double)ok / (double)rows;
}

struct Row {
  std::string kind, problem, backend, note;
  double seconds = 0;     // timed wall time
  double per_unit = 0;    // s/epoch (svm), queries/s (knn), s (coreset)
  double extra = -1;      // svm: train accuracy %, knn: ms per 784-query image (cuda)
  bool skipped = false;
};

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, quick = false, want_cpu = true, want_cuda = true;
  int threads = 0, svm_epochs = 5, cpu_svm_epochs = -1;
  int64_t cpu_knn_queries = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* what) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "loupe_ml_bench: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") {
      json = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--threads") {
      threads = std::atoi(next("--threads").c_str());
    } else if (a == "--svm-epochs") {
      svm_epochs = std::max(1, std::atoi(next("--svm-epochs").c_str()));
    } else if (a == "--cpu-svm-epochs") {
      cpu_svm_epochs = std::max(1, std::atoi(next("--cpu-svm-epochs").c_str()));
    } else if (a == "--cpu-knn-queries") {
      cpu_knn_queries = std::max<int64_t>(1, std::atoll(next("--cpu-knn-queries").c_str()));
    } else if (a == "--backends") {
      const std::string v = next("--backends");
      want_cpu = v.find("cpu") != std::string::npos;
      want_cuda = v.find("cuda") != std::string::npos;
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: loupe_ml_bench [--json] [--backends cpu,cuda] [--threads N] [--quick]\n"
                  "                      [--svm-epochs N] [--cpu-svm-epochs N] [--cpu-knn-queries N]\n");
      return 0;
    } else {
      std::fprintf(stderr, "loupe_ml_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const int nt = threads > 0 ? threads : omp_get_max_threads();
  const double t_start = Now();

  // Is CUDA usable? (A tiny search: also creates the context, so later timings exclude it.)
  bool cuda_ok = false;
  std::string cuda_why = "not requested";
  if (want_cuda) {
    const float one[4] = {0, 0, 0, 0};
    float dd;
    int64_t ii;
    KnnOptions ko;
    ko.backend = BackendKind::kCuda;
    const Status s = KnnSearch(one, 1, one, 1, 4, 1, ko, &dd, &ii);
    cuda_ok = s.ok();
    cuda_why = s.ok() ? "ok" : s.message();
    const size_t at = cuda_why.find("unavailable: ");
    if (at != std::string::npos) cuda_why = "no usable CUDA device: " + cuda_why.substr(at + 13);
  }
  std::vector<BackendKind> backends;
  if (want_cpu) backends.push_back(BackendKind::kCpu);
  if (want_cuda) backends.push_back(BackendKind::kCuda);
  std::vector<Row> rows;
  auto skipped_row = [&](const std::string& kind, const std::string& problem) {
    Row r;
    r.kind = kind;
    r.problem = problem;
    r.backend = "cuda";
    r.skipped = true;
    r.note = cuda_why;
    rows.push_back(r);
  };

  // ---------------------------------------------------------------- SVM
  struct SvmCase { int64_t n, d; int classes; int epochs; };
  std::vector<SvmCase> svm_cases = {{100000, 2048, 10, svm_epochs}, {10000, 2048, 10, 20}};
  if (quick) svm_cases = {{4000, 256, 10, 2}, {1000, 256, 10, 4}};
  for (const SvmCase& c : svm_cases) {
    std::vector<float> X;
    std::vector<int> label;
    const double tg = Now();
    MakeRows(1234 + (uint64_t)c.n, c.n, c.d, c.classes, 0.1f, nt, &X, &label);
    std::vector<int8_t> t((size_t)(c.classes * c.n));
    for (int k = 0; k < c.classes; ++k)
      for (int64_t i = 0; i < c.n; ++i) t[(size_t)(k * c.n + i)] = label[(size_t)i] == k ? 1 : -1;
    const double gen_s = Now() - tg;
    const std::string problem = std::to_string(c.n) + "x" + std::to_string(c.d) + "x" +
                                std::to_string(c.classes) + " OvA";
    for (BackendKind bk : backends) {
      if (bk == BackendKind::kCuda && !cuda_ok) {
        skipped_row("svm", problem);
        continue;
      }
      SgdSvmOptions o;
      o.backend = bk;
      o.num_threads = nt;
      o.seed = 7;
      o.lambda = 1e-4;
      o.epochs = (bk == BackendKind::kCpu && cpu_svm_epochs > 0) ? std::min(c.epochs, cpu_svm_epochs)
                                                                   : c.epochs;
      std::vector<float> w, b;
      // One untimed 1-epoch call first (CUDA context and module, the OpenMP pool, first-touch page
      // faults), then a timed 1-epoch call: the per-epoch figure is the marginal cost (all epochs minus
      // one, over epochs - 1), the rest of the 1-epoch call is the set-up (copy to the device, row
      // norms, checks).
      SgdSvmOptions o1 = o;
      o1.epochs = 1;
      (void)TrainLinearSvms(X.data(), c.n, c.d, t.data(), c.classes, o1, &w, &b);
      double t0 = Now();
      Status s = TrainLinearSvms(X.data(), c.n, c.d, t.data(), c.classes, o1, &w, &b);
      const double sec1 = Now() - t0;
      t0 = Now();
      if (s.ok()) s = TrainLinearSvms(X.data(), c.n, c.d, t.data(), c.classes, o, &w, &b);
      const double sec = Now() - t0;
      Row r;
      r.kind = "svm";
      r.problem = problem;
      r.backend = bk == BackendKind::kCpu ? "cpu" : "cuda";
      if (!s.ok()) {
        r.skipped = true;
        r.note = s.ToString();
        rows.push_back(r);
        continue;
      }
      r.seconds = sec;
      r.per_unit = o.epochs > 1 ? std::max(0.0, sec - sec1) / (o.epochs - 1) : sec;
      r.extra = OvaAccuracy(X, label, std::min<int64_t>(c.n, 10000), c.d, c.classes, w, b, nt);
      r.note = std::to_string(o.epochs) + " epochs" +
               (o.epochs < c.epochs ? " (of " + std::to_string(c.epochs) + ")" : "") +
               ", set-up " + std::to_string((int)(std::max(0.0, sec1 - r.per_unit) * 1000)) +
               " ms, data gen " + std::to_string((int)(gen_s * 1000)) + " ms";
      rows.push_back(r);
    }
  }

  // ---------------------------------------------------------------- kNN
  {
    const int64_t nb = quick ? 2048 : 16384, d = quick ? 256 : 1536, per_image = 784;
    const int64_t images = quick ? 4 : 32, nq = per_image * images;
    std::vector<float> bank, queries;
    MakeRows(77, nb, d, 0, 0.0f, nt, &bank, nullptr);
    MakeRows(78, nq, d, 0, 0.0f, nt, &queries, nullptr);
    const std::string problem = "bank " + std::to_string(nb) + "x" + std::to_string(d) + ", " +
                                std::to_string(images) + "x784 q";
    for (BackendKind bk : backends) {
      if (bk == BackendKind::kCuda && !cuda_ok) {
        for (int k : {1, 9}) skipped_row("knn", problem + " k=" + std::to_string(k));
        continue;
      }
      KnnOptions o;
      o.backend = bk;
      o.num_threads = nt;
      // Isotropic random rows have no low-rank structure for the pruned CPU index to use: the brute-force
      // GEMM is the CPU's best method here (real PatchCore banks prune 4-5x: docs/benchmarks/anomaly.md).
      o.method = KnnMethod::kBruteForce;
      std::unique_ptr<KnnIndex> index;
      const double tc = Now();
      Status s = KnnIndex::Create(bank.data(), nb, d, o, &index);
      const double create_s = Now() - tc;
      for (int k : {1, 9}) {
        Row r;
        r.kind = "knn";
        r.problem = problem + " k=" + std::to_string(k);
        r.backend = bk == BackendKind::kCpu ? "cpu" : "cuda";
        if (!s.ok()) {
          r.skipped = true;
          r.note = s.ToString();
          rows.push_back(r);
          continue;
        }
        int64_t tq = nq;
        if (bk == BackendKind::kCpu) {
          tq = cpu_knn_queries > 0 ? std::min(cpu_knn_queries, nq) : (nt >= 8 ? nq : 2 * per_image);
        }
        std::vector<float> dist((size_t)(nq * k));
        std::vector<int64_t> idx((size_t)(nq * k));
        if (bk == BackendKind::kCuda) {  // warm-up (buffers)
          s = index->Search(queries.data(), nq, k, dist.data(), idx.data());
        }
        const double t0 = Now();
        if (s.ok()) s = index->Search(queries.data(), tq, k, dist.data(), idx.data());
        const double sec = Now() - t0;
        if (!s.ok()) {
          r.skipped = true;
          r.note = s.ToString();
          rows.push_back(r);
          continue;
        }
        r.seconds = sec;
        r.per_unit = (double)tq / sec;
        r.note = std::to_string(tq) + " queries timed, index build " +
                 std::to_string((int)(create_s * 1000)) + " ms";
        if (bk == BackendKind::kCuda) {
          const int reps = 10;
          const double t1 = Now();
          for (int rep = 0; rep < reps && s.ok(); ++rep)
            s = index->Search(queries.data() + (rep % images) * per_image * d, per_image, k,
                              dist.data(), idx.data());
          r.extra = (Now() - t1) / reps * 1000.0;
        }
        rows.push_back(r);
      }
    }
  }

  // ---------------------------------------------------------------- coreset
  {
    const int64_t n = quick ? 5000 : 50000, d = quick ? 256 : 1536, m = n / 100;
    std::vector<float> X;
    MakeRows(99, n, d, 0, 0.0f, nt, &X, nullptr);
    const std::string problem = std::to_string(n) + "x" + std::to_string(d) + " -> " +
                                std::to_string(m) + " (proj 128)";
    std::vector<int64_t> first_sel;
    for (BackendKind bk : backends) {
      if (bk == BackendKind::kCuda && !cuda_ok) {
        skipped_row("coreset", problem);
        continue;
      }
      CoresetOptions o;
      o.backend = bk;
      o.num_threads = nt;
      o.seed = 3;
      o.projection_dim = 128;
      std::vector<int64_t> sel;
      const double t0 = Now();
      const Status s = GreedyCoreset(X.data(), n, d, m, o, &sel);
      const double sec = Now() - t0;
      Row r;
      r.kind = "coreset";
      r.problem = problem;
      r.backend = bk == BackendKind::kCpu ? "cpu" : "cuda";
      if (!s.ok()) {
        r.skipped = true;
        r.note = s.ToString();
      } else {
        r.seconds = sec;
        r.per_unit = sec;
        if (first_sel.empty()) {
          first_sel = sel;
        } else {
          r.note = sel == first_sel ? "same selection as cpu" : "SELECTION DIFFERS from cpu";
        }
      }
      rows.push_back(r);
    }
  }

  // ---------------------------------------------------------------- report
  std::printf("loupe_ml_bench: %d CPU threads, cuda: %s\n", nt, cuda_ok ? "yes" : cuda_why.c_str());
  std::printf("%-8s %-38s %-5s %10s %14s %10s  %s\n", "kind", "problem", "dev", "seconds", "rate",
              "extra", "note");
  for (const Row& r : rows) {
    if (r.skipped) {
      std::printf("%-8s %-38s %-5s %10s %14s %10s  skipped: %s\n", r.kind.c_str(), r.problem.c_str(),
                  r.backend.c_str(), "-", "-", "-", r.note.c_str());
      continue;
    }
    char rate[64], extra[64];
    if (r.kind == "svm") {
      std::snprintf(rate, sizeof rate, "%.3f s/epoch", r.per_unit);
      std::snprintf(extra, sizeof extra, "acc %.1f%%", r.extra);
    } else if (r.kind == "knn") {
      std::snprintf(rate, sizeof rate, "%.0f q/s", r.per_unit);
      if (r.extra >= 0)
        std::snprintf(extra, sizeof extra, "%.2f ms/img", r.extra);
      else
        std::snprintf(extra, sizeof extra, "-");
    } else {
      std::snprintf(rate, sizeof rate, "-");
      std::snprintf(extra, sizeof extra, "-");
    }
    std::printf("%-8s %-38s %-5s %10.3f %14s %10s  %s\n", r.kind.c_str(), r.problem.c_str(),
                r.backend.c_str(), r.seconds, rate, extra, r.note.c_str());
  }
  const double total = Now() - t_start;
  std::printf("total %.1f s\n", total);
  if (json) {
    std::string js = "{\"threads\":" + std::to_string(nt) + ",\"cuda\":" + (cuda_ok ? "true" : "false") +
                     ",\"total_s\":" + std::to_string(total) + ",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      if (i) js += ",";
      js += "{\"kind\":\"" + r.kind + "\",\"problem\":\"" + JsonEscape(r.problem) + "\",\"backend\":\"" +
            r.backend + "\",\"skipped\":" + (r.skipped ? "true" : "false");
      if (!r.skipped) {
        js += ",\"seconds\":" + std::to_string(r.seconds);
        if (r.kind == "svm")
          js += ",\"s_per_epoch\":" + std::to_string(r.per_unit) +
                ",\"train_accuracy\":" + std::to_string(r.extra);
        if (r.kind == "knn") {
          js += ",\"queries_per_s\":" + std::to_string(r.per_unit);
          if (r.extra >= 0) js += ",\"ms_per_image\":" + std::to_string(r.extra);
        }
      }
      js += ",\"note\":\"" + JsonEscape(r.note) + "\"}";
    }
    js += "]}";
    std::printf("%s\n", js.c_str());
  }
  return 0;
}
