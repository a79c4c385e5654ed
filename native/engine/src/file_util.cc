#include "file_util.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace loupe {
namespace internal {

Status FileSize(const std::string& path, uint64_t* size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return Status(StatusCode::kNotFound, "file not found: " + path);
    return Status(StatusCode::kIoError, "cannot stat " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status(StatusCode::kIoError, path + " is not a regular file");
  *size = (uint64_t)st.st_size;
  return Status::Ok();
}

Status ReadWholeFile(const std::string& path, uint64_t max_bytes, std::string* out) {
  uint64_t size = 0;
  LOUPE_RETURN_IF_ERROR(FileSize(path, &size));
  if (size > max_bytes)
    return Status(StatusCode::kCorruptData, path + " is " + std::to_string(size) +
                                                " bytes, more than the limit of " +
                                                std::to_string(max_bytes));
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status(StatusCode::kIoError, "cannot open " + path + ": " + std::strerror(errno));
  out->resize(size);
  size_t got = size ? std::fread(&(*out)[0], 1, size, f) : 0;
  bool err = std::ferror(f);
  std::fclose(f);
  if (err || got != size)
    return Status(StatusCode::kIoError, "short read on " + path + ": got " + std::to_string(got) +
                                            " of " + std::to_string(size) + " bytes");
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status(StatusCode::kIoError, "cannot create " + tmp + ": " + std::strerror(errno));
  size_t put = data.empty() ? 0 : std::fwrite(data.data(), 1, data.size(), f);
  bool ok = put == data.size() && std::fflush(f) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError, "write to " + tmp + " failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError, "cannot rename " + tmp + " to " + path + ": " +
                                            std::strerror(errno));
  }
  return Status::Ok();
}

std::string DirName(const std::string& path) {
  size_t p = path.find_last_of('/');
  if (p == std::string::npos) return "";
  return p == 0 ? "/" : path.substr(0, p);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace internal
}  // namespace loupe
