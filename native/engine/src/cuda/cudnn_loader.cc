// dlopen()s cuDNN 9 at run time: the build needs no cuDNN, and a machine without it stays CPU-only.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/cudnn_api.h"

namespace loupe {
namespace cudnn {
namespace {

constexpr const char* kSoname = "libcudnn.so.9";

std::string EnvStr(const char* k) {
  const char* v = std::getenv(k);
  return v ? std::string(v) : std::string();
}

std::string Dirname(const std::string& p) {
  size_t s = p.find_last_of('/');
  return s == std::string::npos ? std::string() : p.substr(0, s);
}

// cuDNN 9's libcudnn.so.9 is a shim that dlopen()s its sub-libraries by soname when first needed. When we
// opened it from an explicit folder that is not on LD_LIBRARY_PATH (which the process reads only at
// start), preload the sub-libraries from the same folder: the loader then matches them by soname.
void PreloadSublibraries(const std::string& dir) {
  static const char* kSubs[] = {"libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9",
                                "libcudnn_adv.so.9", "libcudnn_engines_precompiled.so.9",
                                "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9"};
  for (const char* s : kSubs) {
    std::string p = dir + "/" + s;
    // Best effort: a missing one (or one whose own dependencies are missing) surfaces later as a
    // cudnnCreate / convolution status naming the sub-library, which is a clearer message than ours.
    (void)dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
  }
}

struct Loaded {
  Api api;
  const Api* ok = nullptr;
  std::string why;
};

Loaded* DoLoad() {
  auto* L = new Loaded();  // never freed: the library stays loaded for the life of the process
  std::vector<std::string> candidates;
  std::string env_lib = EnvStr("LOUPE_CUDNN_LIB");
  if (!env_lib.empty()) {
    candidates.push_back(env_lib);                   // the library file itself
    candidates.push_back(env_lib + "/" + kSoname);   // or the folder holding it
  }
  std::string root = EnvStr("CUDNN_ROOT");
  if (!root.empty()) {
    candidates.push_back(root + "/lib/" + kSoname);
    candidates.push_back(root + "/lib64/" + kSoname);
  }
  candidates.push_back(kSoname);  // default search: LD_LIBRARY_PATH, rpath, ld.so.cache

  void* h = nullptr;
  std::string tried;
  for (const std::string& c : candidates) {
    dlerror();
    h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      L->api.path = c;
      break;
    }
    const char* e = dlerror();
    tried += "\n  " + c + ": " + (e ? e : "not found");
  }
  if (!h) {
    L->why = std::string("cuDNN 9 not found (set LOUPE_CUDNN_LIB or CUDNN_ROOT, or put ") + kSoname +
             " on LD_LIBRARY_PATH); tried:" + tried;
    return L;
  }
  if (L->api.path.find('/') != std::string::npos) PreloadSublibraries(Dirname(L->api.path));

#define LOUPE_CUDNN_RESOLVE_REQUIRED(name)                                                    \
  dlerror();                                                                                  \
  L->api.name = reinterpret_cast<PFN_##name>(dlsym(h, #name));                                \
  if (!L->api.name) {                                                                         \
    L->why = std::string("cuDNN library ") + L->api.path + " lacks the function " #name        \
             " (not a cuDNN 9 legacy-API build?)";                                            \
    return L;                                                                                 \
  }
  LOUPE_CUDNN_REQUIRED_FUNCTIONS(LOUPE_CUDNN_RESOLVE_REQUIRED)
#undef LOUPE_CUDNN_RESOLVE_REQUIRED
#define LOUPE_CUDNN_RESOLVE_OPTIONAL(name) \
  L->api.name = reinterpret_cast<PFN_##name>(dlsym(h, #name));
  LOUPE_CUDNN_OPTIONAL_FUNCTIONS(LOUPE_CUDNN_RESOLVE_OPTIONAL)
#undef LOUPE_CUDNN_RESOLVE_OPTIONAL
  dlerror();

  L->api.version = L->api.cudnnGetVersion();
  if (L->api.version < 90000 || L->api.version >= 100000) {
    L->why = "cuDNN at " + L->api.path + " reports version " + std::to_string(L->api.version) +
             ": the CUDA backend needs cuDNN 9.x";
    return L;
  }
  L->ok = &L->api;
  return L;
}

}  // namespace

const Api* LoadCudnn(std::string* why) {
  static Loaded* loaded = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { loaded = DoLoad(); });
  if (!loaded->ok && why) *why = loaded->why;
  return loaded->ok;
}

std::string CudnnErrorText(const Api& api, const char* call, cudnnStatus_t st) {
  std::string s = std::string(call) + " failed: ";
  const char* name = api.cudnnGetErrorString ? api.cudnnGetErrorString(st) : nullptr;
  s += name ? name : "cuDNN error";
  s += " (" + std::to_string(static_cast<int>(st)) + ")";
  if (api.cudnnGetLastErrorString) {
    char buf[512] = {0};
    api.cudnnGetLastErrorString(buf, sizeof(buf));
    buf[sizeof(buf) - 1] = '\0';
    if (buf[0]) s += std::string(": ") + buf;
  }
  return s;
}

}  // namespace cudnn
}  // namespace loupe
