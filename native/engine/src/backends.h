// Internal: factories of the concrete backends. CreateSession (session.cc) is the only caller.
#pragma once
#include <memory>
#include <string>

#include "loupe/session.h"

namespace loupe {
namespace internal {

#ifdef LOUPE_HAVE_ONEDNN
Status CreateOneDnnSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                           std::unique_ptr<Session>* out);
#endif

#ifdef LOUPE_HAVE_CUDA
// True when a CUDA device and a loadable cuDNN 9 exist; `detail` says the device or why not.
bool CudaUsable(int device_id, std::string* detail);
Status CreateCudaSession(std::shared_ptr<const ResNet50Model> model, const SessionOptions& opts,
                         std::unique_ptr<Session>* out);
#endif

}  // namespace internal
}  // namespace loupe
