// INT8: createCalibrator (+ NativeCalibrator.add / compute), int8TensorNames, and the Int8Calibration
// <-> JS object marshalling used by createSession and exportOnnx (loupe/quantization.h).
#include <cmath>
#include <utility>
#include <vector>

#include "binding.h"
#include "loupe/quantization.h"

namespace loupe_binding {

std::shared_ptr<const loupe::Int8Calibration> ArgCalibration(Napi::Env env, const Napi::Value& v, const char* name) {
  const std::string n(name);
  if (!v.IsObject() || v.IsArray() || v.IsFunction() || v.IsTypedArray())
    ThrowType(env, n + " must be an object {weightsHash?, method?, ranges: {tensor: range}}");
  Napi::Object o = v.As<Napi::Object>();
  auto c = std::make_shared<loupe::Int8Calibration>();
  Napi::Value x;
  if (Has(o, "weightsHash", &x)) c->weights_hash = ArgString(env, x, (n + ".weightsHash").c_str());
  if (Has(o, "method", &x)) c->method = ArgString(env, x, (n + ".method").c_str());
  if (!Has(o, "ranges", &x) || !x.IsObject() || x.IsArray())
    ThrowType(env, n + ".ranges must be an object {tensor: range}");
  Napi::Object ranges = x.As<Napi::Object>();
  Napi::Array keys = ranges.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
    // Values are float32 (a stored calibration read back as doubles converts exactly); the engine checks
    // names and values (InvalidArgument).
    c->ranges[key] = static_cast<float>(ArgNumber(env, ranges.Get(key), (n + ".ranges." + key).c_str()));
  }
  return c;
}

Napi::Object CalibrationToJs(Napi::Env env, const loupe::Int8Calibration& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("weightsHash", Napi::String::New(env, c.weights_hash));
  o.Set("method", Napi::String::New(env, c.method));
  Napi::Object ranges = Napi::Object::New(env);
  for (const auto& name : loupe::Int8TensorNames()) {  // network order
    auto it = c.ranges.find(name);
    if (it != c.ranges.end()) ranges.Set(name, Napi::Number::New(env, it->second));
  }
  o.Set("ranges", ranges);
  return o;
}

namespace {

// NativeCalibrator: one loupe::Int8Calibrator; add() and compute() run off the JS thread, one at a time
// inside the engine (it serialises them).
class CalibratorWrap : public Napi::ObjectWrap<CalibratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeCalibrator",
                       {InstanceAccessor<&CalibratorWrap::Images>("images", napi_enumerable),
                        InstanceMethod<&CalibratorWrap::Add>("add"),
                        InstanceMethod<&CalibratorWrap::Compute>("compute")});
  }
  explicit CalibratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CalibratorWrap>(info) {}
  static Napi::Object New(Napi::Env env, std::shared_ptr<loupe::Int8Calibrator> c) {
    Napi::Object obj = Data(env).calibrator_ctor.New({});
    Unwrap(obj)->calibrator_ = std::move(c);
    return obj;
  }

 private:
  Napi::Value Images(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), calibrator_ ? static_cast<double>(calibrator_->images()) : 0.0);
  }
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Compute(const Napi::CallbackInfo& info);
  std::shared_ptr<loupe::Int8Calibrator> calibrator_;
};

class CreateCalibratorWorker : public PromiseWorker {
 public:
  CreateCalibratorWorker(Napi::Env env, std::shared_ptr<const loupe::ResNet50Model> model, int threads)
      : PromiseWorker(env, "loupe:createCalibrator"), model_(std::move(model)), threads_(threads) {}
  void Execute() override {
    std::unique_ptr<loupe::Int8Calibrator> c;
    status_ = loupe::CreateInt8Calibrator(model_, threads_, &c);
    calibrator_ = std::move(c);
  }
  Napi::Value Settle(Napi::Env env) override { return CalibratorWrap::New(env, std::move(calibrator_)); }

 private:
  std::shared_ptr<const loupe::ResNet50Model> model_;
  int threads_;
  std::shared_ptr<loupe::Int8Calibrator> calibrator_;
};

class CalibrateAddWorker : public PromiseWorker {
 public:
  CalibrateAddWorker(Napi::Env env, std::shared_ptr<loupe::Int8Calibrator> c, Napi::Float32Array input, int batch)
      : PromiseWorker(env, "loupe:NativeCalibrator.add"), calibrator_(std::move(c)), batch_(batch) {
    input_.Hold(input);
  }
  void Execute() override { status_ = calibrator_->Add(input_.data, batch_); }
  Napi::Value Settle(Napi::Env env) override { return env.Undefined(); }

 private:
  std::shared_ptr<loupe::Int8Calibrator> calibrator_;
  HeldArray<float> input_;
  int batch_;
};

class CalibrateComputeWorker : public PromiseWorker {
 public:
  CalibrateComputeWorker(Napi::Env env, std::shared_ptr<loupe::Int8Calibrator> c, loupe::CalibrationOptions o)
      : PromiseWorker(env, "loupe:NativeCalibrator.compute"), calibrator_(std::move(c)), options_(o) {}
  void Execute() override { status_ = calibrator_->Compute(options_, &result_); }
  Napi::Value Settle(Napi::Env env) override { return CalibrationToJs(env, result_); }

 private:
  std::shared_ptr<loupe::Int8Calibrator> calibrator_;
  loupe::CalibrationOptions options_;
  loupe::Int8Calibration result_;
};

Napi::Value CalibratorWrap::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!calibrator_) ThrowType(env, "calibrator.add: not a calibrator made by createCalibrator()");
  int batch = static_cast<int>(ArgInt(env, info[1], "batch", 1, 1 << 16));
  const size_t per_image = static_cast<size_t>(loupe::kInputSize) * loupe::kInputSize * loupe::kInputChannels;
  auto input = ArgArray<float>(env, info[0], "input", "Float32Array", per_image * batch, "batch*224*224*3, NHWC");
  return Start(new CalibrateAddWorker(env, calibrator_, input, batch));
}

Napi::Value CalibratorWrap::Compute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!calibrator_) ThrowType(env, "calibrator.compute: not a calibrator made by createCalibrator()");
  Napi::Object o = ArgOptions(env, info[0], "options");
  loupe::CalibrationOptions opts;
  Napi::Value v;
  if (Has(o, "method", &v)) {
    std::string s = ArgString(env, v, "options.method");
    if (!loupe::CalibrationMethodFromName(s, &opts.method))
      ThrowRange(env, "options.method must be 'percentile', 'mse' or 'max', got '" + s + "'");
  }
  if (Has(o, "percentile", &v)) {
    opts.percentile = ArgNumber(env, v, "options.percentile");
    if (!(opts.percentile > 0 && opts.percentile <= 100)) ThrowRange(env, "options.percentile must be in (0, 100]");
  }
  return Start(new CalibrateComputeWorker(env, calibrator_, opts));
}

Napi::Value CreateCalibratorJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const loupe::ResNet50Model> model = ArgModel(env, info[0], "model");
  Napi::Object o = ArgOptions(env, info[1], "options");
  int threads = 0;
  Napi::Value v;
  if (Has(o, "threads", &v)) threads = static_cast<int>(ArgInt(env, v, "options.threads", 0, 4096));
  return Start(new CreateCalibratorWorker(env, std::move(model), threads));
}

Napi::Value Int8TensorNamesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& names = loupe::Int8TensorNames();
  Napi::Array arr = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); ++i) arr.Set(i, Napi::String::New(env, names[i]));
  return arr;
}

}  // namespace

void InitQuantization(Napi::Env env, Napi::Object exports) {
  Data(env).calibrator_ctor = Napi::Persistent(CalibratorWrap::Define(env));
  exports.Set("createCalibrator", Napi::Function::New(env, CreateCalibratorJs, "createCalibrator"));
  exports.Set("int8TensorNames", Napi::Function::New(env, Int8TensorNamesJs, "int8TensorNames"));
}

}  // namespace loupe_binding
