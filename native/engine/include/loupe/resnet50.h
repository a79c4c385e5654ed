// The Keras ResNet50 v1 architecture with BatchNorm folded into the convolutions: the one place that
// knows layer names, strides, paddings, BN epsilon and the tap (named output) list.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "loupe/status.h"
#include "loupe/weights.h"

namespace loupe {

// Named outputs a caller can ask for. Feature maps are NHWC float32 (Keras layout).
enum class Tap : int {
  kConv1 = 0,       // conv1+bn+relu, 112x112x64 (Keras "activation")
  kRes2c,           // 56x56x256   ("activation_9")
  kRes3d,           // 28x28x512   ("activation_21")
  kRes4f,           // 14x14x1024  ("activation_39")
  kRes5c,           // 7x7x2048    ("activation_48")
  kAvgPool,         // 2048
  kFc1000,          // 1000 logits (pre-softmax): the paper's layer
  kProbabilities,   // 1000 softmax
  kCount
};
const char* TapName(Tap tap);                       // "res3d", "fc1000", ...
bool TapFromName(const std::string& name, Tap* out);  // inverse of TapName
std::array<int, 3> TapShape(Tap tap);                 // {H, W, C}; {1, 1, C} for vectors
int64_t TapElements(Tap tap);                         // per image

constexpr int kInputSize = 224;
constexpr int kInputChannels = 3;
constexpr float kBatchNormEpsilon = 1e-3f;  // Keras default, not PyTorch's 1e-5

// A convolution with BN folded in: y = relu?(conv(x, w) + bias (+ residual)).
struct FoldedConv {
  std::string name;     // Keras conv name, e.g. "res3a_branch2a"
  int kh = 1, kw = 1;   // kernel
  int cin = 0, cout = 0;
  int stride = 1;
  int pad = 0;          // symmetric zero padding (conv1: 3, 3x3 convs: 1, 1x1: 0)
  std::vector<float> w_hwio;  // [kh][kw][cin][cout] (Keras order), BN scale folded in
  std::vector<float> bias;    // [cout], conv bias and BN shift folded in
};

// One bottleneck block: relu(c(relu(b(relu(a(x))))) + shortcut(x)); shortcut = projection or identity.
struct Bottleneck {
  std::string name;     // "res2a" ... "res5c"
  FoldedConv a, b, c;   // 1x1 (stride s), 3x3, 1x1
  bool has_projection = false;
  FoldedConv projection;  // "resXa_branch1", 1x1 stride s
};

struct ResNet50Model {
  FoldedConv conv1;                 // 7x7/2, pad 3
  std::vector<Bottleneck> blocks;   // 16 blocks: 3, 4, 6, 3
  std::vector<float> fc_w;          // [2048][1000] (Keras [in, out])
  std::vector<float> fc_b;          // [1000]
  std::string weights_hash;         // WeightStore::ContentHash of the source weights
  // Index of the block whose output is a stage tap (res2c=2, res3d=6, res4f=12, res5c=15).
  static int BlockIndexOfTap(Tap tap);
};

// Builds the folded model from raw Keras weights; checks all 320 tensors exist with expected shapes.
Status BuildResNet50(const WeightStore& weights, std::shared_ptr<const ResNet50Model>* out);

}  // namespace loupe
