// trainLinearSvms, knnSearch, createKnnIndex (+ NativeKnnIndex.search), greedyCoreset: async workers over
// loupe/svm.h and loupe/knn.h.
#include <atomic>
#include <limits>
#include <mutex>
#include <vector>

#include "binding.h"
#include "loupe/knn.h"
#include "loupe/svm.h"

namespace loupe_binding {
namespace {

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();  // indices come back as Int32Array
constexpr int64_t kMaxDim = int64_t{1} << 24;

// ---------------------------------------------------------------------------------------------------
class SvmWorker : public PromiseWorker {
 public:
  SvmWorker(Napi::Env env, Napi::Float32Array X, int64_t n, int64_t d, Napi::Int8Array targets, int k,
            loupe::SgdSvmOptions opts)
      : PromiseWorker(env, "loupe:trainLinearSvms"), n_(n), d_(d), k_(k), opts_(std::move(opts)) {
    X_.Hold(X);
    targets_.Hold(targets);
  }
  void Execute() override {
    status_ = loupe::TrainLinearSvms(X_.data, n_, d_, targets_.data, k_, opts_, &w_, &b_);
  }
  Napi::Value Settle(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("w", NewFloat32Array(env, w_.data(), w_.size()));
    o.Set("b", NewFloat32Array(env, b_.data(), b_.size()));
    return o;
  }

 private:
  HeldArray<float> X_;
  HeldArray<int8_t> targets_;
  int64_t n_, d_;
  int k_;
  loupe::SgdSvmOptions opts_;
  std::vector<float> w_, b_;
};

Napi::Value TrainLinearSvmsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = ArgInt(env, info[1], "n", 1, kMaxRows);
  int64_t d = ArgInt(env, info[2], "d", 1, kMaxDim);
  int k = static_cast<int>(ArgInt(env, info[4], "k", 1, 1 << 20));
  auto X = ArgArray<float>(env, info[0], "X", "Float32Array", CheckedProduct(env, n, d, "X"), "n*d");
  auto targets = ArgArray<int8_t>(env, info[3], "targets", "Int8Array", CheckedProduct(env, k, n, "targets"), "k*n");

  Napi::Object o = ArgOptions(env, info[5], "options");
  loupe::SgdSvmOptions opts;
  Napi::Value v;
  if (Has(o, "lambda", &v)) {
    opts.lambda = ArgNumber(env, v, "options.lambda");
    if (!(opts.lambda > 0)) ThrowRange(env, "options.lambda must be > 0");
  }
  if (Has(o, "eta0", &v)) {
    opts.eta0 = ArgNumber(env, v, "options.eta0");
    if (!(opts.eta0 >= 0)) ThrowRange(env, "options.eta0 must be >= 0");
  }
  if (Has(o, "epochs", &v)) opts.epochs = static_cast<int>(ArgInt(env, v, "options.epochs", 1, 1 << 20));
  if (Has(o, "seed", &v)) opts.seed = ArgSeed(env, v, "options.seed");
  if (Has(o, "schedule", &v)) {
    std::string s = ArgString(env, v, "options.schedule");
    if (s == "pegasos") opts.schedule = loupe::SgdSchedule::kPegasos;
    else if (s == "averaged") opts.schedule = loupe::SgdSchedule::kAveraged;
    else ThrowRange(env, "options.schedule must be 'pegasos' or 'averaged', got '" + s + "'");
  }
  if (Has(o, "backend", &v)) opts.backend = ArgBackend(env, v, "options.backend");
  if (Has(o, "threads", &v)) opts.num_threads = static_cast<int>(ArgInt(env, v, "options.threads", 0, 4096));
  return Start(new SvmWorker(env, X, n, d, targets, k, std::move(opts)));
}

// ---------------------------------------------------------------------------------------------------
void KnnOptionsFrom(Napi::Env env, const Napi::Object& o, loupe::KnnOptions* opts) {
  Napi::Value v;
  if (Has(o, "backend", &v)) opts->backend = ArgBackend(env, v, "options.backend");
  if (Has(o, "threads", &v)) opts->num_threads = static_cast<int>(ArgInt(env, v, "options.threads", 0, 4096));
  if (Has(o, "method", &v)) {
    std::string s = ArgString(env, v, "options.method");
    if (s == "auto") opts->method = loupe::KnnMethod::kAuto;
    else if (s == "bruteForce") opts->method = loupe::KnnMethod::kBruteForce;
    else if (s == "pruned") opts->method = loupe::KnnMethod::kPruned;
    else ThrowRange(env, "options.method must be 'auto', 'bruteForce' or 'pruned', got '" + s + "'");
  }
  if (Has(o, "subspaceDim", &v))
    opts->subspace_dim = static_cast<int>(ArgInt(env, v, "options.subspaceDim", 0, kMaxDim));
}

Napi::Object KnnResult(Napi::Env env, const std::vector<float>& dist, const std::vector<int64_t>& idx) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dist", NewFloat32Array(env, dist.data(), dist.size()));
  Napi::Int32Array out = Napi::Int32Array::New(env, idx.size());
  for (size_t i = 0; i < idx.size(); ++i) out[i] = static_cast<int32_t>(idx[i]);  // nb < 2^31: checked
  o.Set("idx", out);
  return o;
}

class KnnWorker : public PromiseWorker {
 public:
  KnnWorker(Napi::Env env, Napi::Float32Array bank, int64_t nb, Napi::Float32Array queries, int64_t nq, int64_t d,
            int k, loupe::KnnOptions opts)
      : PromiseWorker(env, "loupe:knnSearch"), nb_(nb), nq_(nq), d_(d), k_(k), opts_(opts) {
    bank_.Hold(bank);
    queries_.Hold(queries);
  }
  void Execute() override {
    dist_.resize(static_cast<size_t>(nq_) * k_);
    idx_.resize(static_cast<size_t>(nq_) * k_);
    status_ = loupe::KnnSearch(bank_.data, nb_, queries_.data, nq_, d_, k_, opts_, dist_.data(), idx_.data());
  }
  Napi::Value Settle(Napi::Env env) override { return KnnResult(env, dist_, idx_); }

 private:
  HeldArray<float> bank_, queries_;
  int64_t nb_, nq_, d_;
  int k_;
  loupe::KnnOptions opts_;
  std::vector<float> dist_;
  std::vector<int64_t> idx_;
};

Napi::Value KnnSearchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t nb = ArgInt(env, info[1], "nb", 1, kMaxRows);
  int64_t nq = ArgInt(env, info[3], "nq", 0, kMaxRows);
  int64_t d = ArgInt(env, info[4], "d", 1, kMaxDim);
  int k = static_cast<int>(ArgInt(env, info[5], "k", 1, std::min<int64_t>(nb, 1 << 16)));
  auto bank = ArgArray<float>(env, info[0], "bank", "Float32Array", CheckedProduct(env, nb, d, "bank"), "nb*d");
  auto queries =
      ArgArray<float>(env, info[2], "queries", "Float32Array", CheckedProduct(env, nq, d, "queries"), "nq*d");
  CheckedProduct(env, nq, k, "result (nq*k)");

  loupe::KnnOptions opts;
  KnnOptionsFrom(env, ArgOptions(env, info[6], "options"), &opts);
  return Start(new KnnWorker(env, bank, nb, queries, nq, d, k, opts));
}

// ---------------------------------------------------------------------------------------------------
// NativeKnnIndex: a loupe::KnnIndex built once (createKnnIndex, off the JS thread) and searched many
// times. Searches hold a shared_ptr, so a collected wrapper never frees an index in use.
class KnnIndexWrap : public Napi::ObjectWrap<KnnIndexWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeKnnIndex",
                       {InstanceAccessor<&KnnIndexWrap::Size>("size", napi_enumerable),
                        InstanceAccessor<&KnnIndexWrap::Dim>("dim", napi_enumerable),
                        InstanceAccessor<&KnnIndexWrap::Backend>("backend", napi_enumerable),
                        InstanceAccessor<&KnnIndexWrap::Method>("method", napi_enumerable),
                        InstanceMethod<&KnnIndexWrap::Search>("search")});
  }
  explicit KnnIndexWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KnnIndexWrap>(info) {}
  static Napi::Object New(Napi::Env env, std::shared_ptr<loupe::KnnIndex> index) {
    Napi::Object obj = Data(env).knn_index_ctor.New({});
    Unwrap(obj)->index_ = std::move(index);
    return obj;
  }

 private:
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)index_->size()); }
  Napi::Value Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)index_->dim()); }
  Napi::Value Backend(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), index_->backend() == loupe::BackendKind::kCuda ? "cuda" : "cpu");
  }
  Napi::Value Method(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), index_->method() == loupe::KnnMethod::kPruned ? "pruned" : "bruteForce");
  }
  Napi::Value Search(const Napi::CallbackInfo& info);
  std::shared_ptr<loupe::KnnIndex> index_;
};

class CreateKnnIndexWorker : public PromiseWorker {
 public:
  CreateKnnIndexWorker(Napi::Env env, Napi::Float32Array bank, int64_t nb, int64_t d, loupe::KnnOptions opts)
      : PromiseWorker(env, "loupe:createKnnIndex"), nb_(nb), d_(d), opts_(opts) {
    bank_.Hold(bank);
  }
  void Execute() override {
    std::unique_ptr<loupe::KnnIndex> index;
    status_ = loupe::KnnIndex::Create(bank_.data, nb_, d_, opts_, &index);
    index_ = std::move(index);
  }
  Napi::Value Settle(Napi::Env env) override { return KnnIndexWrap::New(env, std::move(index_)); }

 private:
  HeldArray<float> bank_;
  int64_t nb_, d_;
  loupe::KnnOptions opts_;
  std::shared_ptr<loupe::KnnIndex> index_;
};

class KnnIndexSearchWorker : public PromiseWorker {
 public:
  KnnIndexSearchWorker(Napi::Env env, std::shared_ptr<loupe::KnnIndex> index, Napi::Float32Array queries,
                       int64_t nq, int k)
      : PromiseWorker(env, "loupe:KnnIndex.search"), index_(std::move(index)), nq_(nq), k_(k) {
    queries_.Hold(queries);
  }
  void Execute() override {
    dist_.resize(static_cast<size_t>(nq_) * k_);
    idx_.resize(static_cast<size_t>(nq_) * k_);
    status_ = index_->Search(queries_.data, nq_, k_, dist_.data(), idx_.data());
  }
  Napi::Value Settle(Napi::Env env) override { return KnnResult(env, dist_, idx_); }

 private:
  std::shared_ptr<loupe::KnnIndex> index_;
  HeldArray<float> queries_;
  int64_t nq_;
  int k_;
  std::vector<float> dist_;
  std::vector<int64_t> idx_;
};

Napi::Value KnnIndexWrap::Search(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t nb = index_->size(), d = index_->dim();
  int64_t nq = ArgInt(env, info[1], "nq", 0, kMaxRows);
  const int64_t kmax = index_->backend() == loupe::BackendKind::kCuda ? std::min<int64_t>(nb, loupe::kKnnMaxKCuda)
                                                                       : std::min<int64_t>(nb, 1 << 16);
  int k = static_cast<int>(ArgInt(env, info[2], "k", 1, kmax));
  auto queries =
      ArgArray<float>(env, info[0], "queries", "Float32Array", CheckedProduct(env, nq, d, "queries"), "nq*dim");
  CheckedProduct(env, nq, k, "result (nq*k)");
  return Start(new KnnIndexSearchWorker(env, index_, queries, nq, k));
}

Napi::Value CreateKnnIndexJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t nb = ArgInt(env, info[1], "nb", 1, kMaxRows);
  int64_t d = ArgInt(env, info[2], "d", 1, kMaxDim);
  auto bank = ArgArray<float>(env, info[0], "bank", "Float32Array", CheckedProduct(env, nb, d, "bank"), "nb*d");
  loupe::KnnOptions opts;
  KnnOptionsFrom(env, ArgOptions(env, info[3], "options"), &opts);
  return Start(new CreateKnnIndexWorker(env, bank, nb, d, opts));
}

// ---------------------------------------------------------------------------------------------------
// Progress crosses threads through a ThreadSafeFunction. Calls are coalesced (at most one waits on the
// JS thread, carrying the latest counts), so a fast engine cannot flood the event loop; the latest
// counts are delivered before the promise settles. If onProgress throws, the engine is cancelled and
// the promise rejects with that exception.
struct ProgressState {
  std::atomic<bool> cancel{false};
  std::atomic<bool> posted{false};
  std::mutex mu;
  int64_t done = -1, total = 0;  // latest from the engine (-1: none yet)
  // JS thread only:
  int64_t delivered = -1;
  bool finished = false;
  Napi::FunctionReference callback;
  Napi::Reference<Napi::Value> thrown;

  void Deliver(Napi::Env env) {
    if (finished || !thrown.IsEmpty()) return;
    int64_t d, t;
    {
      std::lock_guard<std::mutex> lock(mu);
      d = done;
      t = total;
      posted = false;
    }
    if (d < 0 || d == delivered) return;
    delivered = d;
    try {
      callback.Call({Napi::Number::New(env, static_cast<double>(d)), Napi::Number::New(env, static_cast<double>(t))});
    } catch (const Napi::Error& e) {
      thrown = Napi::Persistent(e.Value().As<Napi::Value>());
      cancel = true;
    }
  }
};

class CoresetWorker : public PromiseWorker {
 public:
  CoresetWorker(Napi::Env env, Napi::Float32Array X, int64_t n, int64_t d, int64_t m, loupe::CoresetOptions opts,
                Napi::Value on_progress)
      : PromiseWorker(env, "loupe:greedyCoreset"), n_(n), d_(d), m_(m), opts_(std::move(opts)),
        state_(std::make_shared<ProgressState>()) {
    X_.Hold(X);
    opts_.cancel = &state_->cancel;
    if (on_progress.IsFunction()) {
      state_->callback = Napi::Persistent(on_progress.As<Napi::Function>());
      tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "loupe:greedyCoreset.progress",
                                            0 /* unbounded queue */, 1 /* this worker */);
      has_tsfn_ = true;
      auto state = state_;
      auto tsfn = tsfn_;
      opts_.progress = [state, tsfn](int64_t done, int64_t total) mutable {
        {
          std::lock_guard<std::mutex> lock(state->mu);
          state->done = done;
          state->total = total;
        }
        if (state->posted.exchange(true)) return;  // one already waits: it will carry these counts
        tsfn.NonBlockingCall([state](Napi::Env env, Napi::Function) { state->Deliver(env); });
      };
    }
  }
  ~CoresetWorker() override {
    if (has_tsfn_) tsfn_.Release();
  }
  void Execute() override { status_ = loupe::GreedyCoreset(X_.data, n_, d_, m_, opts_, &selected_); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (has_tsfn_) {
      state_->Deliver(Env());  // the last counts, before the promise settles
      state_->finished = true;  // progress calls still queued are dropped
    }
    if (!state_->thrown.IsEmpty()) {
      deferred_.Reject(state_->thrown.Value());
      return;
    }
    PromiseWorker::OnOK();
  }
  Napi::Value Settle(Napi::Env env) override {
    Napi::Int32Array out = Napi::Int32Array::New(env, selected_.size());
    for (size_t i = 0; i < selected_.size(); ++i) out[i] = static_cast<int32_t>(selected_[i]);  // n < 2^31
    return out;
  }

 private:
  HeldArray<float> X_;
  int64_t n_, d_, m_;
  loupe::CoresetOptions opts_;
  std::shared_ptr<ProgressState> state_;
  Napi::ThreadSafeFunction tsfn_;
  bool has_tsfn_ = false;
  std::vector<int64_t> selected_;
};

Napi::Value GreedyCoresetJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = ArgInt(env, info[1], "n", 1, kMaxRows);
  int64_t d = ArgInt(env, info[2], "d", 1, kMaxDim);
  int64_t m = ArgInt(env, info[3], "m", 1, n);
  auto X = ArgArray<float>(env, info[0], "X", "Float32Array", CheckedProduct(env, n, d, "X"), "n*d");

  Napi::Object o = ArgOptions(env, info[4], "options");
  loupe::CoresetOptions opts;
  Napi::Value v;
  if (Has(o, "seed", &v)) opts.seed = ArgSeed(env, v, "options.seed");
  if (Has(o, "projectionDim", &v))
    opts.projection_dim = static_cast<int>(ArgInt(env, v, "options.projectionDim", 0, kMaxDim));
  if (Has(o, "backend", &v)) opts.backend = ArgBackend(env, v, "options.backend");
  if (Has(o, "threads", &v)) opts.num_threads = static_cast<int>(ArgInt(env, v, "options.threads", 0, 4096));

  Napi::Value cb = info[5];
  if (!cb.IsUndefined() && !cb.IsNull() && !cb.IsFunction()) ThrowType(env, "onProgress must be a function");
  return Start(new CoresetWorker(env, X, n, d, m, std::move(opts), cb));
}

}  // namespace

void InitMl(Napi::Env env, Napi::Object exports) {
  exports.Set("trainLinearSvms", Napi::Function::New(env, TrainLinearSvmsJs, "trainLinearSvms"));
  exports.Set("knnSearch", Napi::Function::New(env, KnnSearchJs, "knnSearch"));
  Data(env).knn_index_ctor = Napi::Persistent(KnnIndexWrap::Define(env));
  exports.Set("createKnnIndex", Napi::Function::New(env, CreateKnnIndexJs, "createKnnIndex"));
  exports.Set("greedyCoreset", Napi::Function::New(env, GreedyCoresetJs, "greedyCoreset"));
}

}  // namespace loupe_binding
