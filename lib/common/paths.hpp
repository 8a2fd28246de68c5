// Plain path operations for files their callers own (sweep dirs, MLflow stores, a tool's
// cache). Work on directories other users can reach goes through lib/stage/fs.hpp's
// fd-relative calls instead.
#pragma once
#include <sys/types.h>

#include <string>
#include <string_view>

namespace aihpc {

// mkdir: creates `path` with `mode` (less the umask); a directory already there is fine.
// Throws aihpc::SystemError "cannot create WHAT PATH".
void make_directory(const std::string& path, mode_t mode = 0777, std::string_view what = "directory");

// mkdir -p: creates `path` and each missing parent with `mode` (less the umask); a
// directory already there is fine. Throws aihpc::SystemError "cannot create WHAT PATH"
// naming the first one that could not be made.
void make_directories(const std::string& path, mode_t mode = 0777, std::string_view what = "directory");

// Whether something exists at `path`, following symlinks.
bool path_exists(const std::string& path);

}  // namespace aihpc
