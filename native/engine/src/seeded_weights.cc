// Deterministic synthetic ResNet-50 weights: same names and shapes as the Keras model, so every
// backend and the Python peer can run without the real (licensed, 100 MB) weights.
// The generator is splitmix64 (bit-exact on every platform; std:: distributions are not portable).
#include <cmath>

#include "loupe/weights.h"
#include "resnet50_layout.h"

namespace loupe {

namespace {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t s) : s_(s) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1): 24 random bits, exact in float and double.
  double Symmetric() { return (double)(Next() >> 40) * (1.0 / 8388608.0) - 1.0; }

 private:
  uint64_t s_;
};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Each tensor has its own stream (seed x name), so values do not depend on generation order.
Tensor Fill(uint64_t seed, const std::string& name, std::vector<int64_t> shape, float center,
            float half_range) {
  SplitMix64 rng(seed ^ Fnv1a(name));
  Tensor t;
  t.shape = std::move(shape);
  t.data.resize((size_t)t.numel());
  // In double the product of two 24-bit values is exact, so the one rounding is the same whether or
  // not the compiler fuses the multiply-add (arm64 does by default): identical bits on every platform.
  for (auto& v : t.data) v = (float)((double)center + (double)half_range * rng.Symmetric());
  return t;
}

}  // namespace

Status MakeSeededResNet50Weights(uint64_t seed, WeightStore* out) {
  using internal::ConvRole;
  WeightStore ws;
  for (const auto& s : internal::ResNet50ConvSpecs()) {
    // He-uniform: var = 2 / fan_in keeps the ReLU'd signal's scale from layer to layer.
    double fan_in = (double)s.k * s.k * s.cin;
    float a = (float)std::sqrt(3.0 * 2.0 / fan_in);
    // Inputs are caffe-normalised pixels (std ~60), not unit-variance: scale the stem down so
    // conv1's output is O(1), as the real BN statistics would.
    if (s.role == ConvRole::kStem) a /= 64.0f;
    // Residual branches add up along a stage; a smaller last gamma keeps the sum O(1)
    // (the "zero-init residual" idea, softened so the branches still matter).
    float gamma = s.role == ConvRole::kBranch2c ? 0.35f : 1.0f;
    ws.Put(s.conv + "/kernel", Fill(seed, s.conv + "/kernel", {s.k, s.k, s.cin, s.cout}, 0.0f, a));
    ws.Put(s.conv + "/bias", Fill(seed, s.conv + "/bias", {s.cout}, 0.0f, 0.05f));
    ws.Put(s.bn + "/gamma", Fill(seed, s.bn + "/gamma", {s.cout}, gamma, 0.1f * gamma));
    ws.Put(s.bn + "/beta", Fill(seed, s.bn + "/beta", {s.cout}, 0.0f, 0.1f));
    ws.Put(s.bn + "/moving_mean", Fill(seed, s.bn + "/moving_mean", {s.cout}, 0.0f, 0.1f));
    ws.Put(s.bn + "/moving_variance", Fill(seed, s.bn + "/moving_variance", {s.cout}, 1.0f, 0.2f));
  }
  const std::string fc = internal::kFcName;
  float a = (float)std::sqrt(3.0 / internal::kFcIn);
  ws.Put(fc + "/kernel", Fill(seed, fc + "/kernel", {internal::kFcIn, internal::kFcOut}, 0.0f, a));
  ws.Put(fc + "/bias", Fill(seed, fc + "/bias", {internal::kFcOut}, 0.0f, 0.01f));
  *out = std::move(ws);
  return Status::Ok();
}

}  // namespace loupe
