// ONNX export: the written file is a well-formed protobuf ModelProto with the expected structure.
// A small wire-format reader below parses it back (numeric parity with onnxruntime is checked in
// tools/bench/onnx-parity.test.mjs, which runs the exported real weights against the reference).
#include "loupe/onnx_export.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loupe/quantization.h"
#include "loupe/resnet50.h"
#include "loupe/weights.h"
#include "test_util.h"

namespace {

// ---- minimal protobuf reader ---------------------------------------------------------------------
struct Field {
  uint32_t num = 0;
  uint32_t wire = 0;
  uint64_t varint = 0;        // wire 0
  const char* data = nullptr;  // wire 2 (also 1/5: the raw bytes)
  size_t size = 0;
  std::string str() const { return std::string(data, size); }
};

bool ReadVarint(const char*& p, const char* end, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t b = static_cast<uint8_t>(*p++);
    *v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// Parses one message level; false when the bytes are not a well-formed message.
bool Parse(const char* p, size_t n, std::vector<Field>* out) {
  const char* end = p + n;
  out->clear();
  while (p < end) {
    uint64_t key;
    if (!ReadVarint(p, end, &key)) return false;
    Field f;
    f.num = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.num == 0) return false;
    switch (f.wire) {
      case 0:
        if (!ReadVarint(p, end, &f.varint)) return false;
        break;
      case 1:
      case 5: {
        const size_t k = f.wire == 1 ? 8 : 4;
        if (static_cast<size_t>(end - p) < k) return false;
        f.data = p;
        f.size = k;
        p += k;
        break;
      }
      case 2: {
        uint64_t len;
        if (!ReadVarint(p, end, &len) || len > static_cast<uint64_t>(end - p)) return false;
        f.data = p;
        f.size = static_cast<size_t>(len);
        p += len;
        break;
      }
      default:
        return false;
    }
    out->push_back(f);
  }
  return true;
}

std::vector<Field> Sub(const Field& f) {
  std::vector<Field> v;
  CHECK(f.wire == 2);
  CHECK(Parse(f.data, f.size, &v));
  return v;
}
std::vector<const Field*> All(const std::vector<Field>& m, uint32_t num) {
  std::vector<const Field*> r;
  for (const auto& f : m)
    if (f.num == num) r.push_back(&f);
  return r;
}
const Field* One(const std::vector<Field>& m, uint32_t num) {
  auto v = All(m, num);
  return v.size() == 1 ? v[0] : nullptr;
}

// ---- decoded ONNX subset ----------------------------------------------------------------------------
struct Node {
  std::string op, name;
  std::vector<std::string> inputs, outputs;
  std::map<std::string, std::vector<int64_t>> ints;  // INT and INTS attributes
};
struct Init {
  std::string name;
  std::vector<int64_t> dims;
  int64_t dtype = 0;
  const char* raw = nullptr;
  size_t raw_size = 0;
};
struct ValueInfo {
  std::string name;
  int64_t elem_type = 0;
  std::vector<std::string> dims;  // "N" for a symbolic dim, else the number
};
struct Model {
  std::string bytes;
  int64_t ir_version = 0;
  std::map<std::string, int64_t> opsets;
  std::map<std::string, std::string> metadata;
  std::vector<Node> nodes;
  std::vector<Init> inits;
  std::vector<ValueInfo> inputs, outputs;
};

ValueInfo DecodeValueInfo(const Field& f) {
  ValueInfo vi;
  auto m = Sub(f);
  vi.name = One(m, 1) ? One(m, 1)->str() : "";
  const Field* type = One(m, 2);
  CHECK(type != nullptr);
  if (!type) return vi;
  const std::vector<Field> type_proto = Sub(*type);
  auto tt = Sub(*One(type_proto, 1));
  vi.elem_type = One(tt, 1) ? static_cast<int64_t>(One(tt, 1)->varint) : 0;
  const std::vector<Field> shape = Sub(*One(tt, 2));  // kept alive: All() points into it
  for (const Field* d : All(shape, 1)) {
    auto dm = Sub(*d);
    if (One(dm, 1)) vi.dims.push_back(std::to_string(One(dm, 1)->varint));
    else if (One(dm, 2)) vi.dims.push_back(One(dm, 2)->str());
    else vi.dims.push_back("?");
  }
  return vi;
}

bool Decode(const std::string& bytes, Model* out) {
  out->bytes = bytes;
  std::vector<Field> model;
  if (!Parse(out->bytes.data(), out->bytes.size(), &model)) return false;
  if (!One(model, 1) || !One(model, 7)) return false;
  out->ir_version = static_cast<int64_t>(One(model, 1)->varint);
  for (const Field* o : All(model, 8)) {
    auto m = Sub(*o);
    out->opsets[One(m, 1) ? One(m, 1)->str() : ""] = static_cast<int64_t>(One(m, 2)->varint);
  }
  for (const Field* e : All(model, 14)) {
    auto m = Sub(*e);
    out->metadata[One(m, 1)->str()] = One(m, 2)->str();
  }
  auto graph = Sub(*One(model, 7));
  for (const Field* nf : All(graph, 1)) {
    auto m = Sub(*nf);
    Node n;
    for (const Field* i : All(m, 1)) n.inputs.push_back(i->str());
    for (const Field* o : All(m, 2)) n.outputs.push_back(o->str());
    n.name = One(m, 3) ? One(m, 3)->str() : "";
    n.op = One(m, 4) ? One(m, 4)->str() : "";
    for (const Field* af : All(m, 5)) {
      auto a = Sub(*af);
      const std::string an = One(a, 1)->str();
      const int64_t type = static_cast<int64_t>(One(a, 20)->varint);
      std::vector<int64_t>& vals = n.ints[an];
      if (type == 2) vals.push_back(static_cast<int64_t>(One(a, 3)->varint));
      if (type == 7)
        for (const Field* v : All(a, 8)) vals.push_back(static_cast<int64_t>(v->varint));
    }
    out->nodes.push_back(n);
  }
  for (const Field* tf : All(graph, 5)) {
    auto m = Sub(*tf);
    Init t;
    for (const Field* d : All(m, 1)) t.dims.push_back(static_cast<int64_t>(d->varint));
    t.dtype = static_cast<int64_t>(One(m, 2)->varint);
    t.name = One(m, 8)->str();
    const Field* raw = One(m, 9);
    if (raw) t.raw = raw->data, t.raw_size = raw->size;
    out->inits.push_back(t);
  }
  for (const Field* f : All(graph, 11)) out->inputs.push_back(DecodeValueInfo(*f));
  for (const Field* f : All(graph, 12)) out->outputs.push_back(DecodeValueInfo(*f));
  return true;
}

// ---- fixtures ---------------------------------------------------------------------------------------
std::shared_ptr<const loupe::ResNet50Model> SeededModel() {
  static std::shared_ptr<const loupe::ResNet50Model> model;
  if (!model) {
    loupe::WeightStore ws;
    loupe::Status s = loupe::MakeSeededResNet50Weights(7, &ws);
    if (!s.ok()) return nullptr;
    s = loupe::BuildResNet50(ws, &model);
    if (!s.ok()) return nullptr;
  }
  return model;
}

std::string TempDir() {
  static std::string dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/loupe_onnx_test_XXXXXX";
    const char* d = mkdtemp(tmpl);
    dir = d ? d : "/tmp";
  }
  return dir;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
    closedir(d);
  }
  return names;
}

size_t ModelFloats(const loupe::ResNet50Model& m, int* convs) {
  size_t n = m.conv1.w_hwio.size() + m.conv1.bias.size();
  *convs = 1;
  for (const auto& b : m.blocks) {
    for (const loupe::FoldedConv* c : {&b.a, &b.b, &b.c}) n += c->w_hwio.size() + c->bias.size();
    *convs += 3;
    if (b.has_projection) n += b.projection.w_hwio.size() + b.projection.bias.size(), ++*convs;
  }
  return n + m.fc_w.size() + m.fc_b.size();
}

// Every node input is a graph input, an initializer or an earlier node's output; every output is
// produced; every initializer is used. Names are unique.
void CheckWellFormed(const Model& m) {
  std::set<std::string> defined, used, node_names;
  for (const auto& i : m.inputs) defined.insert(i.name);
  for (const auto& t : m.inits) CHECK(defined.insert(t.name).second);
  for (const auto& n : m.nodes) {
    CHECK(!n.op.empty());
    CHECK(node_names.insert(n.name).second);
    for (const auto& in : n.inputs) {
      if (!defined.count(in)) std::printf("  node %s reads undefined %s\n", n.name.c_str(), in.c_str());
      CHECK(defined.count(in) == 1);
      used.insert(in);
    }
    for (const auto& o : n.outputs) CHECK(defined.insert(o).second);
  }
  for (const auto& o : m.outputs) CHECK(defined.count(o.name) == 1);
  for (const auto& t : m.inits) CHECK(used.count(t.name) == 1);
}

const Node* FindNode(const Model& m, const std::string& output) {
  for (const auto& n : m.nodes)
    if (!n.outputs.empty() && n.outputs[0] == output) return &n;
  return nullptr;
}
const Init* FindInit(const Model& m, const std::string& name) {
  for (const auto& t : m.inits)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace

TEST_CASE(DefaultExportHasTheFullNetwork) {
  auto model = SeededModel();
  if (!model) SKIP("seeded weights or BuildResNet50 unavailable");
  const std::string path = TempDir() + "/default.onnx";
  REQUIRE_OK(loupe::ExportOnnx(*model, loupe::OnnxExportOptions(), path));
  Model m;
  CHECK(Decode(ReadAll(path), &m));
  CHECK(m.ir_version == 8);
  CHECK(m.opsets.size() == 1 && m.opsets[""] == 13);
  CHECK(m.metadata["loupe.weights_hash"] == model->weights_hash);
  CHECK(m.metadata["loupe.taps"] == "fc1000,probabilities");

  // 1 Transpose + conv1 (Conv, Relu) + MaxPool + 16 x (3 Conv, 2 Relu, Add, Relu) + 4 projections
  // + GlobalAveragePool, Flatten, Gemm, Softmax.
  CHECK(m.nodes.size() == 1 + 2 + 1 + 16 * 7 + 4 + 4);
  std::map<std::string, int> ops;
  for (const auto& n : m.nodes) ops[n.op]++;
  CHECK(ops["Conv"] == 53);
  CHECK(ops["Relu"] == 49);
  CHECK(ops["Add"] == 16);
  CHECK(ops["Transpose"] == 1);
  CHECK(ops["MaxPool"] == 1 && ops["GlobalAveragePool"] == 1 && ops["Flatten"] == 1);
  CHECK(ops["Gemm"] == 1 && ops["Softmax"] == 1);

  int convs = 0;
  const size_t floats = ModelFloats(*model, &convs);
  CHECK(convs == 53);
  CHECK(m.inits.size() == static_cast<size_t>(2 * convs + 2));
  size_t raw = 0;
  for (const auto& t : m.inits) {
    CHECK(t.dtype == 1);
    int64_t numel = 1;
    for (int64_t d : t.dims) numel *= d;
    CHECK(t.raw_size == static_cast<size_t>(numel) * 4);
    raw += t.raw_size;
  }
  CHECK(raw == floats * 4);
  CHECK(floats == 25530472);  // Keras ResNet50 (25,636,712) minus 4 x 26,560 folded BN parameters

  CHECK(m.inputs.size() == 1);
  CHECK(m.inputs[0].name == "input" && m.inputs[0].elem_type == 1);
  CHECK((m.inputs[0].dims == std::vector<std::string>{"N", "224", "224", "3"}));
  CHECK(m.outputs.size() == 2);
  CHECK(m.outputs[0].name == "fc1000" && m.outputs[1].name == "probabilities");
  CHECK((m.outputs[0].dims == std::vector<std::string>{"N", "1000"}));
  CHECK((m.nodes.front().ints.at("perm") == std::vector<int64_t>{0, 3, 1, 2}));
  CheckWellFormed(m);

  // In-memory serialisation gives the same bytes; no temporary file is left behind.
  std::string mem;
  CHECK_OK(loupe::SerializeOnnx(*model, loupe::OnnxExportOptions(), &mem));
  CHECK(mem == m.bytes);
  CHECK(ListDir(TempDir()) == std::vector<std::string>{"default.onnx"});
  std::remove(path.c_str());
}

TEST_CASE(ConvWeightsAreOihwAndAttributesMatchTheModel) {
  auto model = SeededModel();
  if (!model) SKIP("seeded weights or BuildResNet50 unavailable");
  std::string bytes;
  REQUIRE_OK(loupe::SerializeOnnx(*model, loupe::OnnxExportOptions(), &bytes));
  Model m;
  REQUIRE_OK(Decode(bytes, &m) ? loupe::Status::Ok() : loupe::Status(loupe::StatusCode::kCorruptData, "parse"));

  std::vector<const loupe::FoldedConv*> convs = {&model->conv1};
  for (const auto& b : model->blocks) {
    convs.push_back(&b.a), convs.push_back(&b.b), convs.push_back(&b.c);
    if (b.has_projection) convs.push_back(&b.projection);
  }
  for (const loupe::FoldedConv* c : convs) {
    const Init* w = FindInit(m, c->name + "/W");
    const Init* b = FindInit(m, c->name + "/B");
    const Node* n = FindNode(m, c->name + "/conv");
    CHECK(w && b && n);
    if (!w || !b || !n) continue;
    CHECK((w->dims == std::vector<int64_t>{c->cout, c->cin, c->kh, c->kw}));
    CHECK(n->op == "Conv");
    CHECK((n->ints.at("strides") == std::vector<int64_t>{c->stride, c->stride}));
    CHECK((n->ints.at("pads") == std::vector<int64_t>{c->pad, c->pad, c->pad, c->pad}));
    CHECK((n->ints.at("kernel_shape") == std::vector<int64_t>{c->kh, c->kw}));
    CHECK(std::memcmp(b->raw, c->bias.data(), c->bias.size() * 4) == 0);
    // w_oihw[o][i][h][w] == w_hwio[h][w][i][o] at a spread of positions.
    int bad = 0;
    for (int k = 0; k < 97; ++k) {
      const int o = (k * 131) % c->cout, i = (k * 17) % c->cin, h = k % c->kh, x = (k / 3) % c->kw;
      float got;
      std::memcpy(&got, w->raw + 4 * (((static_cast<size_t>(o) * c->cin + i) * c->kh + h) * c->kw + x), 4);
      const float want = c->w_hwio[((static_cast<size_t>(h) * c->kw + x) * c->cin + i) * c->cout + o];
      bad += got != want;
    }
    CHECK(bad == 0);
  }
  CHECK(FindNode(m, "res3a_branch2a/conv")->ints.at("strides")[0] == 2);  // Keras v1: stride on 2a
  CHECK(FindNode(m, "res3a_branch2b/conv")->ints.at("strides")[0] == 1);
  CHECK(FindNode(m, "conv1/conv")->ints.at("pads")[0] == 3);
  const Node* pool = FindNode(m, "pool1/maxpool");
  CHECK(pool && (pool->ints.at("pads") == std::vector<int64_t>{1, 1, 1, 1}));
  const Init* fw = FindInit(m, "fc1000/W");
  CHECK(fw && (fw->dims == std::vector<int64_t>{2048, 1000}));
  CHECK(fw && std::memcmp(fw->raw, model->fc_w.data(), model->fc_w.size() * 4) == 0);
  const Node* gemm = FindNode(m, "fc1000");
  CHECK(gemm && gemm->op == "Gemm" && gemm->ints.at("transB")[0] == 0);
}

TEST_CASE(TapOutputsAreNhwcAndTheGraphIsCutAfterTheDeepestTap) {
  auto model = SeededModel();
  if (!model) SKIP("seeded weights or BuildResNet50 unavailable");
  loupe::OnnxExportOptions o;
  o.outputs = {loupe::Tap::kRes3d, loupe::Tap::kConv1};
  o.dynamic_batch = false;
  o.opset = 17;
  std::string bytes;
  REQUIRE_OK(loupe::SerializeOnnx(*model, o, &bytes));
  Model m;
  CHECK(Decode(bytes, &m));
  CHECK(m.opsets[""] == 17);
  CHECK(m.outputs.size() == 2);
  CHECK(m.outputs[0].name == "res3d" && m.outputs[1].name == "conv1");
  CHECK((m.outputs[0].dims == std::vector<std::string>{"1", "28", "28", "512"}));
  CHECK((m.outputs[1].dims == std::vector<std::string>{"1", "112", "112", "64"}));
  CHECK((m.inputs[0].dims == std::vector<std::string>{"1", "224", "224", "3"}));
  const Node* t = FindNode(m, "res3d");
  CHECK(t && t->op == "Transpose" && (t->ints.at("perm") == std::vector<int64_t>{0, 2, 3, 1}));
  CHECK(t && t->inputs[0] == "res3d/relu");
  // Blocks res2a..res3d (7 blocks, 2 projections), nothing after.
  CHECK(m.nodes.size() == 1 + 2 + 1 + 7 * 7 + 2 + 2);
  CHECK(FindNode(m, "res4a/relu") == nullptr && FindNode(m, "fc1000") == nullptr);
  CHECK(m.inits.size() == 2 * (1 + 7 * 3 + 2));
  CheckWellFormed(m);

  o.outputs = {loupe::Tap::kConv1};
  REQUIRE_OK(loupe::SerializeOnnx(*model, o, &bytes));
  Model m1;
  CHECK(Decode(bytes, &m1));
  CHECK(m1.nodes.size() == 4);  // Transpose, Conv, Relu, Transpose: no MaxPool
  CheckWellFormed(m1);

  o.outputs = {loupe::Tap::kAvgPool, loupe::Tap::kProbabilities, loupe::Tap::kRes5c};
  o.dynamic_batch = true;
  REQUIRE_OK(loupe::SerializeOnnx(*model, o, &bytes));
  Model m2;
  CHECK(Decode(bytes, &m2));
  CHECK(m2.outputs.size() == 3);
  CHECK((m2.outputs[0].dims == std::vector<std::string>{"N", "2048"}));
  CHECK((m2.outputs[2].dims == std::vector<std::string>{"N", "7", "7", "2048"}));
  CHECK(m2.nodes.size() == 124 + 1);
  CheckWellFormed(m2);
}

// The int8 QDQ graph: the same integers as the int8 session (loupe::internal::QuantizeConv), per-tensor
// uint8 activations (zero point 128 for the engine's signed tensors), one DequantizeLinear per consumer.
TEST_CASE(Int8ExportIsQdqWithTheSessionsIntegers) {
  auto model = SeededModel();
  if (!model) SKIP("seeded weights or BuildResNet50 unavailable");
  auto calib = std::make_shared<loupe::Int8Calibration>();
  float r = 1.f;
  for (const auto& n : loupe::Int8TensorNames()) calib->ranges[n] = (r += 0.25f);
  calib->weights_hash = model->weights_hash;
  calib->method = "test";
  loupe::OnnxExportOptions o;
  o.int8_calibration = calib;
  std::string bytes;
  REQUIRE_OK(loupe::SerializeOnnx(*model, o, &bytes));
  Model m;
  CHECK(Decode(bytes, &m));
  CheckWellFormed(m);
  CHECK(m.metadata["loupe.precision"] == "int8" && m.metadata["loupe.int8_method"] == "test");
  std::map<std::string, int> ops;
  for (const auto& n : m.nodes) ops[n.op]++;
  CHECK(ops["Conv"] == 53 && ops["Add"] == 16 && ops["MaxPool"] == 1 && ops["Gemm"] == 1);
  // Q: pool1, then per block branch2a/2b/2c + the block output, + 4 projections.
  CHECK(ops["QuantizeLinear"] == 1 + 16 * 4 + 4);
  // DQ: weights and biases of the 52 int8 convs, per block one per consumer (conv a, b, c, the add's
  // two inputs, the projection's input), and avg_pool's.
  CHECK(ops["DequantizeLinear"] == 2 * 52 + 16 * 5 + 4 + 1);
  // conv1 stays float; res2a_branch2a reads pool1 through its own DequantizeLinear.
  const loupe::FoldedConv& c = model->blocks[0].a;
  const Node* conv = FindNode(m, c.name + "/conv");
  CHECK(conv && conv->inputs[0] == "pool1/dq:" + c.name);
  CHECK(FindInit(m, "conv1/W") && FindInit(m, "conv1/W")->dtype == 1);
  // Weights, scales and biases are the session's.
  loupe::internal::QuantizedConv q;
  const float src_scale = loupe::Int8TensorScale("pool1", calib->ranges.at("pool1"));
  loupe::internal::QuantizeConv(c, src_scale, &q);
  const Init* w = FindInit(m, c.name + "/W_q");
  const Init* ws = FindInit(m, c.name + "/W_scale");
  const Init* b = FindInit(m, c.name + "/B_q");
  const Init* bs = FindInit(m, c.name + "/B_scale");
  CHECK(w && ws && b && bs);
  if (w && ws && b && bs) {
    CHECK(w->dtype == 3 && (w->dims == std::vector<int64_t>{c.cout, c.cin, 1, 1}));
    int bad = 0;
    for (int oc = 0; oc < c.cout; ++oc)
      for (int ic = 0; ic < c.cin; ++ic) bad += (int8_t)w->raw[oc * c.cin + ic] != q.w_hwio[(size_t)ic * c.cout + oc];
    CHECK(bad == 0);
    CHECK(std::memcmp(ws->raw, q.w_scale.data(), 4 * c.cout) == 0);
    CHECK(b->dtype == 6 && std::memcmp(b->raw, q.bias.data(), 4 * c.cout) == 0);
    float bs0;
    std::memcpy(&bs0, bs->raw, 4);
    CHECK(bs0 == src_scale * q.w_scale[0]);
  }
  const Node* wdq = FindNode(m, c.name + "/W");
  CHECK(wdq && wdq->op == "DequantizeLinear" && wdq->ints.at("axis")[0] == 0);
  // Signed tensors: uint8 with zero point 128 and scale R/127; ReLU outputs zero point 0, scale R/255.
  const Init* zp_c = FindInit(m, "res2a_branch2c/zero_point");
  const Init* zp_y = FindInit(m, "res2a/zero_point");
  const Init* sc_c = FindInit(m, "res2a_branch2c/scale");
  CHECK(zp_c && zp_y && sc_c && zp_c->dtype == 2 && zp_c->dims.empty());
  if (zp_c && zp_y && sc_c) {
    CHECK((uint8_t)zp_c->raw[0] == 128 && (uint8_t)zp_y->raw[0] == 0);
    float sc;
    std::memcpy(&sc, sc_c->raw, 4);
    CHECK(sc == calib->ranges.at("res2a_branch2c") / 127.f);
  }
  const Node* add = FindNode(m, "res2a/add");
  CHECK(add && add->inputs[0] == "res2a_branch2c/dq:res2a/add" && add->inputs[1] == "res2a_branch1/dq:res2a/add");
  const Node* add2 = FindNode(m, "res2b/add");
  CHECK(add2 && add2->inputs[1] == "res2a/dq:res2b/add");

  // Taps are dequantized; a cut graph has no dangling nodes.
  o.outputs = {loupe::Tap::kRes3d, loupe::Tap::kConv1};
  REQUIRE_OK(loupe::SerializeOnnx(*model, o, &bytes));
  Model m2;
  CHECK(Decode(bytes, &m2));
  CheckWellFormed(m2);
  const Node* t = FindNode(m2, "res3d");
  CHECK(t && t->op == "Transpose" && t->inputs[0] == "res3d/dq:res3d");
  CHECK(FindNode(m2, "res4a/q") == nullptr);

  // opset < 13 (no per-channel DequantizeLinear) and bad calibrations are refused.
  o.opset = 12;
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);
  o.opset = 13;
  auto bad = std::make_shared<loupe::Int8Calibration>(*calib);
  bad->ranges.erase("res5c");
  o.int8_calibration = bad;
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);
}

TEST_CASE(BadOptionsAndPathsAreRejected) {
  auto model = SeededModel();
  if (!model) SKIP("seeded weights or BuildResNet50 unavailable");
  std::string bytes;
  loupe::OnnxExportOptions o;
  o.outputs = {};
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);
  o.outputs = {loupe::Tap::kFc1000, loupe::Tap::kFc1000};
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);
  o.outputs = {loupe::Tap::kCount};
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);
  o = loupe::OnnxExportOptions();
  o.opset = 7;
  CHECK(loupe::SerializeOnnx(*model, o, &bytes).code() == loupe::StatusCode::kInvalidArgument);

  // A model with a wrong-sized tensor is refused with the layer named.
  loupe::ResNet50Model broken = *model;
  broken.blocks[4].b.w_hwio.pop_back();
  loupe::Status s = loupe::SerializeOnnx(broken, loupe::OnnxExportOptions(), &bytes);
  CHECK(s.code() == loupe::StatusCode::kInvalidArgument);
  CHECK(s.message().find("res3b_branch2b") != std::string::npos);

  // Unwritable destination: IoError, and an existing file is left untouched.
  CHECK(loupe::ExportOnnx(*model, loupe::OnnxExportOptions(), "/nonexistent-dir/x.onnx").code() ==
        loupe::StatusCode::kIoError);
  const std::string path = TempDir() + "/keep.onnx";
  { std::ofstream(path) << "old"; }
  o = loupe::OnnxExportOptions();
  o.opset = 99;
  CHECK(!loupe::ExportOnnx(*model, o, path).ok());
  CHECK(ReadAll(path) == "old");
  // Overwriting an existing file replaces it whole.
  CHECK_OK(loupe::ExportOnnx(*model, loupe::OnnxExportOptions(), path));
  Model m;
  CHECK(Decode(ReadAll(path), &m) && m.nodes.size() == 124);
  std::remove(path.c_str());
  rmdir(TempDir().c_str());
}

LOUPE_TEST_MAIN()
