// exportOnnx(model, path, options?): the engine's ONNX exporter (loupe/onnx_export.h), off the JS thread.
#include <string>
#include <utility>
#include <vector>

#include "binding.h"
#include "loupe/onnx_export.h"

namespace loupe_binding {
namespace {

class ExportOnnxWorker : public PromiseWorker {
 public:
  ExportOnnxWorker(Napi::Env env, std::shared_ptr<const loupe::ResNet50Model> model, std::string path,
                   loupe::OnnxExportOptions options)
      : PromiseWorker(env, "loupe:exportOnnx"), model_(std::move(model)), path_(std::move(path)),
        options_(std::move(options)) {}

  void Execute() override { status_ = loupe::ExportOnnx(*model_, options_, path_); }
  Napi::Value Settle(Napi::Env env) override { return env.Undefined(); }

 private:
  std::shared_ptr<const loupe::ResNet50Model> model_;  // kept alive while the worker reads it
  std::string path_;
  loupe::OnnxExportOptions options_;
};

Napi::Value ExportOnnxJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const loupe::ResNet50Model> model = ArgModel(env, info[0], "model");
  std::string path = ArgString(env, info[1], "path");
  if (path.empty()) ThrowRange(env, "path must not be empty");
  Napi::Object o = ArgOptions(env, info[2], "options");
  loupe::OnnxExportOptions options;
  Napi::Value v;
  if (Has(o, "taps", &v)) {
    if (!v.IsArray()) ThrowType(env, "options.taps must be an array of tap names");
    Napi::Array arr = v.As<Napi::Array>();
    options.outputs.clear();
    for (uint32_t i = 0; i < arr.Length(); ++i)
      options.outputs.push_back(ArgTap(env, arr.Get(i), "options.taps[]"));
    // Empty or duplicate lists are refused by the engine (InvalidArgument) with its own message.
  }
  if (Has(o, "opset", &v))
    options.opset = static_cast<int>(ArgInt(env, v, "options.opset", loupe::kOnnxMinOpset, loupe::kOnnxMaxOpset));
  if (Has(o, "int8Calibration", &v)) options.int8_calibration = ArgCalibration(env, v, "options.int8Calibration");
  if (Has(o, "dynamicBatch", &v)) {
    if (!v.IsBoolean()) ThrowType(env, "options.dynamicBatch must be a boolean");
    options.dynamic_batch = v.As<Napi::Boolean>().Value();
  }
  return Start(new ExportOnnxWorker(env, std::move(model), std::move(path), std::move(options)));
}

}  // namespace

void InitOnnx(Napi::Env env, Napi::Object exports) {
  exports.Set("exportOnnx", Napi::Function::New(env, ExportOnnxJs, "exportOnnx"));
}

}  // namespace loupe_binding
