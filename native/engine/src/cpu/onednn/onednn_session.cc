// The fast CPU backend on oneDNN 2.x. Per batch size a Plan holds the primitives, built once:
//  - activations stay in the layouts oneDNN picks (format_tag::any) from conv1 to fc1000: the only
//    reorders are the input (NHWC -> conv1's layout, none when conv1 takes NHWC, as brgconv does) and
//    the taps a caller asks for (-> NHWC);
//  - BN is already folded; ReLU is an eltwise post-op; the residual add is a `sum` post-op: the last
//    conv of a block accumulates into the shortcut buffer (in place for identity blocks);
//  - weights are reordered once per layout and shared by every plan that wants that layout;
//  - one user-mode scratchpad and a few activation buffers per plan, reused by every run.
// LOUPE_ONEDNN_LAYOUT=nhwc|blocked overrides oneDNN's activation layout choice (tuning experiments).
// Debian's libdnnl uses OpenMP, whose thread team belongs to the thread that opens the parallel
// region. Run() may be called from any thread (the binding calls from whichever libuv pool thread is
// free), and every new calling thread means another team whose threads must wake up and warm their
// caches: measured +12% at batch 1 when runs hop between 4 pool threads. So each session computes on
// one thread of its own (its OpenMP master, ICV set once); Run() hands it the request and waits.
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <oneapi/dnnl/dnnl.hpp>

#include "../cpu_layers.h"
#include "backends.h"

namespace loupe {
namespace internal {

namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

// 64-byte aligned float buffer (oneDNN's jit kernels prefer aligned activations).
struct AlignedBuffer {
  float* ptr = nullptr;
  size_t bytes = 0;
  void Reserve(size_t n) {
    if (n <= bytes) return;
    std::free(ptr);
    bytes = (n + 63) / 64 * 64;
    ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
  }
  ~AlignedBuffer() { std::free(ptr); }
};

// A conv's user-side weights and the reordered copies, one per layout some plan asked for.
struct ConvWeights {
  const FoldedConv* cv = nullptr;
  std::vector<std::pair<memory::desc, memory>> by_layout;
  memory bias;
};

// Activation buffer roles inside a plan; memories of different layouts can share one role.
enum Role { kIn, kX, kY, kT1, kT2, kPool, kLogits, kScratch, kRoles };

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

struct Plan {
  int batch = 0;
  memory user_in;                      // NHWC input, handle = the caller's pointer
  std::vector<Step> steps;
  TapOut taps[(int)Tap::kCount];       // kFc1000 / kProbabilities are read from `logits`
  int logits_step = -1;
  memory logits;                       // [batch][1000], nc
  AlignedBuffer buffers[kRoles];
  std::vector<std::pair<memory, Role>> bindings;  // memories whose handle is a role buffer
};

class OneDnnSession : public Session {
 public:
  OneDnnSession(std::shared_ptr<const ResNet50Model> m, int threads)
      : Session(std::move(m)), threads_(threads), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    auto add = [&](const FoldedConv& cv) {
      ConvWeights w;
      w.cv = &cv;
      w.bias = memory({{cv.cout}, dt::f32, tag::x}, engine_, const_cast<float*>(cv.bias.data()));
      convs_.push_back(std::move(w));
    };
    add(model_->conv1);
    for (const auto& b : model_->blocks) {
      add(b.a);
      add(b.b);
      add(b.c);
      if (b.has_projection) add(b.projection);
    }
    fc_w_user_ = memory({{kFcOutputs, 2048, 1, 1}, dt::f32, tag::hwio}, engine_,
                        const_cast<float*>(model_->fc_w.data()));
    fc_b_ = memory({{kFcOutputs}, dt::f32, tag::x}, engine_, const_cast<float*>(model_->fc_b.data()));
    const char* isa = "";
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
      case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
      case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
      case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
      case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
      case dnnl::cpu_isa::avx2: isa = "avx2"; break;
      default: isa = "generic"; break;
    }
    isa_ = isa;
  }

  std::string backend_name() const override { return "cpu-onednn"; }
  std::string device_name() const override {
    return "cpu (" + std::to_string(threads_) + " threads, oneDNN " + isa_ + ")";
  }

  ~OneDnnSession() override {
    {
      std::lock_guard<std::mutex> l(job_mu_);
      stop_ = true;
    }
    job_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  Status Run(const RunRequest& req, RunResult* out) override {
    LOUPE_RETURN_IF_ERROR(ValidateRequest(req));
    std::lock_guard<std::mutex> lock(mu_);  // one run at a time per session
    Status st;
    OnWorker([&] {
      try {
        st = RunLocked(req, out);
      } catch (const dnnl::error& e) {
        st = Status(StatusCode::kInternal, std::string("oneDNN: ") + e.what());
      } catch (const std::bad_alloc&) {
        st = Status(StatusCode::kInternal, "oneDNN backend: out of memory");
      }
    });
    return st;
  }

 private:
  // Runs `fn` on the session's compute thread (started on first use) and waits for it.
  void OnWorker(const std::function<void()>& fn) {
    std::unique_lock<std::mutex> l(job_mu_);
    if (!worker_.joinable()) worker_ = std::thread([this] { WorkerLoop(); });
    job_ = &fn;
    job_cv_.notify_all();
    done_cv_.wait(l, [&] { return job_ == nullptr; });
  }
  void WorkerLoop() {
    omp_set_num_threads(threads_);
    std::unique_lock<std::mutex> l(job_mu_);
    for (;;) {
      job_cv_.wait(l, [&] { return stop_ || job_ != nullptr; });
      if (job_ == nullptr) return;  // stop_ and nothing left to run
      const std::function<void()>* fn = job_;
      l.unlock();
      (*fn)();
      l.lock();
      job_ = nullptr;
      done_cv_.notify_all();
    }
  }

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

  // --- plan building ---
  // Activation layout: oneDNN's choice unless LOUPE_ONEDNN_LAYOUT says otherwise.
  static tag ActTag() {
    static const char* e = std::getenv("LOUPE_ONEDNN_LAYOUT");
    if (e && std::string(e) == "blocked") return tag::nChw16c;
    if (e && std::string(e) == "nhwc") return tag::nhwc;
    return tag::any;
  }

  dnnl::primitive_attr Attr(bool relu, bool sum) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
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
    memory user({{cv.cout, cv.cin, cv.kh, cv.kw}, dt::f32, tag::hwio}, engine_,
                const_cast<float*>(cv.w_hwio.data()));
    memory m(md, engine_);
    dnnl::reorder(user, m).execute(stream_, user, m);
    stream_.wait();
    w.by_layout.emplace_back(md, m);
    return m;
  }

  // Adds conv `w` reading `src` (fixed layout) and writing role `dst_role` (layout `dst_md`, or
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

  void AddTap(Plan& p, Tap t, const memory& src, size_t* sizes) {
    auto shape = TapShape(t);
    memory::desc nhwc({p.batch, shape[2], shape[0], shape[1]}, dt::f32, tag::nhwc);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
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

  void Build(Plan& p, int n) {
    p.batch = n;
    size_t sizes[kRoles] = {};
    // Input: the caller's NHWC buffer reordered into whatever conv1 prefers.
    const FoldedConv& c1 = model_->conv1;
    p.user_in = memory({{n, kInputChannels, kInputSize, kInputSize}, dt::f32, tag::nhwc}, engine_,
                       DNNL_MEMORY_NONE);
    {
      memory::desc any_src({n, kInputChannels, kInputSize, kInputSize}, dt::f32, tag::any);
      memory::desc wmd({c1.cout, c1.cin, c1.kh, c1.kw}, dt::f32, tag::any);
      memory::desc dmd({n, c1.cout, 112, 112}, dt::f32, ActTag());
      dnnl::convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, any_src,
                                        wmd, convs_[0].bias.get_desc(), dmd, {2, 2}, {3, 3}, {3, 3});
      dnnl::convolution_forward::primitive_desc pd(d, Attr(true, false), engine_);
      memory in = p.user_in;  // conv1 reads the caller's buffer directly when it wants NHWC
      if (pd.src_desc() != p.user_in.get_desc()) {
        in = Bind(p, pd.src_desc(), kIn, sizes);
        dnnl::primitive_attr rattr;
        rattr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::reorder::primitive_desc rpd(engine_, p.user_in.get_desc(), engine_, pd.src_desc(), rattr);
        p.steps.push_back({dnnl::reorder(rpd), {{DNNL_ARG_FROM, p.user_in}, {DNNL_ARG_TO, in},
                                                {DNNL_ARG_SCRATCHPAD, Bind(p, rpd.scratchpad_desc(), kScratch, sizes)}}});
      }
      memory dst = Bind(p, pd.dst_desc(), kX, sizes);
      p.steps.push_back({dnnl::convolution_forward(pd),
                         {{DNNL_ARG_SRC, in},
                          {DNNL_ARG_WEIGHTS, WeightsFor(convs_[0], pd.weights_desc())},
                          {DNNL_ARG_BIAS, convs_[0].bias},
                          {DNNL_ARG_DST, dst},
                          {DNNL_ARG_SCRATCHPAD, Bind(p, pd.scratchpad_desc(), kScratch, sizes)}}});
      AddTap(p, Tap::kConv1, dst, sizes);
      // ZeroPadding2D(1) + max pool 3x3/2: the input is post-ReLU (>= 0) and every window holds a real
      // pixel, so oneDNN's pad-excluding max equals Keras's zero-pad max.
      dnnl::pooling_forward::desc pdesc(prop_kind::forward_inference, algorithm::pooling_max, dst.get_desc(),
                                        memory::desc({n, 64, 56, 56}, dt::f32, tag::any), {2, 2}, {3, 3},
                                        {1, 1}, {1, 1});
      dnnl::primitive_attr pattr;
      pattr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::pooling_forward::primitive_desc ppd(pdesc, pattr, engine_);
      memory pooled = Bind(p, ppd.dst_desc(), kY, sizes);
      p.steps.push_back({dnnl::pooling_forward(ppd),
                         {{DNNL_ARG_SRC, dst}, {DNNL_ARG_DST, pooled},
                          {DNNL_ARG_SCRATCHPAD, Bind(p, ppd.scratchpad_desc(), kScratch, sizes)}}});
      cur_ = pooled;
    }
    Role cur_role = kY;
    int hw = 56;
    size_t ci = 1;
    for (size_t bi = 0; bi < model_->blocks.size(); ++bi) {
      const Bottleneck& b = model_->blocks[bi];
      const int ohw = (hw - 1) / b.a.stride + 1;
      memory t1 = AddConv(p, convs_[ci], cur_, ohw, kT1, nullptr, true, false, sizes);
      memory t2 = AddConv(p, convs_[ci + 1], t1, ohw, kT2, nullptr, true, false, sizes);
      ConvWeights& wc = convs_[ci + 2];
      if (b.has_projection) {
        Role other = cur_role == kX ? kY : kX;
        memory sc = AddConv(p, convs_[ci + 3], cur_, ohw, other, nullptr, false, false, sizes);
        memory::desc scd = sc.get_desc();
        // conv c accumulates into the projection's output: same buffer, same layout.
        memory out = AddConv(p, wc, t2, ohw, other, &scd, true, true, sizes);
        cur_ = out;
        cur_role = other;
        ci += 4;
      } else {
        memory::desc xd = cur_.get_desc();
        memory out = AddConv(p, wc, t2, ohw, cur_role, &xd, true, true, sizes);
        cur_ = out;
        ci += 3;
      }
      hw = ohw;
      for (Tap t : {Tap::kRes2c, Tap::kRes3d, Tap::kRes4f, Tap::kRes5c})
        if (ResNet50Model::BlockIndexOfTap(t) == (int)bi) AddTap(p, t, cur_, sizes);
    }
    // Head: 7x7 average pool, then fc1000 straight from the pooled (blocked) layout.
    dnnl::primitive_attr hattr;
    hattr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::pooling_forward::desc adesc(prop_kind::forward_inference, algorithm::pooling_avg_exclude_padding,
                                      cur_.get_desc(), memory::desc({n, 2048, 1, 1}, dt::f32, tag::any),
                                      {1, 1}, {7, 7}, {0, 0}, {0, 0});
    dnnl::pooling_forward::primitive_desc apd(adesc, hattr, engine_);
    memory pooled = Bind(p, apd.dst_desc(), kPool, sizes);
    p.steps.push_back({dnnl::pooling_forward(apd),
                       {{DNNL_ARG_SRC, cur_}, {DNNL_ARG_DST, pooled},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, apd.scratchpad_desc(), kScratch, sizes)}}});
    AddTap(p, Tap::kAvgPool, pooled, sizes);
    dnnl::inner_product_forward::desc idesc(prop_kind::forward_inference, pooled.get_desc(),
                                            memory::desc({kFcOutputs, 2048, 1, 1}, dt::f32, tag::any),
                                            fc_b_.get_desc(),
                                            memory::desc({n, kFcOutputs}, dt::f32, tag::nc));
    dnnl::inner_product_forward::primitive_desc ipd(idesc, hattr, engine_);
    memory fcw = FcWeightsFor(ipd.weights_desc());
    p.logits = Bind(p, ipd.dst_desc(), kLogits, sizes);
    p.steps.push_back({dnnl::inner_product_forward(ipd),
                       {{DNNL_ARG_SRC, pooled}, {DNNL_ARG_WEIGHTS, fcw}, {DNNL_ARG_BIAS, fc_b_},
                        {DNNL_ARG_DST, p.logits},
                        {DNNL_ARG_SCRATCHPAD, Bind(p, ipd.scratchpad_desc(), kScratch, sizes)}}});
    p.logits_step = (int)p.steps.size() - 1;
    // Primitives run one at a time, so one scratchpad buffer (the largest need) serves them all.
    for (int r = 0; r < kRoles; ++r) p.buffers[r].Reserve(std::max<size_t>(sizes[r], 64));
    for (auto& b : p.bindings) b.first.set_data_handle(p.buffers[b.second].ptr);
    cur_ = memory();
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
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::string isa_;
  std::vector<ConvWeights> convs_;  // conv1, then per block a, b, c, [projection]
  memory fc_w_user_, fc_b_;
  std::vector<std::pair<memory::desc, memory>> fc_w_;
  std::map<int, std::unique_ptr<Plan>> plans_;
  memory cur_;  // only used while building a plan
  std::mutex mu_;
  // The compute thread and its one-slot job hand-off (guarded by job_mu_).
  std::thread worker_;
  std::mutex job_mu_;
  std::condition_variable job_cv_, done_cv_;
  const std::function<void()>* job_ = nullptr;
  bool stop_ = false;
};

}  // namespace

Status CreateOneDnnSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                           std::unique_ptr<Session>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateOneDnnSession: no model");
  if (opts.precision != Precision::kFp32)
    return Status(StatusCode::kInvalidArgument, "the oneDNN backend runs fp32 only");
  const int threads = opts.num_threads > 0 ? opts.num_threads : omp_get_num_procs();
  try {
    out->reset(new OneDnnSession(std::move(model), threads));
  } catch (const dnnl::error& e) {
    return Status(StatusCode::kInternal, std::string("oneDNN engine creation failed: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace internal
}  // namespace loupe
