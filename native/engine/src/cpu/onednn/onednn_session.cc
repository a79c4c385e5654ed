// The fast CPU backend on oneDNN 2.x. Per batch size a Plan holds the primitives, built once:
//  - fp32: activations stay in the layouts oneDNN picks (format_tag::any) from conv1 to fc1000: the only
//    reorders are the input (NHWC -> conv1's layout, none when conv1 takes NHWC, as brgconv does) and
//    the taps a caller asks for (-> NHWC);
//  - int8 (loupe/quantization.h has the scheme): u8/s8 NHWC activations between the convs, u8 x s8
//    weights per output channel, s32 accumulation; bias, the requantization (per-channel output scales)
//    and ReLU in the conv; the residual add of a block is fused into its last conv: round/clip to that
//    conv's own s8 grid, rescale, a `sum` post-op over the shortcut (u8, or the projection's s8 read
//    through the sum's data type), ReLU, saturate to u8. conv1 and max pool run in fp32, one reorder
//    quantizes pool1; res5c is dequantized once for avg_pool/fc1000 (fp32). Taps are dequantized;
//  - BN is already folded; ReLU is an eltwise post-op; the residual add is a `sum` post-op: the last
//    conv of a block accumulates into the shortcut buffer (in place for identity blocks);
//  - weights are reordered once per layout and shared by every plan that wants that layout;
//  - one user-mode scratchpad and a few activation buffers per plan, reused by every run.
// LOUPE_ONEDNN_LAYOUT=nhwc|blocked overrides oneDNN's fp32 activation layout choice (tuning experiments).
// Calibration (an ObservingSession) builds fp32 plans in which the last conv of a block writes its own
// output and a binary add (+ReLU) follows, so every tensor of Int8TensorNames() exists to be observed.
// Debian's libdnnl uses OpenMP, whose thread team belongs to the thread that opens the parallel
// region. Run() may be called from any thread (the binding calls from whichever libuv pool thread is
// free), and every new calling thread means another team whose threads must wake up and warm their
// caches: measured +12% at batch 1 when runs hop between 4 pool threads. So sessions compute on a
// compute thread (the OpenMP master, ICV set once); Run() hands it the request and waits. That thread
// is shared by all sessions (and calibrators) of the same thread count in the process: two teams of N
// threads on N cores make libgomp count more threads than CPUs and cut its spin-wait to 100 iterations,
// so its workers sleep between primitives and every primitive pays a futex wake-up (measured with an fp32
// and an int8 session in one process, 300 ms between runs: batch 1 fp32 25 -> 45 ms, int8 9 -> 16 ms).
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <oneapi/dnnl/dnnl.hpp>

#include "../cpu_layers.h"
#include "backends.h"
#include "loupe/quantization.h"

namespace loupe {
namespace internal {

namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

// 64-byte aligned buffer (oneDNN's jit kernels prefer aligned activations).
struct AlignedBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  void Reserve(size_t n) {
    if (n <= bytes) return;
    std::free(ptr);
    bytes = (n + 63) / 64 * 64;
    ptr = std::aligned_alloc(64, bytes);
  }
  ~AlignedBuffer() { std::free(ptr); }
};

// A conv's user-side weights and the reordered copies, one per layout some plan asked for.
struct ConvWeights {
  const FoldedConv* cv = nullptr;
  std::vector<std::pair<memory::desc, memory>> by_layout;
  memory bias;  // f32: the folded bias, or (int8) the int32 bias as floats
  // int8 only
  bool int8 = false;
  float src_scale = 1.f;
  QuantizedConv q;
  std::vector<float> q_bias;
};

// Activation buffer roles inside a plan; memories of different layouts can share one role.
enum Role { kIn, kX, kY, kT1, kT2, kC, kP, kPool, kLogits, kScratch, kRoles };

struct Step {
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
};

struct TapOut {
  int after_step = -1;  // ready once this step ran (later steps may overwrite the buffer)
  dnnl::reorder to_nhwc;
  memory src, dst;      // dst wraps the caller's output vector (handle set per run)
  memory scratch;
};

struct Observation {
  int after_step;
  memory mem;  // f32
  std::string name;
};

struct Plan {
  int batch = 0;
  memory user_in;                      // NHWC input, handle = the caller's pointer
  std::vector<Step> steps;
  TapOut taps[(int)Tap::kCount];       // kFc1000 / kProbabilities are read from `logits`
  int logits_step = -1;
  memory logits;                       // [batch][1000], nc
  AlignedBuffer buffers[kRoles];
  std::vector<std::pair<memory, Role>> bindings;  // memories whose handle is a role buffer
  std::vector<Observation> observations;          // calibration plans only
  std::map<std::string, int> kernels;             // "int8 brgconv:avx512_core_vnni" -> convs
};

const char* IsaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    default: return "generic";
  }
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A thread that runs jobs, one at a time in FIFO order, with an OpenMP team of `threads`; one per thread
// count in the process, alive while some session holds it.
class ComputeThread {
 public:
  static std::shared_ptr<ComputeThread> ForThreads(int threads) {
    static std::mutex mu;
    static std::map<int, std::weak_ptr<ComputeThread>> registry;
    std::lock_guard<std::mutex> l(mu);
    std::shared_ptr<ComputeThread> t = registry[threads].lock();
    if (!t) {
      t.reset(new ComputeThread(threads));
      registry[threads] = t;
    }
    return t;
  }
  ~ComputeThread() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  int threads() const { return threads_; }
  // Runs `fn` on the compute thread (started on first use) and waits for it.
  void Run(const std::function<void()>& fn) {
    Job job{&fn, false};
    std::unique_lock<std::mutex> l(mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
    queue_.push_back(&job);
    cv_.notify_all();
    done_cv_.wait(l, [&] { return job.done; });
  }

 private:
  struct Job {
    const std::function<void()>* fn;
    bool done;
  };
  explicit ComputeThread(int threads) : threads_(threads) {}
  void Loop() {
    omp_set_num_threads(threads_);
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and nothing left to run
      Job* job = queue_.front();
      queue_.pop_front();
      l.unlock();
      (*job->fn)();
      l.lock();
      job->done = true;
      done_cv_.notify_all();
    }
  }

  const int threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Job*> queue_;
  bool stop_ = false;
  std::thread thread_;
};

class OneDnnSession : public Session, public ObservingSession {
 public:
  OneDnnSession(std::shared_ptr<const ResNet50Model> m, int threads, const Int8Calibration* calib, bool observe)
      : Session(std::move(m)), threads_(threads), int8_(calib != nullptr), observe_(observe),
        int8_conv1_(int8_ && EnvIs("LOUPE_INT8_CONV1", "1")), fused_add_(int8_ && EnvIs("LOUPE_INT8_ADD", "fused")),
        engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), compute_(ComputeThread::ForThreads(threads)) {
    if (int8_)
      for (const auto& e : calib->ranges) scale_[e.first] = Int8TensorScale(e.first, e.second);
    auto add = [&](const FoldedConv& cv, const std::string& src, bool int8) {
      ConvWeights w;
      w.cv = &cv;
      w.int8 = int8;
      if (int8) {
        w.src_scale = Scale(src);
        QuantizeConv(cv, w.src_scale, &w.q);
        w.q_bias.assign(w.q.bias.begin(), w.q.bias.end());
        w.bias = memory({{cv.cout}, dt::f32, tag::x}, engine_, w.q_bias.data());
      } else {
        w.bias = memory({{cv.cout}, dt::f32, tag::x}, engine_, const_cast<float*>(cv.bias.data()));
      }
      convs_.push_back(std::move(w));
    };
    // In Build order: conv1, then per block a, b, c, [projection]; the int8 source tensor of each.
    add(model_->conv1, "input", int8_conv1_);
    std::string in = int8_conv1_ ? "conv1" : "pool1";
    for (const auto& b : model_->blocks) {
      add(b.a, in, int8_);
      add(b.b, b.name + "_branch2a", int8_);
      add(b.c, b.name + "_branch2b", int8_);
      if (b.has_projection) add(b.projection, in, int8_);
      in = b.name;
    }
    fc_w_user_ = memory({{kFcOutputs, 2048, 1, 1}, dt::f32, tag::hwio}, engine_,
                        const_cast<float*>(model_->fc_w.data()));
    fc_b_ = memory({{kFcOutputs}, dt::f32, tag::x}, engine_, const_cast<float*>(model_->fc_b.data()));
    isa_ = IsaName(dnnl::get_effective_cpu_isa());
  }

  std::string backend_name() const override { return "cpu-onednn"; }
  std::string device_name() const override {
    return "cpu (" + std::to_string(threads_) + " threads, oneDNN " + isa_ + ")";
  }
  Precision precision() const override { return int8_ ? Precision::kInt8 : Precision::kFp32; }

  std::string kernel_info() override {
    std::lock_guard<std::mutex> lock(mu_);
    Status st;
    OnWorker([&] { st = Guard([&] { GetPlan(plans_.empty() ? 1 : plans_.begin()->first); return Status::Ok(); }); });
    if (!st.ok()) return "unknown (" + st.message() + ")";
    const Plan& p = *plans_.begin()->second;
    // "int8 a x36, b x16; fp32 c x1"
    std::string out, group;
    for (const char* prec : {"int8", "fp32"}) {
      std::string items;
      for (const auto& e : p.kernels)
        if (e.first.compare(0, 5, std::string(prec) + " ") == 0)
          items += (items.empty() ? "" : ", ") + e.first.substr(5) + " x" + std::to_string(e.second);
      if (!items.empty()) out += (out.empty() ? "" : "; ") + std::string(prec) + " " + items;
    }
    return out;
  }

  Status Run(const RunRequest& req, RunResult* out) override {
    LOUPE_RETURN_IF_ERROR(ValidateRequest(req));
    std::lock_guard<std::mutex> lock(mu_);  // one run at a time per session
    Status st;
    OnWorker([&] { st = Guard([&] { return RunLocked(req, out); }); });
    return st;
  }

  Status RunObserved(const float* input, int batch, const ActivationObserver& observer,
                     const std::atomic<bool>* cancel) override {
    if (!input || batch < 1) return Status(StatusCode::kInvalidArgument, "RunObserved: no input or batch < 1");
    std::lock_guard<std::mutex> lock(mu_);
    Status st;
    OnWorker([&] { st = Guard([&] { return RunObservedLocked(input, batch, observer, cancel); }); });
    return st;
  }

 private:
  float Scale(const std::string& name) const {
    auto it = scale_.find(name);
    return it == scale_.end() ? 1.f : it->second;  // validated by CreateOneDnnSession's caller
  }

  template <typename F>
  static Status Guard(F&& f) {
    try {
      return f();
    } catch (const dnnl::error& e) {
      return Status(StatusCode::kInternal, std::string("oneDNN: ") + e.what());
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kInternal, "oneDNN backend: out of memory");
    }
  }

  void OnWorker(const std::function<void()>& fn) { compute_->Run(fn); }

  Status RunLocked(const RunRequest& req, RunResult* out) {
    out->outputs.assign(req.taps.size(), {});
    for (size_t i = 0; i < req.taps.size(); ++i)
      out->outputs[i].resize((size_t)req.batch * TapElements(req.taps[i]));
    if (req.taps.empty()) return Status::Ok();
    Plan& p = GetPlan(req.batch);
    const Tap deepest = *std::max_element(req.taps.begin(), req.taps.end());
    const int last = deepest >= Tap::kFc1000 ? p.logits_step : p.taps[(int)deepest].after_step;
    p.user_in.set_data_handle(const_cast<float*>(req.input));
    for (int s = 0; s <= last; ++s) {
      if (req.cancel && req.cancel->load(std::memory_order_relaxed))
        return Status(StatusCode::kCancelled, "run cancelled");
      p.steps[s].prim.execute(stream_, p.steps[s].args);
      for (size_t i = 0; i < req.taps.size(); ++i) {
        const int t = (int)req.taps[i];
        if (req.taps[i] >= Tap::kFc1000 || p.taps[t].after_step != s) continue;
        p.taps[t].dst.set_data_handle(out->outputs[i].data());
        p.taps[t].to_nhwc.execute(stream_, {{DNNL_ARG_FROM, p.taps[t].src},
                                            {DNNL_ARG_TO, p.taps[t].dst},
                                            {DNNL_ARG_SCRATCHPAD, p.taps[t].scratch}});
      }
    }
    stream_.wait();
    const float* logits = static_cast<const float*>(p.logits.get_data_handle());
    for (size_t i = 0; i < req.taps.size(); ++i) {
      if (req.taps[i] == Tap::kFc1000)
        std::memcpy(out->outputs[i].data(), logits, sizeof(float) * req.batch * kFcOutputs);
      if (req.taps[i] == Tap::kProbabilities)
        Softmax(logits, req.batch, kFcOutputs, out->outputs[i].data());
    }
    return Status::Ok();
  }

  Status RunObservedLocked(const float* input, int batch, const ActivationObserver& observer,
                           const std::atomic<bool>* cancel) {
    if (!observe_) return Status(StatusCode::kInternal, "RunObserved on a session that does not observe");
    Plan& p = GetPlan(batch);
    p.user_in.set_data_handle(const_cast<float*>(input));
    observer("input", input, (size_t)batch * kInputSize * kInputSize * kInputChannels);
    for (int s = 0; s <= p.logits_step; ++s) {
      if (cancel && cancel->load(std::memory_order_relaxed)) return Status(StatusCode::kCancelled, "run cancelled");
      p.steps[s].prim.execute(stream_, p.steps[s].args);
      for (const Observation& o : p.observations)
        if (o.after_step == s) {
          stream_.wait();
          observer(o.name, static_cast<const float*>(o.mem.get_data_handle()),
                   o.mem.get_desc().get_size() / sizeof(float));
        }
    }
    stream_.wait();
    return Status::Ok();
  }

  // --- plan building ---
  // fp32 activation layout: oneDNN's choice unless LOUPE_ONEDNN_LAYOUT says otherwise.
  static tag ActTag() {
    static const char* e = std::getenv("LOUPE_ONEDNN_LAYOUT");
    if (e && std::string(e) == "blocked") return tag::nChw16c;
    if (e && std::string(e) == "nhwc") return tag::nhwc;
    return tag::any;
  }

  dnnl::primitive_attr Attr(bool relu, bool sum) {
    dnnl::primitive_attr attr = UserScratchpad();
    dnnl::post_ops po;
    if (sum) po.append_sum(1.f);
    if (relu) po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(po);
    return attr;
  }

  memory Bind(Plan& p, const memory::desc& md, Role r, size_t* sizes) {
    memory m(md, engine_, DNNL_MEMORY_NONE);
    sizes[r] = std::max(sizes[r], md.get_size());
    p.bindings.emplace_back(m, r);
    return m;
  }

  // The weights in `md`'s layout: reordered on first request, then shared by all plans.
  memory WeightsFor(ConvWeights& w, const memory::desc& md) {
    for (auto& e : w.by_layout)
      if (e.first == md) return e.second;
    const FoldedConv& cv = *w.cv;
    memory user = w.int8 ? memory({{cv.cout, cv.cin, cv.kh, cv.kw}, dt::s8, tag::hwio}, engine_, w.q.w_hwio.data())
                         : memory({{cv.cout, cv.cin, cv.kh, cv.kw}, dt::f32, tag::hwio}, engine_,
                                  const_cast<float*>(cv.w_hwio.data()));
    memory m(md, engine_);
    dnnl::reorder(user, m).execute(stream_, user, m);
    stream_.wait();
    w.by_layout.emplace_back(md, m);
    return m;
  }

  void Record(Plan& p, const char* prec, const dnnl::primitive_desc_base& pd) {
    ++p.kernels[std::string(prec) + " " + pd.impl_info_str()];
  }

  void Observe(Plan& p, const memory& m, const std::string& name) {
    if (observe_) p.observations.push_back({(int)p.steps.size() - 1, m, name});
  }

  // The step of a conv primitive (fp32 or int8): recorded under `kind`, its dst bound to role dst_role,
  // its weights in the primitive's layout. Returns the dst memory.
  memory PushConv(Plan& p, ConvWeights& w, const memory& src, const dnnl::convolution_forward::primitive_desc& pd,
                  const char* kind, Role dst_role, size_t* sizes) {
    Record(p, kind, pd);
    memory dst = Bind(p, pd.dst_desc(), dst_role, sizes);
    Step s{dnnl::convolution_forward(pd),
           {{DNNL_ARG_SRC, src},
            {DNNL_ARG_WEIGHTS, WeightsFor(w, pd.weights_desc())},
            {DNNL_ARG_BIAS, w.bias},
            {DNNL_ARG_DST, dst},
            {DNNL_ARG_SCRATCHPAD, Bind(p, pd.scratchpad_desc(), kScratch, sizes)}}};
    p.steps.push_back(std::move(s));
    return dst;
  }

  // Adds fp32 conv `w` reading `src` (fixed layout) and writing role `dst_role` (layout `dst_md`, or
  // oneDNN's choice when dst_md is empty). Returns the dst memory.
  memory AddConv(Plan& p, ConvWeights& w, const memory& src, int out_hw, Role dst_role,
                 const memory::desc* dst_md, bool relu, bool sum, size_t* sizes) {
    const FoldedConv& cv = *w.cv;
    const int n = p.batch;
    memory::desc wmd({cv.cout, cv.cin, cv.kh, cv.kw}, dt::f32, tag::any);
    memory::desc dmd = dst_md ? *dst_md : memory::desc({n, cv.cout, out_hw, out_hw}, dt::f32, ActTag());
    dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct,
                                      src.get_desc(), wmd, w.bias.get_desc(), dmd, {cv.stride, cv.stride},
                                      {cv.pad, cv.pad}, {cv.pad, cv.pad});
    dnnl::convolution_forward::primitive_desc pd(d, Attr(relu, sum), engine_);
    return PushConv(p, w, src, pd, "fp32", dst_role, sizes);
  }

  // The residual add fused into an int8 conv: the conv's result is rounded to its own s8 grid
  // (scale `grid`), rescaled to the destination's scale, and the shortcut (`sum_dt`, read in place from
  // the destination buffer) is added with `sum_scale`.
  struct Residual {
    float grid, sum_scale;
    dt sum_dt;
  };

  // Adds int8 conv `w` (u8 NHWC source of scale w.src_scale) writing `dst_dt` NHWC of scale dst_scale
  // into role dst_role. Returns the dst memory.
  memory AddConvQ(Plan& p, ConvWeights& w, const memory& src, int out_hw, Role dst_role, dt dst_dt,
                  float dst_scale, bool relu, const Residual* res, size_t* sizes) {
    const FoldedConv& cv = *w.cv;
    const int n = p.batch;
    memory::desc wmd({cv.cout, cv.cin, cv.kh, cv.kw}, dt::s8, tag::any);
    memory::desc dmd({n, cv.cout, out_hw, out_hw}, dst_dt, tag::nhwc);
    dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct,
                                      src.get_desc(), wmd, w.bias.get_desc(), dmd, {cv.stride, cv.stride},
                                      {cv.pad, cv.pad}, {cv.pad, cv.pad});
    dnnl::primitive_attr attr = UserScratchpad();
    const float out_scale = res ? res->grid : dst_scale;
    std::vector<float> osc(cv.cout);
    for (int c = 0; c < cv.cout; ++c) osc[c] = (w.src_scale * w.q.w_scale[c]) / out_scale;
    attr.set_output_scales(1 << 1, osc);
    dnnl::post_ops po;
    if (res) {
      po.append_eltwise(1.f, algorithm::eltwise_round, 0.f, 0.f);
      po.append_eltwise(1.f, algorithm::eltwise_clip, -128.f, 127.f);
      po.append_eltwise(1.f, algorithm::eltwise_linear, res->grid / dst_scale, 0.f);
      po.append_sum(res->sum_scale, res->sum_dt == dst_dt ? dt::undef : res->sum_dt);
    }
    if (relu) po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(po);
    dnnl::convolution_forward::primitive_desc pd(d, attr, engine_);
    return PushConv(p, w, src, pd, "int8", dst_role, sizes);
  }

  // A reorder step from -> to (scaled by `scale`, e.g. a quantization).
  void AddReorder(Plan& p, const memory& from, const memory& to, float scale, size_t* sizes) {
    dnnl::primitive_attr attr = UserScratchpad();
    if (scale != 1.f) attr.set_output_scales(0, {scale});
    dnnl::reorder::primitive_desc pd(engine_, from.get_desc(), engine_, to.get_desc(), attr);
    p.steps.push_back({dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to},
                                           {DNNL_ARG_SCRATCHPAD, Bind(p, pd.scratchpad_desc(), kScratch, sizes)}}});
  }

  // Tap `t` taken from `src` right after the last step so far: reordered to float NHWC, x `scale`.
  void AddTap(Plan& p, Tap t, const memory& src, float scale, size_t* sizes) {
    auto shape = TapShape(t);
    memory::desc nhwc({p.batch, shape[2], shape[0], shape[1]}, dt::f32, tag::nhwc);
    dnnl::primitive_attr attr = UserScratchpad();
    if (scale != 1.f) attr.set_output_scales(0, {scale});
    dnnl::reorder::primitive_desc pd(engine_, src.get_desc(), engine_, nhwc, attr);
    TapOut& o = p.taps[(int)t];
    o.scratch = Bind(p, pd.scratchpad_desc(), kScratch, sizes);
    o.after_step = (int)p.steps.size() - 1;
    o.to_nhwc = dnnl::reorder(pd);
    o.src = src;
    o.dst = memory(nhwc, engine_, DNNL_MEMORY_NONE);
  }

  Plan& GetPlan(int batch) {
    auto it = plans_.find(batch);
    if (it != plans_.end()) return *it->second;
    if (plans_.size() >= 8) plans_.erase(plans_.begin());  // bound memory for callers varying batch
    auto plan = std::make_unique<Plan>();
    Build(*plan, batch);
    return *plans_.emplace(batch, std::move(plan)).first->second;
  }

  // conv1 (fp32, + ReLU) and the 3x3/2 max pool, from the caller's NHWC input. Returns the pooled
  // memory (role `pool_role`).
  memory AddStem(Plan& p, Role pool_role, size_t* sizes) {
    const int n = p.batch;
    const FoldedConv& c1 = model_->conv1;
    p.user_in = memory({{n, kInputChannels, kInputSize, kInputSize}, dt::f32, tag::nhwc}, engine_,
                       DNNL_MEMORY_NONE);
    memory::desc any_src({n, kInputChannels, kInputSize, kInputSize}, dt::f32, tag::any);
    memory::desc wmd({c1.cout, c1.cin, c1.kh, c1.kw}, dt::f32, tag::any);
    memory::desc dmd({n, c1.cout, 112, 112}, dt::f32, ActTag());
    dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, any_src,
                                      wmd, convs_[0].bias.get_desc(), dmd, {2, 2}, {3, 3}, {3, 3});
    dnnl::convolution_forward::primitive_desc pd(d, Attr(true, false), engine_);
    Record(p, "fp32", pd);
    memory in = p.user_in;  // conv1 reads the caller's buffer directly when it wants NHWC
    if (pd.src_desc() != p.user_in.get_desc()) {
      in = Bind(p, pd.src_desc(), kIn, sizes);
      AddReorder(p, p.user_in, in, 1.f, sizes);
    }
    memory dst = Bind(p, pd.dst_desc(), kX, sizes);
    p.steps.push_back({dnnl::convolution_forward(pd),
                       {{DNNL_ARG_SRC, in},
                        {DNNL_ARG_WEIGHTS, WeightsFor(convs_[0], pd.weights_desc())},
                        {DNNL_ARG_BIAS, convs_[0].bias},
                        {DNNL_ARG_DST, dst},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, pd.scratchpad_desc(), kScratch, sizes)}}});
    AddTap(p, Tap::kConv1, dst, 1.f, sizes);
    Observe(p, dst, "conv1");
    // ZeroPadding2D(1) + max pool 3x3/2: the input is post-ReLU (>= 0) and every window holds a real
    // pixel, so oneDNN's pad-excluding max equals Keras's zero-pad max.
    dnnl::pooling_forward::desc pdesc(prop_kind::forward_inference, algorithm::pooling_max, dst.get_desc(),
                                      memory::desc({n, 64, 56, 56}, dt::f32, ActTag()), {2, 2}, {3, 3},
                                      {1, 1}, {1, 1});
    dnnl::pooling_forward::primitive_desc ppd(pdesc, UserScratchpad(), engine_);
    memory pooled = Bind(p, ppd.dst_desc(), pool_role, sizes);
    p.steps.push_back({dnnl::pooling_forward(ppd),
                       {{DNNL_ARG_SRC, dst}, {DNNL_ARG_DST, pooled},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, ppd.scratchpad_desc(), kScratch, sizes)}}});
    Observe(p, pooled, "pool1");
    return pooled;
  }

  // 7x7 average pool of `x` (fp32), then fc1000 straight from the pooled layout.
  void AddHead(Plan& p, const memory& x, size_t* sizes) {
    const int n = p.batch;
    dnnl::pooling_forward::desc adesc(prop_kind::forward_inference, algorithm::pooling_avg_exclude_padding,
                                      x.get_desc(), memory::desc({n, 2048, 1, 1}, dt::f32, tag::any),
                                      {1, 1}, {7, 7}, {0, 0}, {0, 0});
    dnnl::pooling_forward::primitive_desc apd(adesc, UserScratchpad(), engine_);
    memory pooled = Bind(p, apd.dst_desc(), kPool, sizes);
    p.steps.push_back({dnnl::pooling_forward(apd),
                       {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, pooled},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, apd.scratchpad_desc(), kScratch, sizes)}}});
    AddTap(p, Tap::kAvgPool, pooled, 1.f, sizes);
    dnnl::inner_product_forward::desc idesc(prop_kind::forward_inference, pooled.get_desc(),
                                            memory::desc({kFcOutputs, 2048, 1, 1}, dt::f32, tag::any),
                                            fc_b_.get_desc(),
                                            memory::desc({n, kFcOutputs}, dt::f32, tag::nc));
    dnnl::inner_product_forward::primitive_desc ipd(idesc, UserScratchpad(), engine_);
    memory fcw = FcWeightsFor(ipd.weights_desc());
    p.logits = Bind(p, ipd.dst_desc(), kLogits, sizes);
    p.steps.push_back({dnnl::inner_product_forward(ipd),
                       {{DNNL_ARG_SRC, pooled}, {DNNL_ARG_WEIGHTS, fcw}, {DNNL_ARG_BIAS, fc_b_},
                        {DNNL_ARG_DST, p.logits},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, ipd.scratchpad_desc(), kScratch, sizes)}}});
    p.logits_step = (int)p.steps.size() - 1;
  }

  void AddStageTaps(Plan& p, int block, const memory& x, float scale, size_t* sizes) {
    for (Tap t : {Tap::kRes2c, Tap::kRes3d, Tap::kRes4f, Tap::kRes5c})
      if (ResNet50Model::BlockIndexOfTap(t) == block) AddTap(p, t, x, scale, sizes);
  }

  void Build(Plan& p, int n) {
    p.batch = n;
    size_t sizes[kRoles] = {};
    if (int8_) {
      BuildInt8(p, sizes);
    } else {
      BuildFp32(p, sizes);
    }
    // Primitives run one at a time, so one scratchpad buffer (the largest need) serves them all.
    for (int r = 0; r < kRoles; ++r) p.buffers[r].Reserve(std::max<size_t>(sizes[r], 64));
    for (auto& b : p.bindings) b.first.set_data_handle(p.buffers[b.second].ptr);
  }

  void BuildFp32(Plan& p, size_t* sizes) {
    memory cur = AddStem(p, kY, sizes);
    Role cur_role = kY;
    int hw = 56;
    size_t ci = 1;
    for (size_t bi = 0; bi < model_->blocks.size(); ++bi) {
      const Bottleneck& b = model_->blocks[bi];
      const int ohw = (hw - 1) / b.a.stride + 1;
      memory t1 = AddConv(p, convs_[ci], cur, ohw, kT1, nullptr, true, false, sizes);
      Observe(p, t1, b.name + "_branch2a");
      memory t2 = AddConv(p, convs_[ci + 1], t1, ohw, kT2, nullptr, true, false, sizes);
      Observe(p, t2, b.name + "_branch2b");
      ConvWeights& wc = convs_[ci + 2];
      Role out_role = cur_role;
      memory shortcut = cur;
      if (b.has_projection) {
        out_role = cur_role == kX ? kY : kX;
        shortcut = AddConv(p, convs_[ci + 3], cur, ohw, out_role, nullptr, false, false, sizes);
        Observe(p, shortcut, b.name + "_branch1");
      }
      memory::desc sd = shortcut.get_desc();
      if (observe_) {
        // Calibration: conv c on its own (its output observed), then shortcut += c, ReLU, in place.
        memory c = AddConv(p, wc, t2, ohw, kC, &sd, false, false, sizes);
        Observe(p, c, b.name + "_branch2c");
        dnnl::binary::desc bd(algorithm::binary_add, sd, sd, sd);
        dnnl::primitive_attr battr = Attr(true, false);
        dnnl::binary::primitive_desc bpd(bd, battr, engine_);
        p.steps.push_back({dnnl::binary(bpd), {{DNNL_ARG_SRC_0, shortcut}, {DNNL_ARG_SRC_1, c},
                                               {DNNL_ARG_DST, shortcut},
                                               {DNNL_ARG_SCRATCHPAD, Bind(p, bpd.scratchpad_desc(), kScratch, sizes)}}});
        cur = shortcut;
        Observe(p, cur, b.name);
      } else {
        // conv c accumulates into the shortcut's buffer: same buffer, same layout.
        cur = AddConv(p, wc, t2, ohw, out_role, &sd, true, true, sizes);
      }
      cur_role = out_role;
      ci += b.has_projection ? 4 : 3;
      hw = ohw;
      AddStageTaps(p, (int)bi, cur, 1.f, sizes);
    }
    AddHead(p, cur, sizes);
  }

  static bool EnvIs(const char* name, const char* value) {
    const char* e = std::getenv(name);
    return e && std::string(e) == value;
  }

  void BuildInt8(Plan& p, size_t* sizes) {
    const int n = p.batch;
    float sx;
    memory cur;
    if (int8_conv1_) {
      // Experiment: conv1 in int8 from the input quantized to s8, max pool in u8.
      p.user_in = memory({{n, kInputChannels, kInputSize, kInputSize}, dt::f32, tag::nhwc}, engine_,
                         DNNL_MEMORY_NONE);
      memory qin = Bind(p, memory::desc({n, kInputChannels, kInputSize, kInputSize}, dt::s8, tag::nhwc), kIn, sizes);
      AddReorder(p, p.user_in, qin, 1.f / Scale("input"), sizes);
      sx = Scale("conv1");
      memory c1 = AddConvQ(p, convs_[0], qin, 112, kX, dt::u8, sx, true, nullptr, sizes);
      AddTap(p, Tap::kConv1, c1, sx, sizes);
      dnnl::pooling_forward::desc pdesc(prop_kind::forward_inference, algorithm::pooling_max, c1.get_desc(),
                                        memory::desc({n, 64, 56, 56}, dt::u8, tag::nhwc), {2, 2}, {3, 3},
                                        {1, 1}, {1, 1});
      dnnl::pooling_forward::primitive_desc ppd(pdesc, UserScratchpad(), engine_);
      cur = Bind(p, ppd.dst_desc(), kY, sizes);
      p.steps.push_back({dnnl::pooling_forward(ppd),
                         {{DNNL_ARG_SRC, c1}, {DNNL_ARG_DST, cur},
                          {DNNL_ARG_SCRATCHPAD, Bind(p, ppd.scratchpad_desc(), kScratch, sizes)}}});
    } else {
      // Stem in fp32, then pool1 quantized to u8 NHWC.
      memory pooled = AddStem(p, kT1, sizes);
      sx = Scale("pool1");
      cur = Bind(p, memory::desc({n, 64, 56, 56}, dt::u8, tag::nhwc), kY, sizes);
      AddReorder(p, pooled, cur, 1.f / sx, sizes);
    }
    Role cur_role = kY;
    int hw = 56;
    size_t ci = 1;
    for (size_t bi = 0; bi < model_->blocks.size(); ++bi) {
      const Bottleneck& b = model_->blocks[bi];
      const int ohw = (hw - 1) / b.a.stride + 1;
      memory t1 = AddConvQ(p, convs_[ci], cur, ohw, kT1, dt::u8, Scale(b.name + "_branch2a"), true, nullptr, sizes);
      memory t2 = AddConvQ(p, convs_[ci + 1], t1, ohw, kT2, dt::u8, Scale(b.name + "_branch2b"), true, nullptr, sizes);
      const float sy = Scale(b.name), sc = Scale(b.name + "_branch2c");
      Role out_role = cur_role;
      if (fused_add_) {
        Residual res{sc, sx / sy, dt::u8};
        if (b.has_projection) {
          out_role = cur_role == kX ? kY : kX;
          const float sp = Scale(b.name + "_branch1");
          AddConvQ(p, convs_[ci + 3], cur, ohw, out_role, dt::s8, sp, false, nullptr, sizes);
          res.sum_scale = sp / sy;
          res.sum_dt = dt::s8;
        }
        cur = AddConvQ(p, convs_[ci + 2], t2, ohw, out_role, dt::u8, sy, true, &res, sizes);
      } else {
        // conv c to its own s8 grid, then relu(c + shortcut) requantized by a binary add.
        memory shortcut = cur;
        float sr = sx;
        if (b.has_projection) {
          sr = Scale(b.name + "_branch1");
          shortcut = AddConvQ(p, convs_[ci + 3], cur, ohw, kP, dt::s8, sr, false, nullptr, sizes);
        }
        memory c = AddConvQ(p, convs_[ci + 2], t2, ohw, kC, dt::s8, sc, false, nullptr, sizes);
        out_role = cur_role == kX ? kY : kX;
        memory out = Bind(p, memory::desc({n, b.c.cout, ohw, ohw}, dt::u8, tag::nhwc), out_role, sizes);
        dnnl::binary::desc bd(algorithm::binary_add, c.get_desc(), shortcut.get_desc(), out.get_desc());
        dnnl::primitive_attr battr = Attr(true, false);
        battr.set_scales(DNNL_ARG_SRC_0, 0, {sc / sy});
        battr.set_scales(DNNL_ARG_SRC_1, 0, {sr / sy});
        dnnl::binary::primitive_desc bpd(bd, battr, engine_);
        p.steps.push_back({dnnl::binary(bpd), {{DNNL_ARG_SRC_0, c}, {DNNL_ARG_SRC_1, shortcut}, {DNNL_ARG_DST, out},
                                               {DNNL_ARG_SCRATCHPAD, Bind(p, bpd.scratchpad_desc(), kScratch, sizes)}}});
        cur = out;
      }
      sx = sy;
      cur_role = out_role;
      ci += b.has_projection ? 4 : 3;
      hw = ohw;
      if ((int)bi + 1 < (int)model_->blocks.size()) AddStageTaps(p, (int)bi, cur, sx, sizes);
    }
    // res5c dequantized once: its tap and the fp32 head read it.
    memory res5c = Bind(p, memory::desc({n, 2048, 7, 7}, dt::f32, tag::nhwc), kT1, sizes);
    AddReorder(p, cur, res5c, sx, sizes);
    AddStageTaps(p, (int)model_->blocks.size() - 1, res5c, 1.f, sizes);
    AddHead(p, res5c, sizes);
  }

  memory FcWeightsFor(const memory::desc& md) {
    for (auto& e : fc_w_)
      if (e.first == md) return e.second;
    memory m(md, engine_);
    dnnl::reorder(fc_w_user_, m).execute(stream_, fc_w_user_, m);
    stream_.wait();
    fc_w_.emplace_back(md, m);
    return m;
  }

  const int threads_;
  const bool int8_, observe_;
  const bool int8_conv1_, fused_add_;  // experiments (LOUPE_INT8_CONV1=1, LOUPE_INT8_ADD=fused)
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::string isa_;
  std::map<std::string, float> scale_;  // int8: tensor name -> quantization step
  std::vector<ConvWeights> convs_;      // conv1, then per block a, b, c, [projection]
  memory fc_w_user_, fc_b_;
  std::vector<std::pair<memory::desc, memory>> fc_w_;
  std::map<int, std::unique_ptr<Plan>> plans_;
  std::mutex mu_;  // one run (or plan build) of this session at a time
  std::shared_ptr<ComputeThread> compute_;
};

int ThreadsFor(int requested) { return requested > 0 ? requested : omp_get_num_procs(); }

}  // namespace

Status CreateOneDnnSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                           std::unique_ptr<Session>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateOneDnnSession: no model");
  const Int8Calibration* calib = nullptr;
  if (opts.precision == Precision::kInt8) {
    if (!opts.int8_calibration)
      return Status(StatusCode::kInvalidArgument, "precision int8 needs an int8 calibration (activation ranges)");
    LOUPE_RETURN_IF_ERROR(ValidateInt8Calibration(*opts.int8_calibration, *model));
    calib = opts.int8_calibration.get();
  } else if (opts.precision != Precision::kFp32) {
    return Status(StatusCode::kInvalidArgument, std::string("the oneDNN backend runs fp32 or int8, not ") +
                                                    PrecisionName(opts.precision));
  }
  try {
    out->reset(new OneDnnSession(std::move(model), ThreadsFor(opts.num_threads), calib, false));
  } catch (const dnnl::error& e) {
    return Status(StatusCode::kInternal, std::string("oneDNN engine creation failed: ") + e.what());
  }
  return Status::Ok();
}

Status CreateOneDnnObservingSession(std::shared_ptr<const ResNet50Model> model, int num_threads,
                                    std::unique_ptr<ObservingSession>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateOneDnnObservingSession: no model");
  try {
    out->reset(new OneDnnSession(std::move(model), ThreadsFor(num_threads), nullptr, true));
  } catch (const dnnl::error& e) {
    return Status(StatusCode::kInternal, std::string("oneDNN engine creation failed: ") + e.what());
  }
  return Status::Ok();
}

void OneDnnBuildInfo(BuildInfo* info) {
  const dnnl_version_t* v = dnnl::version();
  info->onednn_version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  info->onednn_isa = IsaName(dnnl::get_effective_cpu_isa());
  // The kernels oneDNN picks for a res3 3x3 conv at batch 8, as the sessions would create it.
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    const memory::dims src{8, 128, 28, 28}, wei{128, 128, 3, 3}, bias{128};
    {
      dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct,
                                        memory::desc(src, dt::u8, tag::nhwc), memory::desc(wei, dt::s8, tag::any),
                                        memory::desc(bias, dt::f32, tag::x), memory::desc(src, dt::u8, tag::nhwc),
                                        {1, 1}, {1, 1}, {1, 1});
      dnnl::primitive_attr attr;
      attr.set_output_scales(1 << 1, std::vector<float>(128, 0.01f));
      dnnl::post_ops po;
      po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(po);
      info->onednn_int8_kernel = dnnl::convolution_forward::primitive_desc(d, attr, eng).impl_info_str();
    }
    {
      dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct,
                                        memory::desc(src, dt::f32, tag::any), memory::desc(wei, dt::f32, tag::any),
                                        memory::desc(bias, dt::f32, tag::x), memory::desc(src, dt::f32, tag::any),
                                        {1, 1}, {1, 1}, {1, 1});
      info->onednn_fp32_kernel = dnnl::convolution_forward::primitive_desc(d, eng).impl_info_str();
    }
  } catch (const dnnl::error& e) {
    info->onednn_int8_kernel = std::string("unavailable: ") + e.what();
  }
}

}  // namespace internal
}  // namespace loupe
