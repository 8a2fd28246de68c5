// Plain path operations for files their callers own (sweep dirs, MLflow stores, a tool's
// cache). Work on directories other users can reach goes through lib/stage/fs.hpp's
// fd-relative calls instead.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// The first regular file named `program` in `dirs` that the effective ids may execute;
// empty entries (PATH's "::", meaning the working directory) are skipped.
std::optional<std::string> find_program(const std::string& program, const std::vector<std::string>& dirs);

// Where a program that ships beside the plugin is: in a build tree, tools/NAME next to
// plugin/ (libtool keeps the module in plugin/.libs); then `installed_path`.
std::vector<std::string> helper_program_candidates(const std::string& plugin_path, const std::string& name,
                                                   const std::string& installed_path);

// Opens an absolute directory that root trusts, as sshd's StrictModes checks a path:
// walked from / one component at a time with openat(O_NOFOLLOW), so no symlink is
// followed; each directory must be owned by root and writable by no one else. A
// world-writable ancestor is allowed only with the sticky bit (/tmp), where no one but
// its owner can rename or remove the root-owned directory below it; the directory itself
// never may be world-writable, sticky or not, since users could create names in it. With `create`,
// missing components are made (root, `mode`) the same way. Throws aihpc::Error naming
// the directory at fault and what to do. Needs euid 0 to create.
int open_root_owned_dir(const std::string& path, bool create, mode_t mode, std::string_view what);

}  // namespace aihpc
