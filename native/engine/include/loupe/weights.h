// Raw named float32 tensors, as stored by the model file (TensorFlow.js layers format or synthetic).
//
// LWTS file layout (SaveWeightStore / LoadWeightStore), all integers little-endian, no padding:
//   char[4]  magic "LWTS"
//   uint32   version (1)
//   uint64   tensor count
//   per tensor, in name order:
//     uint32   name length N, then N bytes of name (UTF-8, no terminator)
//     uint32   rank R, then R x int64 dims
//     uint32   dtype: 0 = float32, 1 = float16 (IEEE half; the loader widens it to float32)
//     data     product(dims) elements of dtype, row-major (Keras order: conv HWIO, dense [in, out])
//   nothing after the last tensor.
// Python (numpy only):
//   b = open(p, 'rb').read(); assert b[:4] == b'LWTS'; ver, n = struct.unpack_from('<IQ', b, 4); o = 16
//   for _ in range(n):
//     L, = struct.unpack_from('<I', b, o); name = b[o+4:o+4+L].decode(); o += 4 + L
//     R, = struct.unpack_from('<I', b, o); dims = struct.unpack_from('<%dq' % R, b, o + 4); o += 4 + 8*R
//     dt, = struct.unpack_from('<I', b, o); o += 4; t = np.dtype('<f4' if dt == 0 else '<f2')
//     cnt = int(np.prod(dims)); w[name] = np.frombuffer(b, t, cnt, o).reshape(dims).astype(np.float32)
//     o += cnt * t.itemsize
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
  // Exactly: per tensor (byte-wise name order), u32 name length, name, u32 rank, int64 dims, float32
  // data, all little-endian (an LWTS file minus its header and dtype fields, with fp16 widened).
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
// fp16 = true stores each tensor as float16 when all its values fit (else float32): about half the size.
Status SaveWeightStore(const WeightStore& store, const std::string& path);
Status SaveWeightStore(const WeightStore& store, const std::string& path, bool fp16);
Status LoadWeightStore(const std::string& path, WeightStore* out);

}  // namespace loupe
