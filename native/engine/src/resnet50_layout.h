// Internal: the Keras ResNet50 v1 layer list (names, kernel sizes, strides), defined in resnet50.cc so
// one file knows the architecture. Used by BuildResNet50 and by the seeded synthetic weights.
#pragma once
#include <string>
#include <vector>

namespace loupe {
namespace internal {

enum class ConvRole { kStem, kBranch2a, kBranch2b, kBranch2c, kBranch1 };

struct ConvSpec {
  std::string conv;  // "res3a_branch2a": tensors <conv>/kernel [k,k,cin,cout] and <conv>/bias [cout]
  std::string bn;    // "bn3a_branch2a": tensors <bn>/gamma|beta|moving_mean|moving_variance [cout]
  ConvRole role;
  int block;         // 0..15, -1 for the stem
  int k, cin, cout, stride, pad;
};

// conv1, then per block: branch2a, branch2b, branch2c, [branch1]. 53 convs.
const std::vector<ConvSpec>& ResNet50ConvSpecs();
constexpr int kFcIn = 2048;
constexpr int kFcOut = 1000;
constexpr const char* kFcName = "fc1000";  // fc1000/kernel [2048,1000], fc1000/bias [1000]

}  // namespace internal
}  // namespace loupe
