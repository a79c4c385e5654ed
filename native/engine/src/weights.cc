// WeightStore, the TensorFlow.js layers-format loader and the LWTS single-file format.
// All formats are little-endian float32 on disk; every supported host (x86-64, arm64) is too.
#include "loupe/weights.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "file_util.h"
#include "json.h"
#include "sha256.h"

namespace loupe {

namespace {

constexpr uint64_t kMaxModelJsonBytes = 64ull << 20;  // Keras model.json is ~100 KB
constexpr uint64_t kMaxTensorElements = 1ull << 34;   // guards size arithmetic against overflow
constexpr uint64_t kTfjsDefaultShardBytes = 4ull << 20;

Status Corrupt(const std::string& msg) { return Status(StatusCode::kCorruptData, msg); }

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// Product of dims with overflow and sign checks.
bool ElementCount(const std::vector<int64_t>& shape, uint64_t* n) {
  uint64_t p = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && p > kMaxTensorElements / (uint64_t)d) return false;
    p *= (uint64_t)d;
  }
  *n = p;
  return true;
}

Status CheckFinite(const std::string& where, const std::string& name, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      return Corrupt(where + ": tensor " + name + " has a non-finite value (" +
                     (std::isnan(v[i]) ? "NaN" : "Inf") + ") at element " + std::to_string(i));
  return Status::Ok();
}

// --- float16 <-> float32 (IEEE 754 binary16, round to nearest even) ---

uint32_t FloatBits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float BitsFloat(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

bool FloatToHalf(float f, uint16_t* out) {
  uint32_t x = FloatBits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x477ff000) return false;  // >= 65520 rounds to Inf (also catches Inf/NaN)
  if (ax < 0x38800000) {               // below 2^-14: a half subnormal, units of 2^-24
    *out = sign | (uint16_t)std::nearbyint(BitsFloat(ax) * 16777216.0f);
    return true;
  }
  uint32_t h = ((((ax >> 23) - 127 + 15)) << 10) | ((ax & 0x7fffff) >> 13);
  uint32_t rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // a carry into the exponent is correct
  *out = sign | (uint16_t)h;
  return true;
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) return BitsFloat(sign) + (sign ? -1.0f : 1.0f) * (float)m * (1.0f / 16777216.0f);
  if (e == 31) return BitsFloat(sign | 0x7f800000 | (m << 13));
  return BitsFloat(sign | ((e - 15 + 127) << 23) | (m << 13));
}

// --- tfjs manifest ---

struct ManifestEntry {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t numel = 0;
};
struct ManifestGroup {
  std::vector<std::string> paths;
  std::vector<ManifestEntry> weights;
};

Status ParseManifest(const json::Value& root, const std::string& what,
                     std::vector<ManifestGroup>* groups) {
  const json::Value* man = root.Find("weightsManifest");
  if (!root.is_object() || !man || !man->is_array() || man->array.empty())
    return Corrupt(what + ": no weightsManifest array");
  for (size_t g = 0; g < man->array.size(); ++g) {
    const json::Value& gv = man->array[g];
    std::string gwhat = what + ": weightsManifest[" + std::to_string(g) + "]";
    const json::Value* paths = gv.Find("paths");
    const json::Value* weights = gv.Find("weights");
    if (!paths || !paths->is_array() || !weights || !weights->is_array())
      return Corrupt(gwhat + " needs 'paths' and 'weights' arrays");
    ManifestGroup group;
    for (const auto& p : paths->array) {
      if (!p.is_string() || p.string.empty()) return Corrupt(gwhat + ": a path is not a string");
      // Shards live next to model.json: refuse absolute paths and '..' so a file cannot read elsewhere.
      const std::string& s = p.string;
      if (s[0] == '/' || s == ".." || s.find("../") == 0 || s.find("/../") != std::string::npos ||
          (s.size() >= 3 && s.compare(s.size() - 3, 3, "/..") == 0))
        return Corrupt(gwhat + ": shard path '" + s + "' leaves the model directory");
      group.paths.push_back(s);
    }
    for (size_t i = 0; i < weights->array.size(); ++i) {
      const json::Value& w = weights->array[i];
      const json::Value* name = w.Find("name");
      const json::Value* shape = w.Find("shape");
      const json::Value* dtype = w.Find("dtype");
      if (!name || !name->is_string() || name->string.empty())
        return Corrupt(gwhat + ".weights[" + std::to_string(i) + "] has no name");
      ManifestEntry e;
      e.name = name->string;
      std::string twhat = what + ": tensor " + e.name;
      if (!shape || !shape->is_array()) return Corrupt(twhat + " has no shape");
      for (const auto& d : shape->array) {
        if (!d.is_number() || d.number < 0 || d.number != std::floor(d.number) || d.number > 1e12)
          return Corrupt(twhat + " has an invalid dimension in its shape");
        e.shape.push_back((int64_t)d.number);
      }
      if (!ElementCount(e.shape, &e.numel)) return Corrupt(twhat + " has a shape too large");
      // tfjs writes "float32" (and omits dtype in old files, meaning float32).
      if (dtype && (!dtype->is_string() || dtype->string != "float32"))
        return Corrupt(twhat + " has dtype " + (dtype->is_string() ? dtype->string : "?") +
                       "; only float32 is supported");
      if (w.Find("quantization"))
        return Corrupt(twhat + " is quantized; only float32 weights are supported");
      group.weights.push_back(std::move(e));
    }
    if (group.paths.empty() && !group.weights.empty()) return Corrupt(gwhat + " has no paths");
    groups->push_back(std::move(group));
  }
  return Status::Ok();
}

// tfjs splits a group's concatenated bytes into equal shards (4 MiB by default) plus a shorter
// last one. The manifest does not store shard sizes, so infer them and name the first shard that
// does not match: a truncated or padded shard is reported as itself, not as a total mismatch.
Status CheckShardSizes(const std::string& dir, const ManifestGroup& g, uint64_t total,
                       std::vector<uint64_t>* sizes) {
  const size_t n = g.paths.size();
  for (const auto& p : g.paths) {
    uint64_t sz = 0;
    Status st = internal::FileSize(internal::JoinPath(dir, p), &sz);
    if (!st.ok()) {
      if (st.code() == StatusCode::kNotFound)
        return Status(StatusCode::kNotFound, "weight shard " + p + " not found (" +
                                                 internal::JoinPath(dir, p) + ")");
      return st;
    }
    sizes->push_back(sz);
  }
  uint64_t shard = total;  // expected size of every shard but the last
  if (n > 1) {
    if ((total + kTfjsDefaultShardBytes - 1) / kTfjsDefaultShardBytes == n) {
      shard = kTfjsDefaultShardBytes;
    } else {  // a non-default shard size: take the most common size among the leading shards
      size_t best = 0;
      for (size_t i = 0; i + 1 < n; ++i) {
        size_t c = 0;
        for (size_t j = 0; j + 1 < n; ++j) c += (*sizes)[j] == (*sizes)[i];
        if (c > best) { best = c; shard = (*sizes)[i]; }
      }
    }
    if (shard == 0 || total <= (n - 1) * shard || total - (n - 1) * shard > shard)
      return Corrupt("the manifest lists " + std::to_string(n) + " shards, which cannot hold the " +
                     std::to_string(total) + " bytes its tensors need");
  }
  for (size_t i = 0; i < n; ++i) {
    uint64_t want = (i + 1 < n) ? shard : total - (n - 1) * shard;
    if ((*sizes)[i] != want)
      return Corrupt("weight shard " + g.paths[i] + " is " + std::to_string((*sizes)[i]) +
                     " bytes, expected " + std::to_string(want) +
                     ((*sizes)[i] < want ? " (truncated)" : " (too long)"));
  }
  return Status::Ok();
}

// Streams a group's tensors out of its shards in manifest order (no whole-group buffer).
Status ReadGroup(const std::string& dir, const ManifestGroup& g, const std::vector<uint64_t>& sizes,
                 WeightStore* out) {
  size_t shard = 0;
  uint64_t left_in_shard = 0;
  FILE* f = nullptr;
  auto close = [&] { if (f) std::fclose(f); f = nullptr; };
  for (const auto& e : g.weights) {
    Tensor t;
    t.shape = e.shape;
    t.data.resize(e.numel);
    char* dst = reinterpret_cast<char*>(t.data.data());
    uint64_t need = e.numel * 4;
    while (need > 0) {
      if (left_in_shard == 0) {
        close();
        if (shard >= g.paths.size()) return Corrupt("weight shards end before tensor " + e.name);
        std::string path = internal::JoinPath(dir, g.paths[shard]);
        f = std::fopen(path.c_str(), "rb");
        if (!f) return Status(StatusCode::kIoError, "cannot open weight shard " + g.paths[shard] +
                                                        ": " + std::strerror(errno));
        left_in_shard = sizes[shard++];
        continue;
      }
      uint64_t n = need < left_in_shard ? need : left_in_shard;
      size_t got = std::fread(dst, 1, n, f);
      if (got != n) {
        close();
        return Status(StatusCode::kIoError, "short read in weight shard " + g.paths[shard - 1] +
                                                " while reading tensor " + e.name);
      }
      dst += n;
      need -= n;
      left_in_shard -= n;
    }
    LOUPE_RETURN_IF_ERROR(CheckFinite("weights", e.name, t.data));
    out->Put(e.name, std::move(t));
  }
  close();
  return Status::Ok();
}

// --- LWTS ---

constexpr char kLwtsMagic[4] = {'L', 'W', 'T', 'S'};
constexpr uint32_t kLwtsVersion = 1;
constexpr uint32_t kDtypeF32 = 0, kDtypeF16 = 1;
constexpr uint32_t kMaxRank = 8;

template <typename T>
void Append(std::string* s, T v) { s->append(reinterpret_cast<const char*>(&v), sizeof(T)); }

class Reader {
 public:
  Reader(const std::string& b, const std::string& what) : b_(b), what_(what) {}
  template <typename T>
  Status Read(T* v, const char* field) {
    if (b_.size() - pos_ < sizeof(T)) return Truncated(field);
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status Bytes(uint64_t n, const char** p, const char* field) {
    if (b_.size() - pos_ < n) return Truncated(field);
    *p = b_.data() + pos_;
    pos_ += n;
    return Status::Ok();
  }
  uint64_t left() const { return b_.size() - pos_; }
  Status Truncated(const char* field) const {
    return Corrupt(what_ + ": truncated at byte " + std::to_string(pos_) + " (reading " + field + ")");
  }

 private:
  const std::string& b_;
  const std::string& what_;
  uint64_t pos_ = 0;
};

}  // namespace

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const Tensor* WeightStore::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status WeightStore::Get(const std::string& name, const std::vector<int64_t>& expected_shape,
                        const Tensor** out) const {
  const Tensor* t = Find(name);
  if (!t) return Status(StatusCode::kNotFound, "weight tensor " + name + " not found");
  if (t->shape != expected_shape)
    return Corrupt("weight tensor " + name + " has shape " + ShapeString(t->shape) + ", expected " +
                   ShapeString(expected_shape));
  if ((int64_t)t->data.size() != t->numel())
    return Corrupt("weight tensor " + name + " holds " + std::to_string(t->data.size()) +
                   " values for shape " + ShapeString(t->shape));
  *out = t;
  return Status::Ok();
}

std::string WeightStore::ContentHash() const {
  // Per tensor in name order: u32 name length, name, u32 rank, i64 dims, float32 data (LE).
  Sha256 h;
  for (const auto& kv : tensors_) {
    uint32_t len = (uint32_t)kv.first.size(), rank = (uint32_t)kv.second.shape.size();
    h.Update(&len, 4);
    h.Update(kv.first.data(), len);
    h.Update(&rank, 4);
    h.Update(kv.second.shape.data(), rank * sizeof(int64_t));
    h.Update(kv.second.data.data(), kv.second.data.size() * sizeof(float));
  }
  return h.HexDigest();
}

Status LoadTfjsWeights(const std::string& model_json_path, WeightStore* out) {
  std::string text;
  LOUPE_RETURN_IF_ERROR(internal::ReadWholeFile(model_json_path, kMaxModelJsonBytes, &text));
  json::Value root;
  LOUPE_RETURN_IF_ERROR(json::Parse(text, model_json_path, &root));
  std::vector<ManifestGroup> groups;
  LOUPE_RETURN_IF_ERROR(ParseManifest(root, model_json_path, &groups));
  const std::string dir = internal::DirName(model_json_path);
  WeightStore store;
  for (const auto& g : groups) {
    uint64_t total = 0;
    for (const auto& e : g.weights) {
      if (store.Find(e.name)) return Corrupt(model_json_path + ": tensor " + e.name + " listed twice");
      total += e.numel * 4;
    }
    std::vector<uint64_t> sizes;
    LOUPE_RETURN_IF_ERROR(CheckShardSizes(dir, g, total, &sizes));
    LOUPE_RETURN_IF_ERROR(ReadGroup(dir, g, sizes, &store));
  }
  *out = std::move(store);
  return Status::Ok();
}

Status SaveWeightStore(const WeightStore& store, const std::string& path) {
  return SaveWeightStore(store, path, false);
}

Status SaveWeightStore(const WeightStore& store, const std::string& path, bool fp16) {
  std::string b;
  b.append(kLwtsMagic, 4);
  Append<uint32_t>(&b, kLwtsVersion);
  Append<uint64_t>(&b, store.size());
  for (const auto& kv : store.all()) {
    const Tensor& t = kv.second;
    if ((int64_t)t.data.size() != t.numel() || t.shape.size() > kMaxRank)
      return Status(StatusCode::kInvalidArgument, "tensor " + kv.first + " is malformed");
    Append<uint32_t>(&b, (uint32_t)kv.first.size());
    b.append(kv.first);
    Append<uint32_t>(&b, (uint32_t)t.shape.size());
    for (int64_t d : t.shape) Append<int64_t>(&b, d);
    // fp16 halves the file (the device check carries real weights under a 64 MiB cap); a tensor with
    // a value outside the half range (BN moving variances reach 8e4) stays float32, per tensor.
    std::vector<uint16_t> half;
    if (fp16) {
      half.resize(t.data.size());
      for (size_t i = 0; i < t.data.size() && !half.empty(); ++i)
        if (!FloatToHalf(t.data[i], &half[i])) half.clear();
    }
    const bool as_half = fp16 && (!half.empty() || t.data.empty());
    Append<uint32_t>(&b, as_half ? kDtypeF16 : kDtypeF32);
    if (as_half) {
      for (uint16_t h : half) Append<uint16_t>(&b, h);
    } else {
      b.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
    }
  }
  return internal::WriteFileAtomically(path, b);
}

Status LoadWeightStore(const std::string& path, WeightStore* out) {
  std::string b;
  LOUPE_RETURN_IF_ERROR(internal::ReadWholeFile(path, 16ull << 30, &b));
  Reader r(b, path);
  const char* magic = nullptr;
  LOUPE_RETURN_IF_ERROR(r.Bytes(4, &magic, "magic"));
  if (std::memcmp(magic, kLwtsMagic, 4) != 0) return Corrupt(path + ": not an LWTS file (bad magic)");
  uint32_t version = 0;
  uint64_t count = 0;
  LOUPE_RETURN_IF_ERROR(r.Read(&version, "version"));
  if (version != kLwtsVersion)
    return Corrupt(path + ": unsupported LWTS version " + std::to_string(version));
  LOUPE_RETURN_IF_ERROR(r.Read(&count, "tensor count"));
  if (count > r.left() / 12)  // every record takes at least 12 bytes
    return Corrupt(path + ": tensor count " + std::to_string(count) + " exceeds the file size");
  WeightStore store;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t len = 0, rank = 0, dtype = 0;
    const char* name_p = nullptr;
    LOUPE_RETURN_IF_ERROR(r.Read(&len, "name length"));
    LOUPE_RETURN_IF_ERROR(r.Bytes(len, &name_p, "name"));
    std::string name(name_p, len);
    if (name.empty() || store.Find(name))
      return Corrupt(path + ": tensor #" + std::to_string(i) + " has an empty or repeated name");
    LOUPE_RETURN_IF_ERROR(r.Read(&rank, "rank"));
    if (rank > kMaxRank) return Corrupt(path + ": tensor " + name + " has rank " + std::to_string(rank));
    Tensor t;
    t.shape.resize(rank);
    for (auto& d : t.shape) LOUPE_RETURN_IF_ERROR(r.Read(&d, "dims"));
    uint64_t n;
    if (!ElementCount(t.shape, &n)) return Corrupt(path + ": tensor " + name + " has a bad shape");
    LOUPE_RETURN_IF_ERROR(r.Read(&dtype, "dtype"));
    if (dtype != kDtypeF32 && dtype != kDtypeF16)
      return Corrupt(path + ": tensor " + name + " has unknown dtype code " + std::to_string(dtype));
    uint64_t elem = dtype == kDtypeF32 ? 4 : 2;
    if (n > r.left() / elem)
      return Corrupt(path + ": tensor " + name + " needs " + std::to_string(n * elem) +
                     " bytes but only " + std::to_string(r.left()) + " remain (truncated)");
    const char* data = nullptr;
    LOUPE_RETURN_IF_ERROR(r.Bytes(n * elem, &data, "data"));
    t.data.resize(n);
    if (dtype == kDtypeF32) {
      if (n) std::memcpy(t.data.data(), data, n * 4);
    } else {
      for (uint64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, data + 2 * k, 2);
        t.data[k] = HalfToFloat(h);
      }
    }
    LOUPE_RETURN_IF_ERROR(CheckFinite(path, name, t.data));
    store.Put(name, std::move(t));
  }
  if (r.left() != 0)
    return Corrupt(path + ": " + std::to_string(r.left()) + " unexpected bytes after the last tensor");
  *out = std::move(store);
  return Status::Ok();
}

}  // namespace loupe
