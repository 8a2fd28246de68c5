// File-system primitives of the staging engine, all relative to an open directory and
// none following a symlink, so that a path swapped under us cannot redirect a copy, a
// removal or a permission change.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/fd.hpp"

namespace aihpc::stage {

// Opens `relative` below dir_fd, refusing any symlink on the way and any escape by "..":
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), or a per-component O_NOFOLLOW walk
// where the kernel lacks openat2. Returns -1 with errno set; never throws.
int open_beneath(int dir_fd, const std::string& relative, int flags, mode_t mode = 0);

// As open_beneath, throwing aihpc::SystemError naming shown_path.
UniqueFd open_beneath_or_throw(int dir_fd, const std::string& relative, int flags,
                               const std::string& shown_path, mode_t mode = 0);

// Opens an existing directory by absolute or cwd-relative path (O_DIRECTORY, O_CLOEXEC).
UniqueFd open_dir(const std::string& path);

// mkdirat unless present; then opens it with O_NOFOLLOW and checks it is a directory.
UniqueFd ensure_dir_at(int parent_fd, const std::string& name, mode_t mode, const std::string& shown_path);

// The names in one directory, sorted bytewise, without "." and "..": read with
// getdents64 in large batches into one buffer, with no allocation per name. Every scan,
// listing check and removal of the engine lists directories through it.
class DirectoryNames {
public:
    // Lists the directory open as dir_fd, reading its position to the end. Throws
    // aihpc::SystemError naming shown_path.
    DirectoryNames(int dir_fd, const std::string& shown_path);

    std::size_t size() const { return names_.size(); }
    std::string_view operator[](std::size_t i) const { return {text_.data() + names_[i].start, names_[i].length}; }
    // NUL-terminated, for the *at() calls.
    const char* c_str(std::size_t i) const { return text_.data() + names_[i].start; }
    // The entry's type as the directory records it (DT_REG, DT_DIR, ...), or DT_UNKNOWN
    // where the file system does not say; a hint that an fstat must confirm.
    unsigned char type(std::size_t i) const { return names_[i].type; }

private:
    struct Name {
        std::uint32_t start;
        std::uint32_t length;
        unsigned char type;
    };
    std::string text_;
    std::vector<Name> names_;
};

// Removes `name` below parent_fd and everything in it, fd-relative: symlinks are removed,
// never followed; a directory on another device (a mount point) is left alone; read-only
// directories owned by the caller are made writable first. Returns false if anything was
// left behind (the first error in *error when given); never throws.
bool remove_tree_at(int parent_fd, const std::string& name, std::string* error = nullptr);

// As remove_tree_at, but stops once `deadline` has passed, leaving the rest in place for a
// later call; *out_of_time says whether it stopped for that reason. A million-file tree is
// then removed in slices that each fit the caller's time budget.
bool remove_tree_until(int parent_fd, const std::string& name, std::chrono::steady_clock::time_point deadline,
                       bool* out_of_time, std::string* error = nullptr);

// Free bytes of the file system holding fd, for unprivileged users (f_bavail): what a
// copy may fill. UINT64_MAX when it cannot be told.
std::uint64_t free_space(int fd);

// Lock files live in directories their user may write, so whoever owns them may hold a
// lock forever or plant a FIFO under the name. They are opened O_NONBLOCK and O_NOFOLLOW
// and refused unless regular files. Returns an empty fd when the file is missing and
// `create` is false; throws aihpc::Error naming shown_path otherwise.
UniqueFd open_lock_file_at(int dir_fd, const std::string& name, bool create, const std::string& shown_path,
                           mode_t mode = 0600, bool read_only = false);

// flock(operation) with a bounded wait: true once locked, false at once when operation
// has LOCK_NB and the lock is held. Otherwise retries until `wait` has passed and then
// throws aihpc::Error naming shown_path and who may hold it.
bool lock_with_deadline(int fd, int operation, std::chrono::milliseconds wait, const std::string& shown_path);

// How long stagers wait for a lock another stager holds (one that produces the same data
// may take long), unless told otherwise.
inline constexpr std::chrono::milliseconds default_lock_wait{std::chrono::hours(1)};

// A tree being built under a temporary name below parent_fd: removed on every way out
// of the scope unless keep() was called once it was published under its real name.
class TemporaryTree {
public:
    TemporaryTree(int parent_fd, std::string name) : parent_fd_(parent_fd), name_(std::move(name)) {}
    TemporaryTree(const TemporaryTree&) = delete;
    TemporaryTree& operator=(const TemporaryTree&) = delete;
    ~TemporaryTree() {
        if (!kept_) remove_tree_at(parent_fd_, name_);
    }
    void keep() noexcept { kept_ = true; }

private:
    int parent_fd_;
    std::string name_;
    bool kept_ = false;
};

// Size caps for read_small_file_at: an entry's info and a job's items are a few lines;
// a manifest lists every file of a tree.
inline constexpr std::size_t small_file_max = 64 * 1024;
inline constexpr std::size_t manifest_file_max = std::size_t{1} << 30;

// Whole-file helper for metadata files: reads dir_fd/name, not following a symlink, and
// returns nullopt if it is missing, not a regular file (a FIFO is refused without
// blocking) or larger than max_bytes.
std::optional<std::string> read_small_file_at(int dir_fd, const std::string& name, std::size_t max_bytes);
// Writes `text` to dir_fd/name atomically (temp file, then rename), with `mode`.
void write_file_atomic_at(int dir_fd, const std::string& name, const std::string& text, mode_t mode,
                          const std::string& shown_path);

std::string dirname_of(const std::string& path);
std::string basename_of(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);

// A unique suffix for temporary names: pid and a per-process counter.
std::string unique_suffix();

}  // namespace aihpc::stage
