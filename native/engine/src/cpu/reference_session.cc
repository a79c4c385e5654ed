// The reference CPU backend: straightforward layer-by-layer NHWC ResNet-50 (im2col + blocked SGEMM),
// the oracle for the fast backends and the CPU fallback when oneDNN is not compiled in.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "conv_gemm.h"
#include "cpu_layers.h"
#include "loupe/session.h"

namespace loupe {

namespace {

using internal::ConvArgs;
using internal::PackedConv;

constexpr int kChunk = 8;  // images per pass: bounds the activation memory (~11 MB per image)

struct PackedBlock {
  PackedConv a, b, c, projection;
};

class ReferenceSession : public Session {
 public:
  ReferenceSession(std::shared_ptr<const ResNet50Model> m, int threads) : Session(std::move(m)), threads_(threads) {
    internal::PackConv(model_->conv1, &conv1_);
    blocks_.resize(model_->blocks.size());
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Bottleneck& b = model_->blocks[i];
      internal::PackConv(b.a, &blocks_[i].a);
      internal::PackConv(b.b, &blocks_[i].b);
      internal::PackConv(b.c, &blocks_[i].c);
      if (b.has_projection) internal::PackConv(b.projection, &blocks_[i].projection);
    }
  }

  std::string backend_name() const override { return "cpu-reference"; }
  std::string device_name() const override {
    return "cpu (" + std::to_string(threads_) + " threads)";
  }

  Status Run(const RunRequest& req, RunResult* out) override {
    LOUPE_RETURN_IF_ERROR(internal::ValidateRequest(req));
    std::lock_guard<std::mutex> lock(mu_);
    out->outputs.assign(req.taps.size(), {});
    for (size_t i = 0; i < req.taps.size(); ++i)
      out->outputs[i].resize((size_t)req.batch * TapElements(req.taps[i]));
    if (req.taps.empty()) return Status::Ok();
    const Tap deepest = *std::max_element(req.taps.begin(), req.taps.end());
    for (int b0 = 0; b0 < req.batch; b0 += kChunk) {
      LOUPE_RETURN_IF_ERROR(RunChunk(req, b0, std::min(kChunk, req.batch - b0), deepest, out));
    }
    return Status::Ok();
  }

 private:
  static bool Cancelled(const RunRequest& r) {
    return r.cancel && r.cancel->load(std::memory_order_relaxed);
  }
  static Status CancelledStatus() { return Status(StatusCode::kCancelled, "run cancelled"); }

  // Copies tap `t` of images [b0, b0+n) out of `src` (n x TapElements floats) for every request of it.
  static void Emit(const RunRequest& req, Tap t, int b0, int n, const float* src, RunResult* out) {
    const size_t per = (size_t)TapElements(t);
    for (size_t i = 0; i < req.taps.size(); ++i)
      if (req.taps[i] == t) std::memcpy(out->outputs[i].data() + b0 * per, src, n * per * sizeof(float));
  }

  Status RunChunk(const RunRequest& req, int b0, int n, Tap deepest, RunResult* out) {
    const size_t per_image = 112 * 112 * 64;  // the largest activation (conv1, res2 outputs)
    for (auto* buf : {&p_, &q_, &s_, &t1_, &t2_})
      if (buf->size() < per_image * n) buf->resize(per_image * n);
    if (Cancelled(req)) return CancelledStatus();

    ConvArgs a;
    a.threads = threads_;
    a.batch = n;
    a.in = req.input + (size_t)b0 * kInputSize * kInputSize * kInputChannels;
    a.h = a.w = kInputSize;
    a.out = p_.data();
    internal::RunConv(conv1_, a);
    Emit(req, Tap::kConv1, b0, n, p_.data(), out);
    if (deepest == Tap::kConv1) return Status::Ok();

    int h = 56, c = 64;
    internal::MaxPool3x3s2Pad1(p_.data(), n, 112, 112, 64, q_.data(), threads_);
    float* x = q_.data();  // current activation; blocks alternate between q_ and p_
    float* y = p_.data();
    for (size_t bi = 0; bi < blocks_.size(); ++bi) {
      if (Cancelled(req)) return CancelledStatus();
      const Bottleneck& mb = model_->blocks[bi];
      const PackedBlock& pb = blocks_[bi];
      const int s = mb.a.stride, oh = internal::ConvOutSize(h, 1, s, 0);
      ConvArgs ca = a;
      ca.in = x; ca.h = ca.w = h; ca.out = t1_.data();
      internal::RunConv(pb.a, ca);
      ConvArgs cb = a;
      cb.in = t1_.data(); cb.h = cb.w = oh; cb.out = t2_.data();
      internal::RunConv(pb.b, cb);
      const float* shortcut = x;
      if (mb.has_projection) {
        ConvArgs cp = a;
        cp.in = x; cp.h = cp.w = h; cp.out = s_.data(); cp.relu = false;
        internal::RunConv(pb.projection, cp);
        shortcut = s_.data();
      }
      ConvArgs cc = a;
      cc.in = t2_.data(); cc.h = cc.w = oh; cc.out = y; cc.residual = shortcut;
      internal::RunConv(pb.c, cc);
      std::swap(x, y);
      h = oh;
      c = mb.c.cout;
      for (Tap t : {Tap::kRes2c, Tap::kRes3d, Tap::kRes4f, Tap::kRes5c})
        if (ResNet50Model::BlockIndexOfTap(t) == (int)bi) {
          Emit(req, t, b0, n, x, out);
          if (deepest == t) return Status::Ok();
        }
    }
    if (Cancelled(req)) return CancelledStatus();
    // Head: global average pool, fc1000, softmax (double accumulation: this is the oracle).
    std::vector<float> pool((size_t)n * c), logits((size_t)n * internal::kFcOutputs),
        probs((size_t)n * internal::kFcOutputs);
    internal::GlobalAvgPool(x, n, h * h, c, pool.data());
    Emit(req, Tap::kAvgPool, b0, n, pool.data(), out);
    if (deepest == Tap::kAvgPool) return Status::Ok();
    internal::Dense(pool.data(), n, model_->fc_w.data(), model_->fc_b.data(), c, internal::kFcOutputs,
                    logits.data(), threads_);
    Emit(req, Tap::kFc1000, b0, n, logits.data(), out);
    if (deepest == Tap::kFc1000) return Status::Ok();
    internal::Softmax(logits.data(), n, internal::kFcOutputs, probs.data());
    Emit(req, Tap::kProbabilities, b0, n, probs.data(), out);
    return Status::Ok();
  }

  const int threads_;
  PackedConv conv1_;
  std::vector<PackedBlock> blocks_;
  std::mutex mu_;
  std::vector<float> p_, q_, s_, t1_, t2_;  // activation buffers, reused across runs
};

}  // namespace

Status CreateReferenceSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                              std::unique_ptr<Session>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateReferenceSession: no model");
  if (opts.num_threads < 0) return Status(StatusCode::kInvalidArgument, "num_threads must be >= 0");
  if (opts.precision != Precision::kFp32)
    return Status(StatusCode::kInvalidArgument, "the reference backend runs fp32 only");
  int threads = opts.num_threads > 0 ? opts.num_threads : omp_get_num_procs();
  out->reset(new ReferenceSession(std::move(model), threads));
  return Status::Ok();
}

}  // namespace loupe
