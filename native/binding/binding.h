// Shared helpers of the thin N-API binding (native/binding/*.cc): argument checking, Status -> Error,
// the promise-returning worker and the per-addon constructors. The binding only marshals; every
// decision lives in the engine.
#pragma once

#ifndef NAPI_CPP_EXCEPTIONS
#define NAPI_CPP_EXCEPTIONS 1
#endif
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "loupe/quantization.h"
#include "loupe/resnet50.h"
#include "loupe/session.h"
#include "loupe/status.h"

namespace loupe_binding {

// Constructors of the wrapped classes, per environment (worker_threads get their own).
struct AddonData {
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference session_ctor;
  Napi::FunctionReference knn_index_ctor;
  Napi::FunctionReference calibrator_ctor;
};
inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Engine Status -> JS Error with .code = StatusCodeName (e.g. "CorruptData") and the engine's message.
Napi::Error StatusError(Napi::Env env, const loupe::Status& st);
Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message);

// --- argument checking: TypeError for a wrong type, RangeError for a wrong value; both name the
// argument ("input", "options.threads", ...). They throw (C++ exceptions become JS exceptions).
[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg);

// An integer in [lo, hi] (a JS number with no fraction, or a BigInt).
int64_t ArgInt(Napi::Env env, const Napi::Value& v, const char* name, int64_t lo, int64_t hi);
uint64_t ArgSeed(Napi::Env env, const Napi::Value& v, const char* name);  // 0..2^53-1 or a BigInt
double ArgNumber(Napi::Env env, const Napi::Value& v, const char* name);
std::string ArgString(Napi::Env env, const Napi::Value& v, const char* name);
// undefined/null -> empty object; anything else but a plain object -> TypeError.
Napi::Object ArgOptions(Napi::Env env, const Napi::Value& v, const char* name);
// The option if present (not undefined/null).
bool Has(const Napi::Object& o, const char* key, Napi::Value* out);

loupe::BackendKind ArgBackend(Napi::Env env, const Napi::Value& v, const char* name);
loupe::Tap ArgTap(Napi::Env env, const Napi::Value& v, const char* name);

// n * m, RangeError naming `what` when it would not fit a JS array length.
size_t CheckedProduct(Napi::Env env, int64_t n, int64_t m, const char* what);

template <typename T>
constexpr napi_typedarray_type ArrayTypeOf() {
  return std::is_same<T, float>::value     ? napi_float32_array
         : std::is_same<T, int8_t>::value  ? napi_int8_array
         : std::is_same<T, int32_t>::value ? napi_int32_array
                                           : napi_float64_array;
}

// A typed array of element type T with exactly `expected` elements, not detached.
template <typename T>
Napi::TypedArrayOf<T> ArgArray(Napi::Env env, const Napi::Value& v, const char* name, const char* type_name,
                               size_t expected, const char* expected_desc) {
  constexpr napi_typedarray_type want = ArrayTypeOf<T>();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
    ThrowType(env, std::string(name) + " must be a " + type_name);
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  if (arr.ArrayBuffer().IsDetached()) ThrowType(env, std::string(name) + " is detached");
  if (arr.ElementLength() != expected)
    ThrowRange(env, std::string(name) + " has " + std::to_string(arr.ElementLength()) + " elements, expected " +
                        std::to_string(expected) + " (" + expected_desc + ")");
  return arr;
}

// A JS typed array kept alive (and its data pointer taken once, on the JS thread) while a worker reads
// it: like fs.write(buffer), the caller must not transfer or detach it until the promise settles.
template <typename T>
struct HeldArray {
  Napi::Reference<Napi::TypedArrayOf<T>> ref;
  const T* data = nullptr;
  void Hold(const Napi::TypedArrayOf<T>& arr) {
    ref = Napi::Persistent(arr);
    data = arr.Data();
  }
};

// A promise-returning worker: Execute() sets status_; Settle() builds the result on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  virtual Napi::Value Settle(Napi::Env env) = 0;
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!status_.ok()) {
      deferred_.Reject(StatusError(env, status_).Value());
      return;
    }
    deferred_.Resolve(Settle(env));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  loupe::Status status_;
};

template <typename W>
Napi::Value Start(W* worker) {
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Copies a float/int vector into a new typed array.
Napi::Float32Array NewFloat32Array(Napi::Env env, const float* data, size_t n);

// The shared ResNet50Model of a NativeModel argument (TypeError naming `name` for anything else).
std::shared_ptr<const loupe::ResNet50Model> ArgModel(Napi::Env env, const Napi::Value& v, const char* name);

// An Int8Calibration from {weightsHash?, method?, ranges: {tensor: range}} (TypeError naming `name` for a
// wrong shape; names and values are the engine's to check), and back.
std::shared_ptr<const loupe::Int8Calibration> ArgCalibration(Napi::Env env, const Napi::Value& v, const char* name);
Napi::Object CalibrationToJs(Napi::Env env, const loupe::Int8Calibration& c);

// Module parts.
void InitOnnx(Napi::Env env, Napi::Object exports);     // exportOnnx
void InitModel(Napi::Env env, Napi::Object exports);    // loadModel, seededModel, createSession
void InitMl(Napi::Env env, Napi::Object exports);       // trainLinearSvms, knnSearch, createKnnIndex, greedyCoreset
void InitPatch(Napi::Env env, Napi::Object exports);    // PatchCore features and anomaly maps (sync)
void InitQuantization(Napi::Env env, Napi::Object exports);  // createCalibrator, int8TensorNames

}  // namespace loupe_binding
