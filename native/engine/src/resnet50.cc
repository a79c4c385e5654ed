// The Keras ResNet50 v1 architecture: layer names, strides, paddings, BN folding and the tap list.
#include "loupe/resnet50.h"

#include <cmath>

#include "resnet50_layout.h"

namespace loupe {

namespace {

struct TapInfo { const char* name; std::array<int, 3> shape; };
const TapInfo kTaps[] = {
    {"conv1", {112, 112, 64}},   {"res2c", {56, 56, 256}},  {"res3d", {28, 28, 512}},
    {"res4f", {14, 14, 1024}},   {"res5c", {7, 7, 2048}},   {"avg_pool", {1, 1, 2048}},
    {"fc1000", {1, 1, 1000}},    {"probabilities", {1, 1, 1000}},
};
static_assert(sizeof(kTaps) / sizeof(kTaps[0]) == (size_t)Tap::kCount, "one entry per tap");

std::vector<internal::ConvSpec> MakeSpecs() {
  using internal::ConvRole;
  std::vector<internal::ConvSpec> v;
  v.push_back({"conv1", "bn_conv1", ConvRole::kStem, -1, 7, 3, 64, 2, 3});
  const int blocks_per_stage[4] = {3, 4, 6, 3};
  const int width[4] = {64, 128, 256, 512};  // bottleneck width; output = 4x
  int cin = 64, block = 0;
  for (int s = 0; s < 4; ++s) {
    for (int b = 0; b < blocks_per_stage[s]; ++b, ++block) {
      std::string id = std::to_string(s + 2) + std::string(1, (char)('a' + b));
      // Keras v1: the stride sits on the first 1x1 (branch2a) and on branch1; res2a has stride 1.
      int stride = (b == 0 && s > 0) ? 2 : 1;
      int w = width[s], out = 4 * width[s];
      v.push_back({"res" + id + "_branch2a", "bn" + id + "_branch2a", ConvRole::kBranch2a, block, 1,
                   cin, w, stride, 0});
      v.push_back({"res" + id + "_branch2b", "bn" + id + "_branch2b", ConvRole::kBranch2b, block, 3,
                   w, w, 1, 1});
      v.push_back({"res" + id + "_branch2c", "bn" + id + "_branch2c", ConvRole::kBranch2c, block, 1,
                   w, out, 1, 0});
      if (b == 0)
        v.push_back({"res" + id + "_branch1", "bn" + id + "_branch1", ConvRole::kBranch1, block, 1,
                     cin, out, stride, 0});
      cin = out;
    }
  }
  return v;
}

// y = gamma * (conv + bias - mean) / sqrt(var + eps) + beta, folded in double precision.
Status FoldConv(const WeightStore& ws, const internal::ConvSpec& spec, FoldedConv* out) {
  const Tensor *kernel, *bias, *gamma, *beta, *mean, *var;
  const int64_t co = spec.cout;
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.conv + "/kernel", {spec.k, spec.k, spec.cin, co}, &kernel));
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.conv + "/bias", {co}, &bias));
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.bn + "/gamma", {co}, &gamma));
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.bn + "/beta", {co}, &beta));
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.bn + "/moving_mean", {co}, &mean));
  LOUPE_RETURN_IF_ERROR(ws.Get(spec.bn + "/moving_variance", {co}, &var));
  out->name = spec.conv;
  out->kh = out->kw = spec.k;
  out->cin = spec.cin;
  out->cout = spec.cout;
  out->stride = spec.stride;
  out->pad = spec.pad;
  std::vector<double> scale(co);
  out->bias.resize(co);
  for (int64_t c = 0; c < co; ++c) {
    double v = (double)var->data[c] + (double)kBatchNormEpsilon;
    if (!(v > 0))
      return Status(StatusCode::kCorruptData,
                    "tensor " + spec.bn + "/moving_variance has a value <= -epsilon at channel " +
                        std::to_string(c));
    scale[c] = (double)gamma->data[c] / std::sqrt(v);
    out->bias[c] = (float)(((double)bias->data[c] - mean->data[c]) * scale[c] + beta->data[c]);
  }
  out->w_hwio.resize(kernel->data.size());
  for (size_t i = 0; i < kernel->data.size(); ++i)  // HWIO: cout is the fastest axis
    out->w_hwio[i] = (float)((double)kernel->data[i] * scale[i % co]);
  return Status::Ok();
}

}  // namespace

namespace internal {
const std::vector<ConvSpec>& ResNet50ConvSpecs() {
  static const std::vector<ConvSpec> specs = MakeSpecs();
  return specs;
}
}  // namespace internal

const char* TapName(Tap tap) {
  int i = (int)tap;
  return (i >= 0 && i < (int)Tap::kCount) ? kTaps[i].name : "?";
}

bool TapFromName(const std::string& name, Tap* out) {
  for (int i = 0; i < (int)Tap::kCount; ++i)
    if (name == kTaps[i].name) {
      *out = (Tap)i;
      return true;
    }
  return false;
}

std::array<int, 3> TapShape(Tap tap) {
  int i = (int)tap;
  return (i >= 0 && i < (int)Tap::kCount) ? kTaps[i].shape : std::array<int, 3>{0, 0, 0};
}

int64_t TapElements(Tap tap) {
  auto s = TapShape(tap);
  return (int64_t)s[0] * s[1] * s[2];
}

int ResNet50Model::BlockIndexOfTap(Tap tap) {
  switch (tap) {
    case Tap::kRes2c: return 2;
    case Tap::kRes3d: return 6;
    case Tap::kRes4f: return 12;
    case Tap::kRes5c: return 15;
    default: return -1;
  }
}

Status BuildResNet50(const WeightStore& weights, std::shared_ptr<const ResNet50Model>* out) {
  using internal::ConvRole;
  auto m = std::make_shared<ResNet50Model>();
  for (const auto& spec : internal::ResNet50ConvSpecs()) {
    FoldedConv fc;
    LOUPE_RETURN_IF_ERROR(FoldConv(weights, spec, &fc));
    if (spec.role == ConvRole::kStem) {
      m->conv1 = std::move(fc);
      continue;
    }
    if ((int)m->blocks.size() <= spec.block) {
      m->blocks.emplace_back();
      m->blocks.back().name = spec.conv.substr(0, spec.conv.find('_'));
    }
    Bottleneck& b = m->blocks[spec.block];
    switch (spec.role) {
      case ConvRole::kBranch2a: b.a = std::move(fc); break;
      case ConvRole::kBranch2b: b.b = std::move(fc); break;
      case ConvRole::kBranch2c: b.c = std::move(fc); break;
      case ConvRole::kBranch1: b.projection = std::move(fc); b.has_projection = true; break;
      default: break;
    }
  }
  const Tensor *fw, *fb;
  const std::string fc = internal::kFcName;
  LOUPE_RETURN_IF_ERROR(weights.Get(fc + "/kernel", {internal::kFcIn, internal::kFcOut}, &fw));
  LOUPE_RETURN_IF_ERROR(weights.Get(fc + "/bias", {internal::kFcOut}, &fb));
  m->fc_w = fw->data;
  m->fc_b = fb->data;
  m->weights_hash = weights.ContentHash();
  *out = std::move(m);
  return Status::Ok();
}

}  // namespace loupe
