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

namespace {

// Whether one journal commit makes every metadata change made before it durable, in
// order, with a cache flush: XFS, and ext4 with its jbd2 journal (an ext2 or a
// journal-less ext4 has no /proc/fs/jbd2 entry). Elsewhere (btrfs, NFS, Lustre, ...)
// every file needs its own fsync.
bool journal_orders_metadata(int fd) {
    struct statfs fs {};
    if (::fstatfs(fd, &fs) != 0) return false;
    if (fs.f_type == XFS_SUPER_MAGIC) return true;
    if (fs.f_type != EXT4_SUPER_MAGIC) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return false;
    char link[64], target[256];
    std::snprintf(link, sizeof link, "/sys/dev/block/%u:%u", ::major(st.st_dev), ::minor(st.st_dev));
    ssize_t n = ::readlink(link, target, sizeof target - 1);
    if (n <= 0) return false;
    target[n] = '\0';
    std::string device = basename_of(target);
    struct stat journal {};
    return ::stat(("/proc/fs/jbd2/" + device + "-8").c_str(), &journal) == 0;
}

// How many written files one flush worker keeps open while their writeback runs: enough
// that the oldest is usually on disk by the time it is waited for, and all workers
// together within half the descriptors the process may open.
std::size_t flush_window(unsigned workers) {
    struct rlimit limit {};
    std::size_t budget = 64;
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0)
        budget = limit.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 16
                 : limit.rlim_cur > 128          ? static_cast<std::size_t>(limit.rlim_cur - 64) / 2
                                                 : 16;
    return std::clamp<std::size_t>(budget / std::max(1u, workers), 1, 256);
}

}  // namespace

void fsync_tree(int dir_fd, unsigned threads, const std::string& shown_path) {
    // One pass over the tree. On a journaled XFS or ext4 each file's fsync would commit
    // the journal and send the device a cache flush: 20,000 of each for 20,000 fresh
    // files. There each file's writeback is started as the walk finds it (which allocates
    // its blocks), waited for a window of files later, and then one journal commit makes
    // every file's metadata durable, with one flush that also covers the data. The
    // commit is the fsync of an unnamed file made in the root: it has no name, so no
    // directory changes, and it is newer than every allocation, so it commits the
    // journal through all of them. Where no unnamed file can be made, or on any other
    // file system, each file is fsynced as it is found.
    struct stat root {};
    if (::fstat(dir_fd, &root) != 0) throw_errno("cannot stat " + shown_path);
    UniqueFd commit_file;
    if (journal_orders_metadata(dir_fd)) commit_file.reset(::openat(dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    const bool journaled = static_cast<bool>(commit_file);
    const unsigned count = journaled ? std::clamp(threads, 1u, 2 * usable_cpus()) : std::max(1u, threads);
    const std::size_t window = journaled ? flush_window(count) : 0;

    struct WrittenFile {
        UniqueFd fd;
        std::string relative;
    };
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<std::string> unlisted{""};
    std::vector<std::string> directories{""};  // every directory of the tree, flushed last
    std::size_t busy = 0;
    std::string failure;
    auto fail = [&](const std::string& what) {
        std::lock_guard<std::mutex> hold(mutex);
        if (failure.empty()) failure = what;
        changed.notify_all();
    };
    auto flush_file = [&](const WrittenFile& file) {
        if (journaled) {
            if (::sync_file_range(file.fd.get(), 0, 0,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
                throw SystemError("cannot write " + join_path(shown_path, file.relative) + " to disk", errno);
        } else if (::fsync(file.fd.get()) != 0) {
            throw SystemError("cannot flush " + join_path(shown_path, file.relative) + " to disk", errno);
        }
    };
    // Lists one directory: its subdirectories are returned, its files opened (no symlink
    // followed, and O_NONBLOCK, so whatever was planted under a name never blocks) and
    // added to `written` once their writeback has started.
    auto list_directory = [&](const std::string& relative, std::deque<WrittenFile>& written) {
        std::vector<std::string> subdirs;
        std::string shown = relative.empty() ? shown_path : join_path(shown_path, relative);
        UniqueFd dir(relative.empty() ? ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                      : open_beneath(dir_fd, relative, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK));
        if (!dir) {
            if (errno == ENOENT) return subdirs;
            throw SystemError("cannot open " + shown + " to flush it", errno);
        }
        DirectoryNames names(dir.get(), shown);
        for (std::size_t i = 0; i < names.size(); ++i) {
            std::string child = relative.empty() ? std::string(names[i]) : relative + "/" + std::string(names[i]);
            const unsigned char type = names.type(i);
            if (type == DT_DIR || type == DT_UNKNOWN) {
                struct stat st {};
                if (::fstatat(dir.get(), names.c_str(i), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (errno == ENOENT) continue;
                    throw SystemError("cannot stat " + join_path(shown_path, child), errno);
                }
                if (S_ISDIR(st.st_mode)) {
                    if (st.st_dev == root.st_dev) subdirs.push_back(std::move(child));
                    continue;
                }
                if (!S_ISREG(st.st_mode)) continue;
            } else if (type != DT_REG) {
                continue;
            }
            UniqueFd file(::openat(dir.get(), names.c_str(i), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
            if (!file) {
                if (errno == ENOENT || errno == ELOOP) continue;
                throw SystemError("cannot open " + join_path(shown_path, child) + " to flush it", errno);
            }
            if (journaled) ::sync_file_range(file.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
            written.push_back({std::move(file), std::move(child)});
            while (written.size() > window) {
                flush_file(written.front());
                written.pop_front();
            }
        }
        return subdirs;
    };
    auto walker = [&] {
        std::deque<WrittenFile> written;
        try {
            std::unique_lock<std::mutex> hold(mutex);
            while (failure.empty()) {
                if (unlisted.empty()) {
                    if (busy == 0) break;
                    if (!written.empty()) {
                        // Nothing to list now: wait for this worker's own files meanwhile.
                        hold.unlock();
                        for (; !written.empty(); written.pop_front()) flush_file(written.front());
                        hold.lock();
                    } else {
                        changed.wait(hold, [&] { return !unlisted.empty() || busy == 0 || !failure.empty(); });
                    }
                    continue;
                }
                std::string relative = std::move(unlisted.front());
                unlisted.pop_front();
                ++busy;
                hold.unlock();
                std::vector<std::string> subdirs;
                try {
                    subdirs = list_directory(relative, written);
                } catch (...) {
                    hold.lock();
                    --busy;
                    changed.notify_all();
                    throw;
                }
                hold.lock();
                --busy;
                for (std::string& d : subdirs) {
                    directories.push_back(d);
                    unlisted.push_back(std::move(d));
                }
                changed.notify_all();
            }
            bool stopped = !failure.empty();
            hold.unlock();
            if (!stopped)
                for (; !written.empty(); written.pop_front()) flush_file(written.front());
        } catch (const Error& e) {
            fail(e.what());
        }
    };
    std::atomic<std::size_t> next_directory{0};
    auto directory_syncer = [&] {
        while (true) {
            std::size_t i = next_directory.fetch_add(1);
            if (i >= directories.size()) return;
            {
                std::lock_guard<std::mutex> hold(mutex);
                if (!failure.empty()) return;
            }
            const std::string& relative = directories[i];
            std::string shown = relative.empty() ? shown_path : join_path(shown_path, relative);
            UniqueFd fd(relative.empty() ? ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                         : open_beneath(dir_fd, relative, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_NOFOLLOW));
            if (!fd) {
                if (errno == ENOENT) continue;
                fail("cannot open " + shown + " to flush it: " + std::strerror(errno));
                return;
            }
            if (::fsync(fd.get()) != 0) {
                fail("cannot flush " + shown + " to disk: " + std::strerror(errno));
                return;
            }
        }
    };
    auto run = [&](auto&& work) {
        std::vector<std::thread> workers;
        for (unsigned i = 1; i < count; ++i) workers.emplace_back(work);
        work();
        for (std::thread& t : workers) t.join();
    };
    run(walker);
    if (!failure.empty()) throw Error(failure);
    if (journaled && (::write(commit_file.get(), "", 1) != 1 || ::fsync(commit_file.get()) != 0))
        throw_errno("cannot commit the journal of " + shown_path + " to disk");
    run(directory_syncer);
    if (!failure.empty()) throw Error(failure);
}

void fsync_item_at(int parent_fd, const std::string& name, unsigned threads, const std::string& shown_path) {
    UniqueFd item(::openat(parent_fd, name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
    if (!item) {
        if (errno != ELOOP) throw_errno("cannot open " + shown_path + " to flush it");
    } else {
        struct stat st {};
        if (::fstat(item.get(), &st) != 0) throw_errno("cannot stat " + shown_path);
        if (S_ISDIR(st.st_mode)) fsync_tree(item.get(), threads, shown_path);
        else if (::fsync(item.get()) != 0) throw_errno("cannot flush " + shown_path + " to disk");
    }
    if (::fsync(parent_fd) != 0) throw_errno("cannot flush the directory of " + shown_path + " to disk");
}

UniqueFd open_lock_file_at(int dir_fd, const std::string& name, bool create, const std::string& shown_path) {
    int fd = ::openat(dir_fd, name.c_str(), O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
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
