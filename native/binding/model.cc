// loadModel, seededModel, createSession and the session's run queue.
#include <deque>
#include <utility>
#include <vector>

#include "binding.h"
#include "loupe/weights.h"

namespace loupe_binding {
namespace {

constexpr int kMaxBatch = 1 << 16;

bool EndsWithLwts(const std::string& path) {
  if (path.size() < 5) return false;
  std::string ext = path.substr(path.size() - 5);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".lwts";
}

// ---------------------------------------------------------------------------------------------------
// NativeModel: an immutable, shared ResNet50Model.
class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceAccessor<&ModelWrap::WeightsHash>("weightsHash", napi_enumerable)});
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

  static Napi::Object New(Napi::Env env, std::shared_ptr<const loupe::ResNet50Model> model) {
    Napi::Object obj = Data(env).model_ctor.New({});
    Unwrap(obj)->model_ = std::move(model);
    return obj;
  }
  const std::shared_ptr<const loupe::ResNet50Model>& model() const { return model_; }

 private:
  Napi::Value WeightsHash(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), model_ ? model_->weights_hash : std::string());
  }
  std::shared_ptr<const loupe::ResNet50Model> model_;
};

class LoadModelWorker : public PromiseWorker {
 public:
  LoadModelWorker(Napi::Env env, std::string path) : PromiseWorker(env, "loupe:loadModel"), path_(std::move(path)) {}

  void Execute() override {
    loupe::WeightStore store;
    status_ = EndsWithLwts(path_) ? loupe::LoadWeightStore(path_, &store) : loupe::LoadTfjsWeights(path_, &store);
    if (status_.ok()) status_ = loupe::BuildResNet50(store, &model_);
  }
  Napi::Value Settle(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  std::string path_;
  std::shared_ptr<const loupe::ResNet50Model> model_;
};

Napi::Value LoadModelJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(env, info[0], "path");
  if (path.empty()) ThrowRange(env, "path must not be empty");
  return Start(new LoadModelWorker(env, std::move(path)));
}

Napi::Value SeededModelJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = ArgSeed(env, info[0], "seed");
  loupe::WeightStore store;
  loupe::Status st = loupe::MakeSeededResNet50Weights(seed, &store);
  std::shared_ptr<const loupe::ResNet50Model> model;
  if (st.ok()) st = loupe::BuildResNet50(store, &model);
  if (!st.ok()) throw StatusError(env, st);
  return ModelWrap::New(env, std::move(model));
}

// ---------------------------------------------------------------------------------------------------
// NativeSession: one engine session plus a FIFO of runs. At most one run is in the engine at a time;
// the rest wait here, so cancelPending() can reject them without touching the engine.
class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeSession",
                       {InstanceAccessor<&SessionWrap::Backend>("backend", napi_enumerable),
                        InstanceAccessor<&SessionWrap::Device>("device", napi_enumerable),
                        InstanceAccessor<&SessionWrap::Precision>("precision", napi_enumerable),
                        InstanceMethod<&SessionWrap::KernelInfo>("kernelInfo"),
                        InstanceMethod<&SessionWrap::Run>("run"),
                        InstanceMethod<&SessionWrap::CancelPending>("cancelPending")});
  }
  explicit SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {}

  static Napi::Object New(Napi::Env env, std::unique_ptr<loupe::Session> session) {
    Napi::Object obj = Data(env).session_ctor.New({});
    SessionWrap* self = Unwrap(obj);
    self->backend_ = session->backend_name();
    self->device_ = session->device_name();
    self->precision_ = loupe::PrecisionName(session->precision());
    self->session_ = std::move(session);
    return obj;
  }

  struct Pending {
    Napi::Promise::Deferred deferred;
    Napi::Reference<Napi::Float32Array> input;
    int batch;
    std::vector<loupe::Tap> taps;
  };

  // Called by the worker on the JS thread when its run has settled.
  void RunFinished(Napi::Env env) {
    busy_ = false;
    StartNext(env);
  }

 private:
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_); }
  Napi::Value Precision(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), precision_); }
  Napi::Value KernelInfo(const Napi::CallbackInfo& info);

  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value CancelPending(const Napi::CallbackInfo& info);
  void StartNext(Napi::Env env);
  // While runs are queued or in flight the JS object is kept alive (a strong reference).
  void SetActive(bool active) {
    if (active == active_) return;
    active_ = active;
    if (active) Ref(); else Unref();
  }

  std::shared_ptr<loupe::Session> session_;
  std::string backend_, device_, precision_;
  std::deque<Pending> queue_;
  bool busy_ = false;
  bool active_ = false;
};

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, SessionWrap* owner, std::shared_ptr<loupe::Session> session, SessionWrap::Pending p)
      : Napi::AsyncWorker(env, "loupe:session.run"), owner_(owner), session_(std::move(session)),
        pending_(std::move(p)) {
    Napi::Float32Array input = pending_.input.Value();
    request_.input = input.Data();
    request_.batch = pending_.batch;
    request_.taps = pending_.taps;
  }
  void Execute() override { status_ = session_->Run(request_, &result_); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    owner_->RunFinished(env);  // the next queued run starts before this one's promise handlers run
    if (!status_.ok()) {
      pending_.deferred.Reject(StatusError(env, status_).Value());
      return;
    }
    if (result_.outputs.size() != request_.taps.size()) {
      pending_.deferred.Reject(CodedError(env, "Internal", "engine returned " + std::to_string(result_.outputs.size()) +
                                                               " outputs for " + std::to_string(request_.taps.size()) +
                                                               " taps").Value());
      return;
    }
    Napi::Array out = Napi::Array::New(env, result_.outputs.size());
    for (size_t i = 0; i < result_.outputs.size(); ++i) {
      std::vector<float>& v = result_.outputs[i];
      out.Set(static_cast<uint32_t>(i), NewFloat32Array(env, v.data(), v.size()));
      std::vector<float>().swap(v);
    }
    pending_.deferred.Resolve(out);
  }
  void OnError(const Napi::Error& e) override {
    owner_->RunFinished(Env());
    pending_.deferred.Reject(e.Value());
  }

 private:
  SessionWrap* owner_;  // alive: the session holds a strong reference to itself while a run is in flight
  std::shared_ptr<loupe::Session> session_;
  SessionWrap::Pending pending_;
  loupe::RunRequest request_;
  loupe::RunResult result_;
  loupe::Status status_;
};

Napi::Value SessionWrap::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!session_) ThrowType(env, "session.run: not a session made by createSession()");
  int batch = static_cast<int>(ArgInt(env, info[1], "batch", 1, kMaxBatch));
  const size_t per_image = static_cast<size_t>(loupe::kInputSize) * loupe::kInputSize * loupe::kInputChannels;
  Napi::Float32Array input = ArgArray<float>(env, info[0], "input", "Float32Array", per_image * batch,
                                             "batch*224*224*3, NHWC");
  if (!info[2].IsArray()) ThrowType(env, "taps must be an array of tap names");
  Napi::Array taps_js = info[2].As<Napi::Array>();
  if (taps_js.Length() == 0) ThrowRange(env, "taps must name at least one tap");
  std::vector<loupe::Tap> taps;
  for (uint32_t i = 0; i < taps_js.Length(); ++i) {
    std::string name = "taps[" + std::to_string(i) + "]";
    taps.push_back(ArgTap(env, taps_js.Get(i), name.c_str()));
  }
  Pending p{Napi::Promise::Deferred::New(env), Napi::Persistent(input), batch, std::move(taps)};
  Napi::Promise promise = p.deferred.Promise();
  queue_.push_back(std::move(p));
  SetActive(true);
  if (!busy_) StartNext(env);
  return promise;
}

void SessionWrap::StartNext(Napi::Env env) {
  while (!queue_.empty()) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    // The input may have been transferred (detached) while it waited in the queue.
    if (p.input.Value().ArrayBuffer().IsDetached()) {
      p.deferred.Reject(Napi::TypeError::New(env, "input was detached before the run started").Value());
      continue;
    }
    busy_ = true;
    (new RunWorker(env, this, session_, std::move(p)))->Queue();
    return;
  }
  SetActive(false);
}

// kernel_info() may build the batch-1 plan and waits for a run in flight: off the JS thread.
class KernelInfoWorker : public PromiseWorker {
 public:
  KernelInfoWorker(Napi::Env env, std::shared_ptr<loupe::Session> s)
      : PromiseWorker(env, "loupe:session.kernelInfo"), session_(std::move(s)) {}
  void Execute() override { info_ = session_->kernel_info(); }
  Napi::Value Settle(Napi::Env env) override { return Napi::String::New(env, info_); }

 private:
  std::shared_ptr<loupe::Session> session_;
  std::string info_;
};

Napi::Value SessionWrap::KernelInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!session_) ThrowType(env, "session.kernelInfo: not a session made by createSession()");
  return Start(new KernelInfoWorker(env, session_));
}

Napi::Value SessionWrap::CancelPending(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::deque<Pending> cancelled;
  cancelled.swap(queue_);
  for (Pending& p : cancelled)
    p.deferred.Reject(CodedError(env, "Cancelled", "run cancelled before it started").Value());
  if (!busy_) SetActive(false);
  return Napi::Number::New(env, static_cast<double>(cancelled.size()));
}

Napi::Value CreateSessionJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const loupe::ResNet50Model> model = ArgModel(env, info[0], "model");

  Napi::Object o = ArgOptions(env, info[1], "options");
  loupe::SessionOptions opts;
  Napi::Value v;
  if (Has(o, "backend", &v)) opts.backend = ArgBackend(env, v, "options.backend");
  if (Has(o, "precision", &v)) {
    std::string s = ArgString(env, v, "options.precision");
    if (!loupe::PrecisionFromName(s, &opts.precision))
      ThrowRange(env, "options.precision must be 'fp32', 'bf16', 'fp16' or 'int8', got '" + s + "'");
  }
  if (Has(o, "int8Calibration", &v)) opts.int8_calibration = ArgCalibration(env, v, "options.int8Calibration");
  if (Has(o, "threads", &v)) opts.num_threads = static_cast<int>(ArgInt(env, v, "options.threads", 0, 4096));
  if (Has(o, "maxBatch", &v)) opts.max_batch = static_cast<int>(ArgInt(env, v, "options.maxBatch", 1, kMaxBatch));

  std::unique_ptr<loupe::Session> session;
  loupe::Status st = loupe::CreateSession(model, opts, &session);
  if (!st.ok()) throw StatusError(env, st);
  return SessionWrap::New(env, std::move(session));
}

}  // namespace

std::shared_ptr<const loupe::ResNet50Model> ArgModel(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(env).model_ctor.Value()))
    ThrowType(env, std::string(name) + " must be a NativeModel from loadModel() or seededModel()");
  std::shared_ptr<const loupe::ResNet50Model> model = ModelWrap::Unwrap(v.As<Napi::Object>())->model();
  if (!model) ThrowType(env, std::string(name) + " must be a NativeModel from loadModel() or seededModel()");
  return model;
}

void InitModel(Napi::Env env, Napi::Object exports) {
  AddonData& data = Data(env);
  data.model_ctor = Napi::Persistent(ModelWrap::Define(env));
  data.session_ctor = Napi::Persistent(SessionWrap::Define(env));
  exports.Set("loadModel", Napi::Function::New(env, LoadModelJs, "loadModel"));
  exports.Set("seededModel", Napi::Function::New(env, SeededModelJs, "seededModel"));
  exports.Set("createSession", Napi::Function::New(env, CreateSessionJs, "createSession"));
}

}  // namespace loupe_binding
