// PatchCore patch features and anomaly maps (loupe/patch_maps.h). Synchronous: each call is about a
// millisecond per image, less than a worker round trip. Results go into caller-provided Float32Arrays
// (the scorer reuses its buffers); only the small axis / kernel tables come back as new arrays.
#include <limits>

#include "binding.h"
#include "loupe/patch_maps.h"

namespace loupe_binding {
namespace {

constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxCount = std::numeric_limits<int32_t>::max();

void ThrowIfError(Napi::Env env, const loupe::Status& st) {
  if (!st.ok()) throw StatusError(env, st);
}

int64_t ArgSide(Napi::Env env, const Napi::Value& v, const char* name) { return ArgInt(env, v, name, 1, kMaxSide); }

// sigma: any JS number; NaN and values <= 0 mean "no smoothing", the engine rejects ones too large.
double ArgSigma(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// [h, w, c]: an array of three positive integers.
void ArgShape3(Napi::Env env, const Napi::Value& v, const char* name, int64_t* h, int64_t* w, int64_t* c) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) ThrowType(env, std::string(name) + " must be [h, w, c]");
  Napi::Array a = v.As<Napi::Array>();
  const std::string n(name);
  *h = ArgSide(env, a.Get(0u), (n + "[0]").c_str());
  *w = ArgSide(env, a.Get(1u), (n + "[1]").c_str());
  *c = ArgSide(env, a.Get(2u), (n + "[2]").c_str());
}

// avgPool3x3(src, n, h, w, c, dst, dstStride)
Napi::Value AvgPool3x3Js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = ArgInt(env, info[1], "n", 0, kMaxCount);
  const int64_t h = ArgSide(env, info[2], "h"), w = ArgSide(env, info[3], "w"), c = ArgSide(env, info[4], "c");
  const int64_t stride = ArgInt(env, info[6], "dstStride", c, kMaxSide);
  const size_t pixels = CheckedProduct(env, CheckedProduct(env, n, h, "src"), w, "src");
  auto src = ArgArray<float>(env, info[0], "src", "Float32Array", CheckedProduct(env, pixels, c, "src"), "n*h*w*c");
  const size_t span = pixels ? CheckedProduct(env, pixels - 1, stride, "dst") + c : 0;
  auto dst = ArgArray<float>(env, info[5], "dst", "Float32Array", span, "(n*h*w - 1)*dstStride + c");
  ThrowIfError(env, loupe::AvgPool3x3(src.Data(), n, h, w, c, dst.Data(), stride));
  return env.Undefined();
}

// buildPatchEmbeddings(res3d, res4f, n, res3dShape, res4fShape, dst)
Napi::Value BuildPatchEmbeddingsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = ArgInt(env, info[2], "n", 0, kMaxCount);
  loupe::PatchTapShapes s;
  ArgShape3(env, info[3], "res3dShape", &s.h2, &s.w2, &s.c2);
  ArgShape3(env, info[4], "res4fShape", &s.h3, &s.w3, &s.c3);
  const size_t grid = CheckedProduct(env, CheckedProduct(env, n, s.h2, "res3d"), s.w2, "res3d");
  const size_t cells = CheckedProduct(env, CheckedProduct(env, n, s.h3, "res4f"), s.w3, "res4f");
  auto res3d = ArgArray<float>(env, info[0], "res3d", "Float32Array", CheckedProduct(env, grid, s.c2, "res3d"),
                               "n*h*w*c of res3dShape");
  auto res4f = ArgArray<float>(env, info[1], "res4f", "Float32Array", CheckedProduct(env, cells, s.c3, "res4f"),
                               "n*h*w*c of res4fShape");
  auto dst = ArgArray<float>(env, info[5], "dst", "Float32Array", CheckedProduct(env, grid, s.c2 + s.c3, "dst"),
                             "n*h2*w2*(c2+c3)");
  ThrowIfError(env, loupe::BuildPatchEmbeddings(res3d.Data(), res4f.Data(), n, s, dst.Data()));
  return env.Undefined();
}

// sparseProjectRows(src, n, inDim, start, index, value, outDim, dst)
Napi::Value SparseProjectRowsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = ArgInt(env, info[1], "n", 0, kMaxCount);
  const int64_t in_dim = ArgSide(env, info[2], "inDim");
  const int64_t out_dim = ArgSide(env, info[6], "outDim");
  auto src = ArgArray<float>(env, info[0], "src", "Float32Array", CheckedProduct(env, n, in_dim, "src"), "n*inDim");
  auto start = ArgArray<int32_t>(env, info[3], "start", "Int32Array", static_cast<size_t>(out_dim) + 1, "outDim+1");
  if (!info[4].IsTypedArray()) ThrowType(env, "index must be an Int32Array");
  const size_t nnz = info[4].As<Napi::TypedArray>().ElementLength();
  auto index = ArgArray<int32_t>(env, info[4], "index", "Int32Array", nnz, "nnz");
  auto value = ArgArray<float>(env, info[5], "value", "Float32Array", nnz, "index.length");
  auto dst = ArgArray<float>(env, info[7], "dst", "Float32Array", CheckedProduct(env, n, out_dim, "dst"), "n*outDim");
  ThrowIfError(env, loupe::SparseProjectRows(src.Data(), n, in_dim, start.Data(), index.Data(), value.Data(),
                                             static_cast<int64_t>(nnz), out_dim, dst.Data()));
  return env.Undefined();
}

// bilinearAxis(inSize, outSize) -> { i0, i1, lambda }
Napi::Value BilinearAxisJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t in = ArgSide(env, info[0], "inSize"), out = ArgSide(env, info[1], "outSize");
  auto i0 = Napi::Int32Array::New(env, static_cast<size_t>(out));
  auto i1 = Napi::Int32Array::New(env, static_cast<size_t>(out));
  auto lambda = Napi::Float32Array::New(env, static_cast<size_t>(out));
  ThrowIfError(env, loupe::BilinearAxisWeights(in, out, i0.Data(), i1.Data(), lambda.Data()));
  Napi::Object o = Napi::Object::New(env);
  o.Set("i0", i0);
  o.Set("i1", i1);
  o.Set("lambda", lambda);
  return o;
}

// resizeBilinear(src, sh, sw, dh, dw, dst)
Napi::Value ResizeBilinearJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t sh = ArgSide(env, info[1], "sh"), sw = ArgSide(env, info[2], "sw");
  const int64_t dh = ArgSide(env, info[3], "dh"), dw = ArgSide(env, info[4], "dw");
  auto src = ArgArray<float>(env, info[0], "src", "Float32Array", CheckedProduct(env, sh, sw, "src"), "sh*sw");
  auto dst = ArgArray<float>(env, info[5], "dst", "Float32Array", CheckedProduct(env, dh, dw, "dst"), "dh*dw");
  ThrowIfError(env, loupe::ResizeBilinear(src.Data(), sh, sw, dh, dw, dst.Data()));
  return env.Undefined();
}

// gaussianKernelSize(sigma) -> number
Napi::Value GaussianKernelSizeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double sigma = ArgSigma(env, info[0], "sigma");
  const int64_t size = loupe::GaussianKernelSize(sigma);
  if (size < 0) ThrowRange(env, "sigma must be in [0, " + std::to_string(loupe::kMaxGaussianSigma) + "]");
  return Napi::Number::New(env, static_cast<double>(size));
}

// gaussianKernel1d(sigma, size) -> Float32Array
Napi::Value GaussianKernel1dJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double sigma = ArgSigma(env, info[0], "sigma");
  const int64_t size = ArgInt(env, info[1], "size", 1, loupe::GaussianKernelSize(loupe::kMaxGaussianSigma));
  auto k = Napi::Float32Array::New(env, static_cast<size_t>(size));
  ThrowIfError(env, loupe::GaussianKernel1d(sigma, size, k.Data()));
  return k;
}

// reflectIndex(i, n) -> number
Napi::Value ReflectIndexJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = ArgSide(env, info[1], "n");
  const int64_t i = ArgInt(env, info[0], "i", -(int64_t{1} << 53) + 1, (int64_t{1} << 53) - 1);
  return Napi::Number::New(env, static_cast<double>(loupe::ReflectIndex(i, n)));
}

// gaussianBlur(src, h, w, sigma, dst)
Napi::Value GaussianBlurJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t h = ArgSide(env, info[1], "h"), w = ArgSide(env, info[2], "w");
  const double sigma = ArgSigma(env, info[3], "sigma");
  const size_t count = CheckedProduct(env, h, w, "src");
  auto src = ArgArray<float>(env, info[0], "src", "Float32Array", count, "h*w");
  auto dst = ArgArray<float>(env, info[4], "dst", "Float32Array", count, "h*w");
  ThrowIfError(env, loupe::GaussianBlur(src.Data(), h, w, sigma, dst.Data()));
  return env.Undefined();
}

// patchScoresToMap(scores, gridH, gridW, mapH, mapW, sigma, outH, outW, dst)
Napi::Value PatchScoresToMapJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t gh = ArgSide(env, info[1], "gridH"), gw = ArgSide(env, info[2], "gridW");
  const int64_t mh = ArgSide(env, info[3], "mapH"), mw = ArgSide(env, info[4], "mapW");
  const double sigma = ArgSigma(env, info[5], "sigma");
  const int64_t oh = ArgSide(env, info[6], "outH"), ow = ArgSide(env, info[7], "outW");
  CheckedProduct(env, mh, mw, "the map (mapH*mapW)");
  auto scores =
      ArgArray<float>(env, info[0], "scores", "Float32Array", CheckedProduct(env, gh, gw, "scores"), "gridH*gridW");
  auto dst = ArgArray<float>(env, info[8], "dst", "Float32Array", CheckedProduct(env, oh, ow, "dst"), "outH*outW");
  ThrowIfError(env, loupe::PatchScoresToMap(scores.Data(), gh, gw, mh, mw, sigma, oh, ow, dst.Data()));
  return env.Undefined();
}

}  // namespace

void InitPatch(Napi::Env env, Napi::Object exports) {
  exports.Set("avgPool3x3", Napi::Function::New(env, AvgPool3x3Js, "avgPool3x3"));
  exports.Set("buildPatchEmbeddings", Napi::Function::New(env, BuildPatchEmbeddingsJs, "buildPatchEmbeddings"));
  exports.Set("sparseProjectRows", Napi::Function::New(env, SparseProjectRowsJs, "sparseProjectRows"));
  exports.Set("bilinearAxis", Napi::Function::New(env, BilinearAxisJs, "bilinearAxis"));
  exports.Set("resizeBilinear", Napi::Function::New(env, ResizeBilinearJs, "resizeBilinear"));
  exports.Set("gaussianKernelSize", Napi::Function::New(env, GaussianKernelSizeJs, "gaussianKernelSize"));
  exports.Set("gaussianKernel1d", Napi::Function::New(env, GaussianKernel1dJs, "gaussianKernel1d"));
  exports.Set("reflectIndex", Napi::Function::New(env, ReflectIndexJs, "reflectIndex"));
  exports.Set("gaussianBlur", Napi::Function::New(env, GaussianBlurJs, "gaussianBlur"));
  exports.Set("patchScoresToMap", Napi::Function::New(env, PatchScoresToMapJs, "patchScoresToMap"));
}

}  // namespace loupe_binding
