// Raw named float32 tensors, as stored by the model file (TensorFlow.js layers format or synthetic).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loupe/status.h"

namespace loupe {

struct Tensor {
  std::vector<int64_t> shape;  // as in the source (Keras: conv kernels HWIO, dense [in, out])
  std::vector<float> data;     // row-major, size == product(shape)
  int64_t numel() const;
};

// Name -> tensor, e.g. "res2a_branch2a/kernel", "bn2a_branch2a/moving_variance", "fc1000/bias".
class WeightStore {
 public:
  const Tensor* Find(const std::string& name) const;
  Status Get(const std::string& name, const std::vector<int64_t>& expected_shape,
             const Tensor** out) const;  // NotFound / CorruptData (shape mismatch) naming the tensor
  void Put(const std::string& name, Tensor t) { tensors_[name] = std::move(t); }
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, Tensor>& all() const { return tensors_; }
  // SHA-256 over (name, shape, bytes) of every tensor in name order: identifies the weights in model files.
  std::string ContentHash() const;

 private:
  std::map<std::string, Tensor> tensors_;
};

// Parses a TensorFlow.js layers-format model.json and its weight shards (paths relative to the json).
// Checks: manifest well-formed, every dtype float32, each shard exists with the exact byte size the
// manifest implies. Errors name the file (and tensor) at fault.
Status LoadTfjsWeights(const std::string& model_json_path, WeightStore* out);

// Deterministic synthetic ResNet-50 weights (same names and shapes as the Keras model) from a seed:
// used where the real weights cannot travel (the GPU device check). Scaled so activations stay O(1).
Status MakeSeededResNet50Weights(uint64_t seed, WeightStore* out);

// A single-file dump of a WeightStore ("LWTS" magic, version, count, then name/shape/data records),
// so a Python peer (tools/device) can read exactly the same weights.
Status SaveWeightStore(const WeightStore& store, const std::string& path);
Status LoadWeightStore(const std::string& path, WeightStore* out);

}  // namespace loupe
