// Internal: factories of the concrete backends. CreateSession (session.cc) is the only caller.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "loupe/session.h"

namespace loupe {
namespace internal {

#ifdef LOUPE_HAVE_ONEDNN
// fp32, or int8 from opts.int8_calibration (validated by the caller).
Status CreateOneDnnSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                           std::unique_ptr<Session>* out);

// Calibration: an fp32 network that shows its activations. The observer runs on the compute thread
// (inside its OpenMP context) once per tensor of Int8TensorNames(), right after the layer that produced
// it, with the whole batch (data in oneDNN's layout: every element once, in no particular order).
using ActivationObserver = std::function<void(const std::string& name, const float* data, size_t count)>;
class ObservingSession {
 public:
  virtual ~ObservingSession() = default;
  virtual Status RunObserved(const float* input, int batch, const ActivationObserver& observer,
                             const std::atomic<bool>* cancel) = 0;
};
Status CreateOneDnnObservingSession(std::shared_ptr<const ResNet50Model> model, int num_threads,
                                    std::unique_ptr<ObservingSession>* out);

// Fills BuildInfo's onednn_* fields (version, ISA, the kernels picked for representative convs).
void OneDnnBuildInfo(BuildInfo* info);
#endif

#ifdef LOUPE_HAVE_CUDA
// True when a CUDA device and a loadable cuDNN 9 exist; `detail` says the device or why not.
bool CudaUsable(int device_id, std::string* detail);
Status CreateCudaSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                         std::unique_ptr<Session>* out);
#endif

}  // namespace internal
}  // namespace loupe
