// ONNX export of ResNet50Model: walks conv1, the 16 bottleneck blocks and fc1000 of the folded model and
// emits one ONNX node per operation. Field numbers follow onnx/onnx.proto (IR version 8).
#include "loupe/onnx_export.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "loupe/quantization.h"
#include "protobuf_writer.h"

namespace loupe {
namespace {

// onnx.proto field numbers (only those written).
namespace f {
// ModelProto
constexpr uint32_t kModelIrVersion = 1, kModelOpsetImport = 8, kModelProducerName = 2,
                   kModelProducerVersion = 3, kModelDocString = 6, kModelGraph = 7,
                   kModelMetadataProps = 14;
// OperatorSetIdProto
constexpr uint32_t kOpsetDomain = 1, kOpsetVersion = 2;
// StringStringEntryProto
constexpr uint32_t kEntryKey = 1, kEntryValue = 2;
// GraphProto
constexpr uint32_t kGraphNode = 1, kGraphName = 2, kGraphInitializer = 5, kGraphDocString = 10,
                   kGraphInput = 11, kGraphOutput = 12;
// NodeProto
constexpr uint32_t kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5;
// AttributeProto
constexpr uint32_t kAttrName = 1, kAttrI = 3, kAttrInts = 8, kAttrType = 20;
constexpr int64_t kAttrTypeInt = 2, kAttrTypeInts = 7;
// TensorProto
constexpr uint32_t kTensorDims = 1, kTensorDataType = 2, kTensorName = 8, kTensorRawData = 9;
constexpr int64_t kTensorFloat = 1, kTensorUint8 = 2, kTensorInt8 = 3, kTensorInt32 = 6;
// ValueInfoProto / TypeProto / TypeProto.Tensor / TensorShapeProto / Dimension
constexpr uint32_t kValueInfoName = 1, kValueInfoType = 2;
constexpr uint32_t kTypeTensorType = 1;
constexpr uint32_t kTensorTypeElemType = 1, kTensorTypeShape = 2;
constexpr uint32_t kShapeDim = 1;
constexpr uint32_t kDimValue = 1, kDimParam = 2;
}  // namespace f

constexpr const char* kInputName = "input";
constexpr const char* kBatchParam = "N";

bool LittleEndian() {
  const uint32_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

pb::Message IntAttr(const char* name, int64_t v) {
  pb::Message a;
  a.String(f::kAttrName, name).Int(f::kAttrType, f::kAttrTypeInt).Int(f::kAttrI, v);
  return a;
}
pb::Message IntsAttr(const char* name, const std::vector<int64_t>& v) {
  pb::Message a;
  a.String(f::kAttrName, name).Int(f::kAttrType, f::kAttrTypeInts).Ints(f::kAttrInts, v);
  return a;
}

// dims: -1 means the batch dimension (symbolic "N" or 1).
pb::Message ValueInfo(const std::string& name, const std::vector<int64_t>& dims, bool dynamic_batch) {
  pb::Message shape;
  for (int64_t d : dims) {
    pb::Message dim;
    if (d < 0 && dynamic_batch) {
      dim.String(f::kDimParam, kBatchParam);
    } else {
      dim.Int(f::kDimValue, d < 0 ? 1 : d);
    }
    shape.Sub(f::kShapeDim, dim);
  }
  pb::Message tensor_type;
  tensor_type.Int(f::kTensorTypeElemType, f::kTensorFloat).Sub(f::kTensorTypeShape, shape);
  pb::Message type;
  type.Sub(f::kTypeTensorType, tensor_type);
  pb::Message vi;
  vi.String(f::kValueInfoName, name).Sub(f::kValueInfoType, type);
  return vi;
}

bool IsFeatureMap(Tap t) { return static_cast<int>(t) <= static_cast<int>(Tap::kRes5c); }

// How far the network must run for a tap: 0 = conv1, 1 + block index for stage taps, then GAP, FC, SM.
int DepthOf(Tap t) {
  switch (t) {
    case Tap::kConv1: return 0;
    case Tap::kAvgPool: return 100;
    case Tap::kFc1000: return 101;
    case Tap::kProbabilities: return 102;
    default: return 1 + ResNet50Model::BlockIndexOfTap(t);
  }
}

// Accumulates the GraphProto fields as separately encoded pieces (the initializers hold ~100 MB, so the
// graph is never concatenated into a single buffer when written to a file).
class GraphBuilder {
 public:
  explicit GraphBuilder(bool dynamic_batch) : dynamic_batch_(dynamic_batch) {}

  void Node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
            const std::vector<pb::Message>& attrs = {}) {
    pb::Message n;
    for (const auto& in : inputs) n.String(f::kNodeInput, in);
    n.String(f::kNodeOutput, output).String(f::kNodeName, output).String(f::kNodeOpType, op);
    for (const auto& a : attrs) n.Sub(f::kNodeAttribute, a);
    Add(f::kGraphNode, std::move(n));
    ++nodes_;
  }

  void Initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    RawInitializer(name, dims, f::kTensorFloat, v.data(), v.size() * sizeof(float));
  }
  template <typename T>
  void TypedInitializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<T>& v) {
    const int64_t type = std::is_same<T, float>::value     ? f::kTensorFloat
                         : std::is_same<T, int8_t>::value  ? f::kTensorInt8
                         : std::is_same<T, uint8_t>::value ? f::kTensorUint8
                                                           : f::kTensorInt32;
    static_assert(std::is_same<T, float>::value || std::is_same<T, int8_t>::value ||
                      std::is_same<T, uint8_t>::value || std::is_same<T, int32_t>::value,
                  "float, int8, uint8 or int32");
    RawInitializer(name, dims, type, v.data(), v.size() * sizeof(T));
  }
  void RawInitializer(const std::string& name, const std::vector<int64_t>& dims, int64_t type, const void* data,
                      size_t bytes) {
    pb::Message t;
    t.Reserve(bytes + name.size() + 64);
    t.Ints(f::kTensorDims, dims).Int(f::kTensorDataType, type).String(f::kTensorName, name);
    t.Bytes(f::kTensorRawData, data, bytes);  // little-endian host (checked)
    Add(f::kGraphInitializer, std::move(t));
    ++initializers_;
  }

  void Input(const std::string& name, const std::vector<int64_t>& dims) {
    Add(f::kGraphInput, ValueInfo(name, dims, dynamic_batch_));
  }
  void Output(const std::string& name, const std::vector<int64_t>& dims) {
    Add(f::kGraphOutput, ValueInfo(name, dims, dynamic_batch_));
  }
  void Scalar(uint32_t field, const std::string& s) {
    pb::Message m;
    m.String(field, s);
    pieces_.push_back(m.Take());
  }

  // Conv (+ optional Relu) from a FoldedConv: HWIO weights are transposed to OIHW.
  std::string Conv(const FoldedConv& c, const std::string& x, bool relu) {
    const std::string wname = c.name + "/W", bname = c.name + "/B";
    Initializer(wname, {c.cout, c.cin, c.kh, c.kw}, ToOihw(c, c.w_hwio));
    Initializer(bname, {c.cout}, c.bias);
    return ConvNode(c, x, wname, bname, relu);
  }

  // --- int8 (QDQ): tensors quantized per tensor (Q -> uint8), weights per output channel (int8),
  // int32 bias; the same numbers as the oneDNN int8 session (loupe/quantization.h).
  // Declares the scale and zero point of quantized tensor `t` (once) and quantizes float tensor `x`.
  std::string Quantize(const std::string& t, const std::string& x, const Int8Calibration& calib) {
    const float range = calib.ranges.at(t);
    const bool is_signed = Int8TensorIsSigned(t);
    // s8 with zero point 0 is exactly uint8 with zero point 128: onnxruntime's u8 kernels run it.
    TypedInitializer<float>(t + "/scale", {}, {Int8TensorScale(t, range)});
    TypedInitializer<uint8_t>(t + "/zero_point", {}, {static_cast<uint8_t>(is_signed ? 128 : 0)});
    Node("QuantizeLinear", {x, t + "/scale", t + "/zero_point"}, t + "/q");
    return t + "/q";
  }
  // A DequantizeLinear of quantized tensor `t` for one consumer (each consumer gets its own, as the
  // QDQ node units onnxruntime fuses expect).
  std::string Dequantize(const std::string& t, const std::string& consumer) {
    const std::string out = t + "/dq:" + consumer;
    Node("DequantizeLinear", {t + "/q", t + "/scale", t + "/zero_point"}, out);
    return out;
  }
  // QDQ conv: DQ(src) * DQ(int8 weights) + DQ(int32 bias) -> [Relu] -> Q(dst).
  std::string QConv(const FoldedConv& c, const std::string& src, const std::string& dst, bool relu,
                    const Int8Calibration& calib) {
    const float src_scale = Int8TensorScale(src, calib.ranges.at(src));
    internal::QuantizedConv q;
    internal::QuantizeConv(c, src_scale, &q);
    std::vector<float> bias_scale(c.cout);
    for (int o = 0; o < c.cout; ++o) bias_scale[o] = src_scale * q.w_scale[o];
    const std::string w = c.name + "/W", b = c.name + "/B";
    TypedInitializer<int8_t>(w + "_q", {c.cout, c.cin, c.kh, c.kw}, ToOihw(c, q.w_hwio));
    TypedInitializer<float>(w + "_scale", {c.cout}, q.w_scale);
    TypedInitializer<int8_t>(w + "_zero_point", {c.cout}, std::vector<int8_t>(c.cout, 0));
    Node("DequantizeLinear", {w + "_q", w + "_scale", w + "_zero_point"}, w, {IntAttr("axis", 0)});
    TypedInitializer<int32_t>(b + "_q", {c.cout}, q.bias);
    TypedInitializer<float>(b + "_scale", {c.cout}, bias_scale);
    TypedInitializer<int32_t>(b + "_zero_point", {c.cout}, std::vector<int32_t>(c.cout, 0));
    Node("DequantizeLinear", {b + "_q", b + "_scale", b + "_zero_point"}, b, {IntAttr("axis", 0)});
    return Quantize(dst, ConvNode(c, Dequantize(src, c.name), w, b, relu), calib);
  }

  int nodes() const { return nodes_; }

  template <typename T>
  static std::vector<T> ToOihw(const FoldedConv& c, const std::vector<T>& hwio) {
    std::vector<T> oihw(hwio.size());
    for (int h = 0; h < c.kh; ++h)
      for (int w = 0; w < c.kw; ++w)
        for (int i = 0; i < c.cin; ++i) {
          const T* src = &hwio[((static_cast<size_t>(h) * c.kw + w) * c.cin + i) * c.cout];
          for (int o = 0; o < c.cout; ++o)
            oihw[((static_cast<size_t>(o) * c.cin + i) * c.kh + h) * c.kw + w] = src[o];
        }
    return oihw;
  }
  int initializers() const { return initializers_; }
  const std::vector<std::string>& pieces() const { return pieces_; }
  size_t byte_size() const {
    size_t n = 0;
    for (const auto& p : pieces_) n += p.size();
    return n;
  }

 private:
  std::string ConvNode(const FoldedConv& c, const std::string& x, const std::string& w, const std::string& b,
                       bool relu) {
    const std::string out = c.name + "/conv";
    Node("Conv", {x, w, b}, out,
         {IntsAttr("kernel_shape", {c.kh, c.kw}), IntsAttr("strides", {c.stride, c.stride}),
          IntsAttr("pads", {c.pad, c.pad, c.pad, c.pad}), IntsAttr("dilations", {1, 1}),
          IntAttr("group", 1)});
    if (!relu) return out;
    Node("Relu", {out}, c.name + "/relu");
    return c.name + "/relu";
  }

  // The field's tag and length, then the message body moved in (no copy of big tensors).
  void Add(uint32_t field, pb::Message m) {
    std::string head;
    pb::AppendTag(&head, field, pb::kLengthDelimited);
    pb::AppendVarint(&head, m.size());
    pieces_.push_back(std::move(head));
    pieces_.push_back(m.Take());
  }

  bool dynamic_batch_;
  int nodes_ = 0, initializers_ = 0;
  std::vector<std::string> pieces_;
};

Status CheckConv(const FoldedConv& c, int cin) {
  if (c.name.empty() || c.kh <= 0 || c.kw <= 0 || c.cout <= 0 || c.stride <= 0 || c.pad < 0)
    return Status(StatusCode::kInvalidArgument, "onnx export: conv '" + c.name + "' has a bad geometry");
  if (c.cin != cin)
    return Status(StatusCode::kInvalidArgument, "onnx export: conv '" + c.name + "' expects " +
                                                    std::to_string(c.cin) + " input channels, gets " +
                                                    std::to_string(cin));
  const size_t want = static_cast<size_t>(c.kh) * c.kw * c.cin * c.cout;
  if (c.w_hwio.size() != want || c.bias.size() != static_cast<size_t>(c.cout))
    return Status(StatusCode::kInvalidArgument,
                  "onnx export: conv '" + c.name + "' has " + std::to_string(c.w_hwio.size()) +
                      " weights and " + std::to_string(c.bias.size()) + " biases, expected " +
                      std::to_string(want) + " and " + std::to_string(c.cout));
  return Status::Ok();
}

Status CheckOptions(const OnnxExportOptions& o, const ResNet50Model& model) {
  if (o.int8_calibration) {
    if (o.opset < 13)
      return Status(StatusCode::kInvalidArgument,
                    "onnx export: the int8 (QDQ) graph needs opset >= 13 (per-channel DequantizeLinear), got " +
                        std::to_string(o.opset));
    Status st = ValidateInt8Calibration(*o.int8_calibration, model);
    if (!st.ok()) return Status(st.code(), "onnx export: " + st.message());
  }
  if (o.opset < kOnnxMinOpset || o.opset > kOnnxMaxOpset)
    return Status(StatusCode::kInvalidArgument, "onnx export: opset " + std::to_string(o.opset) +
                                                    " is outside " + std::to_string(kOnnxMinOpset) +
                                                    ".." + std::to_string(kOnnxMaxOpset));
  if (o.outputs.empty()) return Status(StatusCode::kInvalidArgument, "onnx export: no outputs requested");
  std::set<int> seen;
  for (Tap t : o.outputs) {
    const int v = static_cast<int>(t);
    if (v < 0 || v >= static_cast<int>(Tap::kCount))
      return Status(StatusCode::kInvalidArgument, "onnx export: unknown tap " + std::to_string(v));
    if (!seen.insert(v).second)
      return Status(StatusCode::kInvalidArgument,
                    std::string("onnx export: tap '") + TapName(t) + "' requested twice");
  }
  if (!LittleEndian())
    return Status(StatusCode::kInvalidArgument, "onnx export: big-endian hosts are not supported");
  return Status::Ok();
}

// Builds the ModelProto as: header bytes (every field but the graph), then the graph field's pieces.
Status Build(const ResNet50Model& model, const OnnxExportOptions& options, std::string* header,
             GraphBuilder* g) {
  LOUPE_RETURN_IF_ERROR(CheckOptions(options, model));
  const Int8Calibration* q8 = options.int8_calibration.get();
  int depth = 0;
  for (Tap t : options.outputs) depth = std::max(depth, DepthOf(t));
  const int last_block = std::min(depth - 1, 15);  // blocks 0..last_block are emitted
  if (static_cast<int>(model.blocks.size()) != 16)
    return Status(StatusCode::kInvalidArgument, "onnx export: the model has " +
                                                    std::to_string(model.blocks.size()) +
                                                    " bottleneck blocks, expected 16");

  g->Scalar(f::kGraphName, "loupe_resnet50");
  g->Scalar(f::kGraphDocString,
            "Keras ResNet50 v1 (ImageNet), BatchNorm folded. Input NHWC caffe-normalised BGR; "
            "outputs in the Loupe engine layout (NHWC feature maps, [N, C] vectors).");
  g->Input(kInputName, {-1, kInputSize, kInputSize, kInputChannels});

  // Tensor (NCHW) holding each tap, filled as the walk reaches it.
  std::vector<std::string> tap_tensor(static_cast<size_t>(Tap::kCount));

  g->Node("Transpose", {kInputName}, "input/nchw", {IntsAttr("perm", {0, 3, 1, 2})});
  LOUPE_RETURN_IF_ERROR(CheckConv(model.conv1, kInputChannels));
  std::string x = g->Conv(model.conv1, "input/nchw", /*relu=*/true);
  int channels = model.conv1.cout;
  tap_tensor[static_cast<int>(Tap::kConv1)] = x;

  if (last_block >= 0) {
    // Keras: ZeroPadding2D(1) + MaxPool 3x3/2 valid. The input is post-ReLU (>= 0), so ONNX's implicit
    // -inf padding gives the same result as zero padding.
    g->Node("MaxPool", {x}, "pool1/maxpool",
            {IntsAttr("kernel_shape", {3, 3}), IntsAttr("strides", {2, 2}), IntsAttr("pads", {1, 1, 1, 1})});
    x = "pool1/maxpool";
    if (q8) {  // int8: quantized tensors are named by their calibration name ("pool1", "res2a", ...)
      g->Quantize("pool1", x, *q8);
      x = "pool1";
    }
  }
  for (int bi = 0; bi <= last_block; ++bi) {
    const Bottleneck& b = model.blocks[static_cast<size_t>(bi)];
    LOUPE_RETURN_IF_ERROR(CheckConv(b.a, channels));
    LOUPE_RETURN_IF_ERROR(CheckConv(b.b, b.a.cout));
    LOUPE_RETURN_IF_ERROR(CheckConv(b.c, b.b.cout));
    if (b.has_projection) {
      LOUPE_RETURN_IF_ERROR(CheckConv(b.projection, channels));
      if (b.projection.cout != b.c.cout)
        return Status(StatusCode::kInvalidArgument, "onnx export: block " + b.name + " projection width");
    } else if (channels != b.c.cout) {
      return Status(StatusCode::kInvalidArgument,
                    "onnx export: block " + b.name + " has an identity shortcut but changes width");
    }
    if (q8) {
      // relu(DQ(c) + DQ(shortcut)) -> Q(block): onnxruntime fuses it to QLinearConv + QLinearAdd.
      std::string shortcut = x;
      if (b.has_projection) {
        g->QConv(b.projection, x, b.name + "_branch1", /*relu=*/false, *q8);
        shortcut = b.name + "_branch1";
      }
      g->QConv(b.a, x, b.name + "_branch2a", true, *q8);
      g->QConv(b.b, b.name + "_branch2a", b.name + "_branch2b", true, *q8);
      g->QConv(b.c, b.name + "_branch2b", b.name + "_branch2c", false, *q8);
      g->Node("Add", {g->Dequantize(b.name + "_branch2c", b.name + "/add"), g->Dequantize(shortcut, b.name + "/add")},
              b.name + "/add");
      g->Node("Relu", {b.name + "/add"}, b.name + "/relu");
      g->Quantize(b.name, b.name + "/relu", *q8);
      x = b.name;
    } else {
      std::string shortcut = x;
      if (b.has_projection) shortcut = g->Conv(b.projection, x, /*relu=*/false);
      std::string y = g->Conv(b.a, x, true);
      y = g->Conv(b.b, y, true);
      y = g->Conv(b.c, y, false);
      g->Node("Add", {y, shortcut}, b.name + "/add");
      g->Node("Relu", {b.name + "/add"}, b.name + "/relu");
      x = b.name + "/relu";
    }
    channels = b.c.cout;
    for (Tap t : {Tap::kRes2c, Tap::kRes3d, Tap::kRes4f, Tap::kRes5c})
      if (ResNet50Model::BlockIndexOfTap(t) == bi) tap_tensor[static_cast<int>(t)] = x;
  }
  // int8: the taps and the fp32 head read the block outputs dequantized.
  auto fp32_of = [&](Tap t, const std::string& consumer) {
    const std::string& name = tap_tensor[static_cast<int>(t)];
    return q8 && t != Tap::kConv1 ? g->Dequantize(name, consumer) : name;
  };
  if (depth >= DepthOf(Tap::kAvgPool)) {
    if (q8) x = g->Dequantize(x, "avg_pool");
    g->Node("GlobalAveragePool", {x}, "avg_pool/gap");
    g->Node("Flatten", {"avg_pool/gap"}, TapName(Tap::kAvgPool), {IntAttr("axis", 1)});
    tap_tensor[static_cast<int>(Tap::kAvgPool)] = TapName(Tap::kAvgPool);
  }
  if (depth >= DepthOf(Tap::kFc1000)) {
    const int classes = TapShape(Tap::kFc1000)[2];
    if (model.fc_w.size() != static_cast<size_t>(channels) * classes ||
        model.fc_b.size() != static_cast<size_t>(classes))
      return Status(StatusCode::kInvalidArgument, "onnx export: fc1000 has " +
                                                      std::to_string(model.fc_w.size()) + " weights and " +
                                                      std::to_string(model.fc_b.size()) + " biases");
    g->Initializer("fc1000/W", {channels, classes}, model.fc_w);  // Keras [in, out]: Gemm transB = 0
    g->Initializer("fc1000/B", {classes}, model.fc_b);
    g->Node("Gemm", {TapName(Tap::kAvgPool), "fc1000/W", "fc1000/B"}, TapName(Tap::kFc1000),
            {IntAttr("transA", 0), IntAttr("transB", 0)});
    tap_tensor[static_cast<int>(Tap::kFc1000)] = TapName(Tap::kFc1000);
  }
  if (depth >= DepthOf(Tap::kProbabilities)) {
    g->Node("Softmax", {TapName(Tap::kFc1000)}, TapName(Tap::kProbabilities), {IntAttr("axis", 1)});
    tap_tensor[static_cast<int>(Tap::kProbabilities)] = TapName(Tap::kProbabilities);
  }

  // Graph outputs, in the requested order, in the engine's layout.
  std::string tap_list;
  for (Tap t : options.outputs) {
    const std::string name = TapName(t);
    const std::array<int, 3> s = TapShape(t);
    if (IsFeatureMap(t)) {
      g->Node("Transpose", {fp32_of(t, name)}, name, {IntsAttr("perm", {0, 2, 3, 1})});
      g->Output(name, {-1, s[0], s[1], s[2]});
    } else {
      g->Output(name, {-1, s[2]});
    }
    tap_list += (tap_list.empty() ? "" : ",") + name;
  }

  pb::Message h;
  h.Int(f::kModelIrVersion, kOnnxIrVersion);
  pb::Message opset;
  opset.String(f::kOpsetDomain, "").Int(f::kOpsetVersion, options.opset);
  h.Sub(f::kModelOpsetImport, opset);
  h.String(f::kModelProducerName, "loupe").String(f::kModelProducerVersion, "1");
  h.String(f::kModelDocString, "Loupe ResNet-50 feature extractor (exported by loupe::ExportOnnx)");
  auto meta = [&h](const std::string& k, const std::string& v) {
    pb::Message e;
    e.String(f::kEntryKey, k).String(f::kEntryValue, v);
    h.Sub(f::kModelMetadataProps, e);
  };
  meta("loupe.weights_hash", model.weights_hash);
  meta("loupe.input_layout", "NHWC");
  meta("loupe.taps", tap_list);
  meta("loupe.precision", q8 ? "int8" : "fp32");
  if (q8) meta("loupe.int8_method", q8->method);
  *header = h.Take();
  pb::AppendTag(header, f::kModelGraph, pb::kLengthDelimited);
  pb::AppendVarint(header, g->byte_size());
  return Status::Ok();
}

std::atomic<unsigned> g_temp_counter{0};

}  // namespace

Status SerializeOnnx(const ResNet50Model& model, const OnnxExportOptions& options, std::string* out) {
  std::string header;
  GraphBuilder g(options.dynamic_batch);
  LOUPE_RETURN_IF_ERROR(Build(model, options, &header, &g));
  out->clear();
  out->reserve(header.size() + g.byte_size());
  *out += header;
  for (const auto& p : g.pieces()) *out += p;
  return Status::Ok();
}

Status ExportOnnx(const ResNet50Model& model, const OnnxExportOptions& options, const std::string& path) {
  if (path.empty()) return Status(StatusCode::kInvalidArgument, "onnx export: empty output path");
  std::string header;
  GraphBuilder g(options.dynamic_batch);
  LOUPE_RETURN_IF_ERROR(Build(model, options, &header, &g));

  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid())) + "." +
                          std::to_string(g_temp_counter.fetch_add(1));
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp)
    return Status(StatusCode::kIoError, "onnx export: cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(header.data(), 1, header.size(), fp) == header.size();
  for (const auto& p : g.pieces()) {
    if (!ok) break;
    ok = std::fwrite(p.data(), 1, p.size(), fp) == p.size();
  }
  int err = ok ? 0 : errno;
  if (ok && std::fflush(fp) != 0) ok = false, err = errno;
  if (ok && fsync(fileno(fp)) != 0) ok = false, err = errno;
  if (std::fclose(fp) != 0 && ok) ok = false, err = errno;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError,
                  "onnx export: writing " + path + " failed: " + std::strerror(err ? err : EIO));
  }
  return Status::Ok();
}

}  // namespace loupe
