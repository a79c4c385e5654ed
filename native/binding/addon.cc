// Module entry of the N-API binding: argument helpers, buildInfo, tapNames, tapShape.
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "binding.h"

namespace loupe_binding {

constexpr int64_t kMaxSafeInt = (int64_t{1} << 53) - 1;

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error StatusError(Napi::Env env, const loupe::Status& st) {
  return CodedError(env, loupe::StatusCodeName(st.code()), st.message());
}

void ThrowType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
void ThrowRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

int64_t ArgInt(Napi::Env env, const Napi::Value& v, const char* name, int64_t lo, int64_t hi) {
  int64_t out = 0;
  if (v.IsBigInt()) {
    bool lossless = false;
    out = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowRange(env, std::string(name) + " is out of range");
  } else if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::floor(d) != d) ThrowType(env, std::string(name) + " must be an integer");
    if (d < -static_cast<double>(kMaxSafeInt) || d > static_cast<double>(kMaxSafeInt))
      ThrowRange(env, std::string(name) + " is out of range");
    out = static_cast<int64_t>(d);
  } else {
    ThrowType(env, std::string(name) + " must be an integer");
  }
  if (out < lo || out > hi)
    ThrowRange(env, std::string(name) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], got " + std::to_string(out));
  return out;
}

uint64_t ArgSeed(Napi::Env env, const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowRange(env, std::string(name) + " must fit in 64 unsigned bits");
    return out;
  }
  return static_cast<uint64_t>(ArgInt(env, v, name, 0, kMaxSafeInt));
}

double ArgNumber(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) ThrowRange(env, std::string(name) + " must be finite");
  return d;
}

std::string ArgString(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsString()) ThrowType(env, std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object ArgOptions(Napi::Env env, const Napi::Value& v, const char* name) {
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(env);
  if (!v.IsObject() || v.IsArray() || v.IsFunction() || v.IsTypedArray())
    ThrowType(env, std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

bool Has(const Napi::Object& o, const char* key, Napi::Value* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return false;
  *out = v;
  return true;
}

loupe::BackendKind ArgBackend(Napi::Env env, const Napi::Value& v, const char* name) {
  std::string s = ArgString(env, v, name);
  loupe::BackendKind kind;
  if (!loupe::BackendKindFromName(s, &kind))
    ThrowRange(env, std::string(name) + " must be 'auto', 'cpu' or 'cuda', got '" + s + "'");
  return kind;
}

loupe::Tap ArgTap(Napi::Env env, const Napi::Value& v, const char* name) {
  std::string s = ArgString(env, v, name);
  loupe::Tap tap;
  if (!loupe::TapFromName(s, &tap)) {
    std::string known;
    for (int i = 0; i < static_cast<int>(loupe::Tap::kCount); ++i)
      known += std::string(i ? ", " : "") + loupe::TapName(static_cast<loupe::Tap>(i));
    ThrowRange(env, std::string(name) + ": unknown tap '" + s + "' (known: " + known + ")");
  }
  return tap;
}

size_t CheckedProduct(Napi::Env env, int64_t n, int64_t m, const char* what) {
  // Callers pass non-negative values; a JS typed array holds at most 2^32 elements in practice.
  constexpr int64_t kLimit = int64_t{1} << 40;
  if (n != 0 && m > kLimit / n) ThrowRange(env, std::string(what) + " is too large");
  return static_cast<size_t>(n * m);
}

Napi::Float32Array NewFloat32Array(Napi::Env env, const float* data, size_t n) {
  Napi::Float32Array arr = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(arr.Data(), data, n * sizeof(float));
  return arr;
}

namespace {

Napi::Value BuildInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loupe::BuildInfo bi = loupe::GetBuildInfo();
  Napi::Object o = Napi::Object::New(env);
  o.Set("onednn", Napi::Boolean::New(env, bi.has_onednn));
  o.Set("cuda", Napi::Boolean::New(env, bi.has_cuda));
  o.Set("cudaUsable", Napi::Boolean::New(env, bi.cuda_usable));
  o.Set("cudaDetail", Napi::String::New(env, bi.cuda_detail));
  o.Set("onednnVersion", Napi::String::New(env, bi.onednn_version));
  o.Set("onednnIsa", Napi::String::New(env, bi.onednn_isa));
  o.Set("onednnInt8Kernel", Napi::String::New(env, bi.onednn_int8_kernel));
  o.Set("onednnFp32Kernel", Napi::String::New(env, bi.onednn_fp32_kernel));
  return o;
}

Napi::Value TapNamesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = static_cast<int>(loupe::Tap::kCount);
  Napi::Array arr = Napi::Array::New(env, n);
  for (int i = 0; i < n; ++i) arr.Set(i, Napi::String::New(env, loupe::TapName(static_cast<loupe::Tap>(i))));
  return arr;
}

Napi::Value TapShapeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loupe::Tap tap = ArgTap(env, info[0], "tap");
  std::array<int, 3> s = loupe::TapShape(tap);
  Napi::Array arr = Napi::Array::New(env, 3);
  for (uint32_t i = 0; i < 3; ++i) arr.Set(i, Napi::Number::New(env, s[i]));
  return arr;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfoJs, "buildInfo"));
  exports.Set("tapNames", Napi::Function::New(env, TapNamesJs, "tapNames"));
  exports.Set("tapShape", Napi::Function::New(env, TapShapeJs, "tapShape"));
  InitModel(env, exports);
  InitMl(env, exports);
  InitPatch(env, exports);
  InitOnnx(env, exports);
  InitQuantization(env, exports);
  return exports;
}

}  // namespace
}  // namespace loupe_binding

static Napi::Object InitLoupeNative(Napi::Env env, Napi::Object exports) {
  return loupe_binding::Init(env, exports);
}

NODE_API_MODULE(loupe_native, InitLoupeNative)
