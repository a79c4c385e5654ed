// loupe_engine_bench: ResNet-50 engine throughput, and weight-file conversion.
//
// Flags (kept stable: the GPU device check scripts call this tool):
//   --weights PATH      model.json (TensorFlow.js layers format) or a .lwts file
//   --seed N            synthetic seeded weights instead (default when --weights is absent: --seed 1)
//   --backend B         cpu | cuda | reference | auto   (default cpu; cpu = oneDNN when built with it)
//   --precision P       fp32 | bf16 | fp16 | int8       (default fp32; bf16/fp16 are CUDA only, int8 CPU only:
//                       calibrated (MSE) on the benchmark's own synthetic input, so for speed, not accuracy)
//   --threads N         CPU compute threads, 0 = all cores (default 0)
//   --device N          CUDA device (default 0)
//   --batches LIST      comma-separated batch sizes (default 1,8,32)
//   --iters N           timed runs per batch; the median is reported (default 5)
//   --warmup N          untimed runs per batch first (default 1; the first run builds the plan)
//   --taps LIST         taps to copy out (default probabilities), e.g. res5c,avg_pool,fc1000
//   --json              one JSON object on stdout instead of text
//   --dump-lwts OUT     write the loaded weights as an LWTS file and exit (no benchmark)
//   --fp16              with --dump-lwts: store float16 (half the size; loads back as float32)
// Text output: one line per batch "batch B: X img/s (median M ms, min m ms)", then peak RSS.
// Exit status: 0 ok, 1 runtime error (message on stderr), 2 bad flags.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "loupe/quantization.h"
#include "loupe/resnet50.h"
#include "loupe/session.h"
#include "loupe/weights.h"

using namespace loupe;

namespace {

struct Flags {
  std::string weights, backend = "cpu", precision = "fp32", dump_lwts, taps = "probabilities";
  uint64_t seed = 1;
  int threads = 0, device = 0, iters = 5, warmup = 1;
  std::vector<int> batches = {1, 8, 32};
  bool json = false, fp16 = false;
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr, "loupe_engine_bench: %s\n(see the header of tools/loupe_engine_bench.cc for flags)\n", msg);
  std::exit(2);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

int ToInt(const std::string& s, const char* flag, int lo) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < lo || v > 1 << 20) Usage((std::string("bad value for ") + flag).c_str());
  return (int)v;
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--weights") f.weights = val();
    else if (a == "--seed") f.seed = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--backend") f.backend = val();
    else if (a == "--precision") f.precision = val();
    else if (a == "--threads") f.threads = ToInt(val(), "--threads", 0);
    else if (a == "--device") f.device = ToInt(val(), "--device", 0);
    else if (a == "--iters") f.iters = ToInt(val(), "--iters", 1);
    else if (a == "--warmup") f.warmup = ToInt(val(), "--warmup", 0);
    else if (a == "--taps") f.taps = val();
    else if (a == "--json") f.json = true;
    else if (a == "--dump-lwts") f.dump_lwts = val();
    else if (a == "--fp16") f.fp16 = true;
    else if (a == "--batches") {
      f.batches.clear();
      for (auto& s : Split(val())) f.batches.push_back(ToInt(s, "--batches", 1));
      if (f.batches.empty()) Usage("--batches is empty");
    } else if (a == "-h" || a == "--help") {
      Usage("help");
    } else {
      Usage(("unknown flag " + a).c_str());
    }
  }
  return f;
}

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "loupe_engine_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

double PeakRssMb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if ((unsigned char)c < 0x20) { o += ' '; continue; }
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = Parse(argc, argv);
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };

  auto t0 = Clock::now();
  WeightStore ws;
  std::string source;
  if (!f.weights.empty()) {
    bool lwts = f.weights.size() >= 5 && f.weights.compare(f.weights.size() - 5, 5, ".lwts") == 0;
    Status st = lwts ? LoadWeightStore(f.weights, &ws) : LoadTfjsWeights(f.weights, &ws);
    if (!st.ok()) return Fail("loading " + f.weights, st);
    source = f.weights;
  } else {
    Status st = MakeSeededResNet50Weights(f.seed, &ws);
    if (!st.ok()) return Fail("seeded weights", st);
    source = "seed " + std::to_string(f.seed);
  }
  if (!f.dump_lwts.empty()) {
    Status st = SaveWeightStore(ws, f.dump_lwts, f.fp16);
    if (!st.ok()) return Fail("writing " + f.dump_lwts, st);
    std::printf("wrote %s (%zu tensors, %s, content hash %s)\n", f.dump_lwts.c_str(), ws.size(),
                f.fp16 ? "float16" : "float32", ws.ContentHash().c_str());
    return 0;
  }
  std::shared_ptr<const ResNet50Model> model;
  Status st = BuildResNet50(ws, &model);
  if (!st.ok()) return Fail("building the model", st);
  ws = WeightStore();  // the folded model is all the sessions need
  const double load_ms = ms(t0, Clock::now());

  SessionOptions opts;
  opts.num_threads = f.threads;
  opts.device_id = f.device;
  opts.max_batch = *std::max_element(f.batches.begin(), f.batches.end());
  if (!PrecisionFromName(f.precision, &opts.precision)) Usage("--precision must be fp32, bf16, fp16 or int8");
  // Deterministic caffe-range input (BGR minus means lies in about [-124, 152]).
  const int max_batch = opts.max_batch;
  std::vector<float> input((size_t)max_batch * kInputSize * kInputSize * kInputChannels);
  uint64_t s = 0x2545f4914f6cdd1dull;
  for (auto& v : input) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    v = (float)((s >> 40) % 25600) / 100.0f - 124.0f;
  }
  if (opts.precision == Precision::kInt8) {
    std::unique_ptr<Int8Calibrator> cal;
    st = CreateInt8Calibrator(model, f.threads, &cal);
    if (st.ok()) st = cal->Add(input.data(), std::min(max_batch, 8));
    auto calib = std::make_shared<Int8Calibration>();
    if (st.ok()) st = cal->Compute(CalibrationOptions(), calib.get());
    if (!st.ok()) return Fail("int8 calibration", st);
    opts.int8_calibration = calib;
  }
  std::unique_ptr<Session> session;
  if (f.backend == "reference") {
    st = CreateReferenceSession(model, opts, &session);
  } else {
    if (!BackendKindFromName(f.backend, &opts.backend)) Usage("--backend must be cpu, cuda, reference or auto");
    st = CreateSession(model, opts, &session);
  }
  if (!st.ok()) return Fail("creating the " + f.backend + " session", st);

  RunRequest req;
  for (auto& name : Split(f.taps)) {
    Tap t;
    if (!TapFromName(name, &t)) Usage(("unknown tap " + name).c_str());
    req.taps.push_back(t);
  }
  req.input = input.data();

  struct Row { int batch; double first_ms, median_ms, min_ms, img_s; };
  std::vector<Row> rows;
  for (int b : f.batches) {
    req.batch = b;
    RunResult res;
    auto a = Clock::now();
    st = session->Run(req, &res);
    if (!st.ok()) return Fail("run at batch " + std::to_string(b), st);
    double first = ms(a, Clock::now());
    for (int i = 1; i < f.warmup; ++i)
      if (!(st = session->Run(req, &res)).ok()) return Fail("warmup", st);
    std::vector<double> times;
    for (int i = 0; i < f.iters; ++i) {
      a = Clock::now();
      if (!(st = session->Run(req, &res)).ok()) return Fail("run", st);
      times.push_back(ms(a, Clock::now()));
    }
    std::sort(times.begin(), times.end());
    double med = times[times.size() / 2];
    if (times.size() % 2 == 0) med = 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    rows.push_back({b, first, med, times.front(), b * 1000.0 / med});
    if (!f.json)
      std::printf("batch %d: %.2f img/s (median %.1f ms, min %.1f ms, first run %.1f ms)\n", b,
                  rows.back().img_s, med, times.front(), first);
  }
  if (f.json) {
    std::printf("{\"backend\":\"%s\",\"device\":\"%s\",\"precision\":\"%s\",\"threads\":%d,"
                "\"weights\":\"%s\",\"weights_hash\":\"%s\",\"load_ms\":%.1f,\"iters\":%d,\"results\":[",
                JsonEscape(session->backend_name()).c_str(), JsonEscape(session->device_name()).c_str(),
                f.precision.c_str(), f.threads, JsonEscape(source).c_str(), model->weights_hash.c_str(),
                load_ms, f.iters);
    for (size_t i = 0; i < rows.size(); ++i)
      std::printf("%s{\"batch\":%d,\"img_per_s\":%.3f,\"median_ms\":%.3f,\"min_ms\":%.3f,\"first_ms\":%.3f}",
                  i ? "," : "", rows[i].batch, rows[i].img_s, rows[i].median_ms, rows[i].min_ms,
                  rows[i].first_ms);
    std::printf("],\"peak_rss_mb\":%.1f}\n", PeakRssMb());
  } else {
    std::printf("%s on %s, weights %s (load+fold %.0f ms), peak RSS %.0f MB\n", session->backend_name().c_str(),
                session->device_name().c_str(), source.c_str(), load_ms, PeakRssMb());
  }
  return 0;
}
