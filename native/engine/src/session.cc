// Backend choice (CreateSession), option names and build facts.
#include "loupe/session.h"

#include "backends.h"

namespace loupe {

const char* BackendKindName(BackendKind k) {
  switch (k) {
    case BackendKind::kAuto: return "auto";
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "?";
}

bool BackendKindFromName(const std::string& name, BackendKind* out) {
  for (BackendKind k : {BackendKind::kAuto, BackendKind::kCpu, BackendKind::kCuda})
    if (name == BackendKindName(k)) {
      *out = k;
      return true;
    }
  return false;
}

const char* PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
    case Precision::kInt8: return "int8";
  }
  return "?";
}

bool PrecisionFromName(const std::string& name, Precision* out) {
  for (Precision p : {Precision::kFp32, Precision::kBf16, Precision::kFp16, Precision::kInt8})
    if (name == PrecisionName(p)) {
      *out = p;
      return true;
    }
  return false;
}

namespace {

Status CreateCpuSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                        std::unique_ptr<Session>* out) {
  if (opts.precision == Precision::kInt8) {
#ifdef LOUPE_HAVE_ONEDNN
    return internal::CreateOneDnnSession(std::move(model), opts, out);
#else
    return Status(StatusCode::kUnavailable, "precision int8 needs the oneDNN CPU backend (built without oneDNN)");
#endif
  }
  if (opts.precision != Precision::kFp32)
    return Status(StatusCode::kInvalidArgument,
                  std::string("precision ") + PrecisionName(opts.precision) +
                      " is only supported by the CUDA backend; the CPU backend runs fp32 or int8");
#ifdef LOUPE_HAVE_ONEDNN
  return internal::CreateOneDnnSession(std::move(model), opts, out);
#else
  return CreateReferenceSession(std::move(model), opts, out);
#endif
}

}  // namespace

Status CreateSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                     std::unique_ptr<Session>* out) {
  if (!model) return Status(StatusCode::kInvalidArgument, "CreateSession: no model");
  if (opts.num_threads < 0 || opts.max_batch < 1 || opts.device_id < 0)
    return Status(StatusCode::kInvalidArgument,
                  "CreateSession: num_threads must be >= 0, max_batch >= 1, device_id >= 0");
  // int8 is a CPU precision: auto picks the CPU for it, CUDA refuses it.
  if (opts.precision == Precision::kInt8 && opts.backend == BackendKind::kCuda)
    return Status(StatusCode::kInvalidArgument, "precision int8 runs on the CPU backend only (oneDNN)");
  if (opts.precision == Precision::kInt8 && opts.backend == BackendKind::kAuto)
    return CreateCpuSession(std::move(model), opts, out);
  switch (opts.backend) {
    case BackendKind::kCpu:
      return CreateCpuSession(std::move(model), opts, out);
    case BackendKind::kCuda: {
#ifdef LOUPE_HAVE_CUDA
      std::string detail;
      if (!internal::CudaUsable(opts.device_id, &detail))
        return Status(StatusCode::kUnavailable, "CUDA backend unavailable: " + detail);
      return internal::CreateCudaSession(std::move(model), opts, out);
#else
      return Status(StatusCode::kUnavailable,
                    "CUDA backend unavailable: this build has no CUDA support (built without nvcc)");
#endif
    }
    case BackendKind::kAuto: {
#ifdef LOUPE_HAVE_CUDA
      std::string detail;
      if (internal::CudaUsable(opts.device_id, &detail))
        return internal::CreateCudaSession(std::move(model), opts, out);
#endif
      if (opts.precision != Precision::kFp32)
        return Status(StatusCode::kUnavailable,
                      std::string("precision ") + PrecisionName(opts.precision) +
                          " needs a usable CUDA device, and none is available");
      return CreateCpuSession(std::move(model), opts, out);
    }
  }
  return Status(StatusCode::kUnavailable, "unknown backend kind");
}

BuildInfo GetBuildInfo() {
  BuildInfo info;
#ifdef LOUPE_HAVE_ONEDNN
  info.has_onednn = true;
  internal::OneDnnBuildInfo(&info);
#endif
#ifdef LOUPE_HAVE_CUDA
  info.has_cuda = true;
  info.cuda_usable = internal::CudaUsable(0, &info.cuda_detail);
#else
  info.cuda_detail = "built without CUDA";
#endif
  return info;
}

}  // namespace loupe
