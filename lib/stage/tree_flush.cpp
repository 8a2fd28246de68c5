#include "stage/tree_flush.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/fs.hpp"
#include "stage/io_pool.hpp"

namespace aihpc::stage {

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

// Runs `work` on `count` threads, this one included, and waits for all of them.
template <typename Work>
void run_on_threads(unsigned count, Work&& work) {
    std::vector<std::thread> workers;
    for (unsigned i = 1; i < count; ++i) workers.emplace_back(work);
    work();
    for (std::thread& t : workers) t.join();
}

// One fsync_tree: the walk's shared state (the directories still to list, every
// directory found, the first failure) and the work of its threads.
class TreeFlush {
public:
    TreeFlush(int dir_fd, const std::string& shown_path, const struct stat& root, bool journaled, std::size_t window)
        : dir_fd_(dir_fd), shown_path_(shown_path), root_(root), journaled_(journaled), window_(window) {}

    // Lists directories while there are any, starting the writeback of the files found,
    // then waits for this worker's own files.
    void walk() {
        std::deque<WrittenFile> written;
        try {
            std::unique_lock<std::mutex> hold(mutex_);
            while (failure_.empty()) {
                if (unlisted_.empty()) {
                    if (busy_ == 0) break;
                    if (!written.empty()) {
                        // Nothing to list now: wait for this worker's own files meanwhile.
                        hold.unlock();
                        for (; !written.empty(); written.pop_front()) flush_file(written.front());
                        hold.lock();
                    } else {
                        changed_.wait(hold, [&] { return !unlisted_.empty() || busy_ == 0 || !failure_.empty(); });
                    }
                    continue;
                }
                std::string relative = std::move(unlisted_.front());
                unlisted_.pop_front();
                ++busy_;
                hold.unlock();
                std::vector<std::string> subdirs;
                try {
                    subdirs = list_directory(relative, written);
                } catch (...) {
                    hold.lock();
                    --busy_;
                    changed_.notify_all();
                    throw;
                }
                hold.lock();
                --busy_;
                for (std::string& d : subdirs) {
                    directories_.push_back(d);
                    unlisted_.push_back(std::move(d));
                }
                changed_.notify_all();
            }
            bool stopped = !failure_.empty();
            hold.unlock();
            if (!stopped)
                for (; !written.empty(); written.pop_front()) flush_file(written.front());
        } catch (const Error& e) {
            fail(e.what());
        }
    }

    // fsyncs the directories the walk found, each once, until they are all done.
    void sync_directories() {
        while (true) {
            std::size_t i = next_directory_.fetch_add(1);
            if (i >= directories_.size()) return;
            {
                std::lock_guard<std::mutex> hold(mutex_);
                if (!failure_.empty()) return;
            }
            const std::string& relative = directories_[i];
            std::string shown = relative.empty() ? shown_path_ : join_path(shown_path_, relative);
            UniqueFd fd(relative.empty() ? ::openat(dir_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                         : open_beneath(dir_fd_, relative, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_NOFOLLOW));
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
    }

    // Throws the first failure of any thread.
    void throw_failure() const {
        if (!failure_.empty()) throw Error(failure_);
    }

private:
    struct WrittenFile {
        UniqueFd fd;
        std::string relative;
    };

    void fail(const std::string& what) {
        std::lock_guard<std::mutex> hold(mutex_);
        if (failure_.empty()) failure_ = what;
        changed_.notify_all();
    }

    void flush_file(const WrittenFile& file) const {
        if (journaled_) {
            if (::sync_file_range(file.fd.get(), 0, 0,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
                throw SystemError("cannot write " + join_path(shown_path_, file.relative) + " to disk", errno);
        } else if (::fsync(file.fd.get()) != 0) {
            throw SystemError("cannot flush " + join_path(shown_path_, file.relative) + " to disk", errno);
        }
    }

    // Lists one directory: its subdirectories are returned, its files opened (no symlink
    // followed, and O_NONBLOCK, so whatever was planted under a name never blocks) and
    // added to `written` once their writeback has started.
    std::vector<std::string> list_directory(const std::string& relative, std::deque<WrittenFile>& written) const {
        std::vector<std::string> subdirs;
        std::string shown = relative.empty() ? shown_path_ : join_path(shown_path_, relative);
        UniqueFd dir(relative.empty() ? ::openat(dir_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                      : open_beneath(dir_fd_, relative, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK));
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
                    throw SystemError("cannot stat " + join_path(shown_path_, child), errno);
                }
                if (S_ISDIR(st.st_mode)) {
                    if (st.st_dev == root_.st_dev) subdirs.push_back(std::move(child));
                    continue;
                }
                if (!S_ISREG(st.st_mode)) continue;
            } else if (type != DT_REG) {
                continue;
            }
            UniqueFd file(::openat(dir.get(), names.c_str(i), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
            if (!file) {
                if (errno == ENOENT || errno == ELOOP) continue;
                throw SystemError("cannot open " + join_path(shown_path_, child) + " to flush it", errno);
            }
            if (journaled_) ::sync_file_range(file.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
            written.push_back({std::move(file), std::move(child)});
            while (written.size() > window_) {
                flush_file(written.front());
                written.pop_front();
            }
        }
        return subdirs;
    }

    const int dir_fd_;
    const std::string& shown_path_;
    const struct stat root_;
    const bool journaled_;
    const std::size_t window_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::string> unlisted_{""};
    std::vector<std::string> directories_{""};  // every directory of the tree, flushed last
    std::size_t busy_ = 0;
    std::string failure_;
    std::atomic<std::size_t> next_directory_{0};
};

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
    TreeFlush flush(dir_fd, shown_path, root, journaled, journaled ? flush_window(count) : 0);
    run_on_threads(count, [&flush] { flush.walk(); });
    flush.throw_failure();
    if (journaled && (::write(commit_file.get(), "", 1) != 1 || ::fsync(commit_file.get()) != 0))
        throw_errno("cannot commit the journal of " + shown_path + " to disk");
    run_on_threads(count, [&flush] { flush.sync_directories(); });
    flush.throw_failure();
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

}  // namespace aihpc::stage
