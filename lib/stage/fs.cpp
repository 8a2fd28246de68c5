#include "stage/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <linux/magic.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "stage/io_pool.hpp"

namespace aihpc::stage {

namespace {

// -1 unknown, 0 missing, 1 present: probed once, since containers may filter openat2.
std::atomic<int> have_openat2{-1};

int open_by_components(int dir_fd, const std::string& relative, int flags, mode_t mode) {
    std::vector<std::string> parts;
    for (const std::string& part : split(relative, '/'))
        if (!part.empty() && part != ".") parts.push_back(part);
    for (const std::string& part : parts)
        if (part == "..") {
            errno = EXDEV;
            return -1;
        }
    if (parts.empty()) return ::openat(dir_fd, ".", flags | O_CLOEXEC, mode);
    UniqueFd current;
    int at = dir_fd;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        int next = ::openat(at, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) return -1;
        current.reset(next);
        at = next;
    }
    return ::openat(at, parts.back().c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
}

}  // namespace

int open_beneath(int dir_fd, const std::string& relative, int flags, mode_t mode) {
    if (have_openat2.load(std::memory_order_relaxed) != 0) {
        struct open_how how {};
        how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
        how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        const char* path = relative.empty() ? "." : relative.c_str();
        long fd = ::syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
        if (fd >= 0) {
            have_openat2.store(1, std::memory_order_relaxed);
            return static_cast<int>(fd);
        }
        // ENOSYS: an old kernel; EPERM: a seccomp filter (some container runtimes) that
        // refuses the call itself. Both mean "use the fallback", never "refused".
        if (errno != ENOSYS && errno != EPERM) return -1;
        have_openat2.store(0, std::memory_order_relaxed);
    }
    return open_by_components(dir_fd, relative, flags, mode);
}

UniqueFd open_beneath_or_throw(int dir_fd, const std::string& relative, int flags, const std::string& shown_path,
                               mode_t mode) {
    int fd = open_beneath(dir_fd, relative, flags, mode);
    if (fd < 0) {
        if (errno == ELOOP || errno == EXDEV)
            throw Error("cannot open " + shown_path + ": the path crosses a symlink or leaves its tree; aihpc never follows those");
        throw_errno("cannot open " + shown_path);
    }
    return UniqueFd(fd);
}

UniqueFd open_dir(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open directory " + path);
    return UniqueFd(fd);
}

UniqueFd ensure_dir_at(int parent_fd, const std::string& name, mode_t mode, const std::string& shown_path) {
    if (::mkdirat(parent_fd, name.c_str(), mode) != 0 && errno != EEXIST)
        throw_errno("cannot create directory " + shown_path);
    int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
            throw Error(shown_path + " is not a directory (a symlink or a file is in the way); remove it");
        throw_errno("cannot open directory " + shown_path);
    }
    return UniqueFd(fd);
}

DirectoryNames::DirectoryNames(int dir_fd, const std::string& shown_path) {
    // 32 KiB holds a few hundred entries: one call for most directories.
    constexpr std::size_t batch = 32768;
    std::unique_ptr<char[]> buffer(new char[batch]);
    while (true) {
        ssize_t n = ::getdents64(dir_fd, buffer.get(), batch);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot list " + shown_path);
        }
        if (n == 0) break;
        for (ssize_t offset = 0; offset < n;) {
            const auto* ent = reinterpret_cast<const struct dirent64*>(buffer.get() + offset);
            offset += ent->d_reclen;
            const char* name = ent->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
            std::size_t length = std::strlen(name);
            names_.push_back({static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(length), ent->d_type});
            text_.append(name, length + 1);
        }
    }
    std::sort(names_.begin(), names_.end(), [this](const Name& a, const Name& b) {
        return std::string_view(text_.data() + a.start, a.length) < std::string_view(text_.data() + b.start, b.length);
    });
}

namespace {

// What one removal carries down the tree.
struct Removal {
    dev_t device = 0;
    std::string* error = nullptr;
    const std::chrono::steady_clock::time_point* deadline = nullptr;
    bool out_of_time = false;
    unsigned since_check = 0;

    // The clock is read once per 64 entries: cheap next to the unlinks it bounds.
    bool expired() {
        if (out_of_time) return true;
        if (!deadline || ++since_check < 64) return false;
        since_check = 0;
        out_of_time = std::chrono::steady_clock::now() >= *deadline;
        return out_of_time;
    }
};

bool remove_children(int dir_fd, Removal& r, int depth);

void note_error(std::string* error, const std::string& what) {
    if (error && error->empty()) *error = what;
}

bool remove_entry(int parent_fd, const char* name, Removal& r, int depth) {
    if (r.expired()) return false;
    struct stat st {};
    if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return true;
        note_error(r.error, std::string("stat ") + name + ": " + std::strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (::unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT) return true;
        note_error(r.error, std::string("unlink ") + name + ": " + std::strerror(errno));
        return false;
    }
    if (st.st_dev != r.device) {
        note_error(r.error, std::string(name) + " is a mount point; left in place");
        return false;
    }
    if (depth > 4096) {
        note_error(r.error, "directory tree too deep");
        return false;
    }
    int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        // A published cache entry is read-only (0555); its owner may open it after chmod.
        // If chmod fails, the open below fails too and reports why.
        if (::fchmodat(parent_fd, name, 0700, 0) != 0) errno = EACCES;
        fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        note_error(r.error, std::string("open ") + name + ": " + std::strerror(errno));
        return false;
    }
    UniqueFd dir(fd);
    struct stat opened {};
    if (::fstat(dir.get(), &opened) != 0 || opened.st_ino != st.st_ino || opened.st_dev != st.st_dev) {
        note_error(r.error, std::string(name) + " changed while being removed");
        return false;
    }
    if ((opened.st_mode & 0300) != 0300) ::fchmod(dir.get(), (opened.st_mode & 07777) | 0700);
    bool ok = remove_children(dir.get(), r, depth + 1);
    dir.reset();
    if (r.out_of_time) return false;
    if (::unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
        note_error(r.error, std::string("rmdir ") + name + ": " + std::strerror(errno));
        return false;
    }
    return ok;
}

bool remove_children(int dir_fd, Removal& r, int depth) {
    int listing_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing_fd < 0) {
        note_error(r.error, std::string("open for listing: ") + std::strerror(errno));
        return false;
    }
    UniqueFd listing(listing_fd);
    try {
        DirectoryNames names(listing.get(), "a directory being removed");
        bool ok = true;
        for (std::size_t i = 0; i < names.size() && !r.out_of_time; ++i) ok = remove_entry(dir_fd, names.c_str(i), r, depth) && ok;
        return ok && !r.out_of_time;
    } catch (const Error& e) {
        note_error(r.error, e.what());
        return false;
    }
}

bool remove_with(int parent_fd, const std::string& name, Removal& r) {
    struct stat parent {};
    if (::fstat(parent_fd, &parent) != 0) {
        note_error(r.error, std::string("fstat: ") + std::strerror(errno));
        return false;
    }
    r.device = parent.st_dev;
    return remove_entry(parent_fd, name.c_str(), r, 0);
}

}  // namespace

bool remove_tree_at(int parent_fd, const std::string& name, std::string* error) {
    Removal r;
    r.error = error;
    return remove_with(parent_fd, name, r);
}

bool remove_tree_until(int parent_fd, const std::string& name, std::chrono::steady_clock::time_point deadline,
                       bool* out_of_time, std::string* error) {
    Removal r;
    r.error = error;
    r.deadline = &deadline;
    bool ok = remove_with(parent_fd, name, r);
    if (out_of_time) *out_of_time = r.out_of_time;
    return ok;
}

UniqueFd open_lock_file_at(int dir_fd, const std::string& name, bool create, const std::string& shown_path, mode_t mode,
                           bool read_only) {
    int fd = ::openat(dir_fd, name.c_str(),
                      (read_only ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), mode);
    if (fd < 0) {
        if (!create && errno == ENOENT) return UniqueFd();
        if (errno == ELOOP) throw Error("the lock file " + shown_path + " is a symlink; remove it");
        throw_errno("cannot open the lock file " + shown_path);
    }
    UniqueFd lock(fd);
    struct stat st {};
    if (::fstat(lock.get(), &st) != 0) throw_errno("cannot stat the lock file " + shown_path);
    if (!S_ISREG(st.st_mode)) throw Error("the lock file " + shown_path + " is not a regular file; remove it");
    return lock;
}

bool lock_with_deadline(int fd, int operation, std::chrono::milliseconds wait, const std::string& shown_path) {
    const bool try_once = (operation & LOCK_NB) != 0;
    const int kind = operation & ~LOCK_NB;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    // flock has no timeout of its own: poll, backing off from 1 ms to 50 ms, which costs
    // nothing measurable next to the stage a waiter waits for.
    std::chrono::milliseconds pause{1};
    while (true) {
        if (::flock(fd, kind | LOCK_NB) == 0) return true;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) throw_errno("cannot lock " + shown_path);
        if (try_once) return false;
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            auto seconds = std::chrono::duration_cast<std::chrono::seconds>(wait).count();
            throw Error("gave up waiting for the lock " + shown_path + " after " + std::to_string(seconds) +
                        " s: another process holds it (another stage of the same data, or a process of the file's owner); "
                        "try again once it ends, or end the process that holds it (fuser " + shown_path + ")");
        }
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
}

std::optional<std::string> read_small_file_at(int dir_fd, const std::string& name, std::size_t max_bytes) {
    // O_NONBLOCK: a FIFO or device planted under the name must not hang the reader,
    // which may be root or slurmstepd; it is refused by the S_ISREG check below.
    int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    UniqueFd file(fd);
    struct stat st {};
    if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) return std::nullopt;
    std::string text;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(file.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        // The file may grow after fstat.
        if (text.size() > max_bytes) return std::nullopt;
    }
    return text;
}

void write_file_atomic_at(int dir_fd, const std::string& name, const std::string& text, mode_t mode,
                          const std::string& shown_path) {
    std::string temp = "." + name + ".tmp." + unique_suffix();
    int fd = ::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) throw_errno("cannot write " + shown_path);
    UniqueFd file(fd);
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(file.get(), text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::unlinkat(dir_fd, temp.c_str(), 0);
            throw SystemError("cannot write " + shown_path, err);
        }
        done += static_cast<std::size_t>(n);
    }
    file.reset();
    if (::renameat(dir_fd, temp.c_str(), dir_fd, name.c_str()) != 0) {
        int err = errno;
        ::unlinkat(dir_fd, temp.c_str(), 0);
        throw SystemError("cannot publish " + shown_path, err);
    }
}

std::string dirname_of(const std::string& path) {
    std::size_t end = path.find_last_not_of('/');
    if (end == std::string::npos) return "/";
    std::size_t slash = path.rfind('/', end);
    if (slash == std::string::npos) return ".";
    std::size_t keep = path.find_last_not_of('/', slash);
    return keep == std::string::npos ? "/" : path.substr(0, keep + 1);
}

std::string basename_of(const std::string& path) {
    std::size_t end = path.find_last_not_of('/');
    if (end == std::string::npos) return path.empty() ? "" : "/";
    std::size_t slash = path.rfind('/', end);
    std::size_t begin = slash == std::string::npos ? 0 : slash + 1;
    return path.substr(begin, end - begin + 1);
}

std::string join_path(const std::string& dir, const std::string& name) {
    if (dir.empty() || name.empty()) return dir + name;
    if (dir.back() == '/') return dir + name;
    return dir + "/" + name;
}

std::string unique_suffix() {
    static std::atomic<unsigned> counter{0};
    return std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
}

std::uint64_t free_space(int fd) {
    struct statvfs fs {};
    if (::fstatvfs(fd, &fs) != 0) return UINT64_MAX;
    return static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
}

}  // namespace aihpc::stage
