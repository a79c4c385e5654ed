// loupe_export_onnx: writes the folded ResNet-50 as an ONNX model (see loupe/onnx_export.h).
//   loupe_export_onnx (--weights MODEL.json|MODEL.lwts | --seed N) --out OUT.onnx
//                     [--taps fc1000,probabilities] [--opset 13] [--static-batch]
// Prints one JSON line: {"path": ..., "bytes": ..., "weightsHash": ..., "taps": [...]}.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "loupe/onnx_export.h"
#include "loupe/resnet50.h"
#include "loupe/weights.h"

namespace {

int Usage(const char* msg) {
  if (msg) std::fprintf(stderr, "loupe_export_onnx: %s\n", msg);
  std::fprintf(stderr,
               "usage: loupe_export_onnx (--weights MODEL.json|MODEL.lwts | --seed N) --out OUT.onnx\n"
               "                         [--taps fc1000,probabilities] [--opset 13] [--static-batch]\n");
  return 2;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string JsonEscape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    r += c;
  }
  return r;
}

int Fail(const loupe::Status& s) {
  std::fprintf(stderr, "loupe_export_onnx: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string weights, out, taps;
  long long seed = -1;
  loupe::OnnxExportOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--weights" && (v = value())) weights = v;
    else if (a == "--seed" && (v = value())) seed = std::atoll(v);
    else if (a == "--out" && (v = value())) out = v;
    else if (a == "--taps" && (v = value())) taps = v;
    else if (a == "--opset" && (v = value())) options.opset = std::atoi(v);
    else if (a == "--static-batch") options.dynamic_batch = false;
    else if (a == "--help" || a == "-h") return Usage(nullptr);
    else return Usage(("bad argument: " + a).c_str());
  }
  if (out.empty()) return Usage("--out is required");
  if (weights.empty() == (seed < 0)) return Usage("give exactly one of --weights and --seed");
  if (!taps.empty()) {
    options.outputs.clear();
    std::stringstream ss(taps);
    std::string name;
    while (std::getline(ss, name, ',')) {
      loupe::Tap t;
      if (!loupe::TapFromName(name, &t)) return Usage(("unknown tap: " + name).c_str());
      options.outputs.push_back(t);
    }
  }

  loupe::WeightStore store;
  loupe::Status s = !weights.empty()
                        ? (EndsWith(weights, ".lwts") ? loupe::LoadWeightStore(weights, &store)
                                                       : loupe::LoadTfjsWeights(weights, &store))
                        : loupe::MakeSeededResNet50Weights(static_cast<uint64_t>(seed), &store);
  if (!s.ok()) return Fail(s);
  std::shared_ptr<const loupe::ResNet50Model> model;
  s = loupe::BuildResNet50(store, &model);
  if (!s.ok()) return Fail(s);
  s = loupe::ExportOnnx(*model, options, out);
  if (!s.ok()) return Fail(s);

  struct stat st {};
  stat(out.c_str(), &st);
  std::printf("{\"path\": \"%s\", \"bytes\": %lld, \"weightsHash\": \"%s\", \"opset\": %d, \"taps\": [", JsonEscape(out).c_str(),
              static_cast<long long>(st.st_size), model->weights_hash.c_str(), options.opset);
  for (size_t i = 0; i < options.outputs.size(); ++i)
    std::printf("%s\"%s\"", i ? ", " : "", loupe::TapName(options.outputs[i]));
  std::printf("]}\n");
  return 0;
}
