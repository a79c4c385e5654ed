// Internal: whole-file and sized reads with Status errors that name the file.
#pragma once
#include <cstdint>
#include <string>

#include "loupe/status.h"

namespace loupe {
namespace internal {

// Size of a regular file: NotFound if missing, IoError if unreadable or not a regular file.
Status FileSize(const std::string& path, uint64_t* size);
// Reads a whole file (at most max_bytes, else CorruptData "too large").
Status ReadWholeFile(const std::string& path, uint64_t max_bytes, std::string* out);
// Writes via a temp file + rename so a crash never leaves a half-written file under `path`.
Status WriteFileAtomically(const std::string& path, const std::string& data);
// Directory part of a path ("" for a bare file name) and a join that keeps relative paths relative.
std::string DirName(const std::string& path);
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace internal
}  // namespace loupe
